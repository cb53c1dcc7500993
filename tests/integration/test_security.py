"""Security: every attack of docs/security.md, run as `nobody`, against a root
granaryd and against one started as the systemd unit starts it (a service
user holding exactly CAP_DAC_READ_SEARCH, CAP_SETUID and CAP_SETGID, its
cache on a tmpfs of its own).

The rule under test: a caller gets, through any path granary offers, exactly
what reading the source itself would give it. Attackers run through
`setpriv --reuid=nobody --regid=nogroup --clear-groups`: the attacker program
(ATTACK below, written into the work directory, run with Debian's python3)
speaks the wire protocol itself, and everything it gets back (bytes read,
replies, listings, CLI output, the shared index, copies opened by id, /proc)
is searched for 32-byte pieces of every secret, and listings for names and
sizes the kernel would not show nobody.

Scenarios, for each daemon kind:
 1 secrets (0600; 0644 under a 0700 directory; 0644 with an ACL user:nobody:---;
   0604 root:nogroup; 0640 root:root) on strict, ttl and immutable NAS mounts,
   and an http mount with allow_uids, warmed by root, attacked through the
   shim, the CLI, raw OPEN/STAT/LIST/LS/WARM, the index and the objects/
   descriptor of HELLO (every slot, ids by brute force, ../private), /proc and
   the cache directory; public files still read by nobody through the fast path
 2 the shared index reopened writable: mmap(PROT_WRITE, MAP_SHARED), write(),
   mprotect, ftruncate all refused
 3 revocation: chmod 0600 of a cached public file: refused at once on strict;
   the copy leaves the public tree within access.recheck on every consistency
 4 HINT of root's secrets: never their bytes, the prefetcher (checking as the
   order's sender) fetches none of them; HINT refused on the allow-listed
   mount, and that refusal does not take the dataset from a user allowed
 5 admin verbs (evict, pin, unpin, verify) refused with the rule's sentence,
   nothing of root's evicted or pinned; DROP of a file nobody cannot write
   refused; EPOCH of a dataset root steered refused
 6 symlinks planted by nobody (into a 0700 directory, out of the mount); a
   mount whose source path nobody could change is refused at start-up
 7 flood: thousands of OPENs never read over several connections, more
   connections kept busy; root's and another user's latency measured (printed,
   not asserted), every request answered; connections over
   limits.connections_per_uid get the error reply (and the CLI says so);
   limits.idle_timeout closes a silent connection; out of descriptors, accepts
   pause without spinning and the log says so at most once a second
 8 FIFOs under a NAS mount: refused promptly, workers never wedged
 9 a regular file at the socket path: start-up fails, the file is intact
10 cache directory 0700, catalog.db 0600 and closed to nobody, objects/ holds
   public copies only (0444), every secret's copy in private/ (0400)
11 /metrics on 0.0.0.0 logs the warning; metrics and status name no file
Regressions of the review's findings (eac37aa, 766e435), on a daemon of their
own whose victim is uid 1 ("daemon"); the races run against a swapper
(renameat2 RENAME_EXCHANGE through ctypes) for a bounded number of requests:
12 one mount over two tmpfs: nobody forges a file on the sticky scratch with
   the inode, size and mtime of the victim's 0600 file (0755 directory) on
   the other and swaps a symlink between them while it DROPs and OPENs it:
   never the victim's bytes, no copy of them in objects/ (by id)
13 the victim's 0700 directory, in one nobody may write (not sticky),
   exchanged with nobody's 0755 one while the victim OPENs its file: no byte
   of it in objects/ (nobody scans by id meanwhile), no 'copy is now public'
14 L (nobody's file) and M (a name in the victim's 0700 directory) exchanged
   while nobody OPENs L: the errors are the same whether the name exists
   (no ENOENT for a missing one alone), and the mount's bytes in STATUS never
   grow by more than nobody's own file
15 root warms the victim's 0600 file: STAT and LS tell nobody it is not
   cached (CACHED 0, STATE absent), and root that it is
16 one ACCESS naming a public copy 4000 times counts at most 64 hits; root's
   hinted order moves with root's reads, never with nobody's OPEN or ACCESS

Every check is run and every failure printed; the exit code is 1 if any
failed. Needs root, setpriv, nginx, tmpfs mounts and useradd (the service
user granary-svc is created when missing). GRANARY_SECURITY_ONLY=regressions
runs scenarios 12 to 16 alone.
"""
import base64
import errno
import hashlib
import json
import os
import pwd
import shutil
import stat
import statistics
import struct
import subprocess
import time
import traceback
import urllib.request

from harness import (ASAN_RUNTIME, DEBIAN_PYTHON, GRANARY, GRANARYD, PRELOAD, Conn, Daemon,
                     Fail, run)

NOBODY = 65534
NOGROUP = 65534
SVC = "granary-svc"
WEB = "/granary/web"
AS = {
    "nobody": ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"],
    "daemon": ["setpriv", "--reuid=daemon", "--regid=daemon", "--clear-groups"],
    "root": [],
}
CAPS = "+dac_read_search,+setuid,+setgid"
UNIT_PREFIX = ["setpriv", "--reuid=" + SVC, "--regid=" + SVC, "--clear-groups",
               "--inh-caps=" + CAPS, "--ambient-caps=" + CAPS]
REFUSED = (-errno.EACCES, -errno.EPERM, -errno.ENOENT)
SHIM_PRELOAD = (ASAN_RUNTIME + " " + PRELOAD) if ASAN_RUNTIME else PRELOAD

# ---------------------------------------------------------------------------
# The attacker: runs as an unprivileged user, speaks the protocol itself, and
# prints one JSON document holding everything it got (base64).
# ---------------------------------------------------------------------------
ATTACK = r'''
import base64, ctypes, errno, fcntl, hashlib, json, mmap, os, select, signal, socket, stat
import struct, subprocess, sys, time

MAGIC = 0x594E5247
HDR = struct.Struct("=IHHII")
TLV = struct.Struct("=HHI")
T = dict(HELLO=1, OPEN=2, STAT=3, WARM=4, LIST=5, STATUS=6, LS=7, EVICT=8, DROP=9,
         PIN=10, EPOCH=11, HINT=12, VERIFY=13, ACCESS=14)
TAG = dict(STATUS=1, ERRMSG=2, PATH=3, FLAGS=4, SIZE=5, MTIME_NS=6, MODE=7, SOURCE=8,
           NAME=9, TYPE=10, COOKIE=11, JSON=12, COUNT=13, COUNT2=14, MOUNT=15,
           BACKEND=16, DATASET=17, EPOCH=18, STATE=19, CACHED=20, INO=21, SLOTS=22, TTL=23)
TAGNAME = {v: k for k, v in TAG.items()}
U32 = {"FLAGS", "MODE", "SOURCE", "TYPE", "BACKEND", "STATE", "CACHED"}
U64 = {"SIZE", "COUNT", "COUNT2", "EPOCH", "INO", "TTL"}
STR = {"ERRMSG", "PATH", "NAME", "COOKIE", "JSON", "MOUNT", "DATASET"}
FX_HDR = struct.Struct("=IIQ48x")
FX_SLOT = struct.Struct("=IIQQQQqQIIII")
TOMB = (1 << 64) - 1
MAGIC_FX = 0x58465247
SPEC = json.loads(sys.argv[2])
BLOBS = []  # [what, base64] of every byte this process got from anything

PYREAD = """
import base64, errno, json, sys
out = {}
for p in sys.argv[1:]:
    try:
        with open(p, "rb") as f:
            out[p] = ["ok", base64.b64encode(f.read()).decode()]
    except OSError as e:
        out[p] = ["err", errno.errorcode.get(e.errno, str(e.errno))]
print(json.dumps(out))
"""


def b64(b):
    return base64.b64encode(b).decode()


def keep(what, data):
    if data:
        BLOBS.append([what, b64(data)])


def ename(e):
    return errno.errorcode.get(e, str(e))


def enc(tag, v):
    if isinstance(v, str):
        v = v.encode()
    elif isinstance(v, int):
        v = struct.pack("=I", v)
    return TLV.pack(TAG[tag], 0, len(v)) + v


def decode(data):
    _, _, mtype, mid, _ = HDR.unpack_from(data)
    items = []
    off = HDR.size
    while off + TLV.size <= len(data):
        tag, _, ln = TLV.unpack_from(data, off)
        off += TLV.size
        v = data[off:off + ln]
        off += ln
        name = TAGNAME.get(tag, str(tag))
        if name == "STATUS" and ln == 4:
            val = struct.unpack("=i", v)[0]
        elif name in U32 and ln == 4:
            val = struct.unpack("=I", v)[0]
        elif name in U64 and ln == 8:
            val = struct.unpack("=Q", v)[0]
        elif name == "MTIME_NS" and ln == 8:
            val = struct.unpack("=q", v)[0]
        elif name in STR:
            val = v.decode(errors="replace")
        else:
            val = v.hex()
        items.append([name, val])
    return mid, items


class Conn:
    def __init__(self, timeout=30):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.s.settimeout(timeout)
        self.s.connect(SPEC["socket"])
        self.next_id = 1
        self.keep_replies = True  # False: replies that carry no file bytes (STATUS)

    def send(self, mtype, items=()):
        body = b"".join(enc(t, v) for t, v in items)
        mid = self.next_id
        self.next_id += 1
        self.s.send(HDR.pack(MAGIC, 1, T[mtype], mid, len(body)) + body)
        return mid

    def recv(self):
        data, anc, _, _ = self.s.recvmsg(70000, socket.CMSG_SPACE(64))
        fds = []
        for level, typ, c in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                fds += list(struct.unpack("=%di" % (len(c) // 4), c[:len(c) // 4 * 4]))
        if not data:
            for fd in fds:
                os.close(fd)
            return None
        if self.keep_replies:
            keep("reply", data)
        mid, items = decode(data)
        return {"id": mid, "items": items, "fds": fds, "raw": data,
                "status": next((v for t, v in items if t == "STATUS"), None),
                "errmsg": next((v for t, v in items if t == "ERRMSG"), "")}

    def request(self, mtype, items=()):
        self.send(mtype, items)
        return self.recv()

    def close(self):
        self.s.close()


def read_fd(fd, limit=1 << 24):
    chunks = []
    try:
        n = 0
        while n < limit:
            b = os.read(fd, 1 << 20)
            if not b:
                break
            chunks.append(b)
            n += len(b)
    finally:
        os.close(fd)
    return b"".join(chunks)


def record(what, mtype, path, r):
    rec = {"what": what, "type": mtype, "path": path}
    if r is None:
        rec["eof"] = True
        return rec
    rec.update(status=r["status"], errmsg=r["errmsg"], nfds=len(r["fds"]), id=r["id"],
               names=[v for t, v in r["items"] if t == "NAME"],
               sizes=[v for t, v in r["items"] if t == "SIZE"],
               items=[[t, v] for t, v in r["items"] if t != "JSON"],
               raw=b64(r["raw"]))
    for fd in r["fds"]:
        try:
            data = read_fd(fd)
            keep("descriptor of %s %s" % (mtype, path), data)
            rec.setdefault("fd_sha", []).append(hashlib.sha256(data).hexdigest())
        except OSError as e:
            rec.setdefault("fd_err", []).append(ename(e.errno))
    return rec


def listing(c, mtype, path, what):
    recs = []
    cookie = None
    for _ in range(200):
        items = [("PATH", path)] + ([("COOKIE", cookie)] if cookie else [])
        r = c.request(mtype, items)
        recs.append(record(what, mtype, path, r))
        if r is None or r["status"] != 0:
            break
        cookie = next((v for t, v in r["items"] if t == "COOKIE"), None)
        if not cookie:
            break
    return recs


def run(args, env=None, timeout=60):
    try:
        p = subprocess.run(args, capture_output=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as e:
        keep("timeout %s" % args, (e.stdout or b"") + (e.stderr or b""))
        return {"args": args, "rc": "timeout"}
    keep("stdout of %s" % args, p.stdout)
    keep("stderr of %s" % args, p.stderr)
    return {"args": args, "rc": p.returncode, "stdout": p.stdout.decode(errors="replace"),
            "stderr": p.stderr.decode(errors="replace")}


def shim_env():
    env = dict(os.environ)
    env["LD_PRELOAD"] = SPEC["preload"]
    env.pop("GRANARY_DISABLE", None)
    env.pop("GRANARY_FASTPATH", None)
    if "libasan" in env["LD_PRELOAD"]:
        # a sanitizer build: the readers' own leaks (python, cat) are not ours
        env["ASAN_OPTIONS"] = "detect_leaks=0:verify_asan_link_order=0"
    return env


def shim_pyread(paths):
    p = subprocess.run([sys.executable, "-c", PYREAD] + list(paths), capture_output=True,
                       timeout=120, env=shim_env())
    keep("shim python stderr", p.stderr)
    if p.returncode != 0:
        return {"error": p.stderr.decode(errors="replace")[-2000:]}
    out = json.loads(p.stdout)
    for path, v in out.items():
        if v[0] == "ok":
            data = base64.b64decode(v[1])
            keep("shim python read %s" % path, data)
            v[1] = hashlib.sha256(data).hexdigest()
            v.append(len(data))
    return out


def shim_cat(paths):
    out = {}
    for p in paths:
        r = run(["cat", p], env=shim_env())
        out[p] = {"rc": r["rc"], "stdout_len": len(r.get("stdout", "")),
                  "stderr": r.get("stderr", "")}
    return out


def hello():
    c = Conn()
    c.send("HELLO")
    r = c.recv()
    return c, r


def index_slots(ifd):
    st = os.fstat(ifd)
    data = os.pread(ifd, st.st_size, 0)
    magic, version, nslots = FX_HDR.unpack_from(data)
    slots = []
    used_raw = []
    off = FX_HDR.size
    for i in range(nslots):
        if off + FX_SLOT.size > len(data):
            break
        s = FX_SLOT.unpack_from(data, off)
        seq, mount, k1, k2, oid, size, mtime, ino, mode, uid, gid, val = s
        if (k1 or k2) and not (k1 == TOMB and k2 == TOMB):
            slots.append({"slot": i, "mount": mount, "id": oid, "size": size, "ino": ino,
                          "mode": mode, "uid": uid, "gid": gid})
            used_raw.append(data[off:off + FX_SLOT.size])
        off += FX_SLOT.size
    keep("index header and used slots", data[:FX_HDR.size] + b"".join(used_raw))
    return {"magic": magic, "version": version, "nslots": nslots, "bytes": len(data),
            "slots": slots}


def objname(oid):
    return "%02x/%016x" % (oid & 0xFF, oid)


def try_open_at(dfd, name, what):
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK, dir_fd=dfd)
    except OSError as e:
        return None, ename(e.errno)
    try:
        data = read_fd(fd)
    except OSError as e:
        return None, "read:" + ename(e.errno)
    keep(what, data)
    return data, None


def fast_path(maxid_hint):
    out = {"slot_opens": [], "brute": {}, "brute_errors": {}, "private": [],
           "private_errors": {}, "dotdot": {}}
    c, r = hello()
    if r is None or r["status"] != 0 or len(r["fds"]) != 2:
        out["hello"] = "status %s fds %d" % (r and r["status"], len(r["fds"]) if r else 0)
        return out
    ifd, dfd = r["fds"]
    out["index"] = index_slots(ifd)
    maxid = maxid_hint
    for s in out["index"]["slots"]:
        data, err = try_open_at(dfd, objname(s["id"]), "slot %d id %d" % (s["slot"], s["id"]))
        out["slot_opens"].append({"id": s["id"], "err": err,
                                  "sha": data is not None and hashlib.sha256(data).hexdigest()})
        maxid = max(maxid, s["id"])
    for oid in range(0, maxid + 200):
        data, err = try_open_at(dfd, objname(oid), "objects id %d" % oid)
        if data is not None:
            out["brute"][str(oid)] = hashlib.sha256(data).hexdigest()
        else:
            out["brute_errors"][err] = out["brute_errors"].get(err, 0) + 1
        data, err = try_open_at(dfd, "../private/" + objname(oid), "private id %d" % oid)
        if data is not None:
            out["private"].append([oid, hashlib.sha256(data).hexdigest()])
        else:
            out["private_errors"][err] = out["private_errors"].get(err, 0) + 1
    for name in ("..", "../catalog.db", "../private", "../tmp", ".", "../objects"):
        data, err = try_open_at(dfd, name, "objects fd + " + name)
        out["dotdot"][name] = err or ("opened, %d bytes" % len(data))
    os.close(ifd)
    os.close(dfd)
    c.close()
    return out


def try_path(p, what):
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        return ename(e.errno)
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            data = read_fd(fd, 1 << 22)
        else:
            os.close(fd)
            data = b""
    except OSError as e:
        return "opened, read " + ename(e.errno)
    keep(what, data)
    return "opened, %d bytes" % len(data)


def proc_and_cache(maxid):
    out = {"opened": {}, "errors": {}}
    pid = SPEC["pid"]
    cache = SPEC["cache_dir"]
    cands = ["/proc/%d/fd/%d" % (pid, n) for n in range(64)]
    # (cmdline and status are world-readable in Linux: not tried)
    cands += ["/proc/%d/%s" % (pid, w) for w in ("mem", "environ", "maps", "map_files/")]
    cands += ["/proc/%d/root%s/%s" % (pid, cache, w) for w in ("catalog.db", "private")]
    cands += ["/proc/%d/cwd/catalog.db" % pid]
    cands += ["%s/%s" % (cache, w) for w in ("catalog.db", "catalog.db-wal", "private",
                                             "objects", "tmp")]
    for oid in range(0, maxid + 50):
        cands.append("%s/private/%s" % (cache, objname(oid)))
        cands.append("/proc/%d/root%s/private/%s" % (pid, cache, objname(oid)))
    for p in cands:
        r = try_path(p, "path " + p)
        if r.startswith("opened"):
            out["opened"][p] = r
        else:
            out["errors"][r] = out["errors"].get(r, 0) + 1
    try:
        out["fd_list"] = os.listdir("/proc/%d/fd" % pid)
    except OSError as e:
        out["fd_list"] = ename(e.errno)
    try:
        fd = os.open(cache + "/catalog.db", os.O_RDONLY)
        os.close(fd)
        out["catalog"] = "opened"
    except OSError as e:
        out["catalog"] = ename(e.errno)
    return out


def kernel_view():
    kv = {"list": {}, "stat": {}, "read": {}}
    for d in SPEC["dirs"]:
        try:
            kv["list"][d] = sorted(os.listdir(d))
        except OSError as e:
            kv["list"][d] = ename(e.errno)
    for p in SPEC["paths"] + SPEC["publics"]:
        try:
            kv["stat"][p] = os.stat(p).st_size
        except OSError as e:
            kv["stat"][p] = ename(e.errno)
        try:
            fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
            os.close(fd)
            kv["read"][p] = "ok"
        except OSError as e:
            kv["read"][p] = ename(e.errno)
    return kv


def mode_probe():
    out = {"kernel": kernel_view()}
    paths, dirs = SPEC["paths"], SPEC["dirs"]
    out["shim_cat"] = shim_cat(paths)
    out["shim_py"] = shim_pyread(paths)
    cli = []
    g = SPEC["cli"]
    for p in paths:
        cli.append(run([g, "warm", "--quiet", p]))
        cli.append(run([g, "stat", "--json", p]))
        cli.append(run([g, "ls", "--json", p]))
    for d in dirs:
        cli.append(run([g, "ls", "--json", d]))
    for d in SPEC["warm_dirs"]:
        cli.append(run([g, "warm", "--quiet", d]))
    cli.append(run([g, "status", "--json"]))
    out["cli"] = cli
    c = Conn()
    raw = []
    for p in paths:
        raw.append(record("open", "OPEN", p, c.request("OPEN", [("PATH", p)])))
        raw.append(record("open nofetch", "OPEN", p,
                          c.request("OPEN", [("PATH", p), ("FLAGS", 1)])))
        raw.append(record("warm", "WARM", p, c.request("WARM", [("PATH", p)])))
        raw.append(record("stat", "STAT", p, c.request("STAT", [("PATH", p)])))
        raw += listing(c, "LS", p, "ls of a file")
        raw += listing(c, "LIST", p, "list of a file")
    for d in dirs:
        raw += listing(c, "LIST", d, "list")
        raw += listing(c, "LS", d, "ls")
    st = c.request("STATUS")
    raw.append(record("status", "STATUS", None, st))
    c.close()
    out["raw"] = raw
    nobj = 0
    try:
        nobj = json.loads(next(v for t, v in st["items"] if t == "JSON"))["cache"]["objects"]
    except Exception:
        pass
    out["fast"] = fast_path(nobj)
    out["proc"] = proc_and_cache(max([nobj] + [s["id"] for s in
                                               out["fast"].get("index", {}).get("slots", [])]))
    return out


def mode_pyread():
    return shim_pyread(SPEC["paths"])


def mode_shimcat():
    return shim_cat(SPEC["paths"])


def mode_brute():
    c, r = hello()
    found = {}
    if r is None or len(r["fds"]) != 2:
        return {"error": "no HELLO descriptors"}
    ifd, dfd = r["fds"]
    idx = index_slots(ifd)
    maxid = max([SPEC.get("maxid", 0)] + [s["id"] for s in idx["slots"]])
    for oid in range(0, maxid + 100):
        data, err = try_open_at(dfd, objname(oid), "objects id %d" % oid)
        if data is not None:
            found.setdefault(hashlib.sha256(data).hexdigest(), []).append(oid)
    os.close(ifd)
    os.close(dfd)
    c.close()
    return {"found": found, "slots": idx["slots"]}


def mode_index_write():
    out = {}
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    c, r = hello()
    if r is None or len(r["fds"]) != 2:
        return {"error": "no HELLO descriptors"}
    ifd, dfd = r["fds"]
    size = os.fstat(ifd).st_size
    try:
        out["seals"] = fcntl.fcntl(ifd, fcntl.F_GET_SEALS)
    except (OSError, AttributeError) as e:
        out["seals"] = str(e)
    try:
        rw = os.open("/proc/self/fd/%d" % ifd, os.O_RDWR)
        out["reopen_rdwr"] = "ok"
    except OSError as e:
        rw = None
        out["reopen_rdwr"] = ename(e.errno)
    targets = [("ro", ifd)] + ([("rw", rw)] if rw is not None else [])
    for name, fd in targets:
        try:
            m = mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
            try:
                m[0:8] = b"\xff" * 8
                out["mmap_write_" + name] = "mapped and written"
            finally:
                m.close()
        except OSError as e:
            out["mmap_write_" + name] = ename(e.errno)
        try:
            os.pwrite(fd, b"\xff" * 64, 64)
            out["write_" + name] = "written"
        except OSError as e:
            out["write_" + name] = ename(e.errno)
        try:
            os.write(fd, b"\xff" * 64)
            out["write2_" + name] = "written"
        except OSError as e:
            out["write2_" + name] = ename(e.errno)
        try:
            os.ftruncate(fd, 0)
            out["truncate_" + name] = "truncated"
        except OSError as e:
            out["truncate_" + name] = ename(e.errno)
        p = libc.mmap(None, 4096, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if p is None or p == ctypes.c_void_p(-1).value:
            out["mprotect_" + name] = "mmap read: " + ename(ctypes.get_errno())
        else:
            rc = libc.mprotect(p, 4096, mmap.PROT_READ | mmap.PROT_WRITE)
            out["mprotect_" + name] = "made writable" if rc == 0 else ename(ctypes.get_errno())
            libc.munmap(ctypes.c_void_p(p), ctypes.c_size_t(4096))
        try:
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, 0)
        except (OSError, AttributeError):
            pass
    after = os.pread(ifd, 128, 0)
    out["unchanged"] = (struct.unpack_from("=I", after)[0] == MAGIC_FX and
                        after[0:8] != b"\xff" * 8 and after[64:128] != b"\xff" * 64) or \
        after.hex()
    if rw is not None:
        os.close(rw)
    os.close(ifd)
    os.close(dfd)
    c.close()
    return out


def mode_raw():
    c = Conn()
    recs = []
    for req in SPEC["requests"]:
        items = [(t, v) for t, v in req.get("items", [])]
        path = next((v for t, v in items if t == "PATH"), None)
        if req["type"] in ("LIST", "LS"):
            recs += listing(c, req["type"], path, req.get("what", req["type"]))
        else:
            recs.append(record(req.get("what", req["type"]), req["type"], path,
                               c.request(req["type"], items)))
    c.close()
    return recs


def mode_flood():
    n, k, paths = SPEC["n"], SPEC["conns"], SPEC["paths"]
    conns = []
    for _ in range(k):
        c = Conn()
        c.s.setblocking(False)
        conns.append(c)
    sent = [0] * k
    last = [time.time()] * k
    active = set(range(k))
    end = time.time() + SPEC.get("send_for", 20)
    while active and time.time() < end:
        progress = False
        for i in list(active):
            try:
                conns[i].send("OPEN", [("PATH", paths[sent[i] % len(paths)])])
                sent[i] += 1
                last[i] = time.time()
                progress = True
                if sent[i] >= n:
                    active.discard(i)
            except BlockingIOError:
                # the daemon stopped reading this connection: that is the limit
                if time.time() - last[i] > 0.5:
                    active.discard(i)
        if not progress:
            time.sleep(0.005)
    # and connections that keep the daemon busy: pipelined OPENs, replies read
    import threading
    stop = threading.Event()
    answered = [0] * SPEC.get("busy", 0)

    def busy(i):
        c = Conn(timeout=60)
        while not stop.is_set():
            for j in range(32):
                c.send("OPEN", [("PATH", paths[j % len(paths)])])
            for j in range(32):
                r = c.recv()
                if r is None:
                    return
                for fd in r["fds"]:
                    os.close(fd)
                answered[i] += 1
        c.close()
    threads = [threading.Thread(target=busy, args=(i,), daemon=True) for i in range(len(answered))]
    for t in threads:
        t.start()
    print(json.dumps({"ready": True, "sent": sent}), flush=True)
    sys.stdin.read()
    stop.set()
    for t in threads:
        t.join(60)
    print(json.dumps({"answered": answered}), flush=True)
    for c in conns:
        c.close()
    return None


def mode_measure():
    out = {"status": [], "open": [], "errors": []}
    for i in range(SPEC["n"]):
        for what in ("status", "open"):
            t0 = time.time()
            try:
                c = Conn(timeout=SPEC["timeout"])
                if what == "status":
                    r = c.request("STATUS")
                else:
                    r = c.request("OPEN", [("PATH", SPEC["path"])])
                    for fd in r["fds"]:
                        read_fd(fd)
                c.close()
                if r is None or r["status"] != 0:
                    out["errors"].append("%s: %s" % (what, r and (r["status"], r["errmsg"])))
            except OSError as e:
                out["errors"].append("%s: %s" % (what, e))
            out[what].append(time.time() - t0)
    return out


def mode_conns():
    out = []
    held = []
    for i in range(SPEC["n"]):
        rec = {}
        try:
            c = Conn(timeout=10)
        except OSError as e:
            out.append({"connect": ename(e.errno)})
            continue
        held.append(c)
        try:
            c.send("HELLO")
        except OSError as e:
            rec["send"] = ename(e.errno)
        try:
            try:
                r = c.recv()
            except ConnectionResetError:
                # the daemon closed with our HELLO unread: the reset comes
                # first, the refusal it sent is still queued behind it
                rec["reset_first"] = True
                r = c.recv()
            if r is None:
                rec["eof"] = True
            else:
                for fd in r["fds"]:
                    os.close(fd)
                rec.update(status=r["status"], errmsg=r["errmsg"], id=r["id"])
                if r["status"] != 0:
                    try:
                        rec["then"] = "eof" if c.recv() is None else "more data"
                    except OSError as e:
                        rec["then"] = ename(e.errno) if e.errno else str(e)
        except OSError as e:
            rec["recv"] = ename(e.errno) if e.errno else str(e)
        out.append(rec)
    print(json.dumps(out), flush=True)
    sys.stdin.read()
    return None


def mode_idle():
    c = Conn(timeout=SPEC["wait"])
    r = c.request("HELLO")
    for fd in (r or {}).get("fds", []):
        os.close(fd)
    t0 = time.time()
    try:
        got = c.recv()
        what = "eof" if got is None else "data"
    except socket.timeout:
        what = "timeout"
    except OSError as e:
        what = ename(e.errno)
    return {"hello": r and r["status"], "what": what, "after": time.time() - t0}


def mode_fifo():
    t0 = time.time()
    conns = [Conn(timeout=SPEC["timeout"]) for _ in range(SPEC["conns"])]
    for c in conns:
        for _ in range(SPEC["per_conn"]):
            c.send("OPEN", [("PATH", SPEC["fifo"])])
    res = []
    for c in conns:
        for _ in range(SPEC["per_conn"]):
            try:
                r = c.recv()
                res.append(record("fifo", "OPEN", SPEC["fifo"], r))
            except socket.timeout:
                res.append({"timeout": True})
    elapsed = time.time() - t0
    for c in conns:
        c.close()
    t1 = time.time()
    c = Conn(timeout=SPEC["timeout"])
    after = record("open after", "OPEN", SPEC["public"],
                   c.request("OPEN", [("PATH", SPEC["public"])]))
    c.close()
    return {"replies": res, "elapsed": elapsed, "after": after, "after_s": time.time() - t1}


# ---- regressions of the review's findings (scenarios 12 to 16) ----

def swapper(a, b, seconds):
    """A child process exchanging the names @a and @b (renameat2 with
    RENAME_EXCHANGE, through ctypes) until @seconds have passed; its pid, once
    it has made its first exchanges. stop_swapper() ends it. The attacker and
    its swapper keep to one CPU (of several), so the swapper runs while the
    daemon works, as a patient attacker would arrange."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) > 1:
        os.sched_setaffinity(0, {cpus[-1]})  # the child inherits it
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fn = libc.renameat2
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                           ctypes.c_uint]
            A, B = a.encode(), b.encode()
            end = time.monotonic() + seconds
            first = True
            while time.monotonic() < end:
                for _ in range(256):
                    if fn(-100, A, -100, B, 2) != 0:  # AT_FDCWD, RENAME_EXCHANGE
                        os.write(w, b"renameat2: " + ename(ctypes.get_errno()).encode())
                        os._exit(1)
                if first:
                    os.write(w, b"swapping")
                    os.close(w)
                    first = False
        except BaseException as e:
            try:
                os.write(w, repr(e).encode())
            except OSError:
                pass
            os._exit(2)
        os._exit(0)
    os.close(w)
    said = os.read(r, 200)  # EOF if the child died without a word
    os.close(r)
    if said != b"swapping":
        stop_swapper(pid)
        raise RuntimeError("the swapper of %s and %s failed: %r" % (a, b, said))
    return pid


def stop_swapper(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    os.waitpid(pid, 0)


def ids_used(sc):
    """Above every object id the daemon has handed out: one per fetch, done or
    failed (STATUS, which anyone may ask), and a margin for those under way."""
    st = json.loads(next(v for t, v in sc.request("STATUS")["items"] if t == "JSON"))
    return sum(m["fetches"] + m["fetch_errors"] for m in st["mounts"]) + 256


def scan_objects(dfd, lo, hi, seen, skip=None):
    """Open the copies of ids @lo..@hi through the objects/ descriptor HELLO
    gave, each id once (@seen: id -> sha256); keep the bytes of each unless
    skip(data) says they are nobody's own. Returns how many were new."""
    new = 0
    for oid in range(lo, hi + 1):
        if oid in seen:
            continue
        try:
            fd = os.open(objname(oid), os.O_RDONLY | os.O_NONBLOCK, dir_fd=dfd)
        except OSError:
            continue
        try:
            data = read_fd(fd)
        except OSError:
            continue
        seen[oid] = hashlib.sha256(data).hexdigest()
        new += 1
        if not (skip and skip(data)):
            keep("objects/ id %d" % oid, data)
    return new


def mode_forge():
    """Finding 1: a file of nobody's on another file system under the same
    mount with the victim's inode, size and mtime, and a symlink swapped
    between it and the victim's file while nobody drops and opens it."""
    tgt, scratch = SPEC["target"], SPEC["scratch"]
    out = {"hist": {}, "forged_reads": 0, "other_reads": 0, "attempts": 0}
    try:
        with open(tgt, "rb") as f:
            keep("direct read of the target", f.read())
        out["direct"] = "read"
    except OSError as e:
        out["direct"] = ename(e.errno)
    st = os.stat(tgt)  # its directory lets nobody stat it
    out["target"] = [st.st_ino, st.st_size, st.st_mtime_ns, st.st_dev]
    mine = os.path.join(scratch, "nb")
    os.mkdir(mine, 0o755)
    forged = None
    for i in range(SPEC["max_files"]):
        p = os.path.join(mine, "f%d" % i)
        os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        ino = os.stat(p).st_ino
        if ino == st.st_ino:
            forged = p
            break
        os.unlink(p)
        if ino > st.st_ino:
            break
    if not forged:
        out["forge"] = "no file of inode %d on %s (last %d)" % (st.st_ino, scratch, ino)
        return out
    os.truncate(forged, st.st_size)
    os.utime(forged, ns=(st.st_mtime_ns, st.st_mtime_ns))
    f = os.stat(forged)
    out["forged"] = [f.st_ino, f.st_size, f.st_mtime_ns, f.st_dev]
    zeros = b"\0" * st.st_size  # what the forged file holds
    L, M = os.path.join(mine, "L"), os.path.join(mine, "M")
    os.symlink(os.path.relpath(forged, mine), L)
    os.symlink(os.path.relpath(tgt, mine), M)

    def got(what, r):
        for fd in r["fds"]:
            data = read_fd(fd)
            if data == zeros:
                out["forged_reads"] += 1
            else:
                out["other_reads"] += 1
                keep(what, data)
    c = Conn()
    pid = swapper(L, M, SPEC["swap_s"])
    try:
        for i in range(SPEC["attempts"]):
            out["attempts"] = i + 1
            r = c.request("DROP", [("PATH", L)])
            for fd in r["fds"]:
                os.close(fd)
            r = c.request("OPEN", [("PATH", L)])
            k = str(r["status"])
            out["hist"][k] = out["hist"].get(k, 0) + 1
            got("OPEN %s, attempt %d" % (L, i), r)
            if out["other_reads"]:
                break  # something that is not nobody's file: enough
    finally:
        stop_swapper(pid)
    # no race now: L leads to the forged file, and what is cached answers
    os.unlink(L)
    os.unlink(M)
    os.symlink(os.path.relpath(forged, mine), L)
    out["after"] = []
    for i in range(3):
        r = c.request("OPEN", [("PATH", L)])
        out["after"].append(r["status"])
        got("OPEN %s without a race, #%d" % (L, i), r)
    c.close()
    c, r = hello()
    ifd, dfd = r["fds"]
    c.keep_replies = False
    seen = {}
    out["scanned_ids"] = ids_used(c)
    scan_objects(dfd, 0, out["scanned_ids"], seen, skip=lambda data: data == zeros)
    out["objects_read"] = len(seen)
    os.close(ifd)
    os.close(dfd)
    c.close()
    return out


def mode_pubrace():
    """Finding 2, nobody's side: exchange the victim's 0700 directory with a
    0755 one of nobody's (their parent lets nobody write, not sticky) and scan
    objects/ by id until stdin closes (the victim's reads are over), then once
    more. The file of the same name in nobody's directory is 0600: the victim
    may not open it, so whatever is cached under the victim's path is the
    victim's own file."""
    fake, vdir, name = SPEC["fake_dir"], SPEC["victim_dir"], SPEC["name"]
    os.mkdir(fake, 0o755)
    os.chmod(fake, 0o755)
    mine = b"F" * SPEC["fake_size"]
    with open(os.path.join(fake, name), "wb") as f:
        f.write(mine)
    os.chmod(os.path.join(fake, name), 0o600)
    c, r = hello()
    ifd, dfd = r["fds"]
    c.keep_replies = False
    seen = {}
    lo = max(0, ids_used(c) - 512)  # copies made before the race are not the victim's
    out = {"passes": 0, "lo": lo}
    pid = swapper(vdir, fake, SPEC["swap_s"])
    try:
        print(json.dumps({"ready": True}), flush=True)
        end = time.monotonic() + SPEC["max_s"]
        last = False
        while True:
            out["hi"] = ids_used(c)
            scan_objects(dfd, lo, out["hi"], seen, skip=lambda data: data == mine)
            out["passes"] += 1
            if last:
                break
            # the poll's interval, and the signal that the victim is done
            if select.select([sys.stdin], [], [], 0.002)[0] or time.monotonic() > end:
                last = True
    finally:
        stop_swapper(pid)
    out["copies_read"] = len(seen)
    out["max_id"] = max(seen) if seen else None
    os.close(ifd)
    os.close(dfd)
    c.close()
    return out


def mode_reader():
    """Finding 2, the victim's side: OPEN its own file again and again."""
    c = Conn()
    c.keep_replies = False
    out = {"hist": {}, "victim": 0, "fake": 0, "other": 0, "msgs": {}}
    for _ in range(SPEC["n"]):
        r = c.request("OPEN", [("PATH", SPEC["path"])])
        k = str(r["status"])
        out["hist"][k] = out["hist"].get(k, 0) + 1
        if r["status"] != 0:
            out["msgs"].setdefault(k, r["errmsg"])
        for fd in r["fds"]:
            h = hashlib.sha256(read_fd(fd)).hexdigest()
            kinds = {SPEC["victim_sha"]: "victim", SPEC["fake_sha"]: "fake"}
            out[kinds.get(h, "other")] += 1
    c.close()
    return out


def mode_oracle():
    """Finding 3: L (nobody's own file) and M (a name in the victim's 0700
    directory) exchanged while nobody OPENs L, once for a name that exists and
    once for one that does not; after each OPEN the mount's bytes in STATUS."""
    c = Conn()
    sc = Conn()
    sc.keep_replies = False
    out = {}
    own = b"N" * SPEC["own_size"]
    for case in SPEC["cases"]:
        d = case["dir"]
        os.mkdir(d, 0o755)
        with open(os.path.join(d, "own.bin"), "wb") as f:
            f.write(own)
        L, M = os.path.join(d, "L"), os.path.join(d, "M")
        os.symlink("own.bin", L)
        os.symlink(case["target"], M)
        res = out[case["name"]] = {"hist": {}, "bytes": [], "msgs": {}}

        def status():
            st = json.loads(next(v for t, v in sc.request("STATUS")["items"] if t == "JSON"))
            return st, next(m for m in st["mounts"] if m["path"] == SPEC["mount"])
        st0, m0 = status()
        res["base"] = m0["bytes"]  # before nobody's first OPEN of L
        pid = swapper(L, M, SPEC["swap_s"])
        try:
            for i in range(SPEC["n"]):
                r = c.request("OPEN", [("PATH", L)])
                k = str(r["status"])
                res["hist"][k] = res["hist"].get(k, 0) + 1
                if r["status"] != 0:
                    res["msgs"].setdefault(k, r["errmsg"])
                for fd in r["fds"]:
                    data = read_fd(fd)
                    if data != own:
                        keep("OPEN %s (%s), attempt %d" % (L, case["name"], i), data)
                _, m = status()
                if not res["bytes"] or res["bytes"][-1] != m["bytes"]:
                    res["bytes"].append(m["bytes"])
        finally:
            stop_swapper(pid)
        st1, _ = status()
        res["counters"] = {k: st1["counters"][k] - st0["counters"][k] for k in (
            "fetches", "refetches_changed", "validations") if k in st0["counters"]}
    c.close()
    sc.close()
    return out


def mode_fx_access():
    """Finding 5: one ACCESS report naming the slot of a public copy (found in
    the shared index by inode) @copies times."""
    c, r = hello()
    ifd, dfd = r["fds"]
    idx = index_slots(ifd)
    os.close(ifd)
    os.close(dfd)
    s = next((s for s in idx["slots"] if s["ino"] == SPEC["ino"]), None)
    if s is None:
        return {"error": "no slot of inode %d in the shared index" % SPEC["ino"]}
    body = struct.pack("=QQ", s["slot"], s["id"]) * SPEC["copies"]
    r = c.request("ACCESS", [("SLOTS", body)])
    c.close()
    return {"slot": s["slot"], "id": s["id"], "status": r["status"],
            "count": next((v for t, v in r["items"] if t == "COUNT"), None)}


out = globals()["mode_" + sys.argv[1]]()
if out is not None:
    print(json.dumps({"out": out, "blobs": BLOBS}))
'''


# ---------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------
class Results:
    def __init__(self):
        self.rows = []  # [kind, scenario, passed, failures, seconds, notes]
        self.cur = None

    def begin(self, kind, name):
        self.cur = [kind, name, 0, [], 0.0, []]
        self.rows.append(self.cur)
        self.t0 = time.time()

    def expect(self, cond, msg):
        if cond:
            self.cur[2] += 1
        else:
            self.cur[3].append(msg)
            print("  FAILED [%s] %s: %s" % (self.cur[0], self.cur[1], msg))
        return cond

    def note(self, msg):
        self.cur[5].append(msg)
        print("  [%s] %s: %s" % (self.cur[0], self.cur[1], msg))

    def end(self):
        self.cur[4] = time.time() - self.t0
        k, n, ok, fails, secs, _ = self.cur
        print("SCENARIO [%s] %-34s %s: %d checks passed, %d failed (%.1fs)" % (
            k, n, "PASS" if not fails else "FAIL", ok, len(fails), secs))


R = Results()


def scenario(kind, name, fn, *args):
    R.begin(kind, name)
    try:
        fn(*args)
    except Exception as e:  # a crashed scenario is a failure; the others still run
        R.expect(False, "scenario aborted: %s: %s\n%s" % (type(e).__name__, e,
                                                          traceback.format_exc()[-2500:]))
    R.end()


# ---------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------
CONTENT = {}       # path -> bytes, every file this test made
SECRETS = set()    # paths whose bytes nobody must never get
PUBLICS = set()    # paths every user may read
HIDDEN = {}        # name -> size: files the kernel would not even name to nobody
NAMES = set()      # every random file name made
_sizes = set()


def rn(prefix):
    return "%s_%s" % (prefix, os.urandom(5).hex())


def size_in(lo, hi):
    while True:
        n = int.from_bytes(os.urandom(4), "little") % (hi - lo) + lo
        if n not in _sizes:
            _sizes.add(n)
            return n


def write_file(path, mode, uid=0, gid=0, secret=False, size=None):
    data = os.urandom(size or (size_in(20000, 60000) if secret else size_in(1000, 15000)))
    with open(path, "wb") as f:
        f.write(data)
    os.chown(path, uid, gid)
    os.chmod(path, mode)
    CONTENT[path] = data
    NAMES.add(os.path.basename(path))
    (SECRETS if secret else PUBLICS).add(path)
    return path


def acl_xattr(entries):
    """The binary form of system.posix_acl_access (version 2)."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", t, p, i) for t, p, i in entries)


ACL_UNDEF = 0xFFFFFFFF


def deny_nobody_acl(path):
    """0644 plus user:nobody:--- (with the mask an ACL with a named user needs)."""
    os.setxattr(path, "system.posix_acl_access", acl_xattr([
        (0x01, 6, ACL_UNDEF), (0x02, 0, NOBODY), (0x04, 4, ACL_UNDEF), (0x10, 4, ACL_UNDEF),
        (0x20, 4, ACL_UNDEF)]))


class Tree:
    """A NAS mount's source: public files and root's secrets of every kind."""

    def __init__(self, root, consistency):
        self.root = root
        self.consistency = consistency
        os.makedirs(root)
        os.chmod(root, 0o755)
        self.pub = os.path.join(root, "pub")
        os.makedirs(self.pub)
        os.chmod(self.pub, 0o755)
        self.publics = [write_file(os.path.join(self.pub, rn("p") + ".bin"), 0o644)
                        for _ in range(2)]
        self.closed = os.path.join(root, rn("c"))
        os.makedirs(self.closed)
        os.chmod(self.closed, 0o700)
        s = {}
        s["0600"] = write_file(os.path.join(root, rn("s600") + ".bin"), 0o600, secret=True)
        s["0644 in 0700 dir"] = write_file(os.path.join(self.closed, rn("h") + ".bin"), 0o644,
                                           secret=True)
        HIDDEN[os.path.basename(s["0644 in 0700 dir"])] = len(CONTENT[s["0644 in 0700 dir"]])
        s["acl user:nobody:---"] = write_file(os.path.join(root, rn("acl") + ".bin"), 0o644,
                                              secret=True)
        deny_nobody_acl(s["acl user:nobody:---"])
        s["0604 root:nogroup"] = write_file(os.path.join(root, rn("g604") + ".bin"), 0o604,
                                            gid=NOGROUP, secret=True)
        s["0640 root:root"] = write_file(os.path.join(root, rn("s640") + ".bin"), 0o640,
                                         secret=True)
        self.secrets = s
        self.dirs = [root, self.pub, self.closed]


def run_as(user, args, env=None, timeout=120, **kw):
    return subprocess.run(AS[user] + list(args), capture_output=True, text=True,
                          timeout=timeout, env=env, **kw)


# ---------------------------------------------------------------------------
# daemons
# ---------------------------------------------------------------------------
ALL_DAEMONS = []


class UnitDaemon(Daemon):
    """granaryd as the systemd unit starts it: the service user with exactly
    CAP_DAC_READ_SEARCH, CAP_SETUID and CAP_SETGID (ambient)."""

    def __init__(self, workdir, mounts, name, socket_path, cache_dir, **settings):
        cache = dict(settings.pop("cache", {}))
        cache.update({"dir": cache_dir, "capacity": "48M"})
        super().__init__(workdir, mounts, name=name, socket=socket_path, cache=cache,
                         **settings)
        self.socket = socket_path
        self.cache_dir = cache_dir

    def start(self, wait=True, extra_env=None):
        logf = open(self.log, "ab")
        env = dict(os.environ)
        if extra_env:
            env.update(extra_env)
        self.proc = subprocess.Popen(UNIT_PREFIX + [GRANARYD, "--config", self.config],
                                     stdout=logf, stderr=subprocess.STDOUT, env=env)
        logf.close()
        if wait:
            self.wait_ready()
        return self


class Kind:
    """How daemons of one kind are made: 'root' or 'unit'."""

    def __init__(self, wd, name):
        self.wd = wd
        self.name = name
        self.uid = 0 if name == "root" else pwd.getpwnam(SVC).pw_uid
        if name == "unit":
            self.fs = os.path.join(wd.path, "unitfs")
            self.run = os.path.join(wd.path, "unit-run")
            os.makedirs(self.run, exist_ok=True)
            os.chown(self.run, self.uid, self.uid)
            os.chmod(self.run, 0o755)

    def daemon(self, name, mounts, **settings):
        name = "%s-%s" % (self.name, name)
        settings.setdefault("socket_mode", "0666")
        if self.name == "root":
            d = Daemon(self.wd.path, mounts, name=name, **settings)
            d.cache_dir = os.path.join(d.dir, "cache")
        else:
            sock = settings.pop("socket", os.path.join(self.run, name + ".sock"))
            d = UnitDaemon(self.wd.path, mounts, name, sock, os.path.join(self.fs, name),
                           **settings)
        ALL_DAEMONS.append(d)
        return d


def sanitizer_env(env):
    """In a sanitizer build, the leaks of the reader programs (python, cat) are
    not ours: only the daemon keeps leak detection (harness.preload_env)."""
    if ASAN_RUNTIME and env.get("LD_PRELOAD"):
        env["ASAN_OPTIONS"] = "detect_leaks=0:verify_asan_link_order=0"
    return env


def client_env(d, **extra):
    env = dict(os.environ)
    env["GRANARY_SOCKET"] = d.socket
    for k in ("LD_PRELOAD", "GRANARY_DISABLE", "GRANARY_FASTPATH", "GRANARY_DEBUG"):
        env.pop(k, None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return sanitizer_env(env)


class AttackError(Exception):
    pass


ATTACK_PATH = None


def attack(d, mode, spec, user="nobody", timeout=180):
    spec = dict(spec, socket=d.socket, preload=SHIM_PRELOAD, cli=GRANARY)
    p = subprocess.run(AS[user] + [DEBIAN_PYTHON, ATTACK_PATH, mode, json.dumps(spec)],
                       capture_output=True, text=True, timeout=timeout, env=client_env(d))
    if p.returncode != 0:
        raise AttackError("attacker %s as %s exited %d:\n%s" % (mode, user, p.returncode,
                                                                p.stderr[-3000:]))
    doc = json.loads(p.stdout)
    return doc["out"], [(w, base64.b64decode(b)) for w, b in doc["blobs"]]


def attack_bg(d, mode, spec, user="nobody"):
    spec = dict(spec, socket=d.socket, preload=SHIM_PRELOAD, cli=GRANARY)
    return subprocess.Popen(AS[user] + [DEBIAN_PYTHON, ATTACK_PATH, mode, json.dumps(spec)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=client_env(d))


def read_line(proc, timeout):
    """The first line @proc prints, waiting at most @timeout seconds."""
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    end = time.time() + timeout
    while time.time() < end:
        if sel.select(timeout=max(0.0, end - time.time())):
            return proc.stdout.readline()
    return None


def poll(fn, timeout, interval=0.2):
    """fn() until it returns something true, at most @timeout seconds:
    (value, seconds) or (None, seconds)."""
    t0 = time.time()
    while True:
        v = fn()
        if v:
            return v, time.time() - t0
        if time.time() - t0 > timeout:
            return None, time.time() - t0
        time.sleep(interval)


def counters(d):
    return d.status()["counters"]


def log_lines(d, *needles, n=12):
    out = []
    try:
        with open(d.log, errors="replace") as f:
            for line in f:
                if any(x in line for x in needles):
                    out.append(line.rstrip())
    except OSError:
        pass
    return out[-n:]


def cached(d, path):
    c = Conn(d.socket, timeout=30)
    r = c.request("OPEN", path=path, flags=1)
    for fd in r.fds:
        os.close(fd)
    c.close()
    return r.status == 0


def ls_states(d, path):
    p = d.cli("ls", "--json", path, timeout=60)
    if p.returncode != 0:
        return {"error": p.stderr.strip()}
    return {e["name"]: e.get("state") for e in json.loads(p.stdout)}


# ---------------------------------------------------------------------------
# checks of what nobody got
# ---------------------------------------------------------------------------
def secret_chunks():
    out = []
    for p in sorted(SECRETS):
        data = CONTENT[p]
        for off in list(range(0, len(data) - 32, 2048)) + [len(data) - 32]:
            out.append((p, off, data[off:off + 32]))
    return out


def check_no_secret_bytes(blobs, what):
    """No blob equals a secret, and no 32-byte piece of any secret appears in any."""
    chunks = secret_chunks()
    secret_shas = {hashlib.sha256(CONTENT[p]).hexdigest(): p for p in SECRETS}
    leaks = []
    for w, data in blobs:
        h = hashlib.sha256(data).hexdigest()
        if h in secret_shas:
            leaks.append("%s returned the whole of %s" % (w, secret_shas[h]))
            continue
        for p, off, ch in chunks:
            if ch in data:
                leaks.append("%s holds bytes %d.. of %s" % (w, off, p))
                break
    R.expect(not leaks, "%s: secret bytes reached nobody: %s" % (what, leaks[:10]))
    return not leaks


def secret_sha(sha):
    for p in SECRETS:
        if hashlib.sha256(CONTENT[p]).hexdigest() == sha:
            return p
    return None


# ---------------------------------------------------------------------------
# the scenarios
# ---------------------------------------------------------------------------
class Env:
    """Everything one daemon kind's scenarios share."""


def s1_secrets(E):
    d = E.d
    trees = E.trees
    paths = []
    for t in trees:
        paths += list(t.secrets.values())
    links = E.links
    paths += [links["l_in"], links["l_dir"] + "/" + os.path.basename(
        trees[0].secrets["0644 in 0700 dir"]), links["l_out"], links["l_out_rel"]]
    paths += E.web_files
    dirs = []
    for t in trees:
        dirs += t.dirs
    dirs += [E.mine, links["l_dir"], WEB]
    publics = [p for t in trees for p in t.publics]
    spec = {"paths": paths, "dirs": dirs, "publics": publics, "pid": d.pid,
            "cache_dir": d.cache_dir, "warm_dirs": [trees[0].root, trees[2].root, WEB]}
    out, blobs = attack(d, "probe", spec)
    E.probe = out
    kv = out["kernel"]

    # the test's own premise: the kernel refuses every secret to nobody
    for p in paths:
        if p.startswith(WEB):
            continue
        if kv["read"].get(p) == "ok":
            raise Fail("setup: the kernel lets nobody read %s; not a secret" % p)
    R.note("kernel refuses nobody every secret: %s" % sorted(set(
        v for p, v in kv["read"].items() if p in paths)))

    check_no_secret_bytes(blobs, "everything nobody read (shim, CLI, replies, index, "
                          "copies by id, /proc)")

    # shim: cat and python
    for p, r in out["shim_cat"].items():
        R.expect(r["rc"] != 0 and r["stdout_len"] == 0,
                 "cat %s through the shim as nobody: exit %s, %d bytes" % (
                     p, r["rc"], r["stdout_len"]))
    py = out["shim_py"]
    if R.expect("error" not in py, "python reader through the shim crashed: %s" % py.get("error")):
        for p in paths:
            v = py.get(p)
            R.expect(v is not None and v[0] == "err" and v[1] in ("EACCES", "EPERM", "ENOENT"),
                     "python open(%s).read() as nobody through the shim: %s" % (p, v))

    # CLI
    for r in out["cli"]:
        args = r["args"]
        verb = args[1]
        target = args[-1]
        if verb == "warm" and target in paths:
            R.expect(r["rc"] not in (0, "timeout"),
                     "granary warm %s as nobody exited %s" % (target, r["rc"]))
        if r["rc"] == "timeout":
            R.expect(False, "granary %s timed out" % " ".join(args[1:]))
            continue
        if verb == "stat" and kv["stat"].get(target) is not None and \
                isinstance(kv["stat"][target], str):
            R.expect(r["rc"] != 0, "granary stat %s as nobody answered though the kernel "
                     "refuses nobody stat: %s" % (target, r["stdout"][:300]))
        if verb == "ls" and r["rc"] == 0:
            try:
                ents = json.loads(r["stdout"])
            except ValueError:
                ents = []
            names = [e.get("name") for e in ents]
            sizes = [e.get("size") for e in ents]
            allowed = kv["list"].get(target)
            if target in kv["list"]:
                R.expect(isinstance(allowed, list) and set(names) <= set(allowed),
                         "granary ls %s as nobody listed %s; the kernel lists %s" % (
                             target, names, allowed))
            elif target in kv["stat"]:
                R.expect(not isinstance(kv["stat"][target], str),
                         "granary ls %s as nobody answered %s; the kernel refuses stat (%s)"
                         % (target, names, kv["stat"][target]))
            leaked = [s for s in sizes if s in HIDDEN.values()]
            R.expect(not leaked, "granary ls %s showed the size of a hidden file: %s" % (
                target, leaked))
        if verb == "ls" and target.startswith(WEB):
            R.expect(r["rc"] != 0, "granary ls %s as nobody (not in allow_uids) exited 0"
                     % target)
        if verb in ("ls", "status") or (verb == "warm" and target in spec["warm_dirs"]):
            # (a name the caller gave may come back in an error message)
            text = r["stdout"] + r["stderr"]
            found = [n for n in HIDDEN if n in text and n not in target]
            R.expect(not found, "granary %s as nobody named hidden files %s" % (
                " ".join(args[1:]), found))

    # raw protocol
    for rec in out["raw"]:
        p = rec["path"]
        typ = rec["type"]
        if rec.get("eof"):
            R.expect(False, "%s %s: the daemon closed the connection" % (typ, p))
            continue
        R.expect(rec["nfds"] == 0 or typ == "OPEN" and rec["status"] == 0,
                 "%s %s carried %d descriptors" % (typ, p, rec["nfds"]))
        leaked = [s for s in rec["sizes"] if s in HIDDEN.values()]
        R.expect(not leaked, "%s %s as nobody: SIZE %s is a hidden file's size" % (
            typ, p, leaked))
        if p and p.startswith(WEB):
            R.expect(rec["status"] == -errno.EACCES,
                     "%s %s as nobody (not in allow_uids): status %s %r" % (
                         typ, p, rec["status"], rec["errmsg"]))
            continue
        if typ in ("OPEN", "WARM") and p in paths:
            R.expect(rec["status"] in REFUSED and rec["nfds"] == 0,
                     "%s (%s) %s as nobody: status %s %r, %d descriptors" % (
                         typ, rec["what"], p, rec["status"], rec["errmsg"], rec["nfds"]))
            if typ == "OPEN" and rec["what"] == "open":
                R.expect(bool(rec["errmsg"]), "a refused OPEN of %s has no message" % p)
        if typ == "STAT" and isinstance(kv["stat"].get(p), str):
            R.expect(rec["status"] != 0 and not rec["sizes"],
                     "STAT %s as nobody: status %s sizes %s; the kernel refuses stat (%s)" % (
                         p, rec["status"], rec["sizes"], kv["stat"][p]))
        if typ in ("LIST", "LS"):
            if p in kv["list"]:
                allowed = kv["list"][p]
                if isinstance(allowed, str):
                    R.expect(rec["status"] != 0 and not rec["names"],
                             "%s %s as nobody: status %s names %s; the kernel refuses (%s)" % (
                                 typ, p, rec["status"], rec["names"], allowed))
                else:
                    R.expect(set(rec["names"]) <= set(allowed),
                             "%s %s as nobody named %s the kernel does not list" % (
                                 typ, p, sorted(set(rec["names"]) - set(allowed))))
            elif isinstance(kv["stat"].get(p), str):
                R.expect(rec["status"] != 0 and not rec["names"],
                         "%s of the file %s as nobody: status %s names %s; the kernel refuses "
                         "stat (%s)" % (typ, p, rec["status"], rec["names"], kv["stat"][p]))
            raw = base64.b64decode(rec["raw"])
            found = [n for n in HIDDEN if n.encode() in raw and n not in p]
            R.expect(not found, "%s %s as nobody named hidden files %s" % (typ, p, found))
        if typ == "STATUS":
            raw = base64.b64decode(rec["raw"])
            found = [n for n in NAMES if n.encode() in raw]
            R.expect(not found, "STATUS as nobody names files: %s" % found)

    # the fast path: the index and the objects/ descriptor
    fast = out["fast"]
    if R.expect("index" in fast, "HELLO gave nobody no index: %s" % fast.get("hello")):
        slots = fast["index"]["slots"]
        secret_inos = {os.stat(p).st_ino for p in SECRETS if os.path.exists(p)}
        bad = [s for s in slots if s["mount"] < 3 and s["ino"] in secret_inos]
        R.expect(not bad, "the shared index lists copies of secrets: %s" % bad[:5])
        web = [s for s in slots if s["mount"] == 3]
        R.expect(not web, "the shared index lists copies of the allow-listed http mount: %s"
                 % web[:5])
        R.note("index: %d slots of %d used; %d copies readable by id through the HELLO "
               "directory; ../private opened %d times (errors %s); .. probes %s" % (
                   len(slots), fast["index"]["nslots"], len(fast["brute"]),
                   len(fast["private"]), fast["private_errors"], fast["dotdot"]))
    for s in fast["slot_opens"]:
        R.expect(not secret_sha(s["sha"] or ""), "slot id %d opened to a secret" % s["id"])
    for oid, sha in fast["brute"].items():
        R.expect(not secret_sha(sha), "objects/ id %s holds secret %s" % (oid, secret_sha(sha)))
    public_shas = {hashlib.sha256(CONTENT[p]).hexdigest() for p in PUBLICS}
    odd = {oid: sha for oid, sha in fast["brute"].items() if sha not in public_shas}
    R.expect(not odd, "objects/ ids readable by nobody hold something other than public "
             "files: %s" % odd)
    R.expect(not fast["private"], "nobody opened private copies through the objects/ "
             "descriptor: %s" % fast["private"][:5])
    opened = {k: v for k, v in fast["dotdot"].items()
              if v and v.startswith("opened") and k not in (".",)}
    R.expect(not opened, "nobody got out of objects/ through its descriptor: %s" % opened)
    pr = out["proc"]
    R.expect(not pr["opened"], "nobody opened the daemon's files through /proc or the cache "
             "directory: %s" % dict(list(pr["opened"].items())[:8]))
    R.note("/proc and cache paths: all refused (%s); fd list: %s" % (
        pr["errors"], pr["fd_list"] if isinstance(pr["fd_list"], str) else "LISTED"))
    E.catalog_open = pr["catalog"]
    # not promised either way (docs/security.md): whether nobody learns that root
    # cached a file it may stat but not read
    told = sorted(set(os.path.basename(rec["path"]) for rec in out["raw"]
                      if rec["type"] in ("STAT", "LS") and rec.get("status") == 0 and
                      rec["path"] in SECRETS and
                      (["CACHED", 1] in rec["items"] or ["STATE", 1] in rec["items"])))
    if told:
        R.note("observation: STAT/LS tell nobody that root cached %d files it may not read "
               "(cache state of a stat-able file): %s" % (len(told), told[:4]))

    # public files are still read, through the fast path
    c0 = counters(d)
    pub = [p for t in trees for p in t.publics]
    got, blobs2 = attack(d, "pyread", {"paths": pub})
    for p in pub:
        v = got.get(p)
        R.expect(v and v[0] == "ok" and v[1] == hashlib.sha256(CONTENT[p]).hexdigest(),
                 "nobody reading public %s through the shim: %s" % (p, v and v[:1] + v[2:]))

    def grown():
        c = counters(d)
        return c if c["fast_hits"] - c0["fast_hits"] >= len(pub) else None
    c1, _ = poll(grown, 10, 0.05)
    c1 = c1 or counters(d)
    R.expect(c1["fast_hits"] - c0["fast_hits"] >= len(pub),
             "nobody's %d public reads counted %d fast hits" % (
                 len(pub), c1["fast_hits"] - c0["fast_hits"]))
    R.note("nobody read %d public files: %d fast hits" % (len(pub),
                                                          c1["fast_hits"] - c0["fast_hits"]))


def s2_index(E):
    d = E.d
    out, _ = attack(d, "index_write", {})
    R.note("index write attempts as nobody: %s" % out)
    R.expect("error" not in out, "index write attacker: %s" % out.get("error"))
    for k, v in out.items():
        if k.startswith(("mmap_write", "write", "truncate", "mprotect")):
            R.expect(v in ("EPERM", "EACCES", "EBADF", "EINVAL") or v.startswith("mmap read"),
                     "%s on the shared index as nobody: %s" % (k, v))
    for k in ("mmap_write_rw", "write_rw", "write2_rw"):
        if k in out:
            R.expect(out[k] == "EPERM", "%s: %s (the seal should answer EPERM)" % (k, out[k]))
    R.expect(out.get("unchanged") is True, "the index holds what nobody tried to write: %s"
             % out.get("unchanged"))
    p = E.trees[0].publics[0]
    r = subprocess.run(["cat", p], capture_output=True, timeout=60,
                       env=client_env(d, LD_PRELOAD=SHIM_PRELOAD))
    R.expect(r.returncode == 0 and r.stdout == CONTENT[p],
             "root's cat of %s through the shim after nobody's writes: exit %d, %s" % (
                 p, r.returncode, "same bytes" if r.stdout == CONTENT[p] else "OTHER BYTES"))


def s3_revocation(E):
    d = E.d
    revs = E.revs  # consistency -> path
    sha = {c: hashlib.sha256(CONTENT[p]).hexdigest() for c, p in revs.items()}
    # nobody reads each through the fast path and finds the copy by id
    got, _ = attack(d, "pyread", {"paths": list(revs.values())})
    for c, p in revs.items():
        R.expect(got.get(p, [None])[0] == "ok" and got[p][1] == sha[c],
                 "before revocation, nobody could not read public %s (%s): %s" % (
                     p, c, got.get(p, [None])[:1]))
    br, _ = attack(d, "brute", {"maxid": E.nobj})
    for c in revs:
        R.expect(sha[c] in br["found"], "before revocation the public copy of the %s file "
                 "is not reachable by id (test premise)" % c)
    for p in revs.values():
        os.chmod(p, 0o600)
        SECRETS.add(p)
        PUBLICS.discard(p)
    t0 = time.time()
    # strict: the very next open through the shim is refused
    r, blobs = attack(d, "shimcat", {"paths": [revs["strict"]]})
    v = r[revs["strict"]]
    R.expect(v["rc"] != 0 and v["stdout_len"] == 0,
             "strict: after chmod 0600 nobody's cat through the shim: exit %s, %d bytes" % (
                 v["rc"], v["stdout_len"]))
    check_no_secret_bytes(blobs, "strict revocation")
    # every consistency: the copy leaves the public tree within access.recheck
    left = {}

    def gone():
        br, blobs = attack(d, "brute", {"maxid": E.nobj})
        E.revoke_blobs = blobs
        for c in revs:
            if c not in left and sha[c] not in br["found"]:
                left[c] = time.time() - t0
        return len(left) == len(revs)
    ok, secs = poll(gone, 20, 0.3)
    for c in revs:
        R.expect(c in left, "%s: 20 s after chmod 0600 (access.recheck 2s) nobody still "
                 "opens the copy by id through objects/" % c)
    R.note("copies left the public tree after %s s (recheck 2s)" % {
        c: round(s, 1) for c, s in left.items()})
    # immutable and ttl: opens through the shim are refused once the copy left the index
    refused = {}

    def shim_refused():
        r, blobs = attack(d, "shimcat", {"paths": [revs["immutable"], revs["ttl"]]})
        for c in ("immutable", "ttl"):
            v = r[revs[c]]
            if c not in refused and v["rc"] != 0 and v["stdout_len"] == 0:
                refused[c] = time.time() - t0
        E.last_shim = r
        return len(refused) == 2
    poll(shim_refused, 20, 0.3)
    R.expect("immutable" in refused, "immutable: 20 s after chmod 0600 nobody's cat through "
             "the shim still gets the bytes: %s" % E.last_shim.get(revs["immutable"]))
    R.note("shim refusals after chmod: %s (ttl 60s: %s)" % (
        {c: round(s, 1) for c, s in refused.items()},
        "refused" if "ttl" in refused else "still served"))


def s4_hint(E):
    d = E.d
    ttl = E.trees[1]
    hs = E.hint_secret
    pubs = E.hint_publics
    secrets = [hs, ttl.secrets["0600"], ttl.secrets["0644 in 0700 dir"]]
    # nobody's order: a public file it reads first, then root's secrets (one
    # of them not cached yet), then public files for the prefetcher to fetch
    order = [pubs[0]] + secrets + pubs[1:]
    ds = E.dataset[ttl.root]
    reqs = [{"type": "HINT", "what": "hint ttl", "items": [["DATASET", ds], ["FLAGS", 3]] +
             [["PATH", p] for p in order]},
            {"type": "EPOCH", "what": "epoch ttl", "items": [["DATASET", ds]]},
            {"type": "OPEN", "what": "open hinted public", "items": [["PATH", pubs[0]]]}]
    out, blobs = attack(d, "raw", {"requests": reqs})
    R.expect(out[0]["status"] == 0, "nobody's HINT of an unsteered dataset (%s): %s %r" % (
        ds, out[0]["status"], out[0]["errmsg"]))
    R.expect(out[1]["status"] == 0, "nobody's EPOCH of the dataset it steers: %s %r" % (
        out[1]["status"], out[1]["errmsg"]))
    R.expect(out[2]["status"] == 0, "nobody's OPEN of hinted public %s: %s %r" % (
        pubs[0], out[2]["status"], out[2]["errmsg"]))
    # the prefetcher runs nobody's order: the public files after the secrets come in
    got, secs = poll(lambda: all(cached(d, p) for p in pubs[1:]), 10, 0.1)
    hint = next((m["hint"] for m in d.status()["mounts"] if m["path"] == ttl.root), {})
    R.note("the public files after root's secrets in nobody's order: %s; hint status %s" % (
        "prefetched after %.1fs" % secs if got else "NOT prefetched within 10s",
        {k: v for k, v in hint.items() if k.startswith(("prefetch", "position", "phase"))}))
    R.expect(not cached(d, hs), "root's 0600 file that only nobody's order named was "
             "fetched into the cache (prefetches are checked as the order's sender)")
    reqs = []
    for _ in range(2):
        for p in secrets:
            reqs.append({"type": "OPEN", "what": "open hinted secret", "items": [["PATH", p]]})
    out, blobs2 = attack(d, "raw", {"requests": reqs})
    for rec in out:
        R.expect(rec["status"] in REFUSED and rec["nfds"] == 0,
                 "nobody's OPEN of hinted secret %s: status %s, %d descriptors" % (
                     rec["path"], rec["status"], rec["nfds"]))
    r, blobs3 = attack(d, "shimcat", {"paths": secrets + secrets})
    for p, v in r.items():
        R.expect(v["rc"] != 0 and v["stdout_len"] == 0,
                 "cat of hinted secret %s through the shim: exit %s, %d bytes" % (
                     p, v["rc"], v["stdout_len"]))
    check_no_secret_bytes(blobs + blobs2 + blobs3, "HINT then reads")
    R.expect(not cached(d, hs), "root's 0600 file nobody hinted and tried to read is cached")
    # the allow-listed object-store mount: HINT refused with EACCES
    out, _ = attack(d, "raw", {"requests": [
        {"type": "HINT", "items": [["DATASET", E.dataset[WEB]], ["FLAGS", 3]] +
         [["PATH", p] for p in E.web_files]}]})
    R.expect(out[0]["status"] == -errno.EACCES,
             "nobody's HINT on %s (allow_uids [0, 1]): %s %r" % (WEB, out[0]["status"],
                                                                 out[0]["errmsg"]))
    # a refused HINT leaves the dataset to those allowed (uid 1 is, and is no admin)
    out, _ = attack(d, "raw", {"requests": [
        {"type": "HINT", "items": [["DATASET", E.dataset[WEB]], ["FLAGS", 3]] +
         [["PATH", p] for p in E.web_files]}]}, user="daemon")
    R.expect(out[0]["status"] == 0,
             "after nobody's refused HINT on %s, uid 1 (in allow_uids) may not hint it: %s %r"
             % (WEB, out[0]["status"], out[0]["errmsg"]))


def s5_admin(E):
    d = E.d
    env = client_env(d)
    before = counters(d)
    rule = "is for root or a group in access.admin_gids; uid 65534 is neither"
    for args in (["evict", "/"], ["pin", "/"], ["unpin", "/"], ["verify"],
                 ["evict", E.trees[0].root], ["pin", E.trees[2].root]):
        p = run_as("nobody", [GRANARY] + args, env=env)
        R.expect(p.returncode != 0 and rule in p.stderr,
                 "granary %s as nobody: exit %d, stderr %r" % (" ".join(args), p.returncode,
                                                               p.stderr.strip()[:300]))
    reqs = [{"type": "EVICT", "items": [["PATH", "/"]]},
            {"type": "PIN", "items": [["PATH", "/"]]},
            {"type": "PIN", "what": "unpin", "items": [["PATH", "/"], ["FLAGS", 1]]},
            {"type": "VERIFY", "items": []},
            {"type": "EVICT", "items": [["PATH", E.trees[1].secrets["0600"]]]}]
    out, _ = attack(d, "raw", {"requests": reqs})
    for rec in out:
        R.expect(rec["status"] == -errno.EPERM and "access.admin_gids" in rec["errmsg"],
                 "raw %s (%s) as nobody: %s %r" % (rec["type"], rec["what"], rec["status"],
                                                   rec["errmsg"]))
    # nothing of root's was evicted or pinned
    after = counters(d)
    R.expect(after["evictions"] == before["evictions"], "evictions went from %d to %d" % (
        before["evictions"], after["evictions"]))
    bad = {}
    for t in E.trees:
        for dd in t.dirs:
            st = ls_states(d, dd)
            for name, state in st.items():
                full = os.path.join(dd, name)
                if full in E.warmed and state != "cached":
                    bad[full] = state
    for p in E.web_files:
        if not cached(d, p):
            bad[p] = "not cached"
    R.expect(not bad, "after nobody's admin verbs root's files are not cached-and-unpinned: "
             "%s" % bad)
    # DROP: nobody may not write root's files
    for p in (E.trees[0].publics[0], E.trees[0].secrets["0600"], E.web_files[0]):
        r = run_as("nobody", [GRANARY, "drop", p], env=env)
        R.expect(r.returncode != 0, "granary drop %s as nobody (who cannot write it) "
                 "exited 0: %s" % (p, r.stdout + r.stderr))
        R.expect(cached(d, p), "%s is no longer cached after nobody's drop" % p)
    out, _ = attack(d, "raw", {"requests": [{"type": "DROP", "items": [["PATH",
                                                                        E.trees[2].publics[0]]]}]})
    R.expect(out[0]["status"] in (-errno.EPERM, -errno.EACCES),
             "raw DROP of root's file as nobody: %s %r" % (out[0]["status"], out[0]["errmsg"]))
    R.expect(cached(d, E.trees[2].publics[0]), "raw DROP by nobody removed root's copy")
    # positive control: nobody may drop its own file
    r = run_as("nobody", [GRANARY, "drop", E.own], env=env)
    R.expect(r.returncode == 0, "nobody may not drop its own file %s: %s" % (
        E.own, r.stderr.strip()))
    # EPOCH: root steers the immutable dataset; nobody may not
    r = d.cli("epoch", "--path", E.trees[2].root)
    R.expect(r.returncode == 0, "root's epoch: %s" % r.stderr)
    r = run_as("nobody", [GRANARY, "epoch", "--path", E.trees[2].root], env=env)
    R.expect(r.returncode != 0 and "steered by uid 0" in r.stderr,
             "nobody's epoch of a dataset root steered just now: exit %d, %r %r" % (
                 r.returncode, r.stdout.strip(), r.stderr.strip()))
    out, _ = attack(d, "raw", {"requests": [{"type": "EPOCH", "items": [
        ["DATASET", E.dataset[E.trees[2].root]]]}]})
    R.expect(out[0]["status"] == -errno.EPERM,
             "raw EPOCH as nobody of a dataset root steered: %s %r" % (out[0]["status"],
                                                                       out[0]["errmsg"]))


def s6_symlinks(E):
    # the probe of scenario 1 read and listed the links; here what it got for them
    out = E.probe
    links = set(E.links.values())
    for rec in out["raw"]:
        if rec["path"] in links or (rec["path"] or "").startswith(E.links["l_dir"]):
            if rec["type"] in ("OPEN", "WARM"):
                R.expect(rec.get("status") in REFUSED and rec.get("nfds") == 0,
                         "%s of nobody's symlink %s: %s %r" % (rec["type"], rec["path"],
                                                               rec.get("status"),
                                                               rec.get("errmsg")))
            if rec["type"] in ("LIST", "LS") and rec["path"] == E.links["l_dir"]:
                R.expect(rec.get("status") != 0 and not rec.get("names"),
                         "%s through nobody's symlink to a 0700 directory: %s %s" % (
                             rec["type"], rec.get("status"), rec.get("names")))
    for rec in out["raw"]:
        if rec["path"] == E.mine and rec["type"] in ("LIST", "LS"):
            hid = [s for s in rec.get("sizes", []) if s in HIDDEN.values()]
            R.expect(not hid, "%s of nobody's directory shows the size of what its links "
                     "lead to: %s" % (rec["type"], hid))
    for p in links:
        v = out["shim_cat"].get(p)
        if v:
            R.expect(v["rc"] != 0 and v["stdout_len"] == 0, "cat %s as nobody: %s" % (p, v))
    R.note("symlink reads and listings as nobody: covered by the leak checks of scenario 1")


def startup_refusals(kind, wd):
    """A mount source nobody could change; then the same with allow_unsafe_path."""
    for how in ("owned by nobody", "world-writable, not sticky"):
        base = os.path.join(wd.path, rn("unsafe"))
        os.makedirs(os.path.join(base, "data"))
        os.chmod(os.path.join(base, "data"), 0o755)
        if how == "owned by nobody":
            os.chown(base, NOBODY, NOGROUP)
            os.chmod(base, 0o755)
        else:
            os.chmod(base, 0o777)
        src = os.path.join(base, "data")
        d = kind.daemon(rn("unsafe"), [{"path": src, "backend": "posix"}])
        d.start(wait=False)
        try:
            rc = d.proc.wait(20)
        except subprocess.TimeoutExpired:
            rc = None
        log = d.logtext()
        R.expect(rc not in (None, 0) and "allow_unsafe_path" in log,
                 "a mount whose source component is %s: exit %s, log %r" % (
                     how, rc, log[-600:]))
        if rc is None:
            d.kill9()
        R.note("%s: exit %s, %s" % (how, rc, (log_lines(d, "allow_unsafe_path") or [""])[-1]))
        d2 = kind.daemon(rn("unsafe-ok"), [{"path": src, "backend": "posix",
                                             "allow_unsafe_path": True}])
        try:
            d2.start()
            R.expect(True, "")
            d2.stop()
        except Fail as e:
            R.expect(False, "with allow_unsafe_path: true the daemon did not start: %s" % e)


def s7_flood(E):
    d = E.d
    pub = E.trees[0].publics[0]
    missing = [os.path.join(E.trees[0].root, rn("missing") + ".bin") for _ in range(3)]
    paths = [pub] + missing + [E.trees[0].secrets["0644 in 0700 dir"]]

    def measure(n=15, timeout=30):
        lat = {"status": [], "open": [], "cli": []}
        errs = []
        for _ in range(n):
            for what in ("status", "open"):
                t0 = time.time()
                try:
                    c = Conn(d.socket, timeout=timeout)
                    if what == "status":
                        r = c.request("STATUS")
                    else:
                        r, data = c.read(pub)
                        if r.status == 0 and data != CONTENT[pub]:
                            errs.append("OPEN gave other bytes")
                    c.close()
                    if r.status != 0:
                        errs.append("%s: %d %s" % (what, r.status, r.errmsg))
                except OSError as e:
                    errs.append("%s: %s" % (what, e))
                    return lat, errs
                lat[what].append(time.time() - t0)
        for _ in range(3):
            t0 = time.time()
            p = d.cli("status", timeout=timeout)
            if p.returncode != 0:
                errs.append("granary status: %s" % p.stderr)
            lat["cli"].append(time.time() - t0)
        return lat, errs

    def fmt(xs):
        return "median %.1f ms, max %.1f ms" % (statistics.median(xs) * 1e3, max(xs) * 1e3)

    base, errs = measure()
    R.expect(not errs, "baseline requests failed: %s" % errs)
    ubase, _ = attack(d, "measure", {"n": 10, "timeout": 30, "path": pub}, user="daemon")
    flood = attack_bg(d, "flood", {"n": 5000, "conns": 4, "busy": 4, "paths": paths,
                                   "send_for": 20})
    try:
        line = read_line(flood, 60)
        R.expect(line is not None, "the flood did not start within 60 s: %s" % (
            flood.stderr.read() if flood.poll() is not None else ""))
        info = json.loads(line) if line else {"sent": []}
        R.note("nobody sent %s OPENs over 4 connections without reading a reply, and keeps "
               "4 more connections busy with pipelined OPENs" % info["sent"])
        during, errs = measure()
        R.expect(not errs, "root's requests during the flood failed: %s" % errs)
        R.expect(len(during["status"]) == 15 and len(during["open"]) == 15,
                 "not every root request was answered during the flood")
        udur, _ = attack(d, "measure", {"n": 10, "timeout": 30, "path": pub}, user="daemon")
        R.expect(not udur["errors"], "uid 1's requests during the flood failed: %s" %
                 udur["errors"])
        for what in ("status", "open", "cli"):
            if base[what] and during[what]:
                R.note("root %-6s baseline %s; during the flood %s; added: median %+.1f ms, "
                       "max %+.1f ms" % (
                           what, fmt(base[what]), fmt(during[what]),
                           (statistics.median(during[what]) - statistics.median(base[what])) * 1e3,
                           (max(during[what]) - statistics.median(base[what])) * 1e3))
        for what in ("status", "open"):
            if ubase[what] and udur[what]:
                R.note("uid 1  %-6s baseline %s; during the flood %s; added: median %+.1f ms" % (
                    what, fmt(ubase[what]), fmt(udur[what]),
                    (statistics.median(udur[what]) - statistics.median(ubase[what])) * 1e3))
    finally:
        try:
            rest = flood.communicate(input="", timeout=60)[0]
        except subprocess.TimeoutExpired:
            flood.kill()
            rest = flood.communicate()[0]
    R.note("nobody's busy connections had %s" % (rest.strip() or "no answer count"))
    R.expect(d.alive(), "the daemon died under the flood")
    st = counters(d)
    R.note("daemon after the flood: requests %d, inflight %d" % (st["requests"], st["inflight"]))


def s7_limits(kind, trees):
    """limits.connections_per_uid and limits.idle_timeout, on a daemon of their own."""
    d = kind.daemon("limits", [{"path": trees[0].root, "backend": "posix"}],
                    limits={"connections_per_uid": 8, "idle_timeout": "2s"})
    d.start()
    t0 = time.time()
    proc = attack_bg(d, "conns", {"n": 12})
    try:
        line = read_line(proc, 60)
        res = json.loads(line) if line else []
        R.expect(len(res) == 12, "the connection attacker reported %s" % line)
        ok = [r for r in res if r.get("status") == 0]
        refused = [r for r in res if r.get("status") == -errno.EUSERS]
        R.expect(len(ok) == 8, "%d of nobody's 12 connections were served (limit 8): %s" % (
            len(ok), res))
        R.expect(len(refused) == 4 and all(
            "too many connections of this user (limit 8)" in r.get("errmsg", "") and
            r.get("then") in ("eof", "ECONNRESET") for r in refused),
            "connections over the limit: %s" % res[8:])
        resets = sum(1 for r in refused if r.get("reset_first"))
        if resets:
            R.note("%d of the 4 refused connections saw ECONNRESET before the error reply "
                   "(the daemon closed with their HELLO unread)" % resets)
        # what a user sees: the CLI over the limit
        p = run_as("nobody", [GRANARY, "status"], env=client_env(d), timeout=30)
        R.expect(p.returncode != 0 and "too many connections" in p.stderr,
                 "granary status as nobody over its connection limit: exit %d, stderr %r" % (
                     p.returncode, p.stderr.strip()[:300]))
        # root and another user still connect while nobody holds its 8
        c = Conn(d.socket, timeout=10)
        r = c.request("HELLO")
        c.close()
        R.expect(r.status == 0, "root could not connect while nobody held its limit")
        out, _ = attack(d, "raw", {"requests": [{"type": "STAT", "items": [
            ["PATH", trees[0].publics[0]]]}]}, user="daemon")
        R.expect(out[0]["status"] == 0, "uid 1 was refused while nobody held its limit: %s"
                 % out[0])
    finally:
        try:
            proc.stdin.close()
        except OSError:
            pass
        proc.wait(30)
    elapsed = time.time() - t0
    lines = log_lines(d, "connection refused uid=65534", n=1000)
    R.expect(1 <= len(lines) <= int(elapsed) + 2,
             "%d log lines for 4 refused connections over %.1fs (one a second expected): %s" %
             (len(lines), elapsed, lines[:5]))
    R.note("connections over the limit: %d refused; log: %s" % (len(lines), lines[:1]))
    # the idle timeout
    out, _ = attack(d, "idle", {"wait": 15})
    R.expect(out["hello"] == 0 and out["what"] in ("eof", "ECONNRESET"),
             "an idle connection (idle_timeout 2s) after 15 s: %s" % out)
    R.note("idle connection closed after %.1f s (idle_timeout 2s)" % out["after"])
    emfile(d)
    d.stop()


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def nofile(d):
    with open("/proc/%d/limits" % d.pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise Fail("no open files limit in /proc/%d/limits" % d.pid)


def set_nofile(d, soft, hard):
    """prlimit(2) on the daemon, as its own user (root may lack the right to
    change a process of another user holding capabilities)."""
    who = UNIT_PREFIX[:4] if isinstance(d, UnitDaemon) else []
    p = subprocess.run(who + [DEBIAN_PYTHON, "-c", "import resource, sys; resource.prlimit("
                              "int(sys.argv[1]), resource.RLIMIT_NOFILE, (int(sys.argv[2]), "
                              "int(sys.argv[3])))", str(d.pid), str(soft), str(hard)],
                       capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        raise Fail("prlimit of granaryd failed: %s" % p.stderr[-500:])


def emfile(d):
    """Out of descriptors: accepts pause (no spinning), one log line a second."""
    import socket as so
    nfd = len(os.listdir("/proc/%d/fd" % d.pid))
    old = nofile(d)
    set_nofile(d, nfd + 8, old[1])
    held = []
    try:
        for _ in range(40):
            s = so.socket(so.AF_UNIX, so.SOCK_SEQPACKET)
            s.settimeout(2)
            try:
                s.connect(d.socket)
            except OSError:
                s.close()
                break
            held.append(s)
        line, secs = poll(lambda: log_lines(d, "pausing accepts"), 10, 0.1)
        R.expect(line, "no 'pausing accepts' log line with the daemon out of descriptors")
        c0, t0 = cpu_s(d.pid), time.time()
        # a window to see whether the loop spins on EMFILE (a measurement)
        time.sleep(1.0)
        cpu = (cpu_s(d.pid) - c0) / (time.time() - t0)
        R.expect(cpu < 0.5, "granaryd used %.0f%% of a CPU while out of descriptors" % (cpu * 100))
        lines = log_lines(d, "pausing accepts", n=1000)
        R.note("out of descriptors: %d connections pending, %d 'pausing accepts' lines, "
               "daemon CPU %.0f%%: %s" % (len(held), len(lines), cpu * 100, lines[-1:]))
        R.expect(len(lines) <= 4, "%d 'pausing accepts' lines within ~2 s" % len(lines))
    finally:
        for s in held:
            s.close()
        set_nofile(d, old[0], old[1])

    def serves():
        try:
            c = Conn(d.socket, timeout=5)
            r = c.request("HELLO")
            c.close()
            return r.status == 0
        except OSError:
            return False
    ok, secs = poll(serves, 10, 0.1)
    R.expect(ok, "the daemon does not accept again once descriptors are free")


def s8_fifo(E):
    d = E.d
    fifo = E.fifo
    for user in ("nobody", "root"):
        out, _ = attack(d, "fifo", {"fifo": fifo, "conns": 4, "per_conn": 8, "timeout": 10,
                                    "public": E.trees[0].publics[0]}, user=user)
        reps = out["replies"]
        timeouts = [r for r in reps if r.get("timeout")]
        R.expect(not timeouts, "%s: %d of 32 FIFO opens got no answer within 10 s" % (
            user, len(timeouts)))
        bad = [(r.get("status"), r.get("errmsg")) for r in reps if not r.get("timeout") and (
            r.get("status") == 0 or r.get("nfds"))]
        R.expect(not bad, "%s: FIFO opens answered with success: %s" % (user, bad[:3]))
        msgs = sorted(set(r.get("errmsg") for r in reps if not r.get("timeout")))
        R.expect(any("not a regular file" in (m or "") for m in msgs),
                 "%s: FIFO refusals do not say 'not a regular file': %s" % (user, msgs))
        a = out["after"]
        R.expect(a.get("status") == 0 and a.get("fd_sha") == [
            hashlib.sha256(CONTENT[E.trees[0].publics[0]]).hexdigest()],
            "%s: an OPEN after 32 FIFO opens: %s %r" % (user, a.get("status"), a.get("errmsg")))
        R.note("%s: 32 FIFO opens answered in %.2f s (%s); a normal OPEN then took %.3f s" % (
            user, out["elapsed"], msgs, out["after_s"]))


def s9_socket_file(kind, wd):
    base = kind.run if kind.name == "unit" else os.path.join(wd.path, rn("sockdir"))
    os.makedirs(base, exist_ok=True)
    sock = os.path.join(base, rn("precious") + ".sock")
    text = b"precious contents, not a socket\n" + os.urandom(64).hex().encode()
    with open(sock, "wb") as f:
        f.write(text)
    os.chmod(sock, 0o644)
    d = kind.daemon(rn("sockfile"), [{"path": os.path.join(wd.path, "nas", "strict"),
                                      "backend": "posix"}], socket=sock)
    d.socket = sock
    d.start(wait=False)
    try:
        rc = d.proc.wait(20)
    except subprocess.TimeoutExpired:
        rc = None
        d.kill9()
    st = os.lstat(sock) if os.path.lexists(sock) else None
    same = st is not None and stat.S_ISREG(st.st_mode) and open(sock, "rb").read() == text
    R.expect(rc not in (None, 0), "granaryd with a regular file at its socket path: exit %s"
             % rc)
    R.expect(same, "the regular file at the socket path was %s" % (
        "removed" if st is None else "changed"))
    R.note("exit %s; %s" % (rc, (log_lines(d, "socket") or ["(no log line)"])[-1]))


def s10_modes(E):
    d = E.d
    cache = d.cache_dir
    st = os.stat(cache)
    R.expect(stat.S_IMODE(st.st_mode) == 0o700, "cache.dir mode %o" % stat.S_IMODE(st.st_mode))
    R.expect(st.st_uid == E.kind.uid, "cache.dir owned by uid %d, the daemon is %d" % (
        st.st_uid, E.kind.uid))
    cat = os.path.join(cache, "catalog.db")
    if R.expect(os.path.exists(cat), "no catalog.db in %s" % cache):
        R.expect(stat.S_IMODE(os.stat(cat).st_mode) == 0o600, "catalog.db mode %o" %
                 stat.S_IMODE(os.stat(cat).st_mode))
    for extra in ("catalog.db-wal", "catalog.db-shm", "catalog.db-journal"):
        p = os.path.join(cache, extra)
        if os.path.exists(p):
            R.expect(stat.S_IMODE(os.stat(p).st_mode) & 0o077 == 0, "%s mode %o" % (
                extra, stat.S_IMODE(os.stat(p).st_mode)))
    R.expect(E.catalog_open in ("EACCES", "EPERM"), "nobody opening catalog.db: %s" %
             E.catalog_open)
    priv = os.path.join(cache, "private")
    if R.expect(os.path.isdir(priv), "no private/ in the cache"):
        R.expect(stat.S_IMODE(os.stat(priv).st_mode) == 0o700, "private/ mode %o" %
                 stat.S_IMODE(os.stat(priv).st_mode))
    public_shas = {hashlib.sha256(CONTENT[p]).hexdigest(): p for p in PUBLICS}
    secret_shas = {hashlib.sha256(CONTENT[p]).hexdigest(): p for p in SECRETS}
    in_objects, in_private = {}, {}
    for tree, where in (("objects", in_objects), ("private", in_private)):
        for dp, _, fns in os.walk(os.path.join(cache, tree)):
            for fn in fns:
                p = os.path.join(dp, fn)
                with open(p, "rb") as f:
                    h = hashlib.sha256(f.read()).hexdigest()
                where[p] = (h, stat.S_IMODE(os.stat(p).st_mode))
    bad = {p: secret_shas.get(h, "unknown") for p, (h, m) in in_objects.items()
           if h not in public_shas}
    R.expect(not bad, "objects/ holds copies that are not of public files: %s" % bad)
    modes = {p: "%o" % m for p, (h, m) in in_objects.items() if m != 0o444}
    R.expect(not modes, "public copies not 0444: %s" % modes)
    modes = {p: "%o" % m for p, (h, m) in in_private.items() if m != 0o400}
    R.expect(not modes, "private copies not 0400: %s" % modes)
    priv_shas = {h for h, m in in_private.values()}
    missing = [p for p in E.warmed if p in SECRETS and
               hashlib.sha256(CONTENT[p]).hexdigest() not in priv_shas]
    R.expect(not missing, "warmed secrets with no copy in private/: %s" % missing)
    R.note("objects/: %d copies, all public; private/: %d copies" % (len(in_objects),
                                                                      len(in_private)))


def s11_metrics(E):
    d = E.d
    lines = log_lines(d, "metrics.listen is not a loopback address")
    R.expect(lines, "no warning for metrics.listen 0.0.0.0:%d in the log" % E.metrics_port)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def fetch():
        try:
            return opener.open("http://127.0.0.1:%d/metrics" % E.metrics_port,
                               timeout=10).read().decode(errors="replace")
        except OSError:
            return None
    body, _ = poll(fetch, 10)
    if R.expect(body, "no /metrics on 127.0.0.1:%d" % E.metrics_port):
        found = [n for n in NAMES if n in body]
        R.expect(not found, "/metrics names files: %s" % found)
    p = run_as("nobody", [GRANARY, "status", "--json"], env=client_env(d))
    R.expect(p.returncode == 0, "granary status as nobody: %s" % p.stderr)
    found = [n for n in NAMES if n in p.stdout]
    R.expect(not found, "granary status as nobody names files: %s" % found)
    R.note("warning: %s; /metrics %d bytes, no file names" % (
        lines[-1] if lines else None, len(body or "")))


# ---------------------------------------------------------------------------
# regressions of the review's findings (eac37aa, 766e435): scenarios 12 to 16,
# on a daemon of their own (one per kind), whose victim is another user than
# nobody (uid 1, "daemon")
# ---------------------------------------------------------------------------
VICTIM = "daemon"
REG_MOUNTS = []  # the tmpfs these scenarios mount, unmounted by main() at the end


def mount_tmpfs(path, mode):
    os.makedirs(path, exist_ok=True)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=%o" % mode, "tmpfs", path],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise Fail("mount -t tmpfs %s failed: %s" % (path, p.stderr))
    REG_MOUNTS.append(path)


def umount_reg():
    while REG_MOUNTS:
        fs = REG_MOUNTS.pop()
        p = subprocess.run(["umount", fs], capture_output=True, text=True)
        if p.returncode != 0:
            print("  umount %s: %s; detaching it (umount -l)" % (fs, p.stderr.strip()))
            subprocess.run(["umount", "-l", fs], capture_output=True)


def reg_file(path, mode, uid=0, gid=0, size=None, data=None):
    data = data if data is not None else os.urandom(size)
    with open(path, "wb") as f:
        f.write(data)
    os.chown(path, uid, gid)
    os.chmod(path, mode)
    return data


def reg_dir(path, mode, uid=0, gid=0):
    os.makedirs(path)
    os.chown(path, uid, gid)
    os.chmod(path, mode)  # (not the umask's)
    return path


def pieces(data):
    return [data[o:o + 32] for o in list(range(0, len(data) - 32, 2048)) + [len(data) - 32]]


def reg_leaks(blobs, victims):
    """What in @blobs ([what, bytes]) holds a 32-byte piece of one of @victims
    (name -> bytes)."""
    out = []
    for w, data in blobs:
        for name, v in victims.items():
            if any(p in data for p in pieces(v)):
                out.append("%s holds bytes of %s" % (w, name))
                break
    return out


def objects_holding(d, victims):
    """Copies in the daemon's objects/ (root looks itself) holding bytes of @victims."""
    found = []
    for dp, _, fns in os.walk(os.path.join(d.cache_dir, "objects")):
        for fn in fns:
            try:
                with open(os.path.join(dp, fn), "rb") as f:
                    found.append(("objects/" + fn, f.read()))
            except OSError:
                pass  # dropped meanwhile
    return reg_leaks(found, victims)


def mount_status(d, path):
    return next(m for m in d.status()["mounts"] if m["path"] == path)


def setup_regression(wd, kind):
    E = Env()
    E.kind = kind
    pw = pwd.getpwnam(VICTIM)
    vu, vg = pw.pw_uid, pw.pw_gid
    base = reg_dir(os.path.join(wd.path, "reg-" + kind.name), 0o755)
    E.src = src = reg_dir(os.path.join(base, "nas"), 0o755)
    # 12: one mount over two file systems: a scratch every user may write
    # (sticky), and one holding the victim's 0600 file in a 0755 directory,
    # with inode numbers above the scratch's next ones
    E.scratch = os.path.join(src, "scratch")
    mount_tmpfs(E.scratch, 0o1777)
    vic = os.path.join(src, "vic")
    mount_tmpfs(vic, 0o755)
    for i in range(40):
        reg_file(os.path.join(vic, "pad%d" % i), 0o644, size=1)
        os.unlink(os.path.join(vic, "pad%d" % i))
    home = reg_dir(os.path.join(vic, "home"), 0o755)
    E.forge_target = os.path.join(home, rn("secret") + ".bin")
    E.forge_bytes = reg_file(E.forge_target, 0o600, vu, vg, size=size_in(30000, 50000))
    # 13: the victim's 0700 directory in one that nobody may write, not sticky
    team = reg_dir(os.path.join(src, "team"), 0o777)
    E.team_victim = reg_dir(os.path.join(team, "victim"), 0o700, vu, vg)
    E.team_fake = os.path.join(team, "fake")
    E.team_file = os.path.join(E.team_victim, "data.bin")
    E.team_bytes = reg_file(E.team_file, 0o644, vu, vg, size=size_in(20000, 30000))
    # 14: a name that exists and one that does not in the victim's 0700 directory
    vault = reg_dir(os.path.join(src, "vault"), 0o700, vu, vg)
    E.present = os.path.join(vault, rn("present") + ".bin")
    E.present_bytes = reg_file(E.present, 0o644, vu, vg, size=size_in(20000, 30000))
    E.absent = os.path.join(vault, rn("absent") + ".bin")
    E.mine = reg_dir(os.path.join(src, "mine"), 0o755, NOBODY, NOGROUP)
    # 15, 16: the victim's 0600 file in a 0755 directory, and a public one
    opn = reg_dir(os.path.join(src, "open"), 0o755)
    E.s600 = os.path.join(opn, rn("s600") + ".bin")
    E.s600_bytes = reg_file(E.s600, 0o600, vu, vg, size=size_in(20000, 30000))
    E.pub = os.path.join(opn, rn("pub") + ".bin")
    reg_file(E.pub, 0o644, size=size_in(1000, 15000))
    # 16: a second mount holding root's hinted order
    E.hinted = reg_dir(os.path.join(base, "hinted"), 0o755)
    E.order = []
    for i in range(50):
        p = os.path.join(E.hinted, "h%02d.bin" % i)
        reg_file(p, 0o644, size=size_in(1000, 15000))
        E.order.append(p)
    E.victims = {"the victim's 0600 file (12)": E.forge_bytes,
                 "the victim's file in its 0700 directory (13)": E.team_bytes,
                 "the victim's existing file (14)": E.present_bytes,
                 "the victim's 0600 file (15)": E.s600_bytes}
    d = kind.daemon("reg", [{"path": src, "backend": "posix", "consistency": "strict"},
                            {"path": E.hinted, "backend": "posix", "consistency": "strict"}])
    d.start()
    E.d = d
    return E


def r12_forged_inode(E):
    d = E.d
    out, blobs = attack(d, "forge", {"target": E.forge_target, "scratch": E.scratch,
                                     "max_files": 5000, "attempts": 800, "swap_s": 60})
    R.expect(out["direct"] == "EACCES", "premise: nobody's own read of the victim's 0600 "
             "file: %s" % out["direct"])
    if not R.expect("forged" in out, "premise: nobody could not forge the inode: %s" %
                    out.get("forge")):
        return
    f, t = out["forged"], out["target"]
    R.expect(f[:3] == t[:3] and f[3] != t[3], "premise: the forged file (ino, size, mtime, "
             "dev) %s, the victim's %s" % (f, t))
    hist = out["hist"]
    refused = sum(n for k, n in hist.items() if k != "0")
    R.note("%d DROP+OPEN attempts while the symlink was swapped: statuses %s; nobody's "
           "forged file read %d times, something else %d times; after the race: %s; %d "
           "copies read by id in objects/ (ids 0..%d)" % (
               out["attempts"], hist, out["forged_reads"], out["other_reads"], out["after"],
               out["objects_read"], out["scanned_ids"]))
    # the race ran both ways: the check saw nobody's file, and the victim's
    R.expect(out["forged_reads"] > 0 and refused > 0 or out["other_reads"] > 0,
             "premise: the race was not exercised: statuses %s" % hist)
    leaks = reg_leaks(blobs, {"the victim's 0600 file": E.forge_bytes})
    R.expect(not leaks, "nobody got the bytes of the victim's 0600 file on another file "
             "system through a forged file of the same inode, size and mtime: %s" % leaks[:5])
    R.expect(out["other_reads"] == 0, "nobody's OPENs of its own symlink gave %d times "
             "bytes that are not its forged file's" % out["other_reads"])
    found = objects_holding(d, {"the victim's 0600 file": E.forge_bytes})
    R.expect(not found, "objects/ holds a copy of the victim's 0600 file: %s" % found)


def r13_dir_rename(E):
    d = E.d
    spec = {"victim_dir": E.team_victim, "fake_dir": E.team_fake, "name": "data.bin",
            "fake_size": 700, "swap_s": 60, "max_s": 60}
    proc = attack_bg(d, "pubrace", spec)
    rd = None
    try:
        line = read_line(proc, 30)
        if not R.expect(line and json.loads(line).get("ready"),
                        "nobody's exchanging of the directories did not start: %s %s" % (
                            line, proc.stderr.read() if proc.poll() is not None else "")):
            return
        rd, _ = attack(d, "reader", {
            "path": E.team_file, "n": 1000,
            "victim_sha": hashlib.sha256(E.team_bytes).hexdigest(),
            "fake_sha": hashlib.sha256(b"F" * spec["fake_size"]).hexdigest()}, user=VICTIM)
    finally:
        try:
            rest, err = proc.communicate(input="", timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            rest, err = proc.communicate()
    if not R.expect(proc.returncode == 0 and rest.strip(),
                    "nobody's attacker exited %s: %s" % (proc.returncode, err[-2000:])):
        return
    doc = json.loads(rest.strip().splitlines()[-1])
    out = doc["out"]
    blobs = [(w, base64.b64decode(b)) for w, b in doc["blobs"]]
    R.note("the victim's 1000 OPENs while nobody exchanged the directories: statuses %s "
           "(%s), its own bytes %d times, other bytes %d; nobody scanned ids %d..%d %d times "
           "and read %d copies" % (rd["hist"], rd["msgs"], rd["victim"],
                                   rd["fake"] + rd["other"], out["lo"], out["hi"],
                                   out["passes"], out["copies_read"]))
    # the victim's path led now to its file, now to nobody's 0600 one it may not read
    R.expect(rd["victim"] > 0 and rd["hist"].get(str(-errno.EACCES), 0) > 0,
             "premise: the race was not exercised: the victim's statuses %s" % rd["hist"])
    R.expect(rd["fake"] + rd["other"] == 0, "the victim's OPENs of its own file gave other "
             "bytes %d times" % (rd["fake"] + rd["other"]))
    leaks = reg_leaks(blobs, {"the victim's file": E.team_bytes})
    R.expect(not leaks, "bytes of the victim's file under its 0700 directory appeared in "
             "objects/ (nobody, by id): %s" % leaks[:5])
    found = objects_holding(d, {"the victim's file": E.team_bytes})
    R.expect(not found, "objects/ holds a copy of the victim's file under its 0700 "
             "directory (after the race): %s" % found)
    lines = [ln for ln in log_lines(d, "copy is now public", n=100000)
             if ln.endswith("path=" + E.team_file)]
    R.expect(not lines, "the daemon made the copy of the victim's file public %d times: %s"
             % (len(lines), lines[:3]))


def r14_oracle(E):
    d = E.d
    cases = [{"name": "existing", "dir": os.path.join(E.mine, "e"),
              "target": os.path.relpath(E.present, os.path.join(E.mine, "e"))},
             {"name": "missing", "dir": os.path.join(E.mine, "m"),
              "target": os.path.relpath(E.absent, os.path.join(E.mine, "m"))}]
    n, own = 400, 10
    out, blobs = attack(d, "oracle", {"cases": cases, "mount": E.src, "n": n,
                                      "own_size": own, "swap_s": 60})
    size = len(E.present_bytes)
    errs = {}
    for c in ("existing", "missing"):
        res = out[c]
        errs[c] = {int(k): v for k, v in res["hist"].items() if k != "0"}
        R.note("%s name: statuses %s %s; counters %s; the mount's bytes from %d went through "
               "%s" % (c, res["hist"], res["msgs"], res["counters"], res["base"],
                       res["bytes"][:12] + (["..."] if len(res["bytes"]) > 12 else [])))
        R.expect(res["hist"].get("0", 0) > 0 and errs[c],
                 "premise: the race was not exercised for the %s name: %s" % (c, res["hist"]))
        # only nobody reads: the mount may hold nobody's own file, nothing more
        grew = sorted(set(b - res["base"] for b in res["bytes"] if b - res["base"] > own))
        R.expect(not grew, "%s name: while only nobody read, the mount's bytes in STATUS grew "
                 "by %s (the victim's file is %d bytes, nobody's own %d)%s" % (
                     c, grew, size, own, ": the victim's size exactly" if any(
                         g in (size, size + own) for g in grew) else ""))
    # nobody's own check stops at the 0700 directory (EACCES) whatever the name:
    # an ENOENT can only come from the daemon looking into it
    R.expect(not (-errno.ENOENT in errs["missing"] and -errno.ENOENT not in errs["existing"]),
             "nobody's OPENs answer -ENOENT %r for the missing name (%s) and not for the "
             "existing one (%s): they tell what exists in the victim's 0700 directory" % (
                 out["missing"]["msgs"].get(str(-errno.ENOENT)), out["missing"]["hist"],
                 out["existing"]["hist"]))
    # the same distribution: no code 10 times or more for one name and never for the
    # other (with one rate for both, all k on one side has odds 2 * 0.5**k: 0.2%);
    # EAGAIN of nobody's own openat2 racing the renames comes and goes by timing
    told = sorted((k, a, b) for k in set(errs["existing"]) | set(errs["missing"])
                  for a, b in [(errs["existing"].get(k, 0), errs["missing"].get(k, 0))]
                  if min(a, b) == 0 and max(a, b) >= 10)
    R.expect(not told, "the errors nobody gets in %d OPENs differ for an existing name and a "
             "missing one: (code, existing, missing) %s" % (n, told))
    leaks = reg_leaks(blobs, {"the victim's existing file": E.present_bytes})
    R.expect(not leaks, "nobody got bytes of the victim's file: %s" % leaks[:5])


def r15_stat_ls(E):
    d = E.d
    p = d.cli("warm", "--quiet", E.s600, E.pub, timeout=60)
    if p.returncode != 0:
        raise Fail("root's warm failed: %s" % p.stderr)
    c = Conn(d.socket, timeout=30)
    r = c.request("STAT", path=E.s600)
    c.close()
    R.expect(r.status == 0 and r.get("CACHED") and r.u32("CACHED") == 1,
             "root's STAT of the 0600 file it warmed: status %d CACHED %s" % (
                 r.status, r.get("CACHED") and r.u32("CACHED")))
    dirp = os.path.dirname(E.s600)
    out, blobs = attack(d, "raw", {"requests": [
        {"type": "STAT", "items": [["PATH", E.s600]]},
        {"type": "LS", "items": [["PATH", dirp]]},
        {"type": "LS", "items": [["PATH", E.s600]]}]})
    st = out[0]
    cached = [v for t, v in st["items"] if t == "CACHED"]
    R.expect(st["status"] == 0 and cached == [0] or st["status"] == -errno.EACCES and
             not cached, "nobody's STAT of the victim's 0600 file root cached: status %s "
             "CACHED %s" % (st["status"], cached))

    def states(rec):
        ents, cur = {}, None
        for t, v in rec["items"]:
            if t == "NAME":
                cur = os.path.basename(v)
                ents[cur] = None
            elif t == "STATE" and cur is not None:
                ents[cur] = v
        return ents
    ls_dir = states(out[1])
    name, pub = os.path.basename(E.s600), os.path.basename(E.pub)
    R.expect(out[1]["status"] == 0 and ls_dir.get(pub) == 1,
             "premise: nobody's LS of %s does not show root's public copy cached: %s %s" % (
                 dirp, out[1]["status"], ls_dir))
    R.expect(ls_dir.get(name, 0) == 0, "nobody's LS of %s: STATE %s for the victim's 0600 "
             "file root cached (absent is 0)" % (dirp, ls_dir.get(name)))
    ls_file = states(out[2])
    R.expect(out[2]["status"] != 0 or ls_file.get(name, 0) == 0,
             "nobody's LS of the victim's 0600 file: status %s STATE %s" % (
                 out[2]["status"], ls_file.get(name)))
    R.note("root STAT: CACHED 1; nobody: STAT status %s CACHED %s, LS of the directory "
           "STATE %s (the public file's %s), LS of the file status %s STATE %s" % (
               st["status"], cached, ls_dir.get(name), ls_dir.get(pub), out[2]["status"],
               ls_file.get(name)))
    leaks = reg_leaks(blobs, {"the victim's 0600 file": E.s600_bytes})
    R.expect(not leaks, "nobody got bytes of the victim's 0600 file: %s" % leaks[:5])


def r16_access_hint(E):
    d = E.d
    # one ACCESS report naming a public copy 4000 times
    c0, m0 = counters(d), mount_status(d, E.src)
    out, _ = attack(d, "fx_access", {"ino": os.stat(E.pub).st_ino, "copies": 4000})
    if not R.expect("error" not in out, "premise: %s" % out.get("error")):
        return
    c1, m1 = counters(d), mount_status(d, E.src)
    fast, hits = c1["fast_hits"] - c0["fast_hits"], m1["hits"] - m0["hits"]
    R.note("one ACCESS of slot %d (id %d) x 4000 by nobody: COUNT %s, fast_hits +%d, the "
           "mount's hits +%d" % (out["slot"], out["id"], out["count"], fast, hits))
    R.expect(out["status"] == 0 and 1 <= (out["count"] or 0) <= 64,
             "ACCESS with 4000 copies of one slot: status %s COUNT %s (at most 64)" % (
                 out["status"], out["count"]))
    R.expect(1 <= fast <= 64 and 1 <= hits <= 64, "ACCESS with 4000 copies of one slot "
             "counted %d fast hits, %d hits of the mount (at most 64)" % (fast, hits))
    # root's hinted order moves with root's reads, never with nobody's
    p = d.cli("warm", "--quiet", *E.order, timeout=60)
    if p.returncode != 0:
        raise Fail("root's warm of the order failed: %s" % p.stderr)
    c = Conn(d.socket, timeout=30)
    r = c.request("HINT", dataset=E.hinted, flags=3, path=E.order)
    R.expect(r.status == 0, "root's HINT: %d %s" % (r.status, r.errmsg))
    h0 = mount_status(d, E.hinted)["hint"]
    R.expect(h0["phase"] == "current" and h0["position"] == 0,
             "premise: root's order is not current at position 0: %s" % h0)
    n30, n40 = E.order[30], E.order[40]
    out, _ = attack(d, "raw", {"requests": [{"type": "OPEN", "items": [["PATH", n30]]}]})
    R.expect(out[0]["status"] == 0, "premise: nobody's OPEN of public %s: %s %r" % (
        n30, out[0]["status"], out[0]["errmsg"]))
    acc, _ = attack(d, "fx_access", {"ino": os.stat(n40).st_ino, "copies": 1})
    R.expect(acc.get("count") == 1, "premise: nobody's ACCESS of public %s: %s" % (n40, acc))
    h1 = mount_status(d, E.hinted)["hint"]
    R.expect(h1["position"] == h0["position"] and h1["reads"] == h0["reads"],
             "nobody's reads of positions 30 (OPEN) and 40 (ACCESS) of root's order moved it: "
             "position %d -> %d, reads %d -> %d" % (h0["position"], h1["position"],
                                                    h0["reads"], h1["reads"]))
    r, data = c.read(E.order[5])
    c.close()
    R.expect(r.status == 0, "root's OPEN of %s: %d %s" % (E.order[5], r.status, r.errmsg))
    h2 = mount_status(d, E.hinted)["hint"]
    R.expect(h2["position"] == 6, "root's own read of position 5 of its order: position "
             "%d (6 expected)" % h2["position"])
    R.note("root's order of 50: position %d; after nobody's OPEN of #30 and ACCESS of #40: "
           "%d (reads %d); after root's OPEN of #5: %d" % (h0["position"], h1["position"],
                                                           h1["reads"], h2["position"]))


def regressions(kind, wd):
    R.begin(kind.name, "12-16 setup")
    try:
        E = setup_regression(wd, kind)
    except Exception as e:
        R.expect(False, "setup failed, scenarios 12 to 16 skipped: %s\n%s" % (
            e, traceback.format_exc()[-2000:]))
        R.end()
        return
    R.end()
    try:
        scenario(kind.name, "12 forged inode, other fs", r12_forged_inode, E)
        scenario(kind.name, "13 dir rename vs publicity", r13_dir_rename, E)
        scenario(kind.name, "14 existence/size oracle", r14_oracle, E)
        scenario(kind.name, "15 STAT/LS cached", r15_stat_ls, E)
        scenario(kind.name, "16 ACCESS cap, hint sender", r16_access_hint, E)
    finally:
        try:
            E.d.stop()
        except Fail as e:
            R.begin(kind.name, "12-16 stop")
            R.expect(False, str(e))
            R.end()
        umount_reg()


# ---------------------------------------------------------------------------
def setup_kind(wd, kind, trees, links, mine, fifo, own, www_files, ng):
    E = Env()
    E.kind = kind
    E.trees = trees
    E.links = links
    E.mine = mine
    E.fifo = fifo
    E.own = own
    E.web_files = [WEB + "/" + os.path.basename(p) for p in www_files]
    for wp, p in zip(E.web_files, www_files):
        CONTENT[wp] = CONTENT[p]
        SECRETS.add(wp)
        HIDDEN[os.path.basename(p)] = len(CONTENT[p])
    # files of this kind: revocation and hint files
    E.revs = {}
    for t in trees:
        E.revs[t.consistency] = write_file(os.path.join(t.pub, rn("rev") + ".bin"), 0o644)
    ttl = trees[1]
    E.hint_secret = write_file(os.path.join(ttl.root, rn("hs") + ".bin"), 0o600, secret=True)
    E.hint_publics = [write_file(os.path.join(ttl.pub, rn("hp") + ".bin"), 0o644)
                      for _ in range(3)]
    from servers import free_port
    E.metrics_port = free_port()
    mounts = [{"path": trees[0].root, "backend": "posix", "consistency": "strict"},
              {"path": trees[1].root, "backend": "posix", "consistency": "ttl", "ttl": "60s"},
              {"path": trees[2].root, "backend": "posix", "consistency": "immutable"},
              {"path": WEB, "backend": "http", "url": ng.url, "allow_uids": [0, 1]}]
    d = kind.daemon("main", mounts, access={"recheck": "2s"},
                    metrics={"listen": "0.0.0.0:%d" % E.metrics_port})
    d.start()
    E.d = d
    E.catalog_open = None
    E.probe = {"raw": [], "shim_cat": {}}
    if kind.name == "unit":
        caps = [ln for ln in open("/proc/%d/status" % d.pid) if ln.startswith(("Cap", "Uid"))]
        print("  unit-style granaryd pid %d: %s" % (d.pid, "; ".join(x.strip() for x in caps)))
    # root warms everything it has (not the hint files, not the FIFO)
    E.warmed = [p for t in trees for p in t.publics + list(t.secrets.values())]
    E.warmed += list(E.revs.values()) + [links["l_in"], own]
    p = d.cli("warm", "--quiet", *(E.warmed + E.web_files), timeout=120)
    if p.returncode != 0:
        raise Fail("root's warm failed: %s %s" % (p.stdout[-2000:], p.stderr[-2000:]))
    notcached = [x for x in E.warmed + E.web_files if not cached(d, x)]
    if notcached:
        raise Fail("root warmed, yet not cached: %s" % notcached)
    stj = d.status()
    E.nobj = stj["cache"]["objects"]
    E.dataset = {}
    names = [x["name"] for x in stj["datasets"]]
    for m in mounts:
        E.dataset[m["path"]] = m["path"] if m["path"] in names else (
            next((n for n in names if n.rstrip("/") == m["path"].rstrip("/")), m["path"]))
    print("  [%s] granaryd pid %d ready, %d objects cached by root; datasets %s" % (
        kind.name, d.pid, E.nobj, names))
    return E


def scenarios_1_to_11(wd, kind, trees, links, mine, fifo, own, www_files, ng):
    kname = kind.name
    R.begin(kname, "setup")
    try:
        E = setup_kind(wd, kind, trees, links, mine, fifo, own, www_files, ng)
    except Exception as e:
        R.expect(False, "setup failed, scenarios of this kind skipped: %s\n%s" % (
            e, traceback.format_exc()[-2000:]))
        R.end()
        return
    R.end()
    scenario(kname, "1 secrets", s1_secrets, E)
    scenario(kname, "2 index not writable", s2_index, E)
    scenario(kname, "5 admin verbs", s5_admin, E)
    scenario(kname, "4 hint and prefetch", s4_hint, E)
    scenario(kname, "3 revocation", s3_revocation, E)
    scenario(kname, "6 symlinks", s6_symlinks, E)
    scenario(kname, "8 fifo", s8_fifo, E)
    scenario(kname, "7 flood", s7_flood, E)
    scenario(kname, "10 file modes", s10_modes, E)
    scenario(kname, "11 metrics and status", s11_metrics, E)
    try:
        E.d.stop()
    except Fail as e:
        R.begin(kname, "stop")
        R.expect(False, str(e))
        R.end()
    scenario(kname, "7 limits per uid, idle", s7_limits, kind, trees)
    scenario(kname, "6 unsafe mount source", startup_refusals, kind, wd)
    scenario(kname, "9 socket path is a file", s9_socket_file, kind, wd)


def ensure_svc_user():
    try:
        pwd.getpwnam(SVC)
        return
    except KeyError:
        pass
    p = subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                        "/usr/sbin/nologin", SVC], capture_output=True, text=True)
    if p.returncode != 0:
        try:
            pwd.getpwnam(SVC)  # made meanwhile by another test
        except KeyError:
            raise Fail("useradd %s failed: %s" % (SVC, p.stderr))


def main(wd):
    global ATTACK_PATH
    if os.geteuid() != 0:
        raise Fail("test_security needs root (it acts as nobody, mounts a tmpfs, adds a user)")
    for tool in ("setpriv", "useradd", "mount", "umount", "mkfifo"):
        if not shutil.which(tool):
            raise Fail("%s is missing" % tool)
    if not (shutil.which("nginx") or os.path.exists("/usr/sbin/nginx")):
        raise Fail("nginx is missing (make deps installs it)")
    from servers import Nginx
    t_start = time.time()
    # GRANARY_SECURITY_ONLY=regressions: scenarios 12 to 16 alone (e.g. against an
    # older build, to see them fail there)
    only_regressions = os.environ.get("GRANARY_SECURITY_ONLY") == "regressions"
    os.chmod(wd.path, 0o755)
    ATTACK_PATH = os.path.join(wd.path, "attack.py")
    with open(ATTACK_PATH, "w") as f:
        f.write(ATTACK)
    os.chmod(ATTACK_PATH, 0o644)
    ensure_svc_user()

    nas = os.path.join(wd.path, "nas")
    os.makedirs(nas)
    os.chmod(nas, 0o755)
    trees = [Tree(os.path.join(nas, "strict"), "strict"), Tree(os.path.join(nas, "ttl"), "ttl"),
             Tree(os.path.join(nas, "imm"), "immutable")]
    strict = trees[0]
    # outside every mount: root's own shadow-like file
    outside = os.path.join(wd.path, "outside")
    os.makedirs(outside)
    os.chmod(outside, 0o700)
    shadow = write_file(os.path.join(outside, rn("sh") + ".bin"), 0o600, secret=True)
    HIDDEN[os.path.basename(shadow)] = len(CONTENT[shadow])
    # nobody's own directory inside the strict mount, with symlinks it planted
    mine = os.path.join(strict.root, rn("mine"))
    os.makedirs(mine)
    os.chown(mine, NOBODY, NOGROUP)
    os.chmod(mine, 0o755)
    hidden = strict.secrets["0644 in 0700 dir"]
    links = {"l_in": os.path.join(mine, "l_in"), "l_dir": os.path.join(mine, "l_dir"),
             "l_out": os.path.join(mine, "l_out"), "l_out_rel": os.path.join(mine, "l_out_rel")}
    targets = {"l_in": os.path.relpath(hidden, mine),
               "l_dir": os.path.relpath(os.path.dirname(hidden), mine),
               "l_out": shadow, "l_out_rel": os.path.relpath(shadow, mine)}
    for k, link in links.items():
        p = run_as("nobody", ["ln", "-s", targets[k], link])
        if p.returncode != 0:
            raise Fail("nobody could not plant %s: %s" % (link, p.stderr))
    own = os.path.join(mine, rn("own") + ".bin")
    p = run_as("nobody", ["sh", "-c", "head -c 3000 /dev/urandom > %s" % own])
    if p.returncode != 0:
        raise Fail("nobody could not write %s: %s" % (own, p.stderr))
    with open(own, "rb") as f:
        CONTENT[own] = f.read()
    PUBLICS.add(own)
    NAMES.add(os.path.basename(own))
    fifo = os.path.join(strict.root, rn("fifo"))
    os.mkfifo(fifo, 0o666)
    os.chmod(fifo, 0o666)
    # the http mount's objects: only uids 0 and 1 may read them
    www = os.path.join(wd.path, "www")
    os.makedirs(www)
    os.chmod(www, 0o755)
    www_files = [write_file(os.path.join(www, rn("w") + ".bin"), 0o644, secret=True)
                 for _ in range(2)]
    for p in www_files:
        PUBLICS.discard(p)
        SECRETS.add(p)
    ng = Nginx(wd.path, www).start()

    mounted = []
    try:
        for kname in ("root", "unit"):
            print("==== granaryd as %s ====" % (
                "root" if kname == "root" else "%s with %s (the unit's way)" % (SVC, CAPS)))
            if kname == "unit":
                fs = os.path.join(wd.path, "unitfs")
                os.makedirs(fs, exist_ok=True)
                p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", fs],
                                   capture_output=True, text=True)
                if p.returncode != 0:
                    raise Fail("mount -t tmpfs failed: %s" % p.stderr)
                mounted.append(fs)
                os.chown(fs, pwd.getpwnam(SVC).pw_uid, pwd.getpwnam(SVC).pw_gid)
                os.chmod(fs, 0o755)
            kind = Kind(wd, kname)
            if not only_regressions:
                scenarios_1_to_11(wd, kind, trees, links, mine, fifo, own, www_files, ng)
            regressions(kind, wd)
            for d in ALL_DAEMONS:
                d.kill9()
    finally:
        for d in ALL_DAEMONS:
            try:
                d.kill9()
            except Exception:
                pass
        ng.stop()
        umount_reg()
        for fs in mounted:
            subprocess.run(["umount", fs], capture_output=True)

    print("\n==== summary (%.0f s) ====" % (time.time() - t_start))
    nfail = 0
    for k, n, ok, fails, secs, _ in R.rows:
        print("%-5s %-34s %s  %3d passed %3d failed  %5.1fs" % (
            k, n, "PASS" if not fails else "FAIL", ok, len(fails), secs))
        nfail += len(fails)
    if nfail:
        print("\n==== %d failed checks ====" % nfail)
        for k, n, ok, fails, secs, _ in R.rows:
            for f in fails:
                print("[%s] %s: %s" % (k, n, f))
        print("\n==== daemon log excerpts (warnings and errors) ====")
        for d in ALL_DAEMONS:
            lines = log_lines(d, "warn", "err", "WARN", "ERR", n=15)
            if lines:
                print("-- %s" % d.log)
                print("\n".join(lines))
        raise Fail("%d security checks failed" % nfail)


run(main, "security")
