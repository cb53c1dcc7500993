"""Test harness: start real granaryd processes (and later real servers) in a
temporary directory, speak the wire protocol, build sample datasets.

Every integration test is a program whose exit code is its verdict:
0 pass, 1 fail, 77 skip (only for hardware this machine lacks).
"""
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

SRC = os.environ.get("GRANARY_SRC") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("GRANARY_BUILD") or os.path.join(SRC, "build")

GRANARYD = os.path.join(BUILD, "daemon", "granaryd")
GRANARY = os.path.join(BUILD, "client", "granary")
PRELOAD = os.path.join(BUILD, "client", "libgranary-preload.so")


def _asan_runtime():
    """The ASan runtime the shim was linked with, in a sanitizer build (it must
    be loaded before the shim), else None."""
    try:
        out = subprocess.run(["ldd", PRELOAD], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        if "libasan" in line and "=>" in line:
            return line.split("=>")[1].split()[0]
    return None


ASAN_RUNTIME = _asan_runtime()


def preload_env(env):
    """Fix up a client's environment for sanitizer builds: the ASan runtime
    must come before the shim (LD_PRELOAD) and before libgranary.so (Python's
    ctypes), and leak reports of the reader programs themselves (python, cat)
    are not ours. The daemon keeps leak detection (Daemon.start)."""
    if ASAN_RUNTIME and ASAN_RUNTIME not in env.get("LD_PRELOAD", ""):
        env["LD_PRELOAD"] = (ASAN_RUNTIME + " " + env.get("LD_PRELOAD", "")).strip()
        env["ASAN_OPTIONS"] = "detect_leaks=0:verify_asan_link_order=0"
    return env
LIBGRANARY = os.path.join(BUILD, "client", "libgranary.so")
DEBIAN_PYTHON = "/usr/bin/python3"

# ---- wire format (client/proto.h) ----
MAGIC = 0x594E5247
VERSION = 1
HDR = struct.Struct("=IHHII")
TLV = struct.Struct("=HHI")
REPLY = 0x8000
T = dict(HELLO=1, OPEN=2, STAT=3, WARM=4, LIST=5, STATUS=6, LS=7, EVICT=8, DROP=9,
         PIN=10, EPOCH=11, HINT=12, VERIFY=13)
TAG = dict(STATUS=1, ERRMSG=2, PATH=3, FLAGS=4, SIZE=5, MTIME_NS=6, MODE=7, SOURCE=8,
           NAME=9, TYPE=10, COOKIE=11, JSON=12, COUNT=13, COUNT2=14, MOUNT=15,
           BACKEND=16, DATASET=17, EPOCH=18, STATE=19, CACHED=20, INO=21)
TAGNAME = {v: k for k, v in TAG.items()}
SOURCE = {0: "local", 1: "backend", 2: "peer", 3: "direct"}
F_NOFETCH = 1


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def item(tag, value):
    if isinstance(value, str):
        value = value.encode()
    elif isinstance(value, int):
        value = struct.pack("=I", value)
    return TLV.pack(TAG[tag], 0, len(value)) + value


def message(mtype, items=b"", mid=1):
    return HDR.pack(MAGIC, VERSION, T[mtype] if isinstance(mtype, str) else mtype, mid,
                    len(items)) + items


def parse(data):
    magic, ver, mtype, mid, blen = HDR.unpack_from(data)
    items = []
    off = HDR.size
    while off < len(data):
        tag, _, ln = TLV.unpack_from(data, off)
        off += TLV.size
        items.append((TAGNAME.get(tag, tag), data[off:off + ln]))
        off += ln
    return mtype, mid, items


class Reply:
    def __init__(self, data, fds):
        self.type, self.id, self.items = parse(data)
        self.fds = fds
        self.status = struct.unpack("=i", self.get("STATUS"))[0]

    def get(self, tag, default=None):
        for t, v in self.items:
            if t == tag:
                return v
        return default

    def all(self, tag):
        return [v for t, v in self.items if t == tag]

    def u64(self, tag):
        return struct.unpack("=Q", self.get(tag))[0]

    def i64(self, tag):
        return struct.unpack("=q", self.get(tag))[0]

    def u32(self, tag):
        return struct.unpack("=I", self.get(tag))[0]

    @property
    def errmsg(self):
        v = self.get("ERRMSG")
        return v.decode() if v else ""


class Conn:
    """A raw protocol connection, for tests that need exact control."""

    def __init__(self, path, timeout=60):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.next_id = 1

    def close(self):
        self.s.close()

    def send_raw(self, data):
        self.s.send(data)

    def recv(self):
        data, anc, flags, _ = self.s.recvmsg(70000, socket.CMSG_SPACE(16))
        fds = []
        for level, typ, cdata in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                fds += list(struct.unpack("=%di" % (len(cdata) // 4), cdata[:len(cdata) // 4 * 4]))
        return Reply(data, fds)

    def request(self, mtype, **items):
        mid = self.next_id
        self.next_id += 1
        body = b""
        for tag, val in items.items():
            vals = val if isinstance(val, list) else [val]
            for v in vals:
                body += item(tag.upper(), v)
        self.s.send(message(mtype, body, mid))
        r = self.recv()
        check(r.id == mid, "reply id %d for request %d" % (r.id, mid))
        if mtype == "HELLO":
            # the shared index and the objects directory, for the shim's fast
            # path: a raw connection never uses them
            for fd in r.fds:
                os.close(fd)
            r.fds = []
        return r

    def read(self, path, nofetch=False):
        """OPEN through the daemon and read the whole file from the descriptor."""
        kw = {"path": path}
        if nofetch:
            kw["flags"] = F_NOFETCH
        r = self.request("OPEN", **kw)
        if r.status != 0:
            for fd in r.fds:
                os.close(fd)
            return r, None
        check(len(r.fds) == 1, "OPEN reply carried %d descriptors" % len(r.fds))
        fd = r.fds[0]
        try:
            chunks = []
            while True:
                b = os.read(fd, 1 << 20)
                if not b:
                    break
                chunks.append(b)
        finally:
            os.close(fd)
        return r, b"".join(chunks)



# ---- child processes ----

def read_pipe(fd):
    """Everything a child wrote to the pipe @fd, until it closed its end;
    closes @fd."""
    chunks = []
    while True:
        b = os.read(fd, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(fd)
    return b"".join(chunks)


def as_user(uid, gid, fn, *args, groups=()):
    """Run fn(*args) in a forked child as uid/gid with only @groups as
    supplementary groups; return what it returns (JSON-able)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(r)
            os.setgroups(list(groups))
            os.setgid(gid)
            os.setuid(uid)
            out = {"result": fn(*args)}
        except BaseException as e:  # the parent reports it
            out = {"error": "%s: %s" % (type(e).__name__, e)}
            code = 1
        data = json.dumps(out).encode()
        while data:
            data = data[os.write(w, data):]
        os._exit(code)
    os.close(w)
    data = read_pipe(r)
    os.waitpid(pid, 0)
    out = json.loads(data or b'{"error": "child wrote nothing"}')
    if "error" in out:
        raise Fail("child as uid %d failed: %s" % (uid, out["error"]))
    return out["result"]

# ---- datasets ----

def make_tree(root, n, min_size=1, max_size=64 * 1024, seed=1, dirs=10, prefix="f"):
    """n files of random sizes in `dirs` subdirectories; returns relative paths."""
    rnd = random.Random(seed)
    paths = []
    for i in range(n):
        d = "d%02d" % (i % dirs)
        os.makedirs(os.path.join(root, d), exist_ok=True)
        rel = "%s/%s%05d.bin" % (d, prefix, i)
        size = rnd.randint(min_size, max_size)
        with open(os.path.join(root, rel), "wb") as f:
            f.write(rnd.randbytes(size))
        paths.append(rel)
    return paths


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# ---- daemons ----

def yaml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(yaml_value(x) for x in v) + "]"
    return json.dumps(str(v))


def yaml_dump(obj, indent=0):
    pad = " " * indent
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, dict):
                out.append("%s%s:" % (pad, k))
                out.append(yaml_dump(v, indent + 2))
            elif isinstance(v, list) and v and isinstance(v[0], dict):
                out.append("%s%s:" % (pad, k))
                for e in v:
                    first = True
                    for kk, vv in e.items():
                        out.append("%s%s %s: %s" % (pad + "  ", "-" if first else " ", kk,
                                                    yaml_value(vv)))
                        first = False
            else:
                out.append("%s%s: %s" % (pad, k, yaml_value(v)))
    return "\n".join(out)


class Daemon:
    def __init__(self, workdir, mounts, name="g", **settings):
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.socket = os.path.join(self.dir, "granary.sock")
        self.config = os.path.join(self.dir, "granary.yaml")
        self.log = os.path.join(self.dir, "granaryd.log")
        cfg = {"socket": self.socket,
               "cache": {"dir": os.path.join(self.dir, "cache"), "capacity": "1G"},
               "log": {"level": "info"},
               "mounts": mounts}
        for k, v in settings.items():
            if isinstance(v, dict) and isinstance(cfg.get(k), dict):
                cfg[k].update(v)
            else:
                cfg[k] = v
        with open(self.config, "w") as f:
            f.write(yaml_dump(cfg) + "\n")
        self.proc = None

    def env(self, **extra):
        e = dict(os.environ)
        e["GRANARY_SOCKET"] = self.socket
        e.update(extra)
        return preload_env(e)

    def start(self, wait=True, extra_env=None):
        logf = open(self.log, "ab")
        env = dict(os.environ)
        if extra_env:
            env.update(extra_env)
        self.proc = subprocess.Popen([GRANARYD, "--config", self.config], stdout=logf,
                                     stderr=subprocess.STDOUT, env=env)
        logf.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=20):
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise Fail("granaryd exited with %s:\n%s" % (self.proc.returncode,
                                                              self.logtext()))
            try:
                c = Conn(self.socket, timeout=2)
                r = c.request("HELLO")
                c.close()
                if r.status == 0:
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise Fail("granaryd did not become ready:\n" + self.logtext())

    def stop(self, timeout=20):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise Fail("granaryd did not stop on SIGTERM")
        rc = self.proc.returncode if self.proc else 0
        self.proc = None
        return rc

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def logtext(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()[-6000:]
        except OSError:
            return ""

    def conn(self):
        return Conn(self.socket)

    def copy_path(self, oid):
        """The cache file of object @oid: in objects/ (public) or private/."""
        rel = os.path.join("%02x" % (oid & 0xFF), "%016x" % oid)
        for tree in ("objects", "private"):
            p = os.path.join(self.dir, "cache", tree, rel)
            if os.path.exists(p):
                return p
        return os.path.join(self.dir, "cache", "objects", rel)

    def status(self):
        c = self.conn()
        r = c.request("STATUS")
        c.close()
        check(r.status == 0, "STATUS failed: %s" % r.errmsg)
        return json.loads(r.get("JSON"))

    def cli(self, *args, check_rc=None, timeout=600, env=None):
        p = subprocess.run([GRANARY] + list(args), capture_output=True, text=True,
                           env=env or self.env(), timeout=timeout)
        if check_rc is not None and p.returncode != check_rc:
            raise Fail("granary %s exited %d (expected %d)\nstdout:%s\nstderr:%s" % (
                " ".join(args), p.returncode, check_rc, p.stdout[-3000:], p.stderr[-3000:]))
        return p


class Workdir:
    """A temporary directory removed at the end unless GRANARY_KEEP=1."""

    def __init__(self, name):
        self.path = tempfile.mkdtemp(prefix="granary-%s-" % name)
        # datasets are laid out as on a real NAS: readable by every user, so
        # their copies are public (docs/security.md); a test that wants a
        # private source closes a directory or a file itself
        os.chmod(self.path, 0o755)
        self.daemons = []

    def daemon(self, mounts, **kw):
        d = Daemon(self.path, mounts, **kw)
        self.daemons.append(d)
        return d

    def cleanup(self, ok):
        for d in self.daemons:
            try:
                d.kill9()
            except Exception:
                pass
        if ok and os.environ.get("GRANARY_KEEP") != "1":
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            print("work directory kept: %s" % self.path)


def run(main, name):
    """Run a test function main(workdir); print a verdict, exit with its code."""
    wd = Workdir(name)
    ok = False
    try:
        main(wd)
        ok = True
    except Fail as e:
        print("FAIL: %s" % e)
        for d in wd.daemons:
            print("---- %s log ----\n%s" % (d.dir, d.logtext()))
    except Skip as e:
        print("SKIP: %s" % e)
        wd.cleanup(True)
        sys.exit(77)
    finally:
        wd.cleanup(ok)
    if ok:
        print("PASS: %s" % name)
    sys.exit(0 if ok else 1)


class Skip(Exception):
    pass


def require_rack():
    """Skip (exit 77) when granaryd was built without the rack (GRANARY_RACK=OFF)."""
    p = subprocess.run([GRANARYD, "--version"], capture_output=True, text=True)
    if "rack: off" in p.stdout:
        raise Skip("built without the rack (GRANARY_RACK=OFF)")
