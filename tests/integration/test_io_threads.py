"""The thread-pool fallback for disk I/O (as when seccomp forbids io_uring)
serves the same bytes, and concurrent misses of one object share one fetch."""
import os
import socket

from harness import Conn, check, item, make_tree, message, run


def main(wd):
    nas = os.path.join(wd.path, "nas")
    rels = make_tree(nas, 200, 1, 3 * 1024 * 1024, dirs=4)
    for io in ("threads", "uring"):
        d = wd.daemon([{"path": nas, "backend": "posix"}], name="g-" + io,
                      cache={"io": io})
        d.start()
        st = d.status()
        want = "threads" if io == "threads" else "io_uring"
        check(st["io"] == want, "io is %s, wanted %s" % (st["io"], want))
        # 24 readers ask for one uncached object at once
        big = os.path.join(nas, rels[3])
        conns = [Conn(d.socket) for _ in range(24)]
        for i, c in enumerate(conns):
            c.send_raw(message("OPEN", item("PATH", big), mid=100 + i))
        src = open(big, "rb").read()
        for c in conns:
            r = c.recv()
            check(r.status == 0 and len(r.fds) == 1, "concurrent open failed: %s" % r.errmsg)
            with os.fdopen(r.fds[0], "rb") as f:
                check(f.read() == src, "concurrent reader got wrong bytes")
            c.close()
        st = d.status()
        check(st["counters"]["fetches"] == 1, "%s: %d fetches for one object" % (
            io, st["counters"]["fetches"]))
        d.cli("warm", nas, check_rc=0)
        c = d.conn()
        for rel in rels:
            path = os.path.join(nas, rel)
            r, data = c.read(path)
            check(r.status == 0 and data == open(path, "rb").read(), "%s: bytes differ %s" % (
                io, path))
        c.close()
        d.stop()


run(main, "io_threads")
