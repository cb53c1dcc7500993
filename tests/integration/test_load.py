"""Load: 64 concurrent client processes open files through the raw protocol
on a mix of hits and misses, in three rounds; no error reply, and the
daemon's descriptors and memory do not grow from round to round.

Two posix mounts, one immutable and one strict, hold together about three
times the cache's capacity, so misses (fetches, evictions, objects served
without being kept) go on in every round. Each client opens random files,
checks the descriptor's size against the reply, compares the bytes of one
open in eight with the source, and closes it.

After each round, once the daemon has settled: its descriptor count
(/proc/PID/fd) stays within 4 of round 1's, and its RSS (VmRSS) in round 3
is less than 20% above round 2's.

Opens per round: 20,000 (GRANARY_LOAD_OPENS overrides); GRANARY_SOAK=1 (make
soak) runs 100,000 per round. The figures are printed as a Markdown table
row for docs/benchmarks.md.
"""
import hashlib
import json
import os
import platform
import random
import time

from harness import Conn, check, make_tree, read_pipe, run

SOAK = os.environ.get("GRANARY_SOAK") == "1"
OPENS = int(os.environ.get("GRANARY_LOAD_OPENS", "100000" if SOAK else "20000"))
CLIENTS = int(os.environ.get("GRANARY_LOAD_CLIENTS", "64"))
ROUNDS = 3
FD_SLACK = 4
RSS_GROWTH = 0.20


def proc_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def proc_rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def settle(d, timeout=30):
    """Wait until no fetch is in flight and the descriptor count holds still."""
    end = time.time() + timeout
    last, still = None, 0
    while time.time() < end:
        st = d.status()
        n = proc_fds(d.pid)
        if st["counters"].get("inflight", 0) == 0 and n == last:
            still += 1
            if still >= 5:
                return n
        else:
            still = 0
        last = n
        time.sleep(0.1)
    return proc_fds(d.pid)


def client(sock, paths, sizes, digests, n, seed, go_fd, out_fd):
    """One client process: n OPENs of random paths; report counts and errors."""
    rnd = random.Random(seed)
    res = {"opens": 0, "errors": 0, "first_errors": [], "compared": 0, "sources": {}}
    os.read(go_fd, 1)  # the parent closes its end: everybody starts at once
    c = Conn(sock)
    for i in range(n):
        p = rnd.choice(paths)
        try:
            r = c.request("OPEN", path=p)
        except OSError as e:
            res["errors"] += 1
            res["first_errors"].append("%s: %s" % (p, e))
            c.close()
            c = Conn(sock)
            continue
        bad = None
        if r.status != 0:
            bad = "%d %s" % (r.status, r.errmsg)
        elif len(r.fds) != 1:
            bad = "%d descriptors" % len(r.fds)
        else:
            fd = r.fds[0]
            st = os.fstat(fd)
            if st.st_size != sizes[p] or r.u64("SIZE") != sizes[p]:
                bad = "size %d/%d, source %d" % (st.st_size, r.u64("SIZE"), sizes[p])
            elif i % 8 == 0:
                data = os.pread(fd, sizes[p] + 1, 0)
                res["compared"] += 1
                if hashlib.sha256(data).digest() != digests[p]:
                    bad = "bytes differ from the source"
            src = str(r.u32("SOURCE"))
            res["sources"][src] = res["sources"].get(src, 0) + 1
        for fd in r.fds:
            os.close(fd)
        res["opens"] += 1
        if bad:
            res["errors"] += 1
            if len(res["first_errors"]) < 5:
                res["first_errors"].append("%s: %s" % (p, bad))
    c.close()
    data = json.dumps(res).encode()
    while data:
        data = data[os.write(out_fd, data):]


def one_round(d, paths, sizes, digests, rnd_seed):
    per = [OPENS // CLIENTS + (1 if i < OPENS % CLIENTS else 0) for i in range(CLIENTS)]
    go_r, go_w = os.pipe()
    kids = []
    for i in range(CLIENTS):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.close(go_w)
                os.close(r)
                client(d.socket, paths, sizes, digests, per[i], rnd_seed * 1000 + i, go_r, w)
            except BaseException as e:
                os.write(w, json.dumps({"crash": repr(e)}).encode())
                code = 1
            os._exit(code)
        os.close(w)
        kids.append((pid, r))
    os.close(go_r)
    before = d.status()["counters"]
    t0 = time.time()
    os.close(go_w)  # go
    results = []
    for pid, r in kids:
        data = read_pipe(r)
        os.waitpid(pid, 0)
        results.append(json.loads(data or b'{"crash": "no report"}'))
    secs = time.time() - t0
    after = d.status()["counters"]
    crashes = [x["crash"] for x in results if "crash" in x]
    check(not crashes, "client processes failed: %s" % crashes[:3])
    opens = sum(x["opens"] for x in results)
    errors = sum(x["errors"] for x in results)
    first = [e for x in results for e in x["first_errors"]][:10]
    check(opens == OPENS, "%d opens done of %d" % (opens, OPENS))
    check(errors == 0, "%d error replies or wrong descriptors in %d opens: %s" % (
        errors, opens, first))
    check(d.alive(), "granaryd died under load")
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in
             ("hits", "misses", "fetches", "evictions", "not_admitted", "fast_hits")}
    sources = {}
    for x in results:
        for k, v in x["sources"].items():
            sources[k] = sources.get(k, 0) + v
    return {"secs": secs, "rate": opens / secs, "compared": sum(x["compared"] for x in results),
            "delta": delta, "sources": sources}


def main(wd):
    imm = os.path.join(wd.path, "nas-immutable")
    strict = os.path.join(wd.path, "nas-strict")
    n_files = 3000
    rels_imm = make_tree(imm, n_files, 512, 12 * 1024, seed=11, dirs=30)
    rels_strict = make_tree(strict, n_files, 512, 12 * 1024, seed=12, dirs=30)
    paths = [os.path.join(imm, r) for r in rels_imm] + [os.path.join(strict, r)
                                                        for r in rels_strict]
    sizes, digests = {}, {}
    for p in paths:
        with open(p, "rb") as f:
            data = f.read()
        sizes[p] = len(data)
        digests[p] = hashlib.sha256(data).digest()
    dataset = sum(sizes.values())
    capacity = dataset // 3
    d = wd.daemon([{"path": imm, "backend": "posix", "consistency": "immutable"},
                   {"path": strict, "backend": "posix", "consistency": "strict"}],
                  cache={"capacity": capacity})
    d.start()
    print("%d clients, %d opens per round, %d files (%.1f MiB), cache %.1f MiB" % (
        CLIENTS, OPENS, len(paths), dataset / 2**20, capacity / 2**20))

    rows = []
    for rnd in range(1, ROUNDS + 1):
        res = one_round(d, paths, sizes, digests, rnd)
        fds = settle(d)
        rss = proc_rss_kb(d.pid)
        st = d.status()
        res.update(fds=fds, rss=rss, used=st["cache"]["used"], objects=st["cache"]["objects"])
        rows.append(res)
        dl = res["delta"]
        print("round %d: %d opens in %.1f s (%.0f opens/s), %d byte-compared; hits %d, "
              "misses %d, fetches %d, evictions %d, not kept %d; sources %s; daemon fds %d, "
              "RSS %d KiB; cache %d objects, %.1f MiB" % (
                  rnd, OPENS, res["secs"], res["rate"], res["compared"], dl["hits"],
                  dl["misses"], dl["fetches"], dl["evictions"], dl["not_admitted"],
                  res["sources"], fds, rss, res["objects"], res["used"] / 2**20))
        check(res["used"] <= capacity, "cache used %d above capacity %d" % (res["used"],
                                                                             capacity))
        check(dl["misses"] > 0 and dl["hits"] > 0, "round %d was not a mix of hits and "
              "misses: %s" % (rnd, dl))

    f1, f2, f3 = (r["fds"] for r in rows)
    check(abs(f2 - f1) <= FD_SLACK and abs(f3 - f1) <= FD_SLACK,
          "daemon descriptors across rounds: %d, %d, %d" % (f1, f2, f3))
    r2, r3 = rows[1]["rss"], rows[2]["rss"]
    check(r3 < r2 * (1 + RSS_GROWTH), "daemon RSS grew from %d KiB (round 2) to %d KiB "
          "(round 3)" % (r2, r3))
    check(d.stop() == 0, "granaryd did not exit 0 on SIGTERM")

    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    print("\n| opens/round | clients | round | opens/s | hits | misses | evictions | "
          "not kept | fds | RSS KiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for i, r in enumerate(rows, 1):
        dl = r["delta"]
        print("| %d | %d | %d | %.0f | %d | %d | %d | %d | %d | %d |" % (
            OPENS, CLIENTS, i, r["rate"], dl["hits"], dl["misses"], dl["evictions"],
            dl["not_admitted"], r["fds"], r["rss"]))
    print("machine: %s, nproc %d, RAM %.1f GiB, kernel %s, load average %.1f" % (
        platform.machine(), os.cpu_count(), mem_gib, platform.release(), os.getloadavg()[0]))


run(main, "load")
