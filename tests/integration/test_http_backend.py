"""An HTTP mount against a real nginx (Range, ETag, JSON autoindex): warmed with
the CLI and read back byte for byte through the protocol and the shim; single
flight counted in nginx's access log; changed, missing and directory paths;
and faults (503s, truncated bodies, connections closed mid-body, a stalled
server, the server killed mid-warm, an ETag change between ranges, no server
at all) that are retried or fail cleanly, never leaving a partial or mixed
object in the cache."""
import errno
import hashlib
import os
import random
import subprocess
import threading
import time

from harness import GRANARY, PRELOAD, check, item, make_tree, message, run
from servers import SMALL_FETCH, Nginx, Proxy, free_port, gets_per_object

LARGE = 3 * 1024 * 1024 + 4321  # over large_threshold: ranged GETs of chunk_size
FETCH = SMALL_FETCH


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def compare_all(d, mount, root, rels, expect_source=None):
    c = d.conn()
    sources = {}
    for rel in rels:
        r, data = c.read(mount + "/" + rel)
        check(r.status == 0, "OPEN %s failed: %d %s" % (rel, r.status, r.errmsg))
        check(data == read_bytes(os.path.join(root, rel)), "bytes differ for %s" % rel)
        s = r.u32("SOURCE")
        sources[s] = sources.get(s, 0) + 1
    c.close()
    if expect_source is not None:
        check(sources == {expect_source: len(rels)}, "sources %s" % sources)


def cached_consistent(d, mount, root, rels):
    """Every object the cache holds is byte-identical to the source; returns how many."""
    c = d.conn()
    n = 0
    for rel in rels:
        r, data = c.read(mount + "/" + rel, nofetch=True)
        if r.status != 0:
            continue
        n += 1
        check(data == read_bytes(os.path.join(root, rel)),
              "cached copy of %s differs from the source (partial or mixed)" % rel)
    c.close()
    return n


def main(wd):
    root = os.path.join(wd.path, "www")
    rels = make_tree(root, 600, 0, 96 * 1024, dirs=6)
    rnd = random.Random(7)
    for name in ("big0.bin", "big1.bin"):
        with open(os.path.join(root, name), "wb") as f:
            f.write(rnd.randbytes(LARGE))
        rels.append(name)
    odd = "odd dir/a+b=c & d%.bin"
    os.makedirs(os.path.join(root, "odd dir"))
    with open(os.path.join(root, odd), "wb") as f:
        f.write(b"odd name\n" * 100)
    rels.append(odd)

    ng = Nginx(wd.path, root).start()
    try:
        run_all(wd, ng, root, rels)
    finally:
        ng.stop()


def run_all(wd, ng, root, rels):
    proxies = []

    def proxy(**kw):
        p = Proxy(ng.port, **kw).start()
        proxies.append(p)
        return p

    failed_once = set()

    def every_third_503(req):
        # the first try of about a third of the requests fails; retries get through
        k = (req.method, req.path, req.headers.get("range"))
        if k in failed_once or req.n % 3:
            return None
        failed_once.add(k)
        return "503"

    def truncate_gets(req):
        return "truncate" if req.method == "GET" and req.n % 4 == 1 else None

    def close_gets(req):
        return "close" if req.method == "GET" and req.n % 4 == 2 else None

    stalled = set()

    def stall_once(req):
        if req.method == "GET" and req.path not in stalled and len(stalled) < 3:
            stalled.add(req.path)
            return "stall"
        return None

    slow = proxy(delay_ms=40)
    p503 = proxy(fault=every_third_503)
    ptrunc = proxy(fault=truncate_gets)
    pclose = proxy(fault=close_gets)
    pstall = proxy(fault=stall_once, stall_s=3.0)
    dead_port = free_port()

    mounts = [
        {"path": "/data/web", "backend": "http", "url": ng.url, "consistency": "strict"},
        {"path": "/data/once", "backend": "http", "url": slow.url, "consistency": "immutable"},
        {"path": "/data/ttl", "backend": "http", "url": slow.url, "consistency": "ttl",
         "ttl": "1h"},
        {"path": "/data/f503", "backend": "http", "url": p503.url},
        {"path": "/data/ftrunc", "backend": "http", "url": ptrunc.url},
        {"path": "/data/fclose", "backend": "http", "url": pclose.url},
        {"path": "/data/fstall", "backend": "http", "url": pstall.url},
        {"path": "/data/dead", "backend": "http", "url": "http://127.0.0.1:%d/" % dead_port},
    ]
    d = wd.daemon(mounts, fetch=dict(FETCH, timeout="1s"), cache={"capacity": "2G"})
    d.start()
    try:
        # ---- warm with the CLI, read back through the protocol ----
        p = d.cli("warm", "/data/web", "--jobs", "16", check_rc=0)
        st = d.status()
        check(st["counters"]["fetches"] == len(rels),
              "fetches after warm: %s (expected %d)" % (st["counters"], len(rels)))
        check(str(len(rels)) in p.stdout + p.stderr, "warm output: " + p.stdout + p.stderr)
        gets = ng.requests("GET")
        # a cold warm asks no HEAD: each object's first range describes it
        heads = [h for h in ng.requests("HEAD") if not h[1].endswith("/")]
        check(not heads, "a cold warm sent %d HEAD(s) of objects: %s" % (len(heads), heads[:3]))
        obj_gets = [g for g in gets if not g[1].endswith("/")]
        want_gets = sum(gets_per_object(os.path.getsize(os.path.join(root, r))) for r in rels)
        check(len(obj_gets) == want_gets,
              "a cold warm of %d objects made %d object GETs (expected %d)" % (
                  len(rels), len(obj_gets), want_gets))
        ranged = [g for g in gets if g[4] != "-"]
        check(len(ranged) >= 2 * (LARGE // (256 * 1024)),
              "large objects were not fetched as ranged GETs: %d ranged" % len(ranged))
        check(all(g[2] == 206 for g in ranged), "ranged GETs not all 206")
        compare_all(d, "/data/web", root, rels, expect_source=0)

        # ---- through the shim: cat, and Python's open() ----
        env = d.env(LD_PRELOAD=PRELOAD)
        for rel in (rels[3], "big1.bin", rels[-1]):
            out = subprocess.run(["cat", "/data/web/" + rel], capture_output=True, env=env,
                                 timeout=60)
            check(out.returncode == 0, "cat through the shim failed: %s" % out.stderr[-500:])
            check(out.stdout == read_bytes(os.path.join(root, rel)),
                  "cat through the shim: bytes differ for %s" % rel)
        out = subprocess.run(["/usr/bin/python3", "-c",
                              "import sys,hashlib;print(hashlib.sha256(open(sys.argv[1],'rb')"
                              ".read()).hexdigest())", "/data/web/big0.bin"],
                             capture_output=True, text=True, env=env, timeout=60)
        check(out.stdout.strip() == hashlib.sha256(read_bytes(os.path.join(root, "big0.bin")))
              .hexdigest(), "python through the shim: %s %s" % (out.stdout, out.stderr[-300:]))

        # ---- stat, directories, missing keys, listing ----
        c = d.conn()
        r = c.request("STAT", path="/data/web/d01")
        check(r.status == 0 and r.u32("TYPE") == 2, "STAT of a directory: %d %s" % (
            r.status, r.errmsg))
        r = c.request("STAT", path="/data/web/" + rels[0])
        check(r.status == 0 and r.u32("TYPE") == 1 and
              r.u64("SIZE") == os.path.getsize(os.path.join(root, rels[0])),
              "STAT of a file: %d %s" % (r.status, r.errmsg))
        r, _ = c.read("/data/web/d01/absent.bin")
        check(r.status == -errno.ENOENT, "missing key answered %d %s" % (r.status, r.errmsg))
        # the mount's top is a directory: never fetched as an object
        for _ in range(2):
            r, _ = c.read("/data/web")
            check(r.status == -errno.EISDIR, "OPEN of the mount's top: %d %s" % (r.status, r.errmsg))
        c.close()
        p = d.cli("ls", "/data/web/d02", check_rc=0)
        want = sorted(os.listdir(os.path.join(root, "d02")))
        for name in want:
            check(name in p.stdout, "ls misses %s:\n%s" % (name, p.stdout[-2000:]))

        # ---- a changed source is fetched again (strict) ----
        changed = os.path.join(root, rels[10])
        with open(changed, "ab") as f:
            f.write(b"appended")
        os.utime(changed, (time.time() + 5, time.time() + 5))
        compare_all(d, "/data/web", root, [rels[10]], expect_source=1)

        # ---- single flight: 12 readers of uncached objects, one fetch each ----
        for target in ("big1.bin", rels[20]):
            n_before = len(slow.requests())
            results = []

            def reader():
                cc = d.conn()
                results.append(cc.read("/data/once/" + target))
                cc.close()

            ts = [threading.Thread(target=reader) for _ in range(12)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            want = read_bytes(os.path.join(root, target))
            for r, data in results:
                check(r.status == 0 and data == want, "single-flight reader: %d %s" % (
                    r.status, r.errmsg))
            seen = [q for q in slow.requests()[n_before:] if q.path == "/" + target]
            heads = [q for q in seen if q.method == "HEAD"]
            gets = [q for q in seen if q.method == "GET"]
            chunks = gets_per_object(len(want))
            check(len(heads) == 0 and len(gets) == chunks,
                  "12 readers of %s: %d HEAD and %d GET at the server (expected 0 and %d)" % (
                      target, len(heads), len(gets), chunks))

        # ---- STAT of a cached object: the index answers, no request (immutable, ttl) ----
        c = d.conn()
        r, _ = c.read("/data/ttl/" + rels[21])
        check(r.status == 0, "read on the ttl mount: %d %s" % (r.status, r.errmsg))
        n_before = len(slow.requests())
        for path, rel in (("/data/once/", "big1.bin"), ("/data/once/", rels[20]),
                          ("/data/ttl/", rels[21])):
            r = c.request("STAT", path=path + rel)
            check(r.status == 0 and r.u32("TYPE") == 1 and r.u32("CACHED") == 1 and
                  r.u64("SIZE") == os.path.getsize(os.path.join(root, rel)),
                  "STAT of cached %s%s: %d %s" % (path, rel, r.status, r.errmsg))
        asked = slow.requests()[n_before:]
        check(not asked, "STAT of cached objects asked the server: %s" % asked)
        # an uncached object is still asked for, and a strict mount still checks
        r = c.request("STAT", path="/data/once/" + rels[22])
        check(r.status == 0 and r.u32("CACHED") == 0, "STAT of an uncached object: %d %s" % (
            r.status, r.errmsg))
        check([q.method for q in slow.requests()[n_before:]] == ["HEAD"],
              "STAT of an uncached object: %s" % slow.requests()[n_before:])
        n_heads = len(ng.requests("HEAD"))
        r = c.request("STAT", path="/data/web/" + rels[0])
        check(r.status == 0 and r.u32("CACHED") == 1, "STAT on the strict mount: %d %s" % (
            r.status, r.errmsg))
        # nginx writes its access log line after the response: wait for it, bounded
        end = time.monotonic() + 10
        while len(ng.requests("HEAD")) < n_heads + 1 and time.monotonic() < end:
            time.sleep(0.02)
        check(len(ng.requests("HEAD")) == n_heads + 1, "a strict mount's STAT sent no HEAD")
        c.close()

        # ---- faults that retries absorb ----
        sub = [r for r in rels if r.startswith("d03/")] + ["big0.bin"]
        for mount, what in (("/data/f503", "503s"), ("/data/ftrunc", "truncated bodies"),
                            ("/data/fclose", "connections closed mid-body"),
                            ("/data/fstall", "a stalled server")):
            c = d.conn()
            for rel in sub:
                r = c.request("WARM", path=mount + "/" + rel)
                check(r.status == 0, "%s: warm %s failed: %d %s" % (what, rel, r.status,
                                                                  r.errmsg))
            c.close()
            compare_all(d, mount, root, sub, expect_source=0)
        check(any(q.fault == "truncate" for q in ptrunc.requests()), "no truncation injected")
        check(any(q.fault == "close" for q in pclose.requests()), "no close injected")
        check(any(q.fault == "503" for q in p503.requests()), "no 503 injected")
        check(any(q.fault == "stall" for q in pstall.requests()), "no stall injected")

        # ---- no server at all: EIO after the retries, one log line naming the mount ----
        c = d.conn()
        t0 = time.time()
        r, _ = c.read("/data/dead/x.bin")
        check(r.status == -errno.EIO, "unreachable backend answered %d %s" % (r.status,
                                                                             r.errmsg))
        check(time.time() - t0 < 30, "unreachable backend took %.1fs" % (time.time() - t0))
        r, _ = c.read("/data/dead/y.bin")
        check(r.status == -errno.EIO, "unreachable backend answered %d" % r.status)
        c.close()
        lines = [ln for ln in d.logtext().splitlines()
                 if "backend failing" in ln and "mount=/data/dead" in ln]
        check(len(lines) == 1, "expected one 'backend failing' line for /data/dead:\n%s" %
              "\n".join(lines))
        check("127.0.0.1:%d" % dead_port in lines[0], "log line names no host: " + lines[0])
    finally:
        d.stop()
    faults_etag_and_kill(wd, ng, root, rels, proxy)
    for p in proxies:
        p.stop()


def faults_etag_and_kill(wd, ng, root, rels, proxy):
    # ---- an ETag change between ranges: never a mixed object ----
    target = "big1.bin"
    path = os.path.join(root, target)
    seen = {"ranges": 0, "changed": False}
    new = random.Random(99).randbytes(LARGE)

    def rewrite_on_third_range(req):
        if req.method == "GET" and req.path == "/" + target and "range" in req.headers:
            seen["ranges"] += 1
            if seen["ranges"] == 3 and not seen["changed"]:
                seen["changed"] = True
                with open(path, "r+b") as f:
                    f.write(new)
                t = time.time() + 30
                os.utime(path, (t, t))  # nginx's ETag is mtime-size

    pe = proxy(hook=rewrite_on_third_range)
    d = wd.daemon([{"path": "/data/etag", "backend": "http", "url": pe.url}],
                  name="g-etag", fetch=dict(FETCH, chunk_parallel=1))
    d.start()
    try:
        c = d.conn()
        r, data = c.read("/data/etag/" + target)
        check(seen["changed"], "the object was not rewritten between ranges")
        statuses = [q.status for q in pe.requests() if q.path == "/" + target]
        check(412 in statuses, "no 412 after the ETag changed: %s" % statuses)
        if r.status == 0:
            check(data == new, "read after an ETag change is neither old nor new: mixed")
        else:
            check(r.status in (-errno.ESTALE, -errno.EAGAIN, -errno.EIO),
                  "ETag change answered %d %s" % (r.status, r.errmsg))
        check(cached_consistent(d, "/data/etag", root, [target]) <= 1, "cache check")
        c.close()
    finally:
        d.stop()

    # ---- the server killed mid-warm, then back: nothing partial cached ----
    slow = proxy(delay_ms=25)
    d = wd.daemon([{"path": "/data/kill", "backend": "http", "url": slow.url,
                    "consistency": "immutable"}],
                  name="g-kill", fetch=dict(FETCH, retries=1, timeout="2s"))
    d.start()
    try:
        env = d.env()
        warm = subprocess.Popen([GRANARY, "warm", "/data/kill", "--jobs", "8"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        ng.kill()
        out, err = warm.communicate(timeout=300)
        check(warm.returncode != 0, "warm succeeded although the server was killed:\n" + out +
              err)
        check(d.alive(), "granaryd died with its backend")
        n = cached_consistent(d, "/data/kill", root, rels)
        check(0 < n < len(rels), "objects cached before the kill: %d of %d" % (n, len(rels)))
        ng.start()
        d.cli("warm", "/data/kill", "--jobs", "8", check_rc=0)
        compare_all(d, "/data/kill", root, rels, expect_source=0)
    finally:
        d.stop()

    # ---- stopped with transfers in flight: a clean exit (and ASan-clean when built so) ----
    hang = proxy(fault=lambda req: "stall" if req.method == "GET" else None, stall_s=20.0)
    d = wd.daemon([{"path": "/data/hang", "backend": "http", "url": hang.url}],
                  name="g-hang", fetch=dict(FETCH, timeout="30s"))
    d.start()
    c = d.conn()
    for rel in rels[:6] + ["big0.bin"]:
        c.send_raw(message("WARM", item("PATH", "/data/hang/" + rel), 100 + len(rel)))
    end = time.time() + 10
    while len([q for q in hang.requests() if q.method == "GET"]) < 7 and time.time() < end:
        time.sleep(0.05)
    t0 = time.time()
    rc = d.stop()
    c.close()
    check(rc == 0, "granaryd stopped with transfers in flight exited %s" % rc)
    check(time.time() - t0 < 15, "stopping took %.1fs" % (time.time() - t0))
    log = d.logtext()
    check("Sanitizer" not in log, "sanitizer report at shutdown:\n" + log[-3000:])


run(main, "http_backend")
