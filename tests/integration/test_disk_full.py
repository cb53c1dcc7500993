"""Disk full: the cache directory on a 4 MiB file system, the configured
capacity far larger (so the daemon's own accounting never makes room), and a
dataset bigger than the file system read through the daemon.

What must hold: the daemon does not crash; no partial object is ever served
(every successful read is byte-identical to the source, on the first read, on
a second pass and after a restart); a log line says the file system is full;
the daemon keeps serving afterwards (a reader through the shim falls open to
the NAS for what it cannot cache), and serves misses again once space is
freed (`granary evict`). Nothing is left in tmp/. Then a foreign file fills what
is left: cached objects go on being served; and after a restart the daemon
holds only complete objects.

Where the file system comes from: a tmpfs (mount -t tmpfs -o size=4m); if
that is not permitted (or GRANARY_DISK_FULL_FS=ext4), a loop-mounted ext4
image; if neither, exit 77 with the reason.

GRANARY_TEST_KNOWN_GAPS=1 also asserts that every OPEN on this NAS mount
succeeds, a miss that cannot be cached being served from the source (what the
design asks for); see docs/reliability.md for where that stands.
"""
import errno
import os
import re
import subprocess
import time

from harness import PRELOAD, Skip, check, make_tree, run

# asserted now that the daemon serves misses from the source when the disk is full
KNOWN_GAPS = os.environ.get("GRANARY_TEST_KNOWN_GAPS", "1") == "1"
FS_SIZE = 4 * 1024 * 1024


def sh(*cmd):
    return subprocess.run(list(cmd), capture_output=True, text=True)


def small_fs(wd, where):
    """Mount a 4 MiB file system on @where; return (kind, cleanup)."""
    os.makedirs(where)
    why = []
    if os.environ.get("GRANARY_DISK_FULL_FS", "tmpfs") == "tmpfs":
        p = sh("mount", "-t", "tmpfs", "-o", "size=4m,mode=0750", "tmpfs", where)
        if p.returncode == 0:
            return "tmpfs", lambda: sh("umount", "-l", where)
        why.append("tmpfs: " + p.stderr.strip())
    img = os.path.join(wd.path, "cache.img")
    for cmd in (["truncate", "-s", str(FS_SIZE), img],
                ["mkfs.ext4", "-q", "-F", "-m", "0", "-N", "1024", img],
                ["mount", "-o", "loop", img, where]):
        p = sh(*cmd)
        if p.returncode != 0:
            why.append("%s: %s" % (cmd[0], (p.stderr or p.stdout).strip()))
            raise Skip("no small file system for the cache: " + "; ".join(why))
    return "ext4 on a loop device", lambda: sh("umount", "-l", where)


def read_pass(d, paths, want, label):
    """OPEN every path; return (served, errors by errno name)."""
    c = d.conn()
    served, errors = 0, {}
    del failed[:]
    for p in paths:
        r, data = c.read(p)
        check(d.alive(), "granaryd died (%s)" % label)
        if r.status == 0:
            check(data == want[p], "%s: %s served %d bytes, the source has %d: a partial or "
                  "wrong object" % (label, p, len(data), len(want[p])))
            check(r.u64("SIZE") == len(want[p]), "%s: SIZE item differs for %s" % (label, p))
            served += 1
        else:
            check(not r.fds, "%s: an error reply carried a descriptor" % label)
            check(r.errmsg, "%s: error %d without a message" % (label, r.status))
            name = errno.errorcode.get(-r.status, str(r.status))
            errors.setdefault(name, []).append(r.errmsg)
            failed.append(p)
    c.close()
    return served, errors


failed = []  # paths whose OPEN failed in the last read_pass


def summary(errors):
    return {k: "%d x %r" % (len(v), v[0]) for k, v in errors.items()}


def cached_ok(d, paths, want):
    """Every object the daemon has cached is complete and correct."""
    c = d.conn()
    n = 0
    for p in paths:
        r, data = c.read(p, nofetch=True)
        if r.status == 0:
            check(data == want[p], "cached copy of %s differs from the source" % p)
            n += 1
    c.close()
    return n


def main(wd):
    if os.geteuid() != 0:
        raise Skip("needs root to mount a small file system for the cache")
    cache = os.path.join(wd.path, "cachefs")
    kind, cleanup = small_fs(wd, cache)
    try:
        test(wd, cache, kind)
    finally:
        for dd in wd.daemons:
            dd.kill9()
        cleanup()


def test(wd, cache, kind):
    nas = os.path.join(wd.path, "nas")
    rels = make_tree(nas, 48, 150 * 1024, 300 * 1024, seed=5, dirs=4)
    paths = [os.path.join(nas, r) for r in rels]
    want = {}
    for p in paths:
        with open(p, "rb") as f:
            want[p] = f.read()
    total = sum(len(v) for v in want.values())
    d = wd.daemon([{"path": nas, "backend": "posix", "consistency": "strict"}],
                  cache={"dir": os.path.join(cache, "granary"), "capacity": "1G"})
    d.start()
    st = os.statvfs(cache)
    print("cache on %s: %.1f MiB, %.1f MiB free; capacity 1 GiB; dataset %.1f MiB in %d "
          "files" % (kind, st.f_blocks * st.f_frsize / 2**20, st.f_bavail * st.f_frsize / 2**20,
                     total / 2**20, len(paths)))

    served, errors = read_pass(d, paths, want, "first pass")
    print("first pass: %d served, errors %s" % (served, summary(errors)))
    served2, errors2 = read_pass(d, paths, want, "second pass")
    print("second pass: %d served, errors %s" % (served2, summary(errors2)))
    status = d.status()
    print("daemon: %d objects, %.1f MiB used by its count; counters %s" % (
        status["cache"]["objects"], status["cache"]["used"] / 2**20,
        {k: status["counters"].get(k) for k in ("fetches", "fetch_errors", "not_admitted",
                                                "evictions", "hits", "misses")}))
    check(served > 0, "nothing was served at all")

    with open(d.log, errors="replace") as f:
        log = f.read()
    full = [l for l in log.splitlines() if re.search(r"filesystem is full|file system is full",
                                                     l, re.I)]
    enospc = [l for l in log.splitlines() if re.search(r"no space left|ENOSPC", l, re.I)]
    check(full, "no log line says the cache file system is full:\n" + log[-3000:])
    print("log: %r: %d such lines, %d lines naming ENOSPC, for %d failed opens" % (
        full[0].split("msg=", 1)[-1], len(full), len(enospc),
        sum(len(v) for v in list(errors.values()) + list(errors2.values()))))
    tmp = os.listdir(os.path.join(cache, "granary", "tmp"))
    check(not tmp, "staging files left in tmp/: %s" % tmp[:5])

    if KNOWN_GAPS:
        check(not errors and not errors2,
              "OPENs failed with the cache file system full instead of being served from the "
              "source: %s" % summary(errors or errors2))
    elif errors or errors2:
        print("KNOWN GAP: with the cache file system full, misses fail (%s) instead of being "
              "served from the source or making room" % ", ".join(sorted(set(errors) |
                                                                      set(errors2))))

    # a trainer reading through the shim is not stopped: it falls open to the NAS
    for p in failed[:4]:
        out = subprocess.run(["cat", p], env=d.env(LD_PRELOAD=PRELOAD), capture_output=True,
                             timeout=60)
        check(out.returncode == 0 and out.stdout == want[p],
              "cat %s through the shim with the cache full: exit %d, %d bytes" % (
                  p, out.returncode, len(out.stdout)))
    if failed:
        print("through the shim: %d of %d failed opens read from the NAS instead, "
              "byte-identical" % (min(4, len(failed)), len(failed)))

    # still serving: what is cached is a hit, byte for byte
    n_cached = cached_ok(d, paths, want)
    check(n_cached > 0, "nothing is cached")
    print("cached and correct: %d objects" % n_cached)

    # room again: evict everything, then a miss is fetched and cached
    p = d.cli("evict", nas)
    check(p.returncode == 0, "granary evict failed: %s %s" % (p.stdout, p.stderr))
    served3, errors3 = read_pass(d, paths[:8], want, "after evict")
    print("after evict: %d of 8 served, errors %s" % (served3, summary(errors3)))
    check(served3 == 8, "after eviction freed the file system, misses still fail: %s" %
          summary(errors3))

    # filled by someone else: hits go on, misses get an answer, the catalog survives
    time.sleep(1)  # past the catalog's commit interval: the 8 objects are recorded
    filler = os.path.join(cache, "filler")
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as e:
            check(e.errno == errno.ENOSPC, "filling the file system: %s" % e)
    served4, errors4 = read_pass(d, paths[:16], want, "filled by another writer")
    print("filled by another writer: %d of 16 served (8 cached before), errors %s" % (
        served4, summary(errors4)))
    check(served4 >= 8, "cached objects stopped being served when the file system filled")
    time.sleep(1)
    os.unlink(filler)
    with open(d.log, errors="replace") as f:
        cat_errors = len(re.findall(r"catalog write failed|sqlite3_exec failed", f.read()))
    print("catalog errors logged while full: %d" % cat_errors)

    # a restart finds only complete objects, every one the daemon had
    before = d.status()["cache"]["objects"]
    check(d.stop() == 0, "granaryd did not exit 0 on SIGTERM")
    d.start()
    n = cached_ok(d, paths, want)
    check(d.status()["cache"]["objects"] == n,
          "after a restart the index has %d objects, %d readable" % (
              d.status()["cache"]["objects"], n))
    check(n == before, "%d objects before the restart, %d after" % (before, n))
    print("after restart: %d objects, each complete" % n)
    check(d.stop() == 0, "granaryd did not exit 0 on SIGTERM")


run(main, "disk_full")
