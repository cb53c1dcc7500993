"""The shim's fast path: opens of cached NAS files served from the daemon's
shared index, without a request per open.

A tree is warmed with the CLI; cat and Python read every file through the
shim and get the source's bytes, and once the readers have exited the
daemon's counters show exactly one fast hit (and one hit) per read, reported
with ACCESS, from threads, from forked children, from an immutable mount as
from a strict one. fstat shows the source. On the strict mount a file
changed at the source (new bytes with a new mtime, or a new inode with the
old size and mtime) is refused by the shim's stat compare and refetched by
the daemon. Eviction while a reader loops, a daemon killed and restarted
under a reader, and a program that closes the shim's descriptors never give
wrong bytes, and the fast path comes back. A 0600 root file read as nobody
gets EACCES, not the bytes (the kernel refuses the cache file, then the
daemon and the original do). GRANARY_FASTPATH=0 in the reader, or
GRANARY_NO_FAST_PATH=1 in the daemon, and every open goes to the socket.
"""
import hashlib
import json
import os
import subprocess
import sys
import time

from harness import DEBIAN_PYTHON, GRANARYD, PRELOAD, Fail, check, make_tree, run

# Runs under LD_PRELOAD; prints one JSON object.
READER = r'''
import errno, hashlib, json, os, sys, threading
mode, files = sys.argv[1], sys.argv[2:]
out = {}
def h(p):
    with open(p, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()
def fast_fds():
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink("/proc/self/fd/" + name)
        except OSError:
            pass
    return fds
if mode == "open":
    out = {f: h(f) for f in files}
elif mode == "threads":
    lock = threading.Lock()
    def work(part):
        for f in part:
            d = h(f)
            with lock:
                out[f] = d
    ts = [threading.Thread(target=work, args=(files[i::4],)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
elif mode == "fork":
    out["parent"] = {f: h(f) for f in files}
    kids = []
    for i in range(3):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            data = json.dumps({f: h(f) for f in files}).encode()
            while data:
                data = data[os.write(w, data):]
            os.close(w)
            sys.exit(0)  # a normal exit: the shim's destructor reports the reads
        os.close(w)
        kids.append((pid, r))
    for i, (pid, r) in enumerate(kids):
        chunks = []
        while True:
            b = os.read(r, 65536)
            if not b:
                break
            chunks.append(b)
        os.close(r)
        _, status = os.waitpid(pid, 0)
        out["child%d" % i] = json.loads(b"".join(chunks)) if status == 0 else status
elif mode == "fstat":
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        st = os.fstat(fd)
        os.close(fd)
        with open(f, "rb") as fh:
            pst = os.fstat(fh.fileno())
        out[f] = [[s.st_size, s.st_mtime_ns, s.st_ino, s.st_mode] for s in (st, pst)]
elif mode == "try":
    for f in files:
        try:
            out[f] = ["ok", h(f)]
        except OSError as e:
            out[f] = ["err", errno.errorcode.get(e.errno, str(e.errno))]
elif mode == "closefx":
    # the program closes the shim's objects/ descriptor, then dup2s over its
    # other one, as daemons that close every descriptor do
    out["pass1"] = {f: h(f) for f in files}
    objs = [fd for fd, l in fast_fds().items() if l.endswith("/cache/objects")]
    out["objects_fds"] = objs
    for fd in objs:
        os.close(fd)
    out["pass2"] = {f: h(f) for f in files}
    socks = [fd for fd, l in fast_fds().items() if fd >= 900 and l.startswith("socket:")]
    out["socket_fds"] = socks
    null = os.open("/dev/null", os.O_RDONLY)
    for fd in socks:
        os.dup2(null, fd)
    out["pass3"] = {f: h(f) for f in files}
elif mode == "loop":
    want = json.load(open(files[0]))
    stop = files[1]
    rounds = bad = 0
    while not os.path.exists(stop):
        for f, digest in want.items():
            if h(f) != digest:
                bad += 1
        rounds += 1
    out = {"rounds": rounds, "bad": bad}
print(json.dumps(out))
'''


def sha_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def counters(d):
    return d.status()["counters"]


def shim_env(d, **extra):
    env = d.env(LD_PRELOAD=PRELOAD)
    env.pop("GRANARY_FASTPATH", None)
    env.pop("GRANARY_DEBUG", None)
    env.update(extra)
    return env


def reader(d, mode, files, env=None, prefix=(), timeout=300):
    p = subprocess.run(list(prefix) + [DEBIAN_PYTHON, "-c", READER, mode] + list(files),
                       capture_output=True, text=True, timeout=timeout,
                       env=env or shim_env(d))
    check(p.returncode == 0, "%s reader through the shim failed:\n%s" % (mode, p.stderr))
    check(p.stderr == "", "the shim wrote to stderr without GRANARY_DEBUG:\n" + p.stderr)
    return json.loads(p.stdout)


def delta(after, before, key):
    return after[key] - before[key]


def wait_counted(d, before, key, want, timeout=10):
    """Counters once @key grew by @want since @before (ACCESS is one-way and
    may still be in the daemon's socket when the reader has exited)."""
    end = time.time() + timeout
    while True:
        c = counters(d)
        if delta(c, before, key) >= want or time.time() > end:
            time.sleep(0.1)  # anything more that would come
            return counters(d)
        time.sleep(0.05)


def expect_fast(d, before, n, what):
    """Exactly @n reads since @before, all served by the fast path."""
    c = wait_counted(d, before, "fast_hits", n)
    check(delta(c, before, "fast_hits") == n, "%s: %d reads, the daemon counted %d fast hits"
          % (what, n, delta(c, before, "fast_hits")))
    check(delta(c, before, "hits") == n, "%s: %d fast reads, the daemon counted %d hits"
          % (what, n, delta(c, before, "hits")))
    check(delta(c, before, "misses") == 0, "%s: %d misses" % (what, delta(c, before, "misses")))
    return c


def check_digests(got, want, what):
    for f, digest in want.items():
        check(got.get(f) == digest, "%s: %s read other bytes through the shim" % (what, f))


def check_readers(d, files, want):
    # cat: one process for all the files
    c0 = counters(d)
    p = subprocess.run(["cat"] + files, capture_output=True, timeout=120, env=shim_env(d))
    check(p.returncode == 0 and p.stderr == b"", "cat through the shim: %d %r"
          % (p.returncode, p.stderr[-500:]))
    check(hashlib.sha256(p.stdout).hexdigest() ==
          hashlib.sha256(b"".join(open(f, "rb").read() for f in files)).hexdigest(),
          "cat through the shim gave other bytes")
    c1 = expect_fast(d, c0, len(files), "cat")
    # no request per open: HELLO, a few ACCESS, the STATUS asking
    check(delta(c1, c0, "requests") < len(files) // 2,
          "cat: %d requests for %d files" % (delta(c1, c0, "requests"), len(files)))
    print("cat: %d files, %d fast hits, %d requests" % (
        len(files), delta(c1, c0, "fast_hits"), delta(c1, c0, "requests")))

    # Python, one file after another, then from four threads, then forked children
    c0 = counters(d)
    check_digests(reader(d, "open", files), want, "python")
    expect_fast(d, c0, len(files), "python")

    c0 = counters(d)
    check_digests(reader(d, "threads", files), want, "python threads")
    expect_fast(d, c0, len(files), "python threads")

    c0 = counters(d)
    got = reader(d, "fork", files)
    for who in ("parent", "child0", "child1", "child2"):
        check(isinstance(got[who], dict), "forked reader %s failed: %s" % (who, got[who]))
        check_digests(got[who], want, "python fork " + who)
    expect_fast(d, c0, 4 * len(files), "python fork")


def check_fstat(d, files):
    got = reader(d, "fstat", files[:5])
    c0 = counters(d)
    for f in files[:5]:
        st = os.stat(f)
        src = [st.st_size, st.st_mtime_ns, st.st_ino, st.st_mode]
        for i, what in enumerate(("fstat of os.open", "fstat of open()")):
            check(got[f][i] == src, "%s %s shows %s, the source is %s" % (what, f, got[f][i], src))
    check(delta(counters(d), c0, "misses") == 0, "fstat reads missed")


def check_changed(d, nas):
    f = os.path.join(nas, "changed.bin")
    with open(f, "wb") as fh:
        fh.write(b"A" * 5000)
    d.cli("warm", f, "--quiet", check_rc=0)
    c0 = counters(d)
    check(reader(d, "open", [f])[f] == sha_file(f), "first read of changed.bin")
    expect_fast(d, c0, 1, "changed.bin before the change")

    # new bytes, same size, a later mtime: the stat compare refuses the copy
    st = os.stat(f)
    with open(f, "r+b") as fh:
        fh.write(b"B" * 5000)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1000000000))
    c0 = counters(d)
    check(reader(d, "open", [f])[f] == sha_file(f), "changed.bin read the old bytes")
    c1 = counters(d)
    check(delta(c1, c0, "fast_hits") == 0, "the fast path served a changed file")
    check(delta(c1, c0, "refetches_changed") == 1, "the daemon did not refetch changed.bin")
    # the new copy is published: the next read is fast again
    check(reader(d, "open", [f])[f] == sha_file(f), "changed.bin, second read")
    expect_fast(d, c1, 1, "changed.bin after its refetch")

    # a new inode with the old size and mtime (a file replaced by rename)
    st = os.stat(f)
    tmp = f + ".new"
    with open(tmp, "wb") as fh:
        fh.write(b"C" * 5000)
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.rename(tmp, f)
    check(os.stat(f).st_ino != st.st_ino, "rename kept the inode")
    c0 = counters(d)
    check(reader(d, "open", [f])[f] == sha_file(f), "changed.bin (renamed over) read old bytes")
    c1 = counters(d)
    check(delta(c1, c0, "fast_hits") == 0, "the fast path served a file of another inode")
    check(delta(c1, c0, "refetches_changed") == 1, "no refetch after the rename")


def check_evict_loop(wd, d, nas, files, want):
    wantfile = os.path.join(wd.path, "want.json")
    stop = os.path.join(wd.path, "stop-evict")
    with open(wantfile, "w") as fh:
        json.dump(want, fh)
    c0 = counters(d)
    proc = subprocess.Popen([DEBIAN_PYTHON, "-c", READER, "loop", wantfile, stop],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=shim_env(d))
    try:
        evicted = 0
        for _ in range(20):
            p = d.cli("evict", nas, check_rc=0)
            evicted += 1
            time.sleep(0.05)
        time.sleep(0.3)
        with open(stop, "w"):
            pass
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    check(proc.returncode == 0 and err == "", "the looping reader failed: %s" % err)
    res = json.loads(out)
    check(res["bad"] == 0, "%d wrong reads while evicting" % res["bad"])
    c1 = wait_counted(d, c0, "fast_hits", 1)
    print("evict x%d under a reader: %d rounds, %d fast hits, %d misses, %d hits" % (
        evicted, res["rounds"], delta(c1, c0, "fast_hits"), delta(c1, c0, "misses"),
        delta(c1, c0, "hits")))
    check(res["rounds"] >= 2, "the looping reader did %d rounds" % res["rounds"])
    check(delta(c1, c0, "misses") > 0, "eviction made no misses: was anything evicted? %s"
          % p.stdout)
    check(delta(c1, c0, "fast_hits") > 0, "no fast hits while looping")


def check_restart(wd, d, files, want):
    wantfile = os.path.join(wd.path, "want.json")
    stop = os.path.join(wd.path, "stop-restart")
    with open(wantfile, "w") as fh:
        json.dump(want, fh)
    proc = subprocess.Popen([DEBIAN_PYTHON, "-c", READER, "loop", wantfile, stop],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=shim_env(d))
    try:
        time.sleep(0.5)
        d.kill9()
        time.sleep(0.5)  # falling open to the originals
        d.start()
        end = time.time() + 30
        while counters(d)["fast_hits"] == 0:
            if time.time() > end:
                raise Fail("the fast path did not come back after the restart")
            if proc.poll() is not None:
                raise Fail("the looping reader exited: %s" % proc.stderr.read())
            time.sleep(0.1)
        with open(stop, "w"):
            pass
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    check(proc.returncode == 0 and err == "", "the looping reader failed: %s" % err)
    res = json.loads(out)
    check(res["bad"] == 0, "%d wrong reads across the restart" % res["bad"])
    print("kill -9 and restart under a reader: %d rounds, the new daemon counted %d fast hits"
          % (res["rounds"], counters(d)["fast_hits"]))


TTL_S = 4


def check_ttl(d, ttlnas):
    """A NAS mount with a ttl: within it the fast path serves the cached copy
    without a stat of the original (a change at the source is not seen, as the
    daemon itself would not see it); past it the daemon revalidates, and the
    new bytes are served, from the index again."""
    files = [os.path.join(ttlnas, "t%d.bin" % i) for i in range(8)]
    for i, f in enumerate(files):
        with open(f, "wb") as fh:
            fh.write(bytes([65 + i]) * (3000 + i))
    old = {f: sha_file(f) for f in files}

    def read_fresh(want, what):
        # validated just now, so read before the ttl ends; on a machine too slow
        # for that, validate again
        for attempt in range(3):
            t0 = time.monotonic()
            d.cli("warm", *files, "--quiet", check_rc=0)
            c0 = counters(d)
            got = reader(d, "open", files)
            took = time.monotonic() - t0
            check_digests(got, want, what)
            if took < TTL_S - 1.5:
                return expect_fast(d, c0, len(files), what)
            print("NOTE: %s took %.1f s, over the ttl; again" % (what, took))
        check(False, "%s: never read within the %d s ttl" % (what, TTL_S))

    t_valid = time.monotonic()
    read_fresh(old, "ttl mount, just fetched")
    # the source changes; within the ttl the copy stands (no stat of the original)
    f = files[0]
    st = os.stat(f)
    with open(f, "r+b") as fh:
        fh.write(b"Z" * 3000)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1000000000))
    new = dict(old, **{f: sha_file(f)})
    c0 = counters(d)
    got = reader(d, "open", [f])
    if time.monotonic() - t_valid < TTL_S - 0.5:
        check(got[f] == old[f], "within the ttl the shim checked the original")
        expect_fast(d, c0, 1, "ttl mount, changed source within the ttl")
    # past the ttl: every open asks the daemon, which revalidates
    time.sleep(max(0.0, TTL_S + 1.2 - (time.monotonic() - t_valid)))
    c0 = counters(d)
    check_digests(reader(d, "open", files), new, "ttl mount past the ttl")
    c1 = counters(d)
    check(delta(c1, c0, "fast_hits") == 0, "past the ttl: %d fast hits" %
          delta(c1, c0, "fast_hits"))
    check(delta(c1, c0, "refetches_changed") == 1, "past the ttl: %d refetches of the "
          "changed file" % delta(c1, c0, "refetches_changed"))
    read_fresh(new, "ttl mount, revalidated")
    print("ttl NAS mount: fast within the %d s ttl without a stat of the original, "
          "revalidated past it" % TTL_S)


def check_closed_fds(d, files, want):
    c0 = counters(d)
    got = reader(d, "closefx", files)
    for k in ("pass1", "pass2", "pass3"):
        check_digests(got[k], want, "closefx " + k)
    check(len(got["objects_fds"]) == 1, "the shim's objects/ descriptor: %s" % got["objects_fds"])
    check(got["objects_fds"][0] >= 900, "objects/ on fd %d, not out of the way"
          % got["objects_fds"][0])
    check(len(got["socket_fds"]) == 1, "the shim's kept connection: %s" % got["socket_fds"])
    n = len(files)
    # after each loss the next request to the daemon says HELLO and brings new
    # descriptors: that is the next open, asked of the daemon, unless a report
    # of earlier fast reads falls due first (20 ms after the oldest) and its
    # request brings them, when the open is fast again at once
    c1 = wait_counted(d, c0, "hits", 3 * n)
    check(delta(c1, c0, "hits") == 3 * n, "closefx: %d hits for %d reads"
          % (delta(c1, c0, "hits"), 3 * n))
    check(3 * n - 2 <= delta(c1, c0, "fast_hits") <= 3 * n,
          "closefx: %d fast hits, expected %d to %d"
          % (delta(c1, c0, "fast_hits"), 3 * n - 2, 3 * n))


def check_nobody(wd, d, nas):
    secret = os.path.join(nas, "secret.bin")  # 0600 root:root
    public = os.path.join(nas, "public.bin")  # 0644
    for path, mode in ((secret, 0o600), (public, 0o644)):
        with open(path, "wb") as fh:
            fh.write(os.urandom(30000))
        os.chown(path, 0, 0)
        os.chmod(path, mode)
    d.cli("warm", secret, public, "--quiet", check_rc=0)
    as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    c0 = counters(d)
    got = reader(d, "try", [secret, public], prefix=as_nobody)
    check(got[secret] == ["err", "EACCES"], "nobody reading a 0600 root file: %s" % got[secret])
    check(got[public] == ["ok", sha_file(public)], "nobody reading a 0644 file: %s"
          % got[public])
    expect_fast(d, c0, 1, "nobody")  # the public one; the secret one was refused
    # a 0600 file has a private copy, not in the shared index: the daemon refused
    # (as the caller), then the original did
    p = subprocess.run(as_nobody + ["cat", secret], capture_output=True, timeout=60,
                       env=shim_env(d, GRANARY_DEBUG="1"))
    err = p.stderr.decode(errors="replace")
    check(p.returncode != 0 and p.stdout == b"", "cat of the secret file as nobody: %d, %d bytes"
          % (p.returncode, len(p.stdout)))
    check("Permission denied" in err, "cat as nobody: %s" % err)
    check("daemon says EACCES" in err and "EACCES, asking the daemon" not in err,
          "the secret file was not refused by the daemon alone:\n" + err)
    print("nobody: 0600 root file refused (%s), 0644 file served fast" % got[secret][1])


def main(wd):
    for path in (GRANARYD, PRELOAD):
        check(os.path.exists(path), "%s is not built" % path)
    if os.geteuid() != 0:
        print("NOTE: not root: the nobody case is skipped")
    os.chmod(wd.path, 0o755)  # nobody reaches the socket and the sources
    nas = os.path.join(wd.path, "nas")
    imm = os.path.join(wd.path, "imm")
    ttlnas = os.path.join(wd.path, "ttlnas")
    os.makedirs(ttlnas)
    os.chmod(ttlnas, 0o755)
    files = [os.path.join(nas, p) for p in make_tree(nas, 40, max_size=200 * 1024, seed=3)]
    ifiles = [os.path.join(imm, p) for p in make_tree(imm, 12, seed=4, dirs=3)]
    for root in (nas, imm):
        for dirpath, dirnames, _ in os.walk(root):
            os.chmod(dirpath, 0o755)
    want = {f: sha_file(f) for f in files + ifiles}
    d = wd.daemon([{"path": imm, "backend": "posix", "consistency": "immutable"},
                   {"path": nas, "backend": "posix", "consistency": "strict"},
                   {"path": ttlnas, "backend": "posix", "consistency": "ttl",
                    "ttl": "%ds" % TTL_S}],
                  socket_mode="0666")
    d.start()
    d.cli("warm", nas, imm, "--quiet", check_rc=0)
    c = counters(d)
    check(c["fetches"] == len(files) + len(ifiles), "warm fetched %d files" % c["fetches"])

    check_readers(d, files + ifiles, want)
    check_fstat(d, files)
    check_changed(d, nas)
    check_ttl(d, ttlnas)
    check_closed_fds(d, files, {f: want[f] for f in files})
    if os.geteuid() == 0:
        check_nobody(wd, d, nas)

    # GRANARY_FASTPATH=0: the socket for every open, the same bytes
    c0 = counters(d)
    check_digests(reader(d, "open", files, env=shim_env(d, GRANARY_FASTPATH="0")),
                  {f: want[f] for f in files}, "GRANARY_FASTPATH=0")
    c1 = counters(d)
    check(delta(c1, c0, "fast_hits") == 0, "GRANARY_FASTPATH=0 made %d fast hits"
          % delta(c1, c0, "fast_hits"))
    check(delta(c1, c0, "hits") == len(files), "GRANARY_FASTPATH=0: %d hits for %d reads"
          % (delta(c1, c0, "hits"), len(files)))

    check_evict_loop(wd, d, nas, files, {f: want[f] for f in files})
    check_restart(wd, d, files, {f: want[f] for f in files})

    # a daemon without the fast path (no descriptors with HELLO)
    d.stop()
    d.start(extra_env={"GRANARY_NO_FAST_PATH": "1"})
    for attempt in range(2):
        c0 = counters(d)
        check_digests(reader(d, "open", files + ifiles), want, "daemon without fast path")
        c1 = counters(d)
        check(c1["fast_hits"] == 0, "a daemon without the fast path counted fast hits")
        check(delta(c1, c0, "opens") == len(files + ifiles),
              "without the fast path: %d opens for %d reads"
              % (delta(c1, c0, "opens"), len(files + ifiles)))
    p = subprocess.run(["cat"] + files, capture_output=True, timeout=120, env=shim_env(d))
    check(p.returncode == 0 and p.stdout == b"".join(open(f, "rb").read() for f in files),
          "cat without the fast path gave other bytes")
    d.stop()


if __name__ == "__main__":
    sys.exit(run(main, "shim_fastpath"))
