"""The shim's fast path on object-store mounts: a tree behind real nginx,
mounted over http three times. On the immutable mount with no allow list,
cached objects are opened from the daemon's shared index: Python and cat
read the source's bytes, the daemon counts one fast hit per read and no
miss, nginx sees no request and the daemon almost none; fstat through the
fast path shows what the socket path shows (the object's size, its
Last-Modified, mode 0444, the same inode number). On a strict mount (the
daemon checks each open against the server) and on an immutable mount with
allow_uids (the daemon must look at the caller) every open still takes the
socket: a listed uid reads, an unlisted one gets EACCES. On a ttl mount the
fast path serves a copy validated less than the ttl ago; past it every open
goes to the daemon, which revalidates (a changed object is fetched again and
its new bytes read), and the copies are served from the index again.
"""
import hashlib
import json
import os
import subprocess
import sys
import time

from harness import ASAN_RUNTIME, DEBIAN_PYTHON, PRELOAD, check, make_tree, run
from servers import Nginx

BASE = "/granary-fastremote"
LISTED_UID = 4242
TTL_S = 6

# Runs under LD_PRELOAD; prints one JSON object: per file its digest, the
# fstat of the descriptor and the stat of the path (or the errno name).
READER = r'''
import errno, hashlib, json, os, sys
out = {}
for f in sys.argv[1:]:
    try:
        pst = os.stat(f)  # as torchvision's loaders do before opening
        fd = os.open(f, os.O_RDONLY)
    except OSError as e:
        out[f] = ["err", errno.errorcode[e.errno]]
        continue
    st = os.fstat(fd)
    chunks = []
    while True:
        b = os.read(fd, 1 << 20)
        if not b:
            break
        chunks.append(b)
    os.close(fd)
    out[f] = ["ok", hashlib.sha256(b"".join(chunks)).hexdigest(),
              [st.st_size, st.st_mtime_ns, st.st_ino, st.st_mode],
              [pst.st_size, pst.st_mtime_ns, pst.st_ino, pst.st_mode]]
print(json.dumps(out))
'''


def counters(d):
    """The daemon's counters; "status_calls" counts this test's own STATUS
    requests, so that the readers' requests can be told from them."""
    counters.calls += 1
    c = d.status()["counters"]
    c["status_calls"] = counters.calls
    return c


counters.calls = 0


def delta(after, before, key):
    return after[key] - before[key]


def reader_requests(after, before):
    """Requests the readers made between two counters() calls."""
    return delta(after, before, "requests") - delta(after, before, "status_calls")


def shim_env(d, **extra):
    env = d.env(LD_PRELOAD=PRELOAD)
    env.pop("GRANARY_FASTPATH", None)
    env.pop("GRANARY_DEBUG", None)
    env.update(extra)
    return env


def reader(d, files, env=None, prefix=()):
    p = subprocess.run(list(prefix) + [DEBIAN_PYTHON, "-c", READER] + list(files),
                       capture_output=True, text=True, timeout=300, env=env or shim_env(d))
    check(p.returncode == 0, "reader through the shim failed:\n%s" % p.stderr[-2000:])
    return json.loads(p.stdout)


def wait_fast(d, before, want, timeout=10):
    """Counters once fast_hits grew by @want (ACCESS reports are one-way)."""
    import time
    end = time.time() + timeout
    while True:
        c = counters(d)
        if delta(c, before, "fast_hits") >= want or time.time() > end:
            time.sleep(0.1)
            return counters(d)
        time.sleep(0.05)


def ttl_mount(d, ng, www, rels, digest):
    """The ttl mount: fast within the ttl, revalidated by the daemon past it. The
    server's copy of rels[0] changes (the immutable mounts keep the old one)."""
    ttl = [BASE + "/ttl/" + r for r in rels[:20]]
    digest = dict(digest)

    def fresh_read(what):
        # validated (fetched or revalidated) just now, so read before the ttl ends;
        # on a machine too slow for that, validate and read again
        for attempt in range(3):
            t0 = time.monotonic()
            d.cli("warm", *ttl, "--quiet", check_rc=0)
            n_ng, c0 = len(ng.requests()), counters(d)
            got = reader(d, ttl)
            took = time.monotonic() - t0
            for rel, path in zip(rels, ttl):
                check(got[path][:2] == ["ok", digest[rel]], "%s, %s: %s" % (
                    what, path, got[path][:2]))
            if took < TTL_S - 1.5:
                c1 = wait_fast(d, c0, len(ttl))
                check(delta(c1, c0, "fast_hits") == len(ttl),
                      "%s: %d fast hits for %d reads within the ttl" % (
                          what, delta(c1, c0, "fast_hits"), len(ttl)))
                check(len(ng.requests()) == n_ng, "%s: reads within the ttl reached the "
                      "server: %s" % (what, ng.requests()[n_ng:][:3]))
                return
            print("NOTE: %s took %.1f s, over the ttl; again" % (what, took))
        check(False, "%s: never read within the %d s ttl" % (what, TTL_S))

    fresh_read("ttl mount, just fetched")
    # the server's copy of one object changes; past the ttl every open asks the daemon
    changed = os.path.join(www, rels[0])
    with open(changed, "r+b") as f:
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 0xFF]) if first else b"x")
    st = os.stat(changed)
    os.utime(changed, (st.st_atime + 100, st.st_mtime + 100))  # a new ETag
    with open(changed, "rb") as f:
        digest[rels[0]] = hashlib.sha256(f.read()).hexdigest()
    time.sleep(TTL_S + 1.5)
    n_ng, c0 = len(ng.requests()), counters(d)
    got = reader(d, ttl)
    for rel, path in zip(rels, ttl):
        check(got[path][:2] == ["ok", digest[rel]], "past the ttl, %s: %s" % (
            path, got[path][:2]))
    c1 = counters(d)
    check(delta(c1, c0, "fast_hits") == 0, "past the ttl: %d fast hits" %
          delta(c1, c0, "fast_hits"))
    check(len(ng.requests()) - n_ng >= len(ttl), "past the ttl: %d requests to the server "
          "for %d opens" % (len(ng.requests()) - n_ng, len(ttl)))
    fresh_read("ttl mount, revalidated")
    print("ttl mount: fast within the %d s ttl, revalidated past it, the changed object "
          "read anew" % TTL_S)


def main(wd):
    os.chmod(wd.path, 0o755)  # other uids reach the socket
    www = os.path.join(wd.path, "www")
    rels = make_tree(www, 60, max_size=150 * 1024, seed=5, dirs=4)
    rels.append("empty.bin")
    open(os.path.join(www, "empty.bin"), "wb").close()
    for dirpath, _, names in os.walk(www):
        os.chmod(dirpath, 0o755)
        for n in names:
            os.chmod(os.path.join(dirpath, n), 0o644)
    digest = {}
    for rel in rels:
        with open(os.path.join(www, rel), "rb") as f:
            digest[rel] = hashlib.sha256(f.read()).hexdigest()

    ng = Nginx(wd.path, www).start()
    d = wd.daemon([
        {"path": BASE + "/imm", "backend": "http", "url": ng.url, "consistency": "immutable"},
        {"path": BASE + "/strict", "backend": "http", "url": ng.url, "consistency": "strict"},
        {"path": BASE + "/allow", "backend": "http", "url": ng.url, "consistency": "immutable",
         "allow_uids": [LISTED_UID]},
        {"path": BASE + "/ttl", "backend": "http", "url": ng.url,
         "consistency": "ttl", "ttl": "%ds" % TTL_S},
    ], socket_mode="0666")
    d.start()
    try:
        d.cli("warm", BASE + "/imm", BASE + "/strict", BASE + "/allow", "--quiet", check_rc=0)
        c = counters(d)
        check(c["fetches"] == 3 * len(rels), "warm fetched %d objects" % c["fetches"])
        imm = [BASE + "/imm/" + r for r in rels]

        # ---- immutable, no allow list: the fast path, no request anywhere ----
        n_ng = len(ng.requests())
        c0 = counters(d)
        got = reader(d, imm)
        for rel, path in zip(rels, imm):
            check(got[path][0] == "ok" and got[path][1] == digest[rel],
                  "%s through the fast path: %s" % (path, got[path][:2]))
        c1 = wait_fast(d, c0, len(imm))
        check(delta(c1, c0, "fast_hits") == len(imm),
              "%d reads, the daemon counted %d fast hits" % (len(imm),
                                                             delta(c1, c0, "fast_hits")))
        check(delta(c1, c0, "hits") == len(imm) and delta(c1, c0, "misses") == 0,
              "fast reads: %d hits, %d misses" % (delta(c1, c0, "hits"),
                                                  delta(c1, c0, "misses")))
        # reads are reported in batches sent at least every 20 ms of age: a
        # sanitizer build's reader, several times slower, sends more of them
        check(reader_requests(c1, c0) < len(imm) // (2 if ASAN_RUNTIME else 4),
              "%d requests for %d fast reads" % (reader_requests(c1, c0), len(imm)))
        check(len(ng.requests()) == n_ng, "fast reads reached the server: %s" %
              ng.requests()[n_ng:][:3])
        print("immutable http mount: %d reads, %d fast hits, %d requests to the daemon"
              % (len(imm), delta(c1, c0, "fast_hits"), reader_requests(c1, c0)))

        # cat, one process for all
        c0 = counters(d)
        p = subprocess.run(["cat"] + imm, capture_output=True, timeout=120, env=shim_env(d))
        want = b"".join(open(os.path.join(www, r), "rb").read() for r in rels)
        check(p.returncode == 0 and p.stdout == want, "cat through the fast path: rc %d, %r"
              % (p.returncode, p.stderr[-300:]))
        c1 = wait_fast(d, c0, len(imm))
        check(delta(c1, c0, "fast_hits") == len(imm), "cat: %d fast hits for %d files"
              % (delta(c1, c0, "fast_hits"), len(imm)))

        # fstat: the same through the fast path as through the socket
        sock = reader(d, imm, env=shim_env(d, GRANARY_FASTPATH="0"))
        for rel, path in zip(rels, imm):
            st = os.stat(os.path.join(www, rel))
            fast_st, sock_st = got[path][2], sock[path][2]
            check(fast_st == sock_st, "fstat of %s: fast path %s, socket %s" % (
                path, fast_st, sock_st))
            # stat by path: from the shared index, and the same as through the socket
            check(got[path][3] == sock[path][3] == fast_st,
                  "stat of %s: fast path %s, socket %s, fstat %s" % (
                      path, got[path][3], sock[path][3], fast_st))
            check(fast_st[0] == st.st_size and fast_st[3] == 0o100444 and
                  fast_st[1] == int(st.st_mtime) * 10**9,
                  "fstat of %s shows %s, the object is %d bytes of %d" % (
                      path, fast_st, st.st_size, int(st.st_mtime)))

        # ---- strict: every open asks the daemon (which asks the server) ----
        strict = [BASE + "/strict/" + r for r in rels[:10]]
        c0 = counters(d)
        got = reader(d, strict)
        for rel, path in zip(rels, strict):
            check(got[path][:2] == ["ok", digest[rel]], "%s: %s" % (path, got[path][:2]))
        c1 = counters(d)
        check(delta(c1, c0, "fast_hits") == 0 and delta(c1, c0, "hits") == len(strict),
              "strict mount: %d fast hits, %d hits for %d reads" % (
                  delta(c1, c0, "fast_hits"), delta(c1, c0, "hits"), len(strict)))

        ttl_mount(d, ng, www, rels, digest)

        # ---- allow_uids: the socket, the caller checked ----
        allow = [BASE + "/allow/" + r for r in rels[:10]]
        if os.geteuid() == 0:
            listed = ["setpriv", "--reuid=%d" % LISTED_UID, "--regid=%d" % LISTED_UID,
                      "--clear-groups"]
            c0 = counters(d)
            got = reader(d, allow, prefix=listed)
            for rel, path in zip(rels, allow):
                check(got[path][:2] == ["ok", digest[rel]], "listed uid, %s: %s" % (
                    path, got[path][:2]))
            c1 = counters(d)
            check(delta(c1, c0, "fast_hits") == 0 and delta(c1, c0, "hits") == len(allow),
                  "allow list: %d fast hits, %d hits for %d reads" % (
                      delta(c1, c0, "fast_hits"), delta(c1, c0, "hits"), len(allow)))
            nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
            c0 = counters(d)
            got = reader(d, allow, prefix=nobody)
            for path in allow:
                check(got[path] == ["err", "EACCES"], "unlisted uid, %s: %s" % (path,
                                                                             got[path]))
            c1 = counters(d)
            check(delta(c1, c0, "fast_hits") == 0 and delta(c1, c0, "denied") >= len(allow),
                  "unlisted uid: %d fast hits, %d denied" % (delta(c1, c0, "fast_hits"),
                                                              delta(c1, c0, "denied")))
            print("allow_uids mount: uid %d read %d objects through the socket, nobody "
                  "refused" % (LISTED_UID, len(allow)))
        else:
            print("NOTE: not root: the allow_uids readers are skipped")
    finally:
        d.stop()
        ng.stop()


if __name__ == "__main__":
    sys.exit(run(main, "shim_fastpath_remote"))
