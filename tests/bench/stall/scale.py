"""Scale: a catalog of many objects, made synthetically.

Filling a cache with a million objects through a backend would take longer
than the whole benchmark, so the catalog is written directly: a real daemon
first warms three files from nginx, which gives one genuine catalog row as a
template; then that daemon's cache directory is refilled with N rows copied
from the template (ids 1..N, paths c<k>/s<i>.jpg under the mount) and N empty
cache files objects/<id & 0xff>/<id>, each row's checksum that of empty
content (XXH3-64 of nothing, from libxxhash). The daemon then restarts over
it as it would after a reboot: start-up reads every row, checks each file's
size, and scans objects/ for strays.

Measured: the time to create the catalog and files (the cost of the method),
the time from exec to the first answered HELLO (serving) on two restarts, the
daemon's own restore time from its log, the resident memory (VmRSS) with N
objects against the same daemon with none, and the open rate of a random
sample of the objects through the shim (8 threads; the first round also runs
the first-read checksum of each restored object, the second does not).
"""
import ctypes
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time

import contenders as C
import harness
from servers import Nginx

MOUNT = "/granary/scale"


def xxh3_empty():
    lib = ctypes.CDLL("libxxhash.so.0")
    lib.XXH3_64bits.restype = ctypes.c_uint64
    lib.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    v = lib.XXH3_64bits(b"", 0)
    return v - (1 << 64) if v >= (1 << 63) else v  # SQLite integers are signed


def rss_kib(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith(("VmRSS:", "VmHWM:")):
                out[ln.split(":")[0]] = int(ln.split()[1])
    return out


def start_timed(d, env):
    """Start the daemon; seconds from exec to the first answered HELLO."""
    t0 = time.monotonic()
    d.start(wait=False, extra_env=env)
    end = t0 + 600
    while time.monotonic() < end:
        if d.proc.poll() is not None:
            raise RuntimeError("granaryd exited:\n" + d.logtext())
        try:
            c = harness.Conn(d.socket, timeout=5)
            r = c.request("HELLO")
            c.close()
            if r.status == 0:
                return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.002)
    raise RuntimeError("granaryd did not serve within 600 s")


def restore_log(d):
    """(objects, ms) of the last 'cache restored' line."""
    m = None
    for m in re.finditer(r"cache restored objects=(\d+) .*?ms=([0-9.]+)", d.logtext()):
        pass
    return (int(m.group(1)), float(m.group(2))) if m else (None, None)


def fill(cache_dir, template, n, per_dir=1000):
    """Replace the catalog's rows and files by n synthetic ones."""
    t0 = time.monotonic()
    db = sqlite3.connect(os.path.join(cache_dir, "catalog.db"))
    cols = [r[1] for r in db.execute("PRAGMA table_info(objects)")]
    db.execute("DELETE FROM objects")
    objdir = os.path.join(cache_dir, "objects")
    for sub in os.listdir(objdir):
        shutil.rmtree(os.path.join(objdir, sub))
    for i in range(256):
        os.makedirs(os.path.join(objdir, "%02x" % i), exist_ok=True)
    empty = xxh3_empty()
    row = dict(zip(cols, template))

    def rows():
        for i in range(1, n + 1):
            r = dict(row)
            r["id"] = i
            r["path"] = "%s/c%05d/s%08d.jpg" % (MOUNT, i // per_dir, i)
            r["size"] = 0
            r["checksum"] = empty
            r["pinned"] = 0
            yield tuple(r[c] for c in cols)

    db.executemany("INSERT INTO objects(%s) VALUES(%s)" % (",".join(cols),
                                                           ",".join("?" * len(cols))), rows())
    db.execute("DELETE FROM meta WHERE key='next_id'")
    db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    t_db = time.monotonic() - t0
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    for i in range(1, n + 1):
        os.close(os.open(os.path.join(objdir, "%02x" % (i & 0xff), "%016x" % i), flags, 0o400))
    return t_db, time.monotonic() - t0 - t_db


def open_rate(d, n, sample, work, rounds=2):
    rnd = random.Random(5)
    ids = rnd.sample(range(1, n + 1), min(sample, n))
    lst = os.path.join(work, "scale-list.txt")
    with open(lst, "w") as f:
        for i in ids:
            f.write("%s/c%05d/s%08d.jpg\n" % (MOUNT, i // 1000, i))
    p = subprocess.run([C.READBENCH, "-t", "8", "-r", str(rounds), lst], capture_output=True,
                       text=True, env=d.env(LD_PRELOAD=harness.PRELOAD), timeout=1800)
    out = [json.loads(ln) for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or any(r["errors"] for r in out):
        raise RuntimeError("open-rate run failed (%d): %s %s\n%s" % (
            p.returncode, out, p.stderr[-1500:], d.logtext()))
    return [r["files_per_s"] for r in out]


def run(work, sizes, sample=20000):
    """Returns a dict of figures for each catalog size in `sizes`.

    The cache directory is on tmpfs (/dev/shm) when there is one: creating a
    million files on this machine's ext4 takes minutes, on tmpfs seconds.
    Start-up's per-file size check then meets a warm dentry cache, as it does
    on any restart of a daemon whose cache was in use."""
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else work
    cache_dir = tempfile.mkdtemp(prefix="granary-bench-scale-", dir=shm)
    root = os.path.join(work, "scale-src")
    os.makedirs(os.path.join(root, "c0"), exist_ok=True)
    for i in range(3):
        with open(os.path.join(root, "c0", "t%d.jpg" % i), "wb") as f:
            f.write(b"x" * (100 + i))
    ng = Nginx(work, root, name="scale-nginx").start()
    d = harness.Daemon(work, [{"path": MOUNT, "backend": "http", "url": ng.url,
                               "consistency": "immutable"}], name="scale",
                       cache={"capacity": "1T", "dir": cache_dir}, log={"level": "info"})
    results = {"method": "synthetic catalog rows and empty cache files",
               "cache_fs": "tmpfs" if shm == "/dev/shm" else "work disk", "sizes": []}
    try:
        d.start()
        d.cli("warm", MOUNT, "--quiet", check_rc=0)
        d.stop()
        db = sqlite3.connect(os.path.join(cache_dir, "catalog.db"))
        template = db.execute("SELECT * FROM objects LIMIT 1").fetchone()
        db.close()
        ng.stop()  # nothing is fetched from here on: immutable, all cached
        # the daemon with no object, for the baseline of its memory
        fill(cache_dir, template, 0)
        start_timed(d, {})
        time.sleep(0.5)
        base_rss = rss_kib(d.pid)
        d.stop()
        results["empty_rss_kib"] = base_rss["VmRSS"]
        for n in sizes:
            C.log("scale: %d objects: writing the catalog and files" % n)
            t_db, t_files = fill(cache_dir, template, n)
            db_bytes = os.path.getsize(os.path.join(cache_dir, "catalog.db"))
            starts = []
            for _ in range(2):
                s = start_timed(d, {})
                objs, ms = restore_log(d)
                if objs != n:
                    raise RuntimeError("the daemon restored %s objects of %d:\n%s" % (
                        objs, n, d.logtext()))
                starts.append({"to_serving_s": round(s, 3), "restore_ms": ms})
                if len(starts) == 1:
                    time.sleep(1.0)
                    rss = rss_kib(d.pid)
                    C.log("scale: %d objects: serving after %.2f s, RSS %d MiB" % (
                        n, s, rss["VmRSS"] // 1024))
                    rates = open_rate(d, n, sample, work)
                d.stop()
            per_obj = (rss["VmRSS"] - base_rss["VmRSS"]) * 1024.0 / n
            results["sizes"].append({
                "objects": n, "create_catalog_s": round(t_db, 2),
                "create_files_s": round(t_files, 2), "catalog_bytes": db_bytes,
                "starts": starts, "rss_kib": rss["VmRSS"], "hwm_kib": rss["VmHWM"],
                "rss_bytes_per_object": round(per_obj, 1),
                "open_sample": min(sample, n),
                "opens_per_s_first": rates[0], "opens_per_s_second": rates[-1]})
            C.log("scale: %s" % results["sizes"][-1])
    finally:
        d.kill9()
        ng.stop()
        shutil.rmtree(d.dir, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(cache_dir, ignore_errors=True)
    return results
