"""kill -9 of granaryd at random moments while it fetches, renames and commits.

Each round first evicts a random part of the cache, so there is always work
in flight, then starts a load (a `granary warm`, or reader threads opening
files through the protocol, which fetch on a miss) and picks a moment: after
a random delay, or the instant the catalog writer holds SQLite's WAL write
lock (a commit in progress: /proc/locks is polled, and if that commit has
ended by the time the daemon has stopped, it is continued and the next one
is tried). At that moment the daemon is frozen with SIGSTOP, the test notes
what was in flight (staging files in tmp/, the write lock) and reads the
catalog's committed rows, and then sends SIGKILL: the daemon never runs
again between the snapshot and the kill. Renamed objects the catalog had
not yet heard of show up as the restore line's stray_files.

After each restart:
- every object the catalog listed before the kill is served from the cache
  with the source's bytes (zero lost completed objects); the restore line says
  dropped_rows=0;
- every file of the dataset is read through the daemon (cached copies
  without fetching, then the rest fetched) and compared byte for byte with
  the source (zero wrong bytes);
- tmp/ is empty and objects/ holds exactly the objects the index has.

Readers during the load compare every file they are served too, and get no
error reply.
GRANARY_CRASH_ROUNDS sets the number of rounds (10 by default, 50 in
`make soak`)."""
import os
import random
import re
import signal
import sqlite3
import struct
import subprocess
import threading
import time

from harness import GRANARY, Conn, Fail, check, make_tree, run

ROUNDS = int(os.environ.get("GRANARY_CRASH_ROUNDS", "10"))
FILES = 2000
DIRS = 20
READERS = 4
# SQLite's WAL write lock: byte 120 of the -shm file (WALINDEX_LOCK_OFFSET,
# lock 0), held in a POSIX lock from a write transaction's first change to
# the end of its COMMIT.
WAL_WRITE_LOCK = 120


def cached_files(d):
    return sum(len(files) for tree in ("objects", "private")
               for _, _, files in os.walk(os.path.join(d.dir, "cache", tree)))


def catalog_db(d):
    return os.path.join(d.dir, "cache", "catalog.db")


def committed_rows(d):
    """Paths and sizes the catalog has committed, read read-only beside the
    (frozen or running) daemon: a WAL reader sees only committed
    transactions."""
    db = sqlite3.connect("file:%s?mode=ro" % catalog_db(d), uri=True, timeout=10)
    try:
        return dict(db.execute("SELECT path, size FROM objects").fetchall())
    finally:
        db.close()


def wal_lock(d, shm_ino):
    """A pattern for the daemon's WAL write lock in /proc/locks, as in
    "1: POSIX  ADVISORY  WRITE 1234 fd:00:5678 120 120"."""
    return re.compile(rb"POSIX +ADVISORY +WRITE +%d +[0-9a-f:]+:%d +%d " % (
        d.pid, shm_ino, WAL_WRITE_LOCK))


def wal_write_locked(d, shm_ino):
    """True when the daemon holds the catalog's WAL write lock."""
    with open("/proc/locks", "rb") as f:
        return wal_lock(d, shm_ino).search(f.read()) is not None


def catch_commit(d, shm_ino, seconds):
    """Freeze the daemon while it holds the WAL write lock: poll /proc/locks
    (at the highest nice level, so that the poller is not preempted between
    seeing the lock and stopping the daemon); when the commit has ended by
    the time the daemon stopped, let it go on and wait for the next one.
    Returns with the daemon frozen, in a commit or not."""
    lock = wal_lock(d, shm_ino)
    fd = os.open("/proc/locks", os.O_RDONLY)
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, -20)  # this thread only, on Linux
    except PermissionError:
        pass  # not root: commits are caught less often
    try:
        end = time.time() + seconds
        while True:
            while time.time() < end and not lock.search(os.pread(fd, 1 << 20, 0)):
                pass
            freeze(d)
            if time.time() >= end or lock.search(os.pread(fd, 1 << 20, 0)):
                return
            os.kill(d.pid, signal.SIGCONT)
    finally:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
        os.close(fd)


def freeze(d):
    """SIGSTOP the daemon and wait until every thread is stopped."""
    os.kill(d.pid, signal.SIGSTOP)
    end = time.time() + 10
    task = "/proc/%d/task" % d.pid
    while time.time() < end:
        states = []
        for tid in os.listdir(task):
            try:
                with open("%s/%s/stat" % (task, tid)) as f:
                    states.append(f.read().rsplit(")", 1)[1].split()[0])
            except OSError:
                pass
        if states and all(s in "tT" for s in states):
            return
        time.sleep(0.001)
    check(False, "granaryd did not stop on SIGSTOP")


class Readers:
    """Threads opening random files through the protocol (fetching misses)
    and comparing what they are served with the source, until the daemon
    goes away or stop() is called."""

    def __init__(self, d, nas, rels, rnd):
        self.stopping = False
        self.wrong = []
        self.errors = []
        self.served = 0
        self.lock = threading.Lock()
        self.threads = []
        for i in range(READERS):
            order = list(rels)
            rnd.shuffle(order)
            t = threading.Thread(target=self.loop, args=(d.socket, nas, order), daemon=True)
            self.threads.append(t)
        for t in self.threads:
            t.start()

    def loop(self, sock, nas, order):
        try:
            c = Conn(sock, timeout=30)
            for rel in order:
                if self.stopping:
                    break
                path = os.path.join(nas, rel)
                r, data = c.read(path)
                if r.status != 0:
                    with self.lock:
                        self.errors.append("%s: %d %s" % (path, r.status, r.errmsg))
                    continue
                with open(path, "rb") as f:
                    ok = data == f.read()
                with self.lock:
                    self.served += 1
                    if not ok:
                        self.wrong.append(path)
        except (OSError, struct.error, Fail):
            pass  # the daemon was killed: a reset, a short or no reply

    def stop(self):
        self.stopping = True
        for t in self.threads:
            t.join(60)


def restore_line(d):
    """The fields of the last 'cache restored' log line."""
    line = [ln for ln in d.logtext().splitlines() if "msg=cache restored" in ln][-1]
    return dict(kv.split("=", 1) for kv in line.split("msg=cache restored", 1)[1].split())


def compare_all(d, nas, rels):
    """Read every file through the daemon and compare it with the source:
    first the cached ones without fetching, then the rest, fetched. Returns
    (cached, fetched, wrong paths)."""
    wrong, cached, fetched = [], 0, 0
    c = d.conn()
    missing = []
    for rel in rels:
        path = os.path.join(nas, rel)
        r, data = c.read(path, nofetch=True)
        if r.status != 0:
            missing.append(path)
            continue
        cached += 1
        check(r.u32("SOURCE") == 0, "NOFETCH open of %s was not a local hit" % path)
        with open(path, "rb") as f:
            if data != f.read():
                wrong.append(path)
    st = d.status()
    check(st["cache"]["objects"] == cached, "index has %d objects, %d readable" % (
        st["cache"]["objects"], cached))
    tmp = os.listdir(os.path.join(d.dir, "cache", "tmp"))
    check(not tmp, "tmp/ not cleaned at start-up: %s" % tmp[:5])
    n = cached_files(d)
    check(n == cached, "%d files under objects/ and private/, %d objects" % (n, cached))
    for path in missing:
        r, data = c.read(path)
        check(r.status == 0, "OPEN %s after restart: %d %s" % (path, r.status, r.errmsg))
        fetched += 1
        with open(path, "rb") as f:
            if data != f.read():
                wrong.append(path)
    c.close()
    return cached, fetched, wrong


def evict_some(d, nas, rels, rnd):
    """Evict a random 30 to 70% of the dataset and wait until the catalog
    has committed it, so a row listed at the kill is one the daemon holds."""
    victims = rnd.sample(rels, int(len(rels) * rnd.uniform(0.3, 0.7)))
    c = d.conn()
    for rel in victims:
        r = c.request("EVICT", path=os.path.join(nas, rel))
        check(r.status == 0, "EVICT failed: %s" % r.errmsg)
    c.close()
    gone = set(os.path.join(nas, rel) for rel in victims)
    end = time.time() + 30
    while gone & committed_rows(d).keys():
        check(time.time() < end, "evictions not committed to the catalog in 30 s")
        time.sleep(0.02)
    return len(victims)


def main(wd):
    nas = os.path.join(wd.path, "nas")
    rels = make_tree(nas, FILES, 1, 256 * 1024, dirs=DIRS)
    d = wd.daemon([{"path": nas, "backend": "posix", "consistency": "strict"}],
                  cache={"durability": "none", "commit_interval": "50ms"})
    rnd = random.Random(int(os.environ.get("GRANARY_CRASH_SEED", "7")))
    d.start()
    totals = dict(staging=0, commit=0, stray=0, compared=0, served=0)
    for i in range(ROUNDS):
        evicted = evict_some(d, nas, rels, rnd) if i else FILES  # cold at first
        load = ("warm", "read")[i % 2]
        aim = ("delay", "commit")[(i // 2) % 2]
        if load == "warm":
            warm = subprocess.Popen([GRANARY, "warm", nas, "--jobs", "32", "--quiet"],
                                    env=d.env(), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
        else:
            readers = Readers(d, nas, rels, rnd)
        time.sleep(rnd.uniform(0.02, 0.5 if aim == "delay" else 0.2))
        shm_ino = os.stat(catalog_db(d) + "-shm").st_ino
        if aim == "commit":
            catch_commit(d, shm_ino, 5)
        else:
            freeze(d)
        in_commit = wal_write_locked(d, shm_ino)
        staging = len(os.listdir(os.path.join(d.dir, "cache", "tmp")))
        before = committed_rows(d)
        d.kill9()
        if load == "warm":
            warm.wait(60)
        else:
            readers.stop()
            check(not readers.wrong, "wrong bytes served during the load: %s" %
                  readers.wrong[:5])
            check(not readers.errors, "error replies during the load: %s" %
                  readers.errors[:5])
            totals["served"] += readers.served

        d.start()
        rs = restore_line(d)
        lost = []
        c = d.conn()
        for path in sorted(before):
            # a copy that failed its checksum is fetched again even with
            # NOFETCH: that too is a lost object
            r, data = c.read(path, nofetch=True)
            if r.status != 0 or r.u32("SOURCE") != 0 or len(data) != before[path]:
                lost.append(path)
        c.close()
        check(not lost, "%d objects the catalog held at the kill are not served "
              "from the cache after the restart: %s" % (len(lost), lost[:5]))
        corrupt = d.status()["counters"]["corrupt"]
        check(corrupt == 0, "%d restored copies failed their checksum" % corrupt)
        check(rs["dropped_rows"] == "0", "restore dropped %s catalog rows" %
              rs["dropped_rows"])
        check(int(rs["objects"]) == len(before), "restored %s objects, the catalog "
              "held %d at the kill" % (rs["objects"], len(before)))
        cached, fetched, wrong = compare_all(d, nas, rels)
        check(not wrong, "wrong bytes served after the restart: %s" % wrong[:5])
        totals["staging"] += staging > 0
        totals["commit"] += in_commit
        totals["stray"] += int(rs["stray_files"]) > 0
        totals["compared"] += cached + fetched
        print("round %d: %s, kill %s: evicted %d; at the kill %d staging files, "
              "commit %s, %d rows committed; restart: stray_files=%s tmp_files=%s "
              "dropped_rows=%s; %d cached + %d fetched compared, 0 wrong" % (
                  i, load, "at a commit" if aim == "commit" else "after a delay",
                  evicted, staging, "in progress" if in_commit else "idle", len(before),
                  rs["stray_files"], rs["tmp_files"], rs["dropped_rows"], cached,
                  fetched), flush=True)
    print("%d rounds: killed with staging files in %d, during a commit in %d, with "
          "renamed objects not yet in the catalog in %d; 0 lost, %d files compared "
          "after restarts and %d during loads, 0 wrong" % (
              ROUNDS, totals["staging"], totals["commit"], totals["stray"],
              totals["compared"], totals["served"]))
    # each round's comparison fetched what was missing: a warm has nothing to do
    p = d.cli("warm", nas, "--jobs", "16", check_rc=0)
    st = d.status()
    check(st["cache"]["objects"] == FILES, "after the final warm: %d objects" %
          st["cache"]["objects"])
    p = d.cli("verify", check_rc=0)
    print(p.stdout.strip())
    check(d.stop() == 0, "granaryd did not exit 0 on SIGTERM")


run(main, "crash")
