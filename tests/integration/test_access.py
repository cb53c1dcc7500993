"""Access control: a caller who could not open the original NAS file cannot get
it through granary.

The daemon runs as root. Readers run as `nobody` (a forked child that drops to
uid/gid 65534 with no supplementary groups) and ask over the raw protocol; for
every file the child also tries the original path itself, and the daemon's
answer must match the kernel's: EACCES with a message and no descriptor where
the kernel refuses, the same bytes where it allows. Checked before and after
the file is cached (a miss and a hit take different paths in the daemon), and
the daemon's descriptor count does not grow across refused requests.

Also: symlinks inside the NAS directory that point out of the mount are
refused, even to root; one pointing to a file inside the mount is served. The
socket is 0660 and group-owned by the configured socket_group, and a user
outside that group cannot connect.

Object-store mounts (here http, served by a real nginx on loopback) serve
only the uids and gids their allow lists name, by primary or supplementary
group, on a miss and on a hit; a mount without lists serves anyone who can
reach the socket. Skipped, with a note, where nginx is not installed.

The same files sit under a strict and an immutable mount. Readers also go
through the LD_PRELOAD shim (`cat` as nobody, which takes the shared-index
fast path for cached files): the output and exit status must be exactly those
of `cat` without the shim.

GRANARY_TEST_KNOWN_GAPS=1 also asserts what the daemon does not do yet (see
docs/reliability.md): on the immutable mount, once root has cached it, a
world-readable file inside a 0700 directory is refused to `nobody` as the
kernel refuses it, both over the protocol and through the shim.
"""
import errno
import grp
import hashlib
import os
import shutil
import socket
import stat
import subprocess

from harness import PRELOAD, Conn, Fail, Skip, as_user, check, run

NOBODY = 65534
NOGROUP = 65534
# Every case is asserted now that the daemon handles them all;
# GRANARY_TEST_KNOWN_GAPS=0 would tolerate the cases listed in docs/reliability.md.
KNOWN_GAPS = os.environ.get("GRANARY_TEST_KNOWN_GAPS", "1") == "1"


def probe(sock, paths):
    """In the child: for each path, what the kernel says and what granary says."""
    res = {}
    c = Conn(sock)
    for p in paths:
        e = {}
        try:
            with open(p, "rb") as f:
                e["direct"] = "ok"
                e["direct_sha"] = hashlib.sha256(f.read()).hexdigest()
        except OSError as ex:
            e["direct"] = errno.errorcode.get(ex.errno, str(ex.errno))
        r = c.request("OPEN", path=p)
        e["status"] = r.status
        e["errmsg"] = r.errmsg
        e["nfds"] = len(r.fds)
        if r.status == 0 and len(r.fds) == 1:
            with os.fdopen(r.fds[0], "rb") as f:
                e["sha"] = hashlib.sha256(f.read()).hexdigest()
        else:
            for fd in r.fds:
                os.close(fd)
        res[p] = e
    c.close()
    return res


def refused_many(sock, path, n):
    """In the child: n OPENs of a file it may not read; count the answers."""
    c = Conn(sock)
    answers = {}
    for _ in range(n):
        r = c.request("OPEN", path=path)
        for fd in r.fds:
            os.close(fd)
        key = "%d/%d" % (r.status, len(r.fds))
        answers[key] = answers.get(key, 0) + 1
    c.close()
    return answers


def open_many(sock, paths):
    """In the child: OPEN each path; status, message, descriptors, digest."""
    c = Conn(sock)
    out = {}
    for p in paths:
        r = c.request("OPEN", path=p)
        e = {"status": r.status, "errmsg": r.errmsg, "nfds": len(r.fds), "sha": None}
        if r.status == 0 and len(r.fds) == 1:
            with os.fdopen(r.fds[0], "rb") as f:
                e["sha"] = hashlib.sha256(f.read()).hexdigest()
        else:
            for fd in r.fds:
                os.close(fd)
        out[p] = e
    c.close()
    return out


def try_connect(sock):
    """In the child: can it connect to the socket at all?"""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        s.connect(sock)
        return "connected"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    finally:
        s.close()


def drop_to(uid, gid, groups=()):
    def fn():
        os.setgroups(list(groups))
        os.setgid(gid)
        os.setuid(uid)
    return fn


def cat_as_nobody(d, path, shim):
    """`cat PATH` as nobody:nogroup, through the shim or not: (exit, stdout)."""
    env = d.env()
    if shim:
        env["LD_PRELOAD"] = PRELOAD
    else:
        env["GRANARY_DISABLE"] = "1"
    p = subprocess.run(["cat", path], env=env, capture_output=True,
                       preexec_fn=drop_to(NOBODY, NOGROUP), timeout=60)
    return p.returncode, p.stdout


def daemon_fds(d):
    return len(os.listdir("/proc/%d/fd" % d.pid))


def daemon_fds_settled(d):
    """daemon_fds() once the daemon has closed every connection closed before now.

    No sleep: the daemon closes a connection when its one loop reads the end
    of it, and the end of every connection closed before this call is there
    to read before the STATUS below is even sent, so the STATUS is answered
    after those ends were handled. The count is taken with that connection
    still open: it includes it, so compare counts taken the same way.
    """
    c = d.conn()
    try:
        r = c.request("STATUS")
        check(r.status == 0, "STATUS failed: %s" % r.errmsg)
        return daemon_fds(d)
    finally:
        c.close()


def write(path, data, mode, gid=0):
    with open(path, "wb") as f:
        f.write(data)
    os.chown(path, 0, gid)
    os.chmod(path, mode)


def make_nas(nas):
    """The files every mount holds; their paths by role."""
    os.makedirs(os.path.join(nas, "d"))
    os.makedirs(os.path.join(nas, "private"))
    os.chmod(nas, 0o755)
    os.chmod(os.path.join(nas, "d"), 0o755)
    os.chmod(os.path.join(nas, "private"), 0o700)
    f = {"secret": os.path.join(nas, "secret.bin"),  # 0600 root:root
         "public": os.path.join(nas, "d", "public.bin"),  # 0644
         "group_ok": os.path.join(nas, "d", "group.bin"),  # 0640 root:nogroup
         "group_no": os.path.join(nas, "d", "group_denied.bin"),  # 0604 root:nogroup
         "hidden": os.path.join(nas, "private", "inner.bin")}  # 0644 in a 0700 dir
    write(f["secret"], os.urandom(70000), 0o600)
    write(f["public"], os.urandom(50000), 0o644)
    write(f["group_ok"], os.urandom(3000), 0o640, NOGROUP)
    write(f["group_no"], os.urandom(3000), 0o604, NOGROUP)
    write(f["hidden"], os.urandom(4000), 0o644)
    return f


gaps = []


def known_gap(msg):
    gaps.append(msg)
    print("KNOWN GAP: " + msg)


def check_socket(sock, group_name):
    st = os.stat(sock)
    check(stat.S_ISSOCK(st.st_mode), "%s is not a socket" % sock)
    check(stat.S_IMODE(st.st_mode) == 0o660, "socket mode %o, expected 660" %
          stat.S_IMODE(st.st_mode))
    gid = grp.getgrnam(group_name).gr_gid
    check(st.st_gid == gid, "socket group %d, expected %s (%d)" % (st.st_gid, group_name, gid))


def compare(results, expect_refused, expect_served, known_gaps):
    """Check the child's probe results against the kernel's verdicts."""
    for p, e in results.items():
        if e["direct"] == "EACCES" and p not in known_gaps:
            check(e["status"] == -errno.EACCES,
                  "nobody cannot open %s yet granary answered %d %r" % (p, e["status"],
                                                                      e["errmsg"]))
            check(e["errmsg"], "EACCES for %s without a message" % p)
            check(e["nfds"] == 0, "a refused OPEN of %s carried a descriptor" % p)
        if e["direct"] == "ok":
            check(e["status"] == 0 and e.get("sha") == e["direct_sha"],
                  "nobody can open %s but granary answered %d %r" % (p, e["status"],
                                                                   e["errmsg"]))
    for p in expect_refused:
        check(results[p]["direct"] == "EACCES", "the kernel let nobody open %s: %s" % (
            p, results[p]["direct"]))
    for p in expect_served:
        check(results[p]["direct"] == "ok", "the kernel refused %s to nobody: %s" % (
            p, results[p]["direct"]))


def main(wd):
    if os.geteuid() != 0:
        raise Skip("needs root: the daemon runs as root and readers switch to nobody")
    os.chmod(wd.path, 0o755)  # nobody reaches the socket and the NAS below it
    nas = os.path.join(wd.path, "nas")
    imm = os.path.join(wd.path, "nas-immutable")
    f = make_nas(nas)
    fi = make_nas(imm)
    secret, public = f["secret"], f["public"]

    # symlinks: out of the mount (a file, a directory), and inside it
    link_out = os.path.join(nas, "passwd")
    os.symlink("/etc/passwd", link_out)
    link_dir_out = os.path.join(nas, "etc")
    os.symlink("/etc", link_dir_out)
    link_rel_out = os.path.join(nas, "d", "up")
    os.symlink("../../../../../../../../etc/passwd", link_rel_out)
    link_in = os.path.join(nas, "d", "alias.bin")
    os.symlink("public.bin", link_in)
    link_abs_in = os.path.join(nas, "d", "abs_alias.bin")
    os.symlink(public, link_abs_in)

    d = wd.daemon([{"path": nas, "backend": "posix", "consistency": "strict"},
                   {"path": imm, "backend": "posix", "consistency": "immutable"}],
                  socket_group="nogroup")
    d.start()
    check_socket(d.socket, "nogroup")

    # ---- symlinks, as root (root may read anything, yet not through a link out)
    c = d.conn()
    for p in (link_out, link_dir_out + "/passwd", link_rel_out):
        r, data = c.read(p)
        check(r.status != 0 and data is None,
              "OPEN of %s (a symlink out of the mount) served %s bytes" % (
                  p, len(data) if data else 0))
        check(not r.fds, "a refused OPEN of %s carried a descriptor" % p)
        check(r.errmsg, "refusing %s gave no message" % p)
        print("symlink out %s: %d %s" % (p, r.status, r.errmsg))
    r, data = c.read(link_in)
    check(r.status == 0 and data == open(public, "rb").read(),
          "a symlink to a file inside the mount: %d %r" % (r.status, r.errmsg))
    # an absolute symlink to a file inside the mount: the right bytes or a refusal
    r, data = c.read(link_abs_in)
    check(r.status != 0 or data == open(public, "rb").read(),
          "an absolute symlink inside the mount served other bytes")
    print("absolute symlink inside the mount: %s" % (
        "served" if r.status == 0 else "refused: %d %s" % (r.status, r.errmsg)))
    # STAT of a link out must not describe the file outside either
    r = c.request("STAT", path=link_out)
    check(r.status != 0, "STAT of a symlink to /etc/passwd answered size %s mode %s: the file "
          "outside the mount" % (r.get("SIZE"), r.get("MODE")))
    print("STAT of a symlink out: %d %s" % (r.status, r.errmsg))
    c.close()

    # ---- nobody, before anything is cached (misses), then after (hits)
    for root, fs, consistency in ((nas, f, "strict"), (imm, fi, "immutable")):
        files = [fs[k] for k in ("secret", "public", "group_ok", "group_no", "hidden")]
        if root == nas:
            files.append(link_in)
        refused = [fs["secret"], fs["group_no"], fs["hidden"]]
        served = [fs["public"], fs["group_ok"]]
        for phase in ("miss", "hit"):
            # the one case known to fail, unless GRANARY_TEST_KNOWN_GAPS=1
            tolerate = not KNOWN_GAPS and consistency == "immutable" and phase == "hit"
            res = as_user(NOBODY, NOGROUP, probe, d.socket, files)
            for p in files:
                e = res[p]
                print("%s, %s, as nobody (%s): kernel %s, granary %d %s" % (
                    os.path.relpath(p, wd.path), consistency, phase, e["direct"], e["status"],
                    e["errmsg"]))
            compare(res, refused, served, [fs["hidden"]] if tolerate else [])
            if res[fs["hidden"]]["status"] == 0:
                known_gap("%s (0644 in a 0700 directory, %s mount, %s) is served to nobody "
                          "over the protocol, whom the kernel refuses" % (
                              fs["hidden"], consistency, phase))
            if phase == "miss":
                # root caches everything; the next round is served from the cache
                c = d.conn()
                for p in files:
                    r, data = c.read(p)
                    check(r.status == 0 and data == open(p, "rb").read(),
                          "root could not read %s: %d %r" % (p, r.status, r.errmsg))
                for p in files:
                    r = c.request("OPEN", path=p, flags=1)  # NOFETCH: it is cached
                    for fd in r.fds:
                        os.close(fd)
                    check(r.status == 0, "%s is not cached after root read it" % p)
                c.close()
        # through the shim, which opens cached files from the shared index itself
        for p in files:
            plain = cat_as_nobody(d, p, shim=False)
            shim = cat_as_nobody(d, p, shim=True)
            print("cat %s as nobody, %s mount: exit %d without the shim, %d with it" % (
                os.path.relpath(p, wd.path), consistency, plain[0], shim[0]))
            if shim == plain:
                continue
            msg = ("cat %s as nobody through the shim (%s mount) gave exit %d and %d bytes; "
                   "without the shim exit %d and %d bytes" % (p, consistency, shim[0],
                                                              len(shim[1]), plain[0],
                                                              len(plain[1])))
            if p == fs["hidden"] and consistency == "immutable" and not KNOWN_GAPS:
                known_gap(msg)
            else:
                raise Fail(msg)

    # ---- refused requests leave nothing behind in the daemon
    # (the readers above, and then the child, have closed their connections)
    before = daemon_fds_settled(d)
    answers = as_user(NOBODY, NOGROUP, refused_many, d.socket, secret, 300)
    check(answers == {"%d/0" % -errno.EACCES: 300},
          "300 refused OPENs answered %s" % answers)
    after = daemon_fds_settled(d)
    check(after <= before + 1, "daemon descriptors grew from %d to %d over 300 refused "
          "OPENs" % (before, after))
    st = d.status()
    print("daemon fds %d -> %d over 300 refused OPENs; counters: %s" % (
        before, after, {k: v for k, v in st["counters"].items() if "denied" in k}))

    # ---- a user outside the socket's group cannot connect at all
    other_gid = 65533  # not nogroup: no group permission on the socket
    got = as_user(NOBODY, other_gid, try_connect, d.socket)
    check(got in ("EACCES", "EPERM"), "nobody outside the socket group: connect %s" % got)
    check(as_user(NOBODY, NOGROUP, try_connect, d.socket) == "connected",
          "nobody in the socket group could not connect")
    d.stop()

    object_store_allow_lists(wd)
    if gaps:
        print("%d known gap(s) not asserted (GRANARY_TEST_KNOWN_GAPS=1 asserts them)" %
              len(gaps))

    # ---- the default socket_group is "granary" where that group exists
    created = False
    try:
        try:
            grp.getgrnam("granary")
        except KeyError:
            p = subprocess.run(["groupadd", "--system", "granary"], capture_output=True,
                               text=True)
            if p.returncode != 0:
                print("NOTE: no group granary and groupadd failed (%s): default group "
                      "not checked" % p.stderr.strip())
                return
            created = True
        d2 = wd.daemon([{"path": nas, "backend": "posix"}], name="g2")
        d2.start()
        check_socket(d2.socket, "granary")
        got = as_user(NOBODY, NOGROUP, try_connect, d2.socket)
        check(got in ("EACCES", "EPERM"), "nobody, not in group granary: connect %s" % got)
        d2.stop()
    finally:
        if created:
            subprocess.run(["groupdel", "granary"], capture_output=True)


def object_store_allow_lists(wd):
    """http mounts with allow_uids / allow_gids, against a real nginx."""
    try:
        from servers import Nginx
    except ImportError as e:
        print("NOTE: no tests/lib/servers.py (%s): allow lists not checked" % e)
        return
    if not (shutil.which("nginx") or os.path.exists("/usr/sbin/nginx")):
        print("NOTE: nginx is not installed: object-store allow lists not checked")
        return
    www = os.path.join(wd.path, "www")
    data = {}
    for sub in ("byuid", "bygid", "open"):
        os.makedirs(os.path.join(www, sub))
        data[sub] = os.urandom(20000)
        with open(os.path.join(www, sub, "x.bin"), "wb") as f:
            f.write(data[sub])
    ng = Nginx(wd.path, www).start()
    try:
        d = wd.daemon([
            {"path": "/granary/byuid", "backend": "http", "url": ng.url + "byuid/",
             "allow_uids": [1001]},
            {"path": "/granary/bygid", "backend": "http", "url": ng.url + "bygid/",
             "allow_gids": [2001]},
            {"path": "/granary/open", "backend": "http", "url": ng.url + "open/"},
        ], name="g3", socket_mode="0666")
        d.start()
        paths = {sub: "/granary/%s/x.bin" % sub for sub in data}
        sha = {sub: hashlib.sha256(v).hexdigest() for sub, v in data.items()}
        # (uid, gid, supplementary groups) -> what each mount must do
        callers = [
            ((1002, 1002, ()), {"byuid": False, "bygid": False, "open": True}),
            ((1001, 1001, ()), {"byuid": True, "bygid": False, "open": True}),
            ((1003, 2001, ()), {"byuid": False, "bygid": True, "open": True}),
            ((1004, 1004, (2001,)), {"byuid": False, "bygid": True, "open": True}),
            ((1005, 1005, (3000, 3001)), {"byuid": False, "bygid": False, "open": True}),
        ]
        # the refused caller goes first: its requests are misses, the others' hits
        for rounds in ("miss", "hit"):
            for (uid, gid, groups), expect in callers:
                got = as_user(uid, gid, open_many, d.socket, list(paths.values()),
                              groups=groups)
                for sub, allowed in expect.items():
                    e = got[paths[sub]]
                    who = "uid %d gid %d groups %s on %s (%s)" % (uid, gid, list(groups),
                                                                  paths[sub], rounds)
                    if allowed:
                        check(e["status"] == 0 and e["sha"] == sha[sub],
                              "%s: refused or wrong bytes: %s" % (who, e))
                    else:
                        check(e["status"] == -errno.EACCES and e["nfds"] == 0 and e["errmsg"],
                              "%s: not refused: %s" % (who, e))
            print("object-store allow lists (%s): every caller served or refused as listed"
                  % rounds)
        d.stop()
    finally:
        ng.stop()


run(main, "access")
