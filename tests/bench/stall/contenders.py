"""The data-stall benchmark's pieces: the dataset, the backends behind a
delaying proxy, and the contenders a trainer reads through.

Backends (each on loopback, started by the bench):
- http: nginx serving the dataset directory twice, /ds/ with the JSON
  autoindex that granary's http backend lists, /dsh/ with the HTML autoindex
  that rclone's http backend parses; same files, same server.
- s3: s3rver holding the dataset in bucket "bench" under "ds/".
Both are reached through tests/lib/servers.py's Proxy, run in a process of
its own (so that its Python loop does not share a GIL with the bench), which
adds a fixed delay to every request.

Contenders, each started fresh with nothing cached:
- direct: `rclone mount --vfs-cache-mode off` (every open reads the backend,
  as a NAS mount without a cache does);
- rclone: `rclone mount --vfs-cache-mode full`;
- s3fs: `s3fs -o use_cache` (s3 only: s3fs speaks S3 alone);
- granary: granaryd with an http or s3 mount, read through the LD_PRELOAD shim
  (cold, warmed with `granary warm` first, or cold with a hinted order);
- local: a copy of the dataset on the local disk, read directly.
"""
import importlib.util
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LIB = os.path.join(HERE, "..", "..", "lib")
sys.path.insert(0, LIB)

import harness  # noqa: E402
from servers import S3_KEY, S3_SECRET, Nginx, S3Client, S3rver, free_port, wait_port  # noqa: E402

BUCKET = "bench"
PREFIX = "ds"
GRANARY_MOUNT = "/granary/ds"
READBENCH = os.path.join(harness.BUILD, "tests", "granary-readbench")


def log(msg):
    sys.stderr.write("[%s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


# ---- the dataset ----

def dataset_sizes(n, mean_kib, sigma, seed):
    """n file sizes, log-normal with the given mean, clipped to [1 KiB, 8 MiB]."""
    rnd = random.Random(seed)
    mu = math.log(mean_kib * 1024) - sigma * sigma / 2
    return [int(min(max(rnd.lognormvariate(mu, sigma), 1024), 8 << 20)) for _ in range(n)]


def make_dataset(root, n, mean_kib=110, sigma=0.6, seed=7, per_dir=100):
    """ImageNet-like layout: class directories cNNN of `per_dir` files sNNNNNN.jpg
    (random bytes; nothing decodes them). Returns [(relative path, size)]."""
    sizes = dataset_sizes(n, mean_kib, sigma, seed)
    rnd = random.Random(seed + 1)
    pool = os.urandom(16 << 20)
    out = []
    for i, size in enumerate(sizes):
        rel = "c%03d/s%06d.jpg" % (i // per_dir, i)
        d = os.path.join(root, os.path.dirname(rel))
        if i % per_dir == 0:
            os.makedirs(d, exist_ok=True)
        off = rnd.randrange(0, len(pool) - size)
        with open(os.path.join(root, rel), "wb") as f:
            f.write(pool[off:off + size])
        out.append((rel, size))
    return out


def cpu_seconds(pids):
    """user + system CPU seconds used so far by these processes (and their
    children that were waited for)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15]) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def child_pids(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def write_list(path, prefix, rels):
    with open(path, "w") as f:
        for r in rels:
            f.write(prefix.rstrip("/") + "/" + r + "\n")
    return path


def tool_version(cmd):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        line = (p.stdout or p.stderr).strip().splitlines()
        return line[0] if line else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"


def debian_version(pkg):
    try:
        p = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True,
                           text=True, timeout=30)
        return p.stdout.strip() or "?"
    except OSError:
        return "?"


# ---- backends ----

class DualNginx(Nginx):
    """nginx with the dataset under /ds/ (JSON autoindex) and /dsh/ (HTML)."""

    def __init__(self, workdir, root):
        super().__init__(workdir, root, name="nginx")
        temps = "\n".join("    %s_temp_path %s;" % (t, os.path.join(self.dir, t))
                          for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        user = "user root root;\n" if os.geteuid() == 0 else ""
        with open(self.conf, "w") as f:
            f.write("""%(user)sworker_processes 1;
daemon off;
pid %(dir)s/nginx.pid;
error_log %(err)s warn;
events { worker_connections 4096; }
http {
    access_log off;
%(temps)s
    default_type application/octet-stream;
    sendfile on;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    server {
        listen 127.0.0.1:%(port)d;
        location /ds/ { alias %(root)s/; autoindex on; autoindex_format json; }
        location /dsh/ { alias %(root)s/; autoindex on; autoindex_format html; }
    }
}
""" % dict(user=user, dir=self.dir, err=self.error_log, temps=temps, port=self.port,
           root=self.root))


PROXY_PROGRAM = r"""
import collections, json, sys
sys.path.insert(0, sys.argv[1])
from servers import Proxy
p = Proxy(int(sys.argv[2]), delay_ms=float(sys.argv[3]), port=int(sys.argv[4])).start()
print("ready", flush=True)
for line in sys.stdin:
    reqs = p.requests()
    c = collections.Counter(r.method for r in reqs)
    c["errors"] = sum(1 for r in reqs if r.status is None or r.status >= 400)
    print(json.dumps(dict(c)), flush=True)
p.stop()
"""


class ProxyProcess:
    """servers.Proxy in a process of its own. counts() gives the requests it
    forwarded so far by method (and "errors": 4xx, 5xx or none); stop() ends it."""

    def __init__(self, upstream_port, delay_ms, logfile):
        self.upstream_port = upstream_port
        self.delay_ms = delay_ms
        self.port = free_port()
        self.logfile = logfile
        self.proc = None

    @property
    def url(self):
        return "http://127.0.0.1:%d/" % self.port

    def start(self):
        logf = open(self.logfile, "ab")
        self.proc = subprocess.Popen([harness.DEBIAN_PYTHON, "-c", PROXY_PROGRAM, LIB,
                                      str(self.upstream_port), str(self.delay_ms),
                                      str(self.port)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=logf, text=True)
        logf.close()
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the delaying proxy did not start")
        wait_port(self.port, proc=self.proc, what="proxy")
        return self

    def counts(self):
        self.proc.stdin.write("count\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def stop(self):
        if self.proc:
            try:
                self.proc.stdin.close()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
            self.proc = None


class Backend:
    """A dataset behind nginx or s3rver and a delaying proxy.

    kind: "http" or "s3"; delay_ms: added to every request by the proxy."""

    def __init__(self, work, kind, data_root, files, delay_ms):
        self.work = work
        self.kind = kind
        self.data_root = data_root
        self.files = files
        self.delay_ms = delay_ms
        self.origin = None
        self.proxy = None

    @property
    def name(self):
        return "%s+%gms" % (self.kind, self.delay_ms)

    def start_origin(self):
        if self.kind == "http":
            self.origin = DualNginx(self.work, self.data_root).start()
        else:
            self.origin = S3rver(self.work, buckets=(BUCKET,)).start()
            t0 = time.monotonic()
            items = []
            cl = S3Client(self.origin.endpoint)
            batch = 500
            for i in range(0, len(self.files), batch):
                items = []
                for rel, _ in self.files[i:i + batch]:
                    with open(os.path.join(self.data_root, rel), "rb") as f:
                        items.append((PREFIX + "/" + rel, f.read()))
                cl.put_many(BUCKET, items, threads=8)
            log("s3rver: %d objects uploaded in %.1f s" % (len(self.files),
                                                          time.monotonic() - t0))
        return self

    def start_proxy(self, delay_ms=None):
        if delay_ms is not None:
            self.delay_ms = delay_ms
        self.stop_proxy()
        self.proxy = ProxyProcess(self.origin.port, self.delay_ms,
                                  os.path.join(self.work, "proxy.log")).start()
        return self

    def stop_proxy(self):
        if self.proxy:
            self.proxy.stop()
            self.proxy = None

    def stop(self):
        self.stop_proxy()
        if self.origin:
            self.origin.stop()
            self.origin = None

    def pids(self):
        """{"origin": [...], "proxy": [...]}: the processes that serve requests."""
        out = {"origin": [], "proxy": []}
        if self.origin and self.origin.proc:
            out["origin"] = [self.origin.proc.pid] + child_pids(self.origin.proc.pid)
        if self.proxy and self.proxy.proc:
            out["proxy"] = [self.proxy.proc.pid]
        return out

    # -- how each client reaches it --

    def granary_mount(self):
        if self.kind == "http":
            return {"path": GRANARY_MOUNT, "backend": "http", "url": self.proxy.url + "ds/",
                    "consistency": "immutable"}
        return {"path": GRANARY_MOUNT, "backend": "s3",
                "url": self.proxy.url + BUCKET + "/" + PREFIX + "/", "region": "us-east-1",
                "path_style": True, "consistency": "immutable"}

    def granary_env(self):
        if self.kind == "s3":
            return {"AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET}
        return {}

    def rclone_remote(self):
        """(remote, flags) for rclone."""
        if self.kind == "http":
            return ":http:", ["--http-url", self.proxy.url + "dsh/"]
        return (":s3:%s/%s" % (BUCKET, PREFIX),
                ["--s3-provider", "Other", "--s3-endpoint", self.proxy.url.rstrip("/"),
                 "--s3-access-key-id", S3_KEY, "--s3-secret-access-key", S3_SECRET,
                 "--s3-region", "us-east-1", "--s3-force-path-style=true"])


# ---- contenders ----

class Contender:
    """Something a trainer reads the dataset through. start() makes paths
    readable, env() is the environment of the processes that read, stop()
    takes everything down and removes what it cached."""

    name = "?"
    cold = True          # starts with nothing cached
    settings = ""

    def __init__(self, work, backend, rels):
        self.work = work
        self.backend = backend
        self.rels = rels
        self.listfile = None
        self.stop_times = {}

    def root(self):
        raise NotImplementedError

    def start(self):
        self.listfile = write_list(os.path.join(self.work, "list-%s.txt" % self.key()),
                                   self.root(), self.rels)
        return self

    def key(self):
        return self.name.replace(" ", "_").replace("/", "_")

    def env(self):
        e = dict(os.environ)
        e.pop("LD_PRELOAD", None)
        return e

    def stop(self):
        pass

    def pids(self):
        """The processes that serve this contender's reads (FUSE, granaryd)."""
        return []

    def cache_bytes(self):
        return 0


class Local(Contender):
    name = "local copy"
    cold = False

    def __init__(self, work, backend, rels, data_root):
        super().__init__(work, backend, rels)
        self.data_root = data_root
        self.settings = "the dataset's files on the local disk (ext4), page cache warm"

    def root(self):
        return self.data_root


def ensure_tools(need_s3fs=True):
    """Install rclone, s3fs, fuse3 and python3-matplotlib from Debian when
    they are missing. Raises RuntimeError when FUSE cannot work here."""
    if not os.path.exists("/dev/fuse"):
        raise RuntimeError("/dev/fuse is missing: the FUSE contenders cannot run")
    missing = [pkg for pkg, exe in (("rclone", "rclone"), ("fuse3", "fusermount3"),
                                    ("s3fs", "s3fs"))
               if shutil.which(exe) is None and (need_s3fs or pkg != "s3fs")]
    if importlib.util.find_spec("matplotlib") is None:
        missing.append("python3-matplotlib")
    if not missing:
        return
    log("installing %s" % " ".join(missing))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run(sudo + ["apt-get", "update", "-q"], check=False, env=env,
                   stdout=subprocess.DEVNULL)
    p = subprocess.run(sudo + ["apt-get", "install", "-y", "-q", "--no-install-recommends"] +
                       missing, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       text=True)
    if p.returncode != 0:
        raise RuntimeError("apt-get install %s failed: %s" % (" ".join(missing),
                                                               p.stderr[-500:]))


def fuse_unmount(mnt):
    for cmd in (["fusermount3", "-u", mnt], ["fusermount", "-u", mnt],
                ["fusermount3", "-uz", mnt], ["umount", "-l", mnt]):
        if shutil.which(cmd[0]) is None:
            continue
        if subprocess.run(cmd, capture_output=True).returncode == 0:
            return True
    return not os.path.ismount(mnt)


def wait_mount(mnt, proc, what, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError("%s exited with %s" % (what, proc.returncode))
        if os.path.ismount(mnt):
            return
        time.sleep(0.05)
    raise RuntimeError("%s did not mount %s" % (what, mnt))


class FuseContender(Contender):
    """A FUSE file system run in the foreground as a child; unmounted by stop()."""

    def __init__(self, work, backend, rels):
        super().__init__(work, backend, rels)
        self.dir = os.path.join(work, self.key())
        self.mnt = os.path.join(self.dir, "mnt")
        self.cache = os.path.join(self.dir, "cache")
        self.proc = None
        self.logfile = os.path.join(self.dir, "log.txt")

    def root(self):
        return self.mnt

    def command(self):
        raise NotImplementedError

    def child_env(self):
        e = dict(os.environ)
        e.pop("LD_PRELOAD", None)
        return e

    def start(self):
        os.makedirs(self.mnt, exist_ok=True)
        os.makedirs(self.cache, exist_ok=True)
        logf = open(self.logfile, "ab")
        self.proc = subprocess.Popen(self.command(), stdout=logf, stderr=subprocess.STDOUT,
                                     env=self.child_env())
        logf.close()
        wait_mount(self.mnt, self.proc, self.name)
        return super().start()

    def stop(self):
        t0 = time.monotonic()
        if self.proc:
            fuse_unmount(self.mnt)
            t1 = time.monotonic()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                log("%s did not exit 10 s after the unmount: killed" % self.name)
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait()
            self.proc = None
            self.stop_times["unmount"] = round(t1 - t0, 2)
            self.stop_times["exit"] = round(time.monotonic() - t1, 2)
        t2 = time.monotonic()
        shutil.rmtree(self.cache, ignore_errors=True)
        self.stop_times["remove_cache"] = round(time.monotonic() - t2, 2)

    def pids(self):
        return [self.proc.pid] if self.proc else []

    def cache_bytes(self):
        n = 0
        for d, _, fs in os.walk(self.cache):
            for f in fs:
                try:
                    n += os.lstat(os.path.join(d, f)).st_blocks * 512
                except OSError:
                    pass
        return n


class Rclone(FuseContender):
    def __init__(self, work, backend, rels, cache_mode):
        self.cache_mode = cache_mode
        self.name = "direct (rclone, no cache)" if cache_mode == "off" else "rclone vfs full"
        super().__init__(work, backend, rels)
        remote, flags = backend.rclone_remote()
        self.remote, self.flags = remote, flags
        self.extra = ["--read-only", "--vfs-cache-mode", cache_mode, "--dir-cache-time",
                      "1h", "--attr-timeout", "1h"]
        if cache_mode == "full":
            self.extra += ["--vfs-cache-max-size", "100G", "--vfs-cache-max-age", "24h"]
        self.settings = "rclone mount %s MNT %s" % (remote, " ".join(self.extra))

    def child_env(self):
        e = super().child_env()
        e.pop("AWS_CA_BUNDLE", None)  # breaks rclone's S3 backend here
        e["RCLONE_CONFIG"] = os.path.join(self.dir, "rclone.conf")
        open(e["RCLONE_CONFIG"], "a").close()
        return e

    def command(self):
        return (["rclone", "mount", self.remote, self.mnt, "--cache-dir", self.cache] +
                self.flags + self.extra + ["--log-level", "ERROR"])


class S3fs(FuseContender):
    name = "s3fs use_cache"

    def __init__(self, work, backend, rels):
        super().__init__(work, backend, rels)
        self.opts = ["use_path_request_style", "use_cache=" + self.cache, "ro"]
        self.settings = "s3fs %s:/%s MNT -o url=PROXY -o %s" % (
            BUCKET, PREFIX, " -o ".join(o if not o.startswith("use_cache") else
                                        "use_cache=DIR" for o in self.opts))

    def command(self):
        pw = os.path.join(self.dir, "passwd")
        with open(pw, "w") as f:
            f.write("%s:%s\n" % (S3_KEY, S3_SECRET))
        os.chmod(pw, 0o600)
        cmd = ["s3fs", "%s:/%s" % (BUCKET, PREFIX), self.mnt, "-f",
               "-o", "url=" + self.backend.proxy.url.rstrip("/"),
               "-o", "passwd_file=" + pw]
        for o in self.opts:
            cmd += ["-o", o]
        return cmd

    def child_env(self):
        e = super().child_env()
        e.pop("AWS_CA_BUNDLE", None)
        return e


class Granary(Contender):
    """granaryd over the backend; trainers read through the shim.

    mode: "cold" (nothing cached), "warm" (`granary warm` of the mount first),
    "hint" (cold, and the trainer sends each epoch's order), "nas" (warm, but
    the mount is a posix one over the `direct` rclone mount without cache:
    granary in front of a NAS mount, where the shim opens cached files from
    the daemon's shared index without a round trip)."""

    NAMES = {"cold": "granary cold", "warm": "granary warm", "hint": "granary hinted",
             "nas": "granary warm, NAS mount"}

    def __init__(self, work, backend, rels, mode, capacity_bytes, prefetch_window=256,
                 connections=64):
        self.mode = mode
        self.name = self.NAMES[mode]
        super().__init__(work, backend, rels)
        self.capacity = capacity_bytes
        self.window = prefetch_window
        self.connections = connections
        self.daemon = None
        self.nas = None
        self.warm_s = None
        self.warm_out = ""

    def root(self):
        return self.nas.mnt if self.nas else GRANARY_MOUNT

    def mount(self):
        if self.nas:
            return {"path": self.nas.mnt, "backend": "posix"}
        return self.backend.granary_mount()

    def start(self):
        wd = os.path.join(self.work, self.key())
        os.makedirs(wd, exist_ok=True)
        if self.mode == "nas":
            self.nas = Rclone(self.work, self.backend, self.rels, "off")
            self.nas.start()
        policy = {"prefetch_window": self.window} if self.mode == "hint" else {}
        self.daemon = harness.Daemon(wd, [self.mount()], name="g",
                                     cache={"capacity": self.daemon_capacity()},
                                     fetch={"connections": self.connections},
                                     log={"level": "warning"}, policy=policy)
        self.daemon.start(extra_env=self.backend.granary_env())
        mount = dict(self.mount())
        if "url" in mount:
            mount["url"] = mount["url"].replace(self.backend.proxy.url, "PROXY/")
        else:
            mount["path"] = "MNT (%s)" % self.nas.settings
        self.settings = "granaryd, mount %s; cache.capacity %s; fetch.connections %d; %s" % (
            json.dumps(mount, sort_keys=True), self.daemon_capacity(), self.connections,
            "policy.prefetch_window %d; " % self.window if self.mode == "hint" else "") + \
            "defaults otherwise; read through LD_PRELOAD=libgranary-preload.so"
        return super().start()

    def daemon_capacity(self):
        return "%dM" % (self.capacity // 2**20 + 64)

    def warm(self, jobs=64):
        """`granary warm MOUNT --jobs N`; returns seconds."""
        t0 = time.monotonic()
        p = subprocess.run([harness.GRANARY, "warm", self.root(), "--jobs", str(jobs)],
                           capture_output=True, text=True, env=self.daemon.env(), timeout=3600)
        self.warm_s = time.monotonic() - t0
        self.warm_out = p.stdout.strip()
        if p.returncode != 0:
            raise RuntimeError("granary warm failed:\n%s%s" % (p.stdout[-2000:],
                                                              p.stderr[-2000:]))
        return self.warm_s

    def env(self):
        e = self.daemon.env(LD_PRELOAD=harness.PRELOAD)
        e["GRANARY_LIB"] = harness.LIBGRANARY
        e["PYTHONPATH"] = os.path.join(harness.SRC, "client", "python") + (
            ":" + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
        return e

    def status(self):
        return self.daemon.status()

    def pids(self):
        return ([self.daemon.pid] if self.daemon and self.daemon.proc else []) + (
            self.nas.pids() if self.nas else [])

    def stop(self):
        if self.daemon:
            t0 = time.monotonic()
            try:
                self.daemon.stop()
            finally:
                t1 = time.monotonic()
                shutil.rmtree(self.daemon.dir, ignore_errors=True)
                self.stop_times = {"daemon": round(t1 - t0, 2),
                                   "remove_cache": round(time.monotonic() - t1, 2)}
            self.daemon = None
        if self.nas:
            self.nas.stop()
            self.stop_times["nas"] = self.nas.stop_times
            self.nas = None

    def cache_bytes(self):
        try:
            return self.status().get("used", 0)
        except Exception:  # noqa: BLE001 - only informative
            return 0
