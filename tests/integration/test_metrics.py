"""/metrics: scraped while `granary warm` fetches a few thousand files, the
counters only move forward and end at the number of files; every page parses
as the Prometheus text format 0.0.4 under a strict parser; reads, misses of
missing files and the latency histogram show up; other paths answer 404; a
taken port stops granaryd from starting."""
import errno
import math
import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request

from harness import GRANARY, GRANARYD, Fail, check, make_tree, run

N_FILES = 4000

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


# ---- a strict parser of the text exposition format 0.0.4 ----

def parse_value(s, where):
    if s in ("NaN", "+Inf", "-Inf"):
        return float(s.replace("Inf", "inf").replace("NaN", "nan"))
    if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", s):
        raise Fail("%s: bad value %r" % (where, s))
    return float(s)


def parse_labels(text, pos, where):
    """Parse '{a="b",...}' starting at text[pos] == '{'; returns (dict, next pos)."""
    labels = {}
    pos += 1
    while True:
        if text[pos] == "}":
            return labels, pos + 1
        m = LABEL.match(text, pos)
        if not m:
            raise Fail("%s: bad label name at %r" % (where, text[pos:]))
        name = m.group(0)
        if name.startswith("__"):
            raise Fail("%s: reserved label name %s" % (where, name))
        if name in labels:
            raise Fail("%s: label %s twice" % (where, name))
        pos = m.end()
        if text[pos:pos + 2] != '="':
            raise Fail("%s: expected =\" after %s" % (where, name))
        pos += 2
        val = []
        while True:
            if pos >= len(text):
                raise Fail("%s: unterminated label value" % where)
            ch = text[pos]
            if ch == "\\":
                nxt = text[pos + 1:pos + 2]
                if nxt not in ("\\", '"', "n"):
                    raise Fail("%s: bad escape \\%s in a label value" % (where, nxt))
                val.append("\n" if nxt == "n" else nxt)
                pos += 2
            elif ch == '"':
                pos += 1
                break
            elif ch == "\n":
                raise Fail("%s: raw newline in a label value" % where)
            else:
                val.append(ch)
                pos += 1
        labels[name] = "".join(val)
        if text[pos] == ",":
            pos += 1
        elif text[pos] != "}":
            raise Fail("%s: expected , or } after a label" % where)


def family_of(name, types):
    if name in types:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and types.get(name[:-len(suffix)]) in ("histogram", "summary"):
            return name[:-len(suffix)]
    return None


def parse_exposition(text):
    """Returns {family: {"type", "help", "samples": [(name, labels, value)]}}."""
    check(text.endswith("\n"), "the page does not end with a newline")
    fams = {}
    types = {}
    done = set()  # families whose samples are over: they must be contiguous
    current = None
    seen = set()
    for n, line in enumerate(text[:-1].split("\n"), 1):
        where = "line %d %r" % (n, line)
        check(line != "", "%s: empty line" % where)
        if line.startswith("#"):
            parts = line.split(" ", 3)
            check(len(parts) >= 3 and parts[0] == "#" and parts[1] in ("HELP", "TYPE"),
                  "%s: a comment that is neither HELP nor TYPE" % where)
            name = parts[2]
            check(NAME.fullmatch(name), "%s: bad metric name" % where)
            f = fams.setdefault(name, {"type": None, "help": None, "samples": []})
            check(not f["samples"], "%s: %s after its samples" % (where, parts[1]))
            if parts[1] == "TYPE":
                check(len(parts) == 4 and parts[3] in TYPES, "%s: bad type" % where)
                check(f["type"] is None, "%s: second TYPE" % where)
                f["type"] = types[name] = parts[3]
            else:
                check(len(parts) == 4 and parts[3], "%s: empty HELP" % where)
                check(f["help"] is None, "%s: second HELP" % where)
                check(not re.search(r"\\[^\\n]", parts[3]), "%s: bad escape in HELP" % where)
                f["help"] = parts[3]
            continue
        m = NAME.match(line)
        check(m, "%s: no metric name" % where)
        name = m.group(0)
        pos = m.end()
        labels = {}
        if pos < len(line) and line[pos] == "{":
            try:
                labels, pos = parse_labels(line, pos, where)
            except IndexError:
                raise Fail("%s: unterminated labels" % where)
        check(line[pos:pos + 1] == " ", "%s: no space before the value" % where)
        fields = line[pos + 1:].split(" ")
        check(1 <= len(fields) <= 2, "%s: expected value [timestamp]" % where)
        value = parse_value(fields[0], where)
        if len(fields) == 2:
            check(re.fullmatch(r"-?\d+", fields[1]), "%s: bad timestamp" % where)
        fam = family_of(name, types)
        check(fam is not None, "%s: sample with no TYPE for its family" % where)
        check(fam not in done, "%s: samples of %s are not contiguous" % (where, fam))
        if current is not None and current != fam:
            done.add(current)
        current = fam
        key = (name, tuple(sorted(labels.items())))
        check(key not in seen, "%s: duplicate sample" % where)
        seen.add(key)
        if types[fam] == "counter":
            check(value >= 0 and not math.isnan(value), "%s: negative counter" % where)
        if types[fam] == "histogram":
            check(name != fam, "%s: histogram sample without _bucket/_sum/_count" % where)
            check((name == fam + "_bucket") == ("le" in labels),
                  "%s: le belongs on _bucket samples only" % where)
        fams[fam]["samples"].append((name, labels, value))
    for fam, f in fams.items():
        check(f["type"] is not None, "family %s has HELP but no TYPE" % fam)
        if f["type"] == "histogram":
            check_histogram(fam, f["samples"])
    return fams


def check_histogram(fam, samples):
    series = {}
    for name, labels, value in samples:
        rest = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        s = series.setdefault(rest, {"buckets": [], "sum": None, "count": None})
        if name.endswith("_bucket"):
            s["buckets"].append((parse_value(labels["le"], "%s le" % fam), value))
        elif name.endswith("_sum"):
            s["sum"] = value
        else:
            s["count"] = value
    for rest, s in series.items():
        what = "%s%s" % (fam, dict(rest))
        les = [le for le, _ in s["buckets"]]
        check(les and les[-1] == float("inf"), "%s: no le=\"+Inf\" bucket last" % what)
        check(les == sorted(les) and len(set(les)) == len(les),
              "%s: buckets not in increasing le order" % what)
        counts = [c for _, c in s["buckets"]]
        check(all(a <= b for a, b in zip(counts, counts[1:])), "%s: buckets not cumulative %s"
              % (what, counts))
        check(s["count"] is not None and s["sum"] is not None, "%s: no _sum or _count" % what)
        check(counts[-1] == s["count"], "%s: +Inf bucket %s != _count %s" % (
            what, counts[-1], s["count"]))


def value(fams, sample, **labels):
    for f in fams.values():
        for name, lab, v in f["samples"]:
            if name == sample and lab == labels:
                return v
    raise Fail("no sample %s%s" % (sample, labels))


GOOD = """# HELP a_total A.
# TYPE a_total counter
a_total{x="q\\"\\\\\\n"} 3
# TYPE h histogram
h_bucket{le="0.5"} 1
h_bucket{le="+Inf"} 2
h_sum 0.7
h_count 2
# TYPE g gauge
g NaN
g{y="1"} -Inf 1700000000000
"""

BAD = {
    "no TYPE": "x 1\n",
    "bad name": "# TYPE 1x gauge\n1x 1\n",
    "bad value": "# TYPE x gauge\nx one\n",
    "bad escape": '# TYPE x gauge\nx{a="\\t"} 1\n',
    "duplicate": "# TYPE x gauge\nx 1\nx 2\n",
    "not contiguous": "# TYPE x gauge\n# TYPE y gauge\nx 1\ny 1\nx{a=\"b\"} 1\n",
    "no final newline": "# TYPE x gauge\nx 1",
    "negative counter": "# TYPE x counter\nx -1\n",
    "not cumulative": '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\n'
                      "h_sum 1\nh_count 1\n",
    "+Inf != count": '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 3\n',
    "no +Inf": '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n',
    "other comment": "# hello\n",
    "unterminated labels": '# TYPE x gauge\nx{a="b" 1\n',
    "raw quote": '# TYPE x gauge\nx{a="b"c"} 1\n',
    "TYPE after samples": "# TYPE x gauge\nx 1\n# TYPE x gauge\n",
}


def parser_self_check():
    """The parser must accept a valid page and refuse each flaw, or it proves nothing."""
    fams = parse_exposition(GOOD)
    check(value(fams, "a_total", x='q"\\\n') == 3, "escaped label value read back wrong")
    check(math.isnan(value(fams, "g")), "NaN")
    for what, page in BAD.items():
        try:
            parse_exposition(page)
        except Fail:
            continue
        raise Fail("the parser accepted a page with %s" % what)


# ---- the test ----

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def scrape(url):
    status, ctype, body = get(url)
    check(status == 200, "GET %s answered %d" % (url, status))
    check(ctype.startswith("text/plain; version=0.0.4"), "Content-Type %r" % ctype)
    return parse_exposition(body)


def main(wd):
    parser_self_check()
    nas = os.path.join(wd.path, "nas")
    rels = make_tree(nas, N_FILES, 1, 8 * 1024, dirs=40)
    total = sum(os.path.getsize(os.path.join(nas, r)) for r in rels)
    port = free_port()
    url = "http://127.0.0.1:%d/metrics" % port
    d = wd.daemon([{"path": nas, "backend": "posix", "consistency": "strict",
                    "dataset": 'odd "name" \\ here'}],
                  metrics={"listen": "127.0.0.1:%d" % port})
    d.start()

    fams = scrape(url)
    check(value(fams, "granary_fetches_total") == 0, "fetches before any work")
    check(value(fams, "granary_cache_capacity_bytes") == 1 << 30, "capacity gauge")
    check(value(fams, "granary_build_info", version="0.1.0") == 1, "build info")
    check(value(fams, "granary_dataset_epoch", dataset='odd "name" \\ here') == 1,
          "dataset label not escaped and read back intact")
    check(fams["granary_fetch_duration_seconds"]["type"] == "histogram", "histogram type")

    # scrape while the warm runs in the background
    warm = subprocess.Popen([GRANARY, "warm", nas, "--jobs", "4", "--quiet"], env=d.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    deadline = time.time() + 300
    while warm.poll() is None and time.time() < deadline:
        f = scrape(url)
        seen.append((value(f, "granary_fetches_total"),
                     value(f, "granary_fetch_duration_seconds_count", backend="posix"),
                     value(f, "granary_requests_total")))
        time.sleep(0.01)
    out, _ = warm.communicate(timeout=60)
    check(warm.returncode == 0, "warm exited %s: %s" % (warm.returncode, out[-2000:]))
    fams = scrape(url)
    final = (value(fams, "granary_fetches_total"),
             value(fams, "granary_fetch_duration_seconds_count", backend="posix"),
             value(fams, "granary_requests_total"))
    seen.append(final)
    print("scrapes during warm: %d; fetches seen: %s" % (
        len(seen) - 1, [int(s[0]) for s in seen][:20]))
    check(len(seen) >= 3, "only %d scrapes during the warm" % (len(seen) - 1))
    for i in range(3):
        series = [s[i] for s in seen]
        check(all(a <= b for a, b in zip(series, series[1:])),
              "a counter went backwards: %s" % series)
    check(any(0 < s[0] < N_FILES for s in seen[:-1]),
          "no scrape saw the warm under way: %s" % [s[0] for s in seen])
    check(final[0] == N_FILES, "fetches_total %s after warming %d files" % (final[0], N_FILES))
    check(final[1] == N_FILES, "histogram count %s, %d fetches" % (final[1], N_FILES))
    check(value(fams, "granary_fetched_bytes_total", backend="posix") == total,
          "fetched bytes")
    check(value(fams, "granary_cache_used_bytes") == total, "used bytes")
    check(value(fams, "granary_cache_objects") == N_FILES, "objects")
    check(value(fams, "granary_mount_objects", mount=nas) == N_FILES, "mount objects")
    check(value(fams, "granary_fetches_inflight") == 0, "fetches still in flight")
    st = d.status()
    check(value(fams, "granary_requests_total") <= st["counters"]["requests"],
          "requests_total ahead of status")

    # reads: hits by mount, bytes served locally, a miss of a missing file
    c = d.conn()
    read_bytes = 0
    for rel in rels[:50]:
        r, data = c.read(os.path.join(nas, rel))
        check(r.status == 0, "read %s: %s" % (rel, r.errmsg))
        read_bytes += len(data)
    r, _ = c.read(os.path.join(nas, "no-such-file"))
    check(r.status == -errno.ENOENT, "missing file answered %d" % r.status)
    fams = scrape(url)
    check(value(fams, "granary_connections") >= 1, "open connection not counted")
    c.close()
    check(value(fams, "granary_hits_total", mount=nas) == 50, "hits by mount")
    check(value(fams, "granary_opens_total") == 50, "opens")
    check(value(fams, "granary_served_bytes_total", source="local") == read_bytes,
          "bytes served from the cache")
    check(value(fams, "granary_backend_errors_total", backend="posix", kind="notfound") == 1,
          "the missing file is not counted as a notfound backend error")
    ratio = value(fams, "granary_dataset_hit_ratio", dataset='odd "name" \\ here',
                  epoch="current")
    check(0 < ratio <= 1, "hit ratio %s" % ratio)

    # anything but /metrics is 404; the query string does not matter
    for path in ("/", "/metric", "/metrics/x", "/favicon.ico"):
        status, _, _ = get("http://127.0.0.1:%d%s" % (port, path))
        check(status == 404, "GET %s answered %d" % (path, status))
    scrape(url + "?x=1")

    # a port already taken: granaryd refuses to start, saying why
    check(d.stop() == 0, "granaryd did not exit 0 on SIGTERM")
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    taken = blocker.getsockname()[1]
    d2 = wd.daemon([{"path": nas}], name="taken", metrics={"listen": "127.0.0.1:%d" % taken})
    p = subprocess.run([GRANARYD, "--config", d2.config], capture_output=True, text=True,
                       timeout=60)
    blocker.close()
    check(p.returncode != 0, "granaryd started on a taken metrics port")
    check("Address already in use" in p.stderr and str(taken) in p.stderr,
          "no clear error for a taken port:\n" + p.stderr)


run(main, "metrics")
