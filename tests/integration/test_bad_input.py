"""Bad input gets a clear error and loses nothing: malformed configs name the
file, line and column; malformed requests get an error reply and the daemon
goes on serving."""
import errno
import os
import struct
import subprocess

from harness import (GRANARYD, HDR, MAGIC, TAG, TLV, VERSION, Conn, check, make_tree, message,
                     item, run)


def config_error(wd, name, text):
    path = os.path.join(wd.path, name)
    with open(path, "w") as f:
        f.write(text)
    p = subprocess.run([GRANARYD, "--config", path], capture_output=True, text=True, timeout=30)
    return p, path


def main(wd):
    cache = os.path.join(wd.path, "never-created")
    # malformed YAML
    p, path = config_error(wd, "bad1.yaml", "socket: /tmp/x.sock\ncache:\n  dir: [unclosed\n")
    check(p.returncode == 2, "malformed YAML: exit %d" % p.returncode)
    check(path + ":" in p.stderr, "malformed YAML error lacks the file name: " + p.stderr)
    # unknown key, with its line and column
    p, path = config_error(wd, "bad2.yaml",
                           "socket: /tmp/x.sock\ncache:\n  dir: %s\n  capacty: 1G\n" % cache)
    check(p.returncode == 2, "unknown key: exit %d" % p.returncode)
    check("%s:4:3:" % path in p.stderr and "capacty" in p.stderr,
          "unknown key error should name file:4:3 and the key: " + p.stderr)
    # wrong type and out of range
    p, path = config_error(wd, "bad3.yaml",
                           "cache:\n  dir: %s\n  capacity: lots\n" % cache)
    check(p.returncode == 2 and "%s:3:" % path in p.stderr and "capacity" in p.stderr,
          "bad size: " + p.stderr)
    p, path = config_error(wd, "bad4.yaml",
                           "cache:\n  dir: %s\n  high_watermark: 1.5\n" % cache)
    check(p.returncode == 2 and "high_watermark" in p.stderr, "out of range: " + p.stderr)
    check(not os.path.exists(cache), "a refused config touched the cache directory")

    nas = os.path.join(wd.path, "nas")
    rels = make_tree(nas, 20, 100, 5000)
    d = wd.daemon([{"path": nas, "backend": "posix"}])
    p = subprocess.run([GRANARYD, "--config", d.config, "--check-config"], capture_output=True,
                       text=True, timeout=30)
    check(p.returncode == 0 and nas in p.stdout and "capacity" in p.stdout,
          "--check-config should print the effective settings:\n" + p.stdout + p.stderr)
    d.start()
    good = os.path.join(nas, rels[0])
    c = d.conn()

    def still_serving():
        r, data = c.read(good)
        check(r.status == 0 and data == open(good, "rb").read(), "daemon stopped serving")

    # header length that does not match the datagram
    body = item("PATH", good)
    bad = HDR.pack(MAGIC, VERSION, 2, 7, len(body) + 5) + body
    c.send_raw(bad)
    r = c.recv()
    check(r.status == -errno.EBADMSG and "malformed" in r.errmsg and r.id == 7,
          "bad length: %d %r id=%d" % (r.status, r.errmsg, r.id))
    still_serving()
    # garbage
    c.send_raw(b"\x00\x01garbage")
    r = c.recv()
    check(r.status == -errno.EBADMSG, "garbage: %d" % r.status)
    # truncated item
    c.send_raw(message("OPEN", TLV.pack(TAG["PATH"], 0, 100) + b"/short"))
    r = c.recv()
    check(r.status == -errno.EBADMSG and "truncated" in r.errmsg, "truncated: %r" % r.errmsg)
    # unknown type
    c.send_raw(HDR.pack(MAGIC, VERSION, 99, 3, 0))
    r = c.recv()
    check(r.status == -errno.EBADMSG, "unknown type: %d" % r.status)
    # wrong version
    c.send_raw(HDR.pack(MAGIC, 9, 2, 4, 0))
    r = c.recv()
    check(r.status == -errno.EPROTO and "version" in r.errmsg, "version: %r" % r.errmsg)
    still_serving()
    # relative, dot-dot, NUL, outside every mount, too long
    r = c.request("OPEN", path="relative/path")
    check(r.status == -errno.EINVAL and "absolute" in r.errmsg, "relative: %r" % r.errmsg)
    r = c.request("OPEN", path=nas + "/../etc/passwd")
    check(r.status == -errno.EINVAL and ".." in r.errmsg, "dot-dot: %r" % r.errmsg)
    r = c.request("OPEN", path=nas + "/a\x00b")
    check(r.status == -errno.EINVAL and "NUL" in r.errmsg, "NUL: %r" % r.errmsg)
    r = c.request("OPEN", path="/etc/passwd")
    check(r.status == -errno.EXDEV and "not under any granary mount" in r.errmsg,
          "outside: %d %r" % (r.status, r.errmsg))
    check(not r.fds, "an error reply carried a descriptor")
    r = c.request("OPEN", path=nas + "/" + "x" * 300)
    check(r.status == -errno.ENAMETOOLONG, "long name: %d" % r.status)
    r = c.request("OPEN", path=nas + "/nope")
    check(r.status == -errno.ENOENT, "missing: %d" % r.status)
    r = c.request("OPEN", path=nas + "/d00")
    check(r.status == -errno.EISDIR, "directory: %d" % r.status)
    r = c.request("OPEN")
    check(r.status == -errno.EINVAL and "PATH" in r.errmsg, "no path: %r" % r.errmsg)
    # a datagram larger than any message
    c.send_raw(message("OPEN", item("PATH", "/" + "a" * 70000)))
    r = c.recv()
    check(r.status == -errno.EMSGSIZE, "oversize: %d" % r.status)
    still_serving()
    c.close()
    # a fresh connection works too, and the daemon counted the bad requests
    c = d.conn()
    still_serving()
    c.close()
    st = d.status()
    check(st["counters"]["bad_requests"] >= 6, "bad requests counted: %s" % st["counters"])
    check(d.alive(), "daemon died")
    check(d.stop() == 0, "unclean exit")


run(main, "bad_input")
