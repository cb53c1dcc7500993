"""A cache file altered on disk (bit flip, truncation) is detected and fetched
again, never served: at start-up (size), on the first open after start-up
(checksum), and by `granary verify` while running."""
import os
import sqlite3

from harness import check, make_tree, run


def cache_file(d, path):
    db = sqlite3.connect(os.path.join(d.dir, "cache", "catalog.db"))
    (oid,) = db.execute("SELECT id FROM objects WHERE path=?", (path,)).fetchone()
    db.close()
    return d.copy_path(oid)


def flip(p, off=100):
    with open(p, "r+b") as f:
        f.seek(off)
        b = f.read(1)
        f.seek(off)
        f.write(bytes([b[0] ^ 0x40]))


def read_all(d, nas, rels):
    c = d.conn()
    for rel in rels:
        path = os.path.join(nas, rel)
        r, data = c.read(path)
        check(r.status == 0, "read %s: %s" % (path, r.errmsg))
        check(data == open(path, "rb").read(), "wrong bytes served for %s" % path)
    c.close()


def main(wd):
    nas = os.path.join(wd.path, "nas")
    rels = make_tree(nas, 50, 1000, 200000, dirs=2)
    d = wd.daemon([{"path": nas, "backend": "posix", "consistency": "strict"}],
                  cache={"commit_interval": "20ms"})
    d.start()
    d.cli("warm", nas, check_rc=0)
    d.stop()

    flipped = os.path.join(nas, rels[3])
    truncated = os.path.join(nas, rels[4])
    flip(cache_file(d, flipped))
    with open(cache_file(d, truncated), "r+b") as f:
        f.truncate(10)
    d.start()
    check("dropped_rows=1" in d.logtext(), "truncated file not dropped at start-up:\n" +
          d.logtext())
    read_all(d, nas, rels)
    st = d.status()
    check(st["counters"]["corrupt"] == 1, "bit flip not detected: %s" % st["counters"])
    check(st["counters"]["fetches"] == 2, "expected 2 refetches: %s" % st["counters"])
    check("failed its checksum" in d.logtext(), "no log line for the bad checksum")

    # while running: the object is verified already, so `granary verify` finds it
    victim = os.path.join(nas, rels[10])
    flip(cache_file(d, victim), 5)
    p = d.cli("verify", nas)
    check(p.returncode == 1, "verify should exit 1 on a bad copy: %d %s" % (p.returncode,
                                                                            p.stdout))
    check(d.status()["counters"]["corrupt"] == 2, "verify did not count the bad copy")
    read_all(d, nas, rels)
    p = d.cli("verify", nas, check_rc=0)
    d.stop()


run(main, "corruption")
