"""Unmodified readers through libgranary-preload.so: cat, Python open().read(),
numpy.fromfile, np.load, np.memmap and PIL get the source's bytes, and the
daemon's counters show the opens were served by granary. A write through the
shim reaches the source and the next read sees it. With the daemon killed,
reads fall open with the right bytes; once it is back, they go through the
cache again, without restarting the reader."""
import errno
import hashlib
import json
import os
import socket
import struct
import subprocess
import threading
import time

from harness import (DEBIAN_PYTHON, GRANARYD, PRELOAD, preload_env, REPLY, T, TAG, Fail, check, item,
                     message, parse, run)

# Runs inside a child with LD_PRELOAD set; prints one JSON object.
READER = r'''
import hashlib, json, os, sys
kind, files = sys.argv[1], sys.argv[2:]
out = {}
def h(b):
    return hashlib.sha256(bytes(b)).hexdigest()
if kind == "open":
    for f in files:
        with open(f, "rb") as fh:
            out[f] = h(fh.read())
elif kind == "fromfile":
    import numpy as np
    for f in files:
        out[f] = h(np.fromfile(f, dtype=np.uint8).tobytes())
elif kind == "npload":
    import numpy as np
    for f in files:
        a = np.load(f)
        out[f] = [h(a.tobytes()), str(a.dtype), list(a.shape)]
elif kind == "memmap":
    import numpy as np
    for f in files:
        m = np.memmap(f, dtype=np.uint8, mode="r")
        out[f] = h(m.tobytes())
        del m
elif kind == "pil":
    from PIL import Image
    for f in files:
        with Image.open(f) as im:
            im.load()
            out[f] = [h(im.tobytes()), list(im.size), im.mode]
elif kind == "stat":
    for f in files:
        st = os.stat(f)
        fd = os.open(f, os.O_RDONLY)
        fst = os.fstat(fd)
        os.close(fd)
        with open(f, "rb") as fh:
            pst = os.fstat(fh.fileno())
        out[f] = [[s.st_size, s.st_mtime_ns, s.st_ino, s.st_mode] for s in (st, fst, pst)]
elif kind == "write":
    path, data = files[0], files[1].encode()
    with open(path, "wb") as fh:
        fh.write(data)
    with open(path, "rb") as fh:
        out[path] = fh.read().decode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    os.write(fd, b"+appended")
    os.close(fd)
    with open(path, "rb") as fh:
        out["after_append"] = fh.read().decode()
print(json.dumps(out))
'''

# Reads every file over and over until told to stop; exits 1 on a wrong byte.
LOOPER = r'''
import hashlib, json, os, sys, time
want = json.load(open(sys.argv[1]))
stop = sys.argv[2]
rounds = bad = 0
while not os.path.exists(stop):
    for f, digest in want.items():
        with open(f, "rb") as fh:
            if hashlib.sha256(fh.read()).hexdigest() != digest:
                bad += 1
    rounds += 1
    print("round", rounds, "bad", bad, flush=True)
    time.sleep(0.05)
sys.exit(1 if bad else 0)
'''


def sha(data):
    return hashlib.sha256(data).hexdigest()


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def counters(d):
    return d.status()["counters"]


def make_data(nas):
    import numpy as np
    from PIL import Image

    os.makedirs(os.path.join(nas, "raw"))
    os.makedirs(os.path.join(nas, "npy"))
    os.makedirs(os.path.join(nas, "img"))
    rnd = np.random.default_rng(7)
    raw, npy, img = [], [], []
    for i in range(12):
        p = os.path.join(nas, "raw", "r%02d.bin" % i)
        rnd.integers(0, 256, size=1000 + i * 9973, dtype=np.uint8).tofile(p)
        raw.append(p)
    for i, dt in enumerate(["float32", "int64", "uint8", "float64"]):
        p = os.path.join(nas, "npy", "a%d.npy" % i)
        np.save(p, rnd.standard_normal((37 + i, 11)).astype(dt))
        npy.append(p)
    for i in range(6):
        p = os.path.join(nas, "img", "im%d.jpg" % i)
        pix = rnd.integers(0, 256, size=(48 + i * 8, 64, 3), dtype=np.uint8)
        Image.fromarray(pix, "RGB").save(p, quality=90)
        img.append(p)
    with open(os.path.join(nas, "empty.bin"), "wb"):
        pass
    raw.append(os.path.join(nas, "empty.bin"))
    return raw, npy, img


def reference(kind, files):
    """What the reader gets without the shim."""
    p = subprocess.run([DEBIAN_PYTHON, "-c", READER, kind] + files, capture_output=True,
                       text=True, timeout=300, env=dict(os.environ, LD_PRELOAD=""))
    check(p.returncode == 0, "reference %s reader failed:\n%s" % (kind, p.stderr))
    return json.loads(p.stdout)


def through_shim(d, kind, files, extra_env=None):
    env = d.env(LD_PRELOAD=PRELOAD)
    if extra_env:
        env.update(extra_env)
    p = subprocess.run([DEBIAN_PYTHON, "-c", READER, kind] + files, capture_output=True,
                       text=True, timeout=300, env=env)
    check(p.returncode == 0, "%s reader through the shim failed:\n%s" % (kind, p.stderr))
    check(p.stderr == "", "the shim wrote to stderr without GRANARY_DEBUG:\n" + p.stderr)
    return json.loads(p.stdout)


def served(d, before, n, what):
    """At least @n opens were answered by the daemon since @before."""
    after = counters(d)
    got = after["opens"] - before["opens"]
    check(got >= n, "%s: %d files read through the shim but the daemon served %d opens"
          % (what, n, got))
    return after


def check_readers(d, raw, npy, img):
    # cat, one process per file
    c0 = counters(d)
    for f in raw:
        p = subprocess.run(["cat", f], capture_output=True, timeout=60,
                           env=d.env(LD_PRELOAD=PRELOAD))
        check(p.returncode == 0, "cat %s failed: %s" % (f, p.stderr))
        check(p.stdout == read_bytes(f), "cat %s through the shim gave other bytes" % f)
        check(p.stderr == b"", "the shim wrote to cat's stderr: %r" % p.stderr)
    c1 = served(d, c0, len(raw), "cat")
    check(c1["misses"] - c0["misses"] >= len(raw) - 1, "the first reads should be misses")

    # each Python reader, against the same reader without the shim
    for kind, files in (("open", raw), ("fromfile", raw), ("npload", npy), ("memmap", raw[:-1]),
                        ("pil", img), ("open", npy + img)):
        want = reference(kind, files)
        before = counters(d)
        got = through_shim(d, kind, files)
        check(got == want, "%s through the shim differs from the source:\n%s\n%s"
              % (kind, got, want))
        after = served(d, before, len(files), kind)
        if kind != "pil" and kind != "npload":
            check(after["hits"] - before["hits"] >= len(files),
                  "%s: files read before should be cache hits" % kind)
    # byte-for-byte against the files themselves, not only the reference reader
    got = through_shim(d, "open", raw + npy + img)
    for f, digest in got.items():
        check(digest == sha(read_bytes(f)), "%s: bytes through the shim differ" % f)


def check_stat(d, raw):
    files = raw[:3]
    got = through_shim(d, "stat", files)
    for f in files:
        st = os.stat(f)
        want = [st.st_size, st.st_mtime_ns, st.st_ino, st.st_mode]
        for i, name in enumerate(("stat", "fstat of os.open", "fstat of open()")):
            check(got[f][i] == want, "%s %s shows %s, the source is %s"
                  % (name, f, got[f][i], want))


def check_write(d, nas):
    path = os.path.join(nas, "raw", "written.txt")
    with open(path, "w") as f:
        f.write("old bytes")
    got = through_shim(d, "open", [path])
    check(got[path] == sha(b"old bytes"), "first read of the file to be written")
    before = counters(d)
    got = through_shim(d, "write", [path, "new bytes from the trainer"])
    check(read_bytes(path) == b"new bytes from the trainer+appended",
          "the write through the shim did not reach the source: %r" % read_bytes(path))
    check(got[path] == "new bytes from the trainer",
          "the read after the write saw %r" % got[path])
    check(got["after_append"] == "new bytes from the trainer+appended",
          "the read after the append saw %r" % got["after_append"])
    served(d, before, 2, "reads after a write")
    got = through_shim(d, "open", [path])
    check(got[path] == sha(b"new bytes from the trainer+appended"),
          "a later reader saw the old copy")


def check_disabled(d, raw):
    before = counters(d)
    got = through_shim(d, "open", raw, {"GRANARY_DISABLE": "1"})
    for f in raw:
        check(got[f] == sha(read_bytes(f)), "GRANARY_DISABLE=1 read other bytes")
    check(counters(d)["requests"] == before["requests"] + 1,
          "GRANARY_DISABLE=1 still talked to the daemon")


def check_no_daemon(wd, d, raw):
    env = dict(d.env(LD_PRELOAD=PRELOAD), GRANARY_SOCKET=os.path.join(wd.path, "absent.sock"))
    p = subprocess.run([DEBIAN_PYTHON, "-c", READER, "open"] + raw, capture_output=True,
                       text=True, timeout=120, env=env)
    check(p.returncode == 0 and p.stderr == "", "reader without a daemon failed:\n" + p.stderr)
    got = json.loads(p.stdout)
    for f in raw:
        check(got[f] == sha(read_bytes(f)), "no daemon: %s read other bytes" % f)
    p = subprocess.run(["cat"] + raw, capture_output=True, timeout=60, env=env)
    check(p.returncode == 0 and p.stdout == b"".join(read_bytes(f) for f in raw),
          "cat without a daemon read other bytes")


def wait_rounds(proc, n, timeout=60):
    """Wait until the looping reader has done @n more rounds; return the last line."""
    end = time.time() + timeout
    seen = 0
    line = ""
    while seen < n:
        if time.time() > end:
            raise Fail("the looping reader stalled")
        line = proc.stdout.readline()
        if not line:
            raise Fail("the looping reader exited: %s" % proc.stderr.read())
        check(line.split()[-1] == "0", "the looping reader got wrong bytes: " + line)
        seen += 1
    return line


def check_kill_restart(wd, d, raw):
    want = {f: sha(read_bytes(f)) for f in raw}
    wantfile = os.path.join(wd.path, "want.json")
    stop = os.path.join(wd.path, "stop")
    with open(wantfile, "w") as f:
        json.dump(want, f)
    proc = subprocess.Popen([DEBIAN_PYTHON, "-c", LOOPER, wantfile, stop], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=d.env(LD_PRELOAD=PRELOAD))
    try:
        wait_rounds(proc, 3)
        before = counters(d)
        check(before["opens"] > 0, "the looping reader is not served by the daemon")
        d.kill9()
        wait_rounds(proc, 10)  # about half a second: all fall open
        d.start()
        end = time.time() + 30
        while counters(d)["opens"] < len(raw):
            if time.time() > end:
                raise Fail("the reader did not come back to the restarted daemon")
            wait_rounds(proc, 1)
        with open(stop, "w"):
            pass
        rc = proc.wait(60)
        err = proc.stderr.read()
        check(rc == 0, "the looping reader saw wrong bytes: " + err)
        check(err == "", "the shim wrote to stderr while failing open: " + err)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# Object-store semantics, against a stand-in daemon (see StandIn).
OBJREADER = r'''
import errno, json, os, sys, time
objs, nas = sys.argv[1], sys.argv[2]
out = {}
def attempt(fn):
    try:
        return ["ok", fn()]
    except OSError as e:
        return ["err", errno.errorcode.get(e.errno, e.errno)]
def read(p):
    with open(p, "rb") as f:
        return f.read().decode()
def fstat(p):
    with open(p, "rb") as f:
        st = os.fstat(f.fileno())
    return [st.st_size, st.st_mtime_ns, st.st_ino]
def stat(p):
    st = os.stat(p)
    return [st.st_size, st.st_mtime_ns, st.st_ino, oct(st.st_mode)]
def write(p):
    with open(p, "wb") as f:
        f.write(b"x")
out["read"] = attempt(lambda: read(objs + "/a.txt"))
out["fstat"] = attempt(lambda: fstat(objs + "/a.txt"))
out["stat"] = attempt(lambda: stat(objs + "/a.txt"))
out["stat_dir"] = attempt(lambda: stat(objs + "/dir"))
out["missing"] = attempt(lambda: read(objs + "/missing"))
out["stat_missing"] = attempt(lambda: stat(objs + "/missing"))
out["write"] = attempt(lambda: write(objs + "/a.txt"))
out["access_r"] = os.access(objs + "/a.txt", os.R_OK)
out["access_w"] = attempt(lambda: os.access(objs + "/a.txt", os.W_OK))
out["refused_nas"] = attempt(lambda: read(nas + "/refused.txt"))
t = time.time()
out["slow_nas"] = attempt(lambda: read(nas + "/slow.txt"))
out["slow_s"] = time.time() - t
print(json.dumps(out), flush=True)
sys.stdin.readline()  # the stand-in is stopped now
out = {"read_down": attempt(lambda: read(objs + "/a.txt")),
       "nas_down": attempt(lambda: read(nas + "/refused.txt"))}
print(json.dumps(out), flush=True)
'''


class StandIn:
    """A stand-in for granaryd that serves an object-store mount (the daemon
    has only the posix backend so far) and a posix mount, answering OPEN from
    local files, STAT from fixed attributes, and never answering slow.txt."""

    MTIME = 1600000000123456789
    INO = 777

    def __init__(self, path, objs, nas, backing):
        self.path, self.objs, self.nas, self.backing = path, objs, nas, backing
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.srv.bind(path)
        self.srv.listen(16)
        self.conns = []
        self.stopped = False
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while not self.stopped:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def reply(self, c, mtype, mid, status, items=b"", fds=()):
        body = struct.pack("=HHIi", TAG["STATUS"], 0, 4, status) + items
        c.sendmsg([message(REPLY | mtype, body, mid)],
                  [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("=%di" % len(fds), *fds))]
                  if fds else [])

    def attrs(self, size, mode):
        return (struct.pack("=HHIQ", TAG["SIZE"], 0, 8, size) +
                struct.pack("=HHIq", TAG["MTIME_NS"], 0, 8, self.MTIME) +
                item("MODE", mode) + struct.pack("=HHIQ", TAG["INO"], 0, 8, self.INO))

    def serve(self, c):
        while True:
            try:
                data = c.recv(70000)
            except OSError:
                return
            if not data:
                return
            mtype, mid, items = parse(data)
            path = dict(items).get("PATH", b"").decode()
            if mtype == T["HELLO"]:
                self.reply(c, mtype, mid, 0,
                           item("MOUNT", self.objs) + item("BACKEND", 3) + item("FLAGS", 0) +
                           item("MOUNT", self.nas) + item("BACKEND", 1) + item("FLAGS", 1))
            elif path.endswith("/slow.txt"):
                continue
            elif path.endswith("/missing") or path.endswith("/refused.txt"):
                self.reply(c, mtype, mid, -errno.ENOENT, item("ERRMSG", "no such object"))
            elif mtype == T["STAT"] and path.endswith("/dir"):
                self.reply(c, mtype, mid, 0, self.attrs(0, 0o755) + item("TYPE", 2))
            elif mtype == T["STAT"]:
                self.reply(c, mtype, mid, 0, self.attrs(os.path.getsize(self.backing), 0o644) +
                           item("TYPE", 1))
            elif mtype == T["OPEN"]:
                fd = os.open(self.backing, os.O_RDONLY)
                self.reply(c, mtype, mid, 0, self.attrs(os.path.getsize(self.backing),
                                                        0o100644), [fd])
                os.close(fd)
            else:
                self.reply(c, mtype, mid, 0)

    def stop(self):
        self.stopped = True
        self.srv.close()
        for c in self.conns:
            c.close()
        os.unlink(self.path)


def check_object_store(wd):
    objs = "/granary-test-%d/objects" % os.getpid()  # exists only through the stand-in
    nas = os.path.join(wd.path, "nas2")
    os.makedirs(nas)
    for name in ("slow.txt", "refused.txt"):
        with open(os.path.join(nas, name), "w") as f:
            f.write("original " + name)
    backing = os.path.join(wd.path, "backing.txt")
    with open(backing, "w") as f:
        f.write("object bytes")
    sock = os.path.join(wd.path, "standin.sock")
    si = StandIn(sock, objs, nas, backing)
    env = preload_env(dict(os.environ, LD_PRELOAD=PRELOAD, GRANARY_SOCKET=sock,
                           GRANARY_TIMEOUT_MS="400"))
    errpath = os.path.join(wd.path, "objreader.err")
    with open(errpath, "w") as err:
        proc = subprocess.Popen([DEBIAN_PYTHON, "-c", OBJREADER, objs, nas], text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                env=env)
    try:
        out = json.loads(proc.stdout.readline() or "null")
        check(out is not None, "object-store reader failed, see " + errpath)
        size = os.path.getsize(backing)
        check(out["read"] == ["ok", "object bytes"], "object read: %s" % out["read"])
        check(out["fstat"] == ["ok", [size, StandIn.MTIME, StandIn.INO]],
              "fstat of an object: %s" % out["fstat"])
        check(out["stat"] == ["ok", [size, StandIn.MTIME, StandIn.INO, "0o100644"]],
              "stat of an object: %s" % out["stat"])
        check(out["stat_dir"][0] == "ok" and out["stat_dir"][1][3] == "0o40755",
              "stat of an object-store directory: %s" % out["stat_dir"])
        check(out["missing"] == ["err", "ENOENT"], "missing object: %s" % out["missing"])
        check(out["stat_missing"] == ["err", "ENOENT"], "stat of a missing object: %s"
              % out["stat_missing"])
        check(out["write"] == ["err", "EROFS"], "write to an object: %s" % out["write"])
        check(out["access_r"] is True and out["access_w"] == ["ok", False],
              "access on an object: %s %s" % (out["access_r"], out["access_w"]))
        check(out["slow_nas"] == ["ok", "original slow.txt"],
              "a NAS open that times out should fall open: %s" % out["slow_nas"])
        check(0.3 < out["slow_s"] < 10, "the timeout took %.2f s" % out["slow_s"])
        check(out["refused_nas"] == ["ok", "original refused.txt"],
              "a NAS open the daemon refuses should fall open: %s" % out["refused_nas"])
        si.stop()
        time.sleep(1.2)  # past the retry interval, so the shim tries to reconnect
        proc.stdin.write("go\n")
        proc.stdin.flush()
        out = json.loads(proc.stdout.readline() or "null")
        check(out is not None, "object-store reader failed, see " + errpath)
        check(out["read_down"] == ["err", "EIO"],
              "an object with the daemon gone should be EIO: %s" % out["read_down"])
        check(out["nas_down"] == ["ok", "original refused.txt"],
              "a NAS file with the daemon gone should fall open: %s" % out["nas_down"])
        check(proc.wait(30) == 0, "object-store reader failed, see " + errpath)
        check(os.path.getsize(errpath) == 0, "the shim wrote to stderr without GRANARY_DEBUG")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def main(wd):
    for path in (GRANARYD, PRELOAD):
        check(os.path.exists(path), "%s is not built" % path)
    nas = os.path.join(wd.path, "nas")
    raw, npy, img = make_data(nas)
    d = wd.daemon([{"path": nas, "backend": "posix", "consistency": "strict"}])
    d.start()
    check_readers(d, raw, npy, img)
    check_stat(d, raw)
    check_write(d, nas)
    check_disabled(d, raw)
    check_no_daemon(wd, d, raw)
    check_kill_restart(wd, d, raw)
    d.stop()
    check_object_store(wd)


if __name__ == "__main__":
    run(main, "shim_readers")
