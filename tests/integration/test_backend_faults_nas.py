"""NAS faults under a strict mount: what changes at the source after a file was
cached reaches the trainer as the source's own error or as the new bytes,
never as the stale copy.

- a cached file deleted at the source: ENOENT on the next open, copy dropped;
- chmod 000 on a cached file: a reader as `nobody` gets EACCES, not the copy;
  chmod back: served again from the cache, nothing refetched;
- a cached file truncated at the source (shorter, then empty): the new bytes;
- a cached file replaced by rename with the same size and mtime: the new bytes;
- the mount's source directory renamed away and back: no crash, correct bytes
  after it is back;
- the source directory replaced by another (a NAS remounted, a dataset
  directory swapped) and a file system mounted on the source after the daemon
  started: the daemon must read what is at the path now.

After each fault, `cat` through the LD_PRELOAD shim (which opens cached files
from the daemon's shared index itself) must give exactly what `cat` gives
without it, as root or, for permissions, as nobody.

GRANARY_TEST_KNOWN_GAPS=1 asserts the cases the daemon does not handle yet
(see docs/reliability.md): an error while the source directory is renamed
away, and the new directory's bytes after it is replaced or mounted over.
Without it those cases print what the daemon did.
"""
import errno
import hashlib
import os
import shutil
import subprocess

from harness import PRELOAD, Conn, Fail, Skip, as_user, check, make_tree, run

NOBODY = 65534
NOGROUP = 65534
# Every case is asserted now that the daemon handles them all;
# GRANARY_TEST_KNOWN_GAPS=0 would tolerate the cases listed in docs/reliability.md.
KNOWN_GAPS = os.environ.get("GRANARY_TEST_KNOWN_GAPS", "1") == "1"
gaps = []


def known_gap(ok, msg):
    """A case the daemon is known to fail: asserted with GRANARY_TEST_KNOWN_GAPS=1."""
    if ok:
        return
    if KNOWN_GAPS:
        raise Fail(msg)
    gaps.append(msg)
    print("KNOWN GAP: " + msg)


def as_nobody(fn, *args):
    """Run fn(*args) in a forked child as nobody; return what it returns."""
    return as_user(NOBODY, NOGROUP, fn, *args)


def open_as_child(sock, path):
    c = Conn(sock)
    r = c.request("OPEN", path=path)
    out = {"status": r.status, "errmsg": r.errmsg, "nfds": len(r.fds), "sha": None}
    if r.status == 0 and len(r.fds) == 1:
        with os.fdopen(r.fds[0], "rb") as f:
            out["sha"] = hashlib.sha256(f.read()).hexdigest()
    else:
        for fd in r.fds:
            os.close(fd)
    c.close()
    return out


def cat(d, path, shim, nobody=False):
    """`cat PATH` (as root or nobody), through the shim or not: (exit, stdout)."""
    env = d.env()
    if shim:
        env["LD_PRELOAD"] = PRELOAD
    else:
        env["GRANARY_DISABLE"] = "1"

    def drop():
        os.setgroups([])
        os.setgid(NOGROUP)
        os.setuid(NOBODY)
    p = subprocess.run(["cat", path], env=env, capture_output=True, timeout=60,
                       preexec_fn=drop if nobody else None)
    return p.returncode, p.stdout


def shim_agrees(d, path, what, nobody=False, gap=False):
    """A reader through the shim sees exactly what it sees without it."""
    plain = cat(d, path, shim=False, nobody=nobody)
    shim = cat(d, path, shim=True, nobody=nobody)
    if shim == plain:
        return True
    msg = ("%s: cat %s%s through the shim exits %d with %d bytes, without it %d with %d "
           "bytes" % (what, path, " as nobody" if nobody else "", shim[0], len(shim[1]),
                      plain[0], len(plain[1])))
    if not gap:
        raise Fail(msg)
    known_gap(False, msg)
    return False


def read(d, path):
    c = d.conn()
    try:
        return c.read(path)
    finally:
        c.close()


def content(path):
    with open(path, "rb") as f:
        return f.read()


def expect_bytes(d, path, want, what):
    r, data = read(d, path)
    check(r.status == 0, "%s: OPEN %s answered %d %r" % (what, path, r.status, r.errmsg))
    check(data == want, "%s: %s served %d bytes, not the %d at the source" % (
        what, path, len(data), len(want)))
    return r


def cached(d, path):
    c = d.conn()
    r = c.request("OPEN", path=path, flags=1)  # NOFETCH
    for fd in r.fds:
        os.close(fd)
    c.close()
    return r.status == 0


def warm(d, nas, rels):
    for rel in rels:
        p = os.path.join(nas, rel)
        expect_bytes(d, p, content(p), "warming")
        check(cached(d, p), "%s not cached after a read" % p)


def case_deleted(d, nas, rels):
    p = os.path.join(nas, rels[0])
    objects = d.status()["cache"]["objects"]
    os.unlink(p)
    r, data = read(d, p)
    check(r.status == -errno.ENOENT and data is None and not r.fds,
          "deleted at the source: OPEN answered %d %r" % (r.status, r.errmsg))
    check(not cached(d, p), "the copy of a deleted file is still cached")
    after = d.status()["cache"]["objects"]
    check(after == objects - 1, "objects %d -> %d after a source deletion" % (objects, after))
    shim_agrees(d, p, "deleted at the source")
    print("deleted: ENOENT (%s), copy dropped, objects %d -> %d; the shim agrees" % (
        r.errmsg, objects, after))


def case_chmod(d, nas, rels):
    p = os.path.join(nas, rels[1])
    want = content(p)
    sha = hashlib.sha256(want).hexdigest()
    got = as_nobody(open_as_child, d.socket, p)
    check(got["status"] == 0 and got["sha"] == sha, "nobody could not read a 0644 file: %s" % got)
    fetches = d.status()["counters"]["fetches"]
    os.chmod(p, 0)
    got = as_nobody(open_as_child, d.socket, p)
    check(got["status"] == -errno.EACCES and got["nfds"] == 0 and got["errmsg"],
          "chmod 000 at the source, nobody got %s instead of EACCES" % got)
    shim_agrees(d, p, "chmod 000 at the source", nobody=True)
    r = expect_bytes(d, p, want, "root after chmod 000")
    os.chmod(p, 0o644)
    shim_agrees(d, p, "chmod back to 0644", nobody=True)
    got = as_nobody(open_as_child, d.socket, p)
    check(got["status"] == 0 and got["sha"] == sha, "chmod back to 0644: nobody got %s" % got)
    r = expect_bytes(d, p, want, "after chmod back")
    check(r.u32("SOURCE") == 0, "a permission change refetched the object")
    check(d.status()["counters"]["fetches"] == fetches, "a permission change refetched")
    print("chmod 000: nobody refused (EACCES, %s); chmod 644: served from the cache" %
          "no descriptor")


def case_truncated(d, nas, rels):
    p = os.path.join(nas, rels[2])
    old = content(p)
    check(len(old) > 100, "sample file too small")
    with open(p, "r+b") as f:
        f.truncate(len(old) // 3)
    shim_agrees(d, p, "truncated at the source, before any open")
    expect_bytes(d, p, old[:len(old) // 3], "truncated at the source")
    with open(p, "r+b") as f:
        f.truncate(0)
    shim_agrees(d, p, "truncated to zero at the source")
    expect_bytes(d, p, b"", "truncated to zero at the source")
    # grown again to the old size with the old mtime: the size differs from the cached one
    with open(p, "wb") as f:
        f.write(old)
    expect_bytes(d, p, old, "rewritten at the source")
    print("truncated: %d -> %d -> 0 -> %d bytes, each served as the source had it" % (
        len(old), len(old) // 3, len(old)))


def case_replaced(d, nas, rels):
    p = os.path.join(nas, rels[3])
    old = content(p)
    st = os.stat(p)
    new = bytes(b ^ 0x5A for b in old)
    tmp = p + ".new"
    with open(tmp, "wb") as f:
        f.write(new)
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime
    os.rename(tmp, p)
    shim_agrees(d, p, "replaced by rename (same size and mtime)")
    expect_bytes(d, p, new, "replaced by rename (same size and mtime)")
    print("replaced by rename with the same size and mtime: new bytes (inode differs)")


def case_dir_renamed(d, nas, rels):
    away = nas + ".away"
    paths = [os.path.join(nas, r) for r in rels[4:8]]
    fresh = os.path.join(nas, rels[8])  # never read before
    want = {p: content(p) for p in paths + [fresh]}
    os.rename(nas, away)
    answers = []
    for p in paths + [fresh]:
        r, data = read(d, p)
        check(d.alive(), "granaryd died while the source was renamed away")
        if r.status == 0:
            # the only bytes there are are those in the renamed directory
            check(data == want[p], "renamed away: %s served bytes that are nowhere" % p)
            answers.append("served")
        else:
            check(not r.fds and r.errmsg, "renamed away: %d without a message" % r.status)
            answers.append(errno.errorcode.get(-r.status, str(r.status)))
    print("source renamed away: %s" % answers)
    shim_agrees(d, paths[0], "source directory renamed away", gap=True)
    known_gap(all(a != "served" for a in answers),
              "with the source directory renamed away, %d of %d opens of paths that no longer "
              "exist were served from the old directory" % (answers.count("served"),
                                                           len(answers)))
    os.rename(away, nas)
    for p in paths + [fresh]:
        expect_bytes(d, p, want[p], "source directory back")
    shim_agrees(d, paths[0], "source directory renamed back")
    print("source renamed back: every file served with the right bytes")


def case_dir_swapped(d, nas, rels):
    old_dir = nas + ".old"
    paths = [os.path.join(nas, r) for r in rels[10:14]]
    warm(d, nas, rels[10:14])
    os.rename(nas, old_dir)
    os.mkdir(nas)
    make_tree(nas, len(rels), 50, 3000, seed=4242, dirs=10)
    stale = []
    for p in paths:
        r, data = read(d, p)
        check(d.alive(), "granaryd died when the source directory was swapped")
        if r.status == 0 and data != content(p):
            stale.append(p)
        elif r.status != 0:
            check(r.errmsg, "swapped source: error %d without a message" % r.status)
    print("source directory swapped for another: %d of %d opens served the old directory's "
          "bytes" % (len(stale), len(paths)))
    known_gap(not stale, "the source directory was replaced by another and %d of %d opens "
              "served the replaced directory's bytes (stale data)" % (len(stale), len(paths)))
    shim_agrees(d, paths[0], "source directory swapped", gap=True)
    shutil.rmtree(nas)
    os.rename(old_dir, nas)
    for p in paths:
        expect_bytes(d, p, content(p), "original directory back")


def case_mounted_over(d, nas, rels):
    """A file system mounted on the source after the daemon started (the NAS
    coming up late, or remounted)."""
    p = os.path.join(nas, rels[20])
    want_old = content(p)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", nas],
                      capture_output=True).returncode != 0:
        print("NOTE: cannot mount tmpfs here; the mounted-over case is not run")
        return
    try:
        os.makedirs(os.path.dirname(p))
        new = os.urandom(777)
        with open(p, "wb") as f:
            f.write(new)
        r, data = read(d, p)
        check(d.alive(), "granaryd died when a file system was mounted on the source")
        check(r.status != 0 or data in (new, want_old), "mounted over: unknown bytes")
        what = ("the new file system's bytes" if r.status == 0 and data == new else
                "the covered directory's bytes" if r.status == 0 else
                "error %d %s" % (r.status, r.errmsg))
        print("file system mounted on the source: %s" % what)
        known_gap(r.status == 0 and data == new,
                  "after a file system was mounted on the source directory, OPEN gave %s "
                  "instead of the file now at the path" % what)
        shim_agrees(d, p, "file system mounted on the source", gap=True)
    finally:
        subprocess.run(["umount", nas], capture_output=True)
    expect_bytes(d, p, want_old, "after the unmount")


def main(wd):
    if os.geteuid() != 0:
        raise Skip("needs root: readers switch to nobody and the source is mounted over")
    os.chmod(wd.path, 0o755)
    nas = os.path.join(wd.path, "nas")
    rels = make_tree(nas, 40, 500, 20000, dirs=10)
    for root, dirs, files in os.walk(nas):
        os.chmod(root, 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    d = wd.daemon([{"path": nas, "backend": "posix", "consistency": "strict"}],
                  socket_group="nogroup")
    d.start()
    warm(d, nas, rels[:10])

    case_deleted(d, nas, rels)
    case_chmod(d, nas, rels)
    case_truncated(d, nas, rels)
    case_replaced(d, nas, rels)
    case_dir_renamed(d, nas, rels)
    case_dir_swapped(d, nas, rels)
    case_mounted_over(d, nas, rels)

    check(d.alive(), "granaryd died")
    st = d.status()
    print("counters: %s" % {k: st["counters"][k] for k in
                             ("fetches", "refetches_changed", "validations", "denied")
                             if k in st["counters"]})
    check(d.stop() == 0, "granaryd did not exit 0 on SIGTERM")
    if gaps:
        print("%d known gap(s) not asserted (GRANARY_TEST_KNOWN_GAPS=1 asserts them)" %
              len(gaps))


run(main, "backend_faults_nas")
