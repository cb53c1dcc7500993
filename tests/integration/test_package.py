"""The Debian package: cpack builds granary_<version>_<arch>.deb from the build
directory; its control data (Depends from dpkg-shlibdeps, the conffile, the
maintainer scripts) and its files are what a node needs; the extracted
granaryd accepts the installed configuration, and, started from a copy of it
with the socket, cache, log and metrics redirected into a temporary directory,
serves the extracted `granary` CLI and the extracted shim."""
import glob
import grp
import gzip
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request

from harness import BUILD, Fail, check, make_tree, run

VERSION = "0.1.0"


def sh(args, timeout=600, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)


def need(tool, package):
    path = shutil.which(tool)
    check(path, "%s not found: install the Debian package %s" % (tool, package))
    return path


def build_deb(wd):
    need("cpack", "cmake")
    need("dpkg-shlibdeps", "dpkg-dev")
    # cpack installs what is built; build everything the install rules name
    p = sh(["cmake", "--build", BUILD], timeout=1800)
    check(p.returncode == 0, "the build failed:\n" + (p.stdout + p.stderr)[-4000:])
    out = os.path.join(wd.path, "pkg")
    p = sh(["cpack", "-G", "DEB", "-B", out], cwd=BUILD)
    check(p.returncode == 0, "cpack failed:\n" + (p.stdout + p.stderr)[-4000:])
    debs = glob.glob(os.path.join(out, "*.deb"))
    check(len(debs) == 1, "cpack made %s" % debs)
    deb = debs[0]
    check(re.fullmatch(r"granary_%s_[a-z0-9]+\.deb" % re.escape(VERSION),
                       os.path.basename(deb)), "package file name %s" % deb)
    return deb


def check_control(wd, deb):
    p = sh(["dpkg-deb", "-f", deb])
    check(p.returncode == 0, "dpkg-deb -f: " + p.stderr)
    fields = dict(re.findall(r"^([A-Za-z-]+): (.*)$", p.stdout, re.M))
    check(fields.get("Package") == "granary", "Package: %s" % fields.get("Package"))
    check(fields.get("Version") == VERSION, "Version: %s" % fields.get("Version"))
    check(fields.get("Maintainer"), "no Maintainer")
    check(fields.get("Description"), "no Description")
    deps = fields.get("Depends", "")
    # computed by dpkg-shlibdeps from the binaries, not written by hand
    for lib in ("libc6", "libevent", "libsqlite3", "liburing", "libyaml"):
        check(lib in deps, "Depends lacks %s: %s" % (lib, deps))

    ctl = os.path.join(wd.path, "control")
    p = sh(["dpkg-deb", "-e", deb, ctl])
    check(p.returncode == 0, "dpkg-deb -e: " + p.stderr)
    with open(os.path.join(ctl, "conffiles")) as f:
        conffiles = f.read().split()
    check(conffiles == ["/etc/granary/granary.yaml"], "conffiles: %s" % conffiles)
    for script in ("postinst", "prerm", "postrm"):
        path = os.path.join(ctl, script)
        check(os.access(path, os.X_OK), "%s missing or not executable" % script)
        p = sh(["sh", "-n", path])
        check(p.returncode == 0, "%s is not valid sh: %s" % (script, p.stderr))
    with open(os.path.join(ctl, "postinst")) as f:
        postinst = f.read()
    check("systemd-sysusers" in postinst and "systemd-tmpfiles" in postinst,
          "postinst does not create the user and directories")


def extract(wd, deb):
    root = os.path.join(wd.path, "root")
    p = sh(["dpkg-deb", "-x", deb, root])
    check(p.returncode == 0, "dpkg-deb -x: " + p.stderr)
    p = sh(["dpkg-deb", "-c", deb])
    for line in p.stdout.splitlines():
        check(" root/root " in line, "not owned by root in the package: " + line)
    return root


def one(root, pattern):
    found = glob.glob(os.path.join(root, pattern))
    if not found and pattern.startswith("lib/"):
        found = glob.glob(os.path.join(root, "usr", pattern))  # /lib or /usr/lib
    check(found, "the package has no %s" % pattern)
    return found[0]


def check_files(root):
    one(root, "usr/sbin/granaryd")
    one(root, "usr/bin/granary")
    libs = glob.glob(os.path.join(root, "usr/lib*/**/libgranary.so.0"), recursive=True)
    check(len(libs) == 1, "libgranary.so.0 in the package: %s" % libs)
    lib = libs[0]
    libdir = os.path.dirname(lib)
    check(os.path.islink(os.path.join(libdir, "libgranary.so")), "no libgranary.so link")
    one(root, os.path.relpath(libdir, root) + "/libgranary-preload.so")
    one(root, "usr/include/granary.h")
    pc = one(root, os.path.relpath(libdir, root) + "/pkgconfig/granary.pc")
    with open(pc) as f:
        text = f.read()
    check(re.search(r"^prefix=/usr$", text, re.M), "granary.pc prefix is not /usr:\n" + text)
    unit = one(root, "lib/systemd/system/granaryd.service")
    with open(unit) as f:
        check("ExecStart=/usr/sbin/granaryd " in f.read(), "the unit does not run /usr/sbin")
    one(root, "lib/sysusers.d/granary.conf")
    one(root, "lib/tmpfiles.d/granary.conf")
    one(root, "etc/granary/granary.yaml")
    for page in ("man8/granaryd.8", "man1/granary.1", "man5/granary.yaml.5"):
        path = one(root, "usr/share/man/%s*" % page)
        data = gzip.open(path).read() if path.endswith(".gz") else open(path, "rb").read()
        check(data.startswith(b".\\\"") or b"\n.TH " in data, "%s is not a manual page" % page)
        if shutil.which("groff"):
            p = subprocess.run(["groff", "-man", "-ww", "-z"], input=data, capture_output=True,
                               timeout=60)
            check(p.returncode == 0 and not p.stderr, "groff warns on %s: %s" % (page,
                                                                               p.stderr))
    one(root, "usr/share/doc/granary/operations.md")
    one(root, "usr/share/doc/granary/configuration.md")
    # nothing installed may still point into the build tree
    for binary in ("usr/sbin/granaryd", "usr/bin/granary", os.path.relpath(lib, root)):
        p = sh(["readelf", "-d", os.path.join(root, binary)])
        check(BUILD not in p.stdout and os.path.realpath(BUILD) not in p.stdout,
              "%s keeps a RUNPATH into the build tree" % binary)
    return libdir


def redirected_config(installed, tmp, nas, port):
    """The installed config, with what must stay in @tmp replaced and the
    mounts and peers (they name hosts that must not be contacted from a test)
    swapped for one local NAS directory."""
    with open(installed) as f:
        lines = f.read().splitlines()
    blocks, cur = [], None
    for line in lines:
        m = re.match(r"([A-Za-z_][A-Za-z0-9_.]*):", line)
        if m:
            cur = [m.group(1), []]
            blocks.append(cur)
        if cur is None:
            continue  # the header comment
        cur[1].append(line)
    keys = [b[0] for b in blocks]
    for key in ("socket", "cache", "mounts", "metrics", "log"):
        check(key in keys, "the installed config has no %s section" % key)
    drop = {"socket", "socket_group", "mounts", "peers", "metrics", "log"}
    out = []
    for key, body in blocks:
        if key in drop:
            continue
        if key == "cache":
            body = [ln for ln in body if not re.match(r"\s+dir:", ln)]
        out += body
    group_ok = True
    try:
        grp.getgrnam("granary")
    except KeyError:
        group_ok = False
    out += ["socket: %s" % os.path.join(tmp, "granary.sock"),
            "socket_group: %s" % ("granary" if group_ok else "~"),
            "cache.dir: %s" % os.path.join(tmp, "cache"),
            "metrics:",
            "  listen: 127.0.0.1:%d" % port,
            "log:",
            "  level: info",
            "  file: %s" % os.path.join(tmp, "granaryd.log"),
            "mounts:",
            "  - path: %s" % nas,
            "    backend: posix"]
    path = os.path.join(tmp, "granary.yaml")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    return path


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run_installed(wd, root, libdir):
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = libdir
    env.pop("GRANARY_CONFIG", None)
    granaryd = os.path.join(root, "usr/sbin/granaryd")
    granary = os.path.join(root, "usr/bin/granary")
    installed = os.path.join(root, "etc/granary/granary.yaml")

    p = sh([granaryd, "--version"], env=env)
    check(p.returncode == 0 and VERSION in p.stdout, "granaryd --version: %s" % p.stdout)
    p = sh([granaryd, "--check-config", "--config", installed], env=env)
    check(p.returncode == 0, "the installed config does not pass --check-config:\n" + p.stderr)
    check("cache:" in p.stdout, "--check-config printed no settings")

    tmp = os.path.join(wd.path, "run")
    os.makedirs(tmp)
    nas = os.path.join(wd.path, "nas")
    rels = make_tree(nas, 200, 1, 16 * 1024, dirs=4)
    port = free_port()
    cfg = redirected_config(installed, tmp, nas, port)
    p = sh([granaryd, "--check-config", "--config", cfg], env=env)
    check(p.returncode == 0, "the redirected config fails:\n%s\n%s" % (p.stderr,
                                                                      open(cfg).read()))
    check(os.path.join(tmp, "cache") in p.stdout, "cache.dir not redirected")

    sock = os.path.join(tmp, "granary.sock")
    env["GRANARY_SOCKET"] = sock
    errlog = os.path.join(tmp, "stderr")
    with open(errlog, "wb") as errf:
        d = subprocess.Popen([granaryd, "--config", cfg], env=env, stdout=subprocess.DEVNULL,
                             stderr=errf)
    try:
        deadline = time.time() + 30
        while True:
            if d.poll() is not None:
                raise Fail("the installed granaryd exited %s: %s" % (
                    d.returncode, open(errlog).read()[-3000:]))
            p = sh([granary, "status"], env=env, timeout=30)
            if p.returncode == 0:
                break
            check(time.time() < deadline, "granary status never reached the daemon: " +
                  p.stderr)
            time.sleep(0.05)
        check(VERSION in p.stdout and "granaryd" in p.stdout, "status:\n" + p.stdout)

        p = sh([granary, "warm", nas, "--quiet"], env=env)
        check(p.returncode == 0, "warm failed: " + p.stdout + p.stderr)
        p = sh([granary, "status", "--json"], env=env)
        check(p.returncode == 0, "status --json: " + p.stderr)
        st = json.loads(p.stdout)
        check(st["cache"]["objects"] == len(rels), "objects after warm: %s" % st["cache"])

        p = sh([granary, "version"], env=env)
        check(p.returncode == 0 and p.stdout.count(VERSION) >= 2,
              "version does not show client and daemon:\n" + p.stdout)

        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
            body = r.read().decode()
        check(re.search(r"^granary_fetches_total %d$" % len(rels), body, re.M),
              "metrics of the installed daemon do not count the warm")

        # the packaged shim reads through the packaged daemon
        penv = dict(env)
        shim = os.path.join(libdir, "libgranary-preload.so")
        penv["LD_PRELOAD"] = shim
        if "libasan" in sh(["readelf", "-d", shim]).stdout:
            # a sanitizer build: its runtime must be loaded before the shim
            asan = sh(["gcc", "-print-file-name=libasan.so"]).stdout.strip()
            penv["LD_PRELOAD"] = asan + " " + shim
            penv["ASAN_OPTIONS"] = "detect_leaks=0"
        target = os.path.join(nas, rels[0])
        p = subprocess.run(["cat", target], env=penv, capture_output=True, timeout=60)
        check(p.returncode == 0 and p.stdout == open(target, "rb").read(),
              "cat through the packaged shim failed: %s" % p.stderr[-2000:])
        p = sh([granary, "status", "--json"], env=env)
        opens = json.loads(p.stdout)["counters"]["opens"]
        check(opens >= 1, "the packaged shim did not open through the daemon: opens=%d" % opens)

        d.send_signal(signal.SIGTERM)
        check(d.wait(30) == 0, "the installed granaryd did not exit 0 on SIGTERM")
        with open(os.path.join(tmp, "granaryd.log")) as f:
            check("granaryd ready" in f.read(), "log.file was not written")
    finally:
        if d.poll() is None:
            d.kill()
            d.wait()


def main(wd):
    need("dpkg-deb", "dpkg")
    deb = build_deb(wd)
    print("built %s (%d bytes)" % (os.path.basename(deb), os.path.getsize(deb)))
    check_control(wd, deb)
    root = extract(wd, deb)
    libdir = check_files(root)
    run_installed(wd, root, libdir)


run(main, "package")
