"""A NAS path cached end to end: warm a few thousand files with the CLI, read
every one back through the daemon byte for byte, warm again (nothing fetched),
change files at the source (refetched under strict), restart (cache kept)."""
import errno
import os
import time

from harness import Fail, check, make_tree, run


def read_all(d, nas, rels, expect_source=None):
    c = d.conn()
    sources = {}
    for rel in rels:
        path = os.path.join(nas, rel)
        r, data = c.read(path)
        check(r.status == 0, "OPEN %s failed: %d %s" % (path, r.status, r.errmsg))
        with open(path, "rb") as f:
            check(data == f.read(), "bytes differ for %s" % path)
        check(r.u64("SIZE") == len(data), "SIZE item differs from the bytes for %s" % path)
        src = r.u32("SOURCE")
        sources[src] = sources.get(src, 0) + 1
    c.close()
    if expect_source is not None:
        check(sources == {expect_source: len(rels)},
              "sources of %d reads: %s, expected all %d" % (len(rels), sources, expect_source))
    return sources


def main(wd):
    nas = os.path.join(wd.path, "nas")
    rels = make_tree(nas, 3000, 1, 32 * 1024, dirs=30)
    d = wd.daemon([{"path": nas, "backend": "posix", "consistency": "strict"}])
    d.start()

    p = d.cli("warm", nas, "--jobs", "16", check_rc=0)
    st = d.status()
    check(st["cache"]["objects"] == 3000, "objects after warm: %s" % st["cache"]["objects"])
    check(st["counters"]["fetches"] == 3000, "fetches after warm: %s" % st["counters"])
    total = sum(os.path.getsize(os.path.join(nas, r)) for r in rels)
    check(st["cache"]["used"] == total, "used %d, dataset %d" % (st["cache"]["used"], total))
    check("3000" in p.stdout + p.stderr, "warm output does not count 3000 files:\n" + p.stdout +
          p.stderr)

    read_all(d, nas, rels, expect_source=0)  # every read a local hit
    st = d.status()
    check(st["counters"]["hits"] == 3000 and st["counters"]["misses"] == 0,
          "hits/misses after reading: %s" % st["counters"])

    d.cli("warm", nas, check_rc=0)
    st = d.status()
    check(st["counters"]["fetches"] == 3000, "second warm fetched again: %s" % st["counters"])

    # change three files at the source: new size, same size + new mtime, deleted
    a, b, gone = (os.path.join(nas, rels[i]) for i in (5, 6, 7))
    with open(a, "ab") as f:
        f.write(b"appended")
    with open(b, "r+b") as f:
        old = f.read()
        f.seek(0)
        f.write(bytes(x ^ 0xFF for x in old))
    st_b = os.stat(b)
    os.utime(b, ns=(st_b.st_atime_ns, st_b.st_mtime_ns + 1000))
    os.unlink(gone)
    read_all(d, nas, [rels[5], rels[6]], expect_source=1)
    c = d.conn()
    r, _ = c.read(gone)
    check(r.status == -errno.ENOENT, "deleted source answered %d %s" % (r.status, r.errmsg))
    c.close()
    st = d.status()
    check(st["counters"]["refetches_changed"] >= 2, "changes not detected: %s" % st["counters"])
    rels.remove(rels[7])

    # restart: the cache survives, nothing is refetched
    check(d.stop() == 0, "granaryd did not exit 0 on SIGTERM")
    d.start()
    st = d.status()
    check(st["cache"]["objects"] == 2999, "objects after restart: %s" % st["cache"]["objects"])
    read_all(d, nas, rels, expect_source=0)
    check(d.status()["counters"]["fetches"] == 0, "fetches after restart")
    d.stop()


run(main, "nas_cache")
