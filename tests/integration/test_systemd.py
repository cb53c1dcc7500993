"""systemd integration: the unit passes `systemd-analyze verify` (with its
ExecStart pointed at the built granaryd and its Documentation= pages found in
the source tree), the sysusers.d and tmpfiles.d entries create the user and
directories in a scratch root, and granaryd speaks the notify protocol as
Type=notify needs: READY=1 from its own pid only once its socket answers,
none when start-up fails, nothing on SIGHUP, STOPPING=1 on SIGTERM."""
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import time

from harness import GRANARYD, SRC, Conn, Fail, check, make_tree, run

UNIT = os.path.join(SRC, "systemd", "granaryd.service")
MAN_PAGES = ("granaryd.8", "granary.1", "granary.yaml.5")


def need(tool):
    path = shutil.which(tool)
    check(path, "%s not found: install the Debian package systemd" % tool)
    return path


def verify_unit(wd):
    analyze = need("systemd-analyze")
    d = os.path.join(wd.path, "unit")
    os.makedirs(d)
    with open(UNIT) as f:
        text = f.read()
    check("ExecStart=/usr/sbin/granaryd --config /etc/granary/granary.yaml" in text,
          "the unit does not start /usr/sbin/granaryd --config /etc/granary/granary.yaml")
    for line in ("Type=notify", "User=granary", "Group=granary", "ProtectSystem=strict",
                 "ReadWritePaths=/var/cache/granary", "NoNewPrivileges=yes",
                 "CapabilityBoundingSet=CAP_DAC_READ_SEARCH CAP_SETUID CAP_SETGID",
                 "AmbientCapabilities=CAP_DAC_READ_SEARCH CAP_SETUID CAP_SETGID",
                 "CacheDirectoryMode=0700", "LimitMEMLOCK=128M",
                 "LimitNOFILE=1048576", "RuntimeDirectory=granary", "CacheDirectory=granary",
                 "ExecReload=/bin/kill -HUP $MAINPID", "Restart=on-failure"):
        check(line + "\n" in text, "the unit lacks %s" % line)
    unit = os.path.join(d, "granaryd.service")
    with open(unit, "w") as f:
        f.write(text.replace("/usr/sbin/granaryd", GRANARYD))

    env = dict(os.environ)
    args = [analyze, "verify"]
    if shutil.which("man"):
        # Documentation=man:... is checked with man(1): give it the sources
        mandir = os.path.join(wd.path, "man")
        for page in MAN_PAGES:
            sec = os.path.join(mandir, "man" + page.rsplit(".", 1)[1])
            os.makedirs(sec, exist_ok=True)
            shutil.copy(os.path.join(SRC, "docs", "man", page), sec)
        env["MANPATH"] = mandir
    else:
        args.append("--man=no")
    p = subprocess.run(args + [unit], capture_output=True, text=True, env=env, timeout=120)
    out = (p.stdout + p.stderr).strip()
    print("systemd-analyze verify: rc=%d %s" % (p.returncode, out or "(no output)"))
    # verify only warns about lines it cannot parse: any output is a problem
    check(p.returncode == 0 and not out, "systemd-analyze verify complained:\n" + out)

    # and it does catch a broken unit, so the check above means something
    bad = os.path.join(d, "broken.service")
    with open(bad, "w") as f:
        f.write(text.replace("/usr/sbin/granaryd", os.path.join(d, "no-such-granaryd")))
    p = subprocess.run(args + [bad], capture_output=True, text=True, env=env, timeout=120)
    check(p.returncode != 0, "systemd-analyze verify accepted a unit with no binary")


def sysusers_tmpfiles(wd):
    sysusers, tmpfiles = need("systemd-sysusers"), need("systemd-tmpfiles")
    root = os.path.join(wd.path, "root")
    for sub in ("etc", "usr/lib/sysusers.d", "usr/lib/tmpfiles.d"):
        os.makedirs(os.path.join(root, sub))
    shutil.copy(os.path.join(SRC, "systemd", "granary.sysusers"),
                os.path.join(root, "usr/lib/sysusers.d/granary.conf"))
    shutil.copy(os.path.join(SRC, "systemd", "granary.tmpfiles"),
                os.path.join(root, "usr/lib/tmpfiles.d/granary.conf"))
    p = subprocess.run([sysusers, "--root=" + root], capture_output=True, text=True,
                       timeout=60)
    check(p.returncode == 0, "systemd-sysusers failed:\n" + p.stderr)
    with open(os.path.join(root, "etc/passwd")) as f:
        users = {ln.split(":")[0]: ln.split(":") for ln in f.read().splitlines()}
    with open(os.path.join(root, "etc/group")) as f:
        groups = {ln.split(":")[0]: ln.split(":") for ln in f.read().splitlines()}
    check("granary" in users and "granary" in groups, "no granary user or group: %s %s" % (
        list(users), list(groups)))
    uid, gid = int(users["granary"][2]), int(groups["granary"][2])
    check(int(users["granary"][3]) == gid, "the user's primary group is not granary")
    check(uid < 1000, "granary is not a system user (uid %d)" % uid)
    check(users["granary"][6] in ("/usr/sbin/nologin", "/sbin/nologin"), "granary can log in")

    p = subprocess.run([tmpfiles, "--root=" + root, "--create"], capture_output=True,
                       text=True, timeout=60)
    check(p.returncode == 0, "systemd-tmpfiles --create failed:\n" + p.stderr)
    for sub, mode in (("run/granary", 0o750), ("var/cache/granary", 0o700)):
        st = os.stat(os.path.join(root, sub))
        check(stat.S_ISDIR(st.st_mode), "%s not made" % sub)
        check(stat.S_IMODE(st.st_mode) == mode, "%s has mode %o" % (sub, st.st_mode))
        check((st.st_uid, st.st_gid) == (uid, gid), "%s owned by %d:%d" % (
            sub, st.st_uid, st.st_gid))


class Notify:
    """A datagram socket standing in for systemd's notify socket."""

    def __init__(self, address, fs_path=None):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.s.bind(address)
        self.env = fs_path or "@" + address[1:].decode()

    def recv(self, timeout):
        """(message, sender pid) or (None, None) after timeout seconds."""
        self.s.settimeout(timeout)
        try:
            data, anc, _, _ = self.s.recvmsg(4096, socket.CMSG_SPACE(12))
        except socket.timeout:
            return None, None
        pid = None
        for level, typ, cdata in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS:
                pid = struct.unpack("=iII", cdata[:12])[0]
        return data.decode(), pid

    def close(self):
        self.s.close()


def answers(path):
    try:
        c = Conn(path, timeout=5)
        r = c.request("HELLO")
        c.close()
        return r.status == 0
    except OSError:
        return False


def readiness(wd, nas, notify, name):
    d = wd.daemon([{"path": nas}], name=name)
    d.start(wait=False, extra_env={"NOTIFY_SOCKET": notify.env})
    msg, pid = notify.recv(30)
    check(msg is not None, "no notification within 30 s:\n" + d.logtext())
    # the very moment READY=1 arrives, the socket must already answer
    up = answers(d.socket)
    check("READY=1" in msg.split("\n"), "first notification was %r, not READY=1" % msg)
    check(up, "READY=1 was sent before the socket answered")
    check(pid == d.pid, "READY=1 came from pid %s, not granaryd's %d" % (pid, d.pid))

    # SIGHUP (ExecReload) reopens the log; the daemon stays up, says nothing
    os.kill(d.pid, signal.SIGHUP)
    msg, _ = notify.recv(1)
    check(msg is None, "SIGHUP produced a notification %r" % msg)
    check(d.alive() and answers(d.socket), "granaryd did not survive SIGHUP")

    d.proc.send_signal(signal.SIGTERM)
    msg, pid = notify.recv(20)
    check(msg is not None and "STOPPING=1" in msg.split("\n"),
          "no STOPPING=1 after SIGTERM: %r" % msg)
    check(pid == d.pid, "STOPPING=1 came from pid %s" % pid)
    check(d.stop() == 0, "granaryd did not exit 0 after SIGTERM")


def failed_start(wd, nas, notify):
    # metrics on a taken port: start-up fails after the socket is listening
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    d = wd.daemon([{"path": nas}], name="fail", metrics={"listen": "127.0.0.1:%d" % port})
    d.start(wait=False, extra_env={"NOTIFY_SOCKET": notify.env})
    try:
        rc = d.proc.wait(30)
    except subprocess.TimeoutExpired:
        raise Fail("granaryd started despite a taken metrics port")
    finally:
        blocker.close()
    check(rc != 0, "granaryd exited 0 after a failed start")
    msg, _ = notify.recv(0.5)
    check(msg is None or "READY=1" not in msg.split("\n"),
          "READY=1 sent by a daemon that failed to start")


def main(wd):
    verify_unit(wd)
    sysusers_tmpfiles(wd)

    nas = os.path.join(wd.path, "nas")
    make_tree(nas, 300, 1, 4096)
    # a cache to restore makes start-up do real work before READY=1
    pre = wd.daemon([{"path": nas}], name="fs")
    pre.start()
    pre.cli("warm", nas, "--quiet", check_rc=0)
    check(pre.stop() == 0, "granaryd did not stop cleanly")

    path = os.path.join(wd.path, "notify.sock")
    n = Notify(path, fs_path=path)
    readiness(wd, nas, n, "fs")  # the same directory: restores the 300 objects
    failed_start(wd, nas, n)
    n.close()

    # an abstract-namespace notify socket, as systemd uses for some services
    n = Notify(b"\0granary-test-%d-%d" % (os.getpid(), int(time.time())))
    readiness(wd, nas, n, "abstract")
    n.close()


run(main, "systemd")
