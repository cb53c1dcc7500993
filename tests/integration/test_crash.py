"""kill -9 during warms: after each restart the cache holds only complete,
correct objects (no tmp files, no files without rows), and the warm resumes
where it stopped."""
import os
import random
import subprocess
import time

from harness import GRANARY, check, make_tree, run

ROUNDS = int(os.environ.get("GRANARY_CRASH_ROUNDS", "5"))


def cached_files(d):
    root = os.path.join(d.dir, "cache", "objects")
    return sum(len(files) for _, _, files in os.walk(root))


def check_cache(d, nas, rels):
    """Every object the daemon has must be byte-identical to its source."""
    c = d.conn()
    n = 0
    for rel in rels:
        path = os.path.join(nas, rel)
        r, data = c.read(path, nofetch=True)
        if r.status != 0:
            continue
        n += 1
        check(data == open(path, "rb").read(), "wrong bytes served for %s" % path)
        check(r.u32("SOURCE") == 0, "NOFETCH open was not a local hit")
    c.close()
    st = d.status()
    check(st["cache"]["objects"] == n, "index has %d objects, %d readable" % (
        st["cache"]["objects"], n))
    tmp = os.listdir(os.path.join(d.dir, "cache", "tmp"))
    check(not tmp, "tmp/ not cleaned at start-up: %s" % tmp[:5])
    check(cached_files(d) == n, "%d files under objects/, %d objects" % (cached_files(d), n))
    return n


def main(wd):
    nas = os.path.join(wd.path, "nas")
    rels = make_tree(nas, 2000, 1, 256 * 1024, dirs=20)
    d = wd.daemon([{"path": nas, "backend": "posix", "consistency": "strict"}],
                  cache={"durability": "none", "commit_interval": "50ms"})
    rnd = random.Random(7)
    d.start()
    last = 0
    for i in range(ROUNDS):
        warm = subprocess.Popen([GRANARY, "warm", nas, "--jobs", "32", "--quiet"],
                                env=d.env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rnd.uniform(0.05, 0.6))
        d.kill9()
        warm.wait(60)
        d.start()
        n = check_cache(d, nas, rels)
        print("round %d: %d objects survived" % (i, n))
        last = n
    p = d.cli("warm", nas, "--jobs", "16", check_rc=0)
    st = d.status()
    check(st["cache"]["objects"] == 2000, "after the final warm: %d objects" %
          st["cache"]["objects"])
    check(st["counters"]["fetches"] == 2000 - last,
          "final warm fetched %d, expected %d (resume, not redo)" % (
              st["counters"]["fetches"], 2000 - last))
    check_cache(d, nas, rels)
    p = d.cli("verify", check_rc=0)
    print(p.stdout.strip())
    d.stop()


run(main, "crash")
