#!/usr/bin/python3
"""Cold warm of an object-store dataset through a slow link: granary vs a
sequential curl loop vs rclone copy, same objects, same run.

5,000 objects of 110 KiB (by default) are served by nginx (--backend http) or
s3rver (--backend s3) behind a proxy that adds 5 ms to every request. Each
tool starts cold and copies every object once:

- granary: `granary warm MOUNT` into a fresh daemon's cache;
- curl: one `curl -o` per object, one after the other (what a shell loop does);
- rclone: `rclone copy` with its default concurrency, and with 64 transfers;
- rclone's first full read through its vfs cache: `rclone mount
  --vfs-cache-mode full` (as the data-stall benchmark mounts it), every object
  read once by granary-readbench with --jobs threads (--no-rclone-mount skips
  it; for http it reads a second nginx with the HTML listing rclone parses,
  behind its own delaying proxy).

With --rounds N the tools take turns N times (the curl loop only in the
first round) and the table gives each one's median: on a shared machine the
load moves between runs. CPU seconds are those of the tool's own processes
(granaryd and the CLI; rclone; for the mount, rclone and the readers).

Figures go to tests/bench/results/warm_remote.json and a Markdown table is
printed. Run from a build: GRANARY_BUILD=build python3 tests/bench/bench_warm_remote.py
"""
import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

from harness import BUILD, GRANARY, Daemon  # noqa: E402
from servers import S3_KEY, S3_SECRET, Nginx, Proxy, S3Client, S3rver  # noqa: E402


def ensure_rclone():
    if shutil.which("rclone"):
        return shutil.which("rclone")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(sudo + ["apt-get", "update", "-q"], check=False, env=env)
    subprocess.run(sudo + ["apt-get", "install", "-y", "-q", "--no-install-recommends",
                           "rclone"], check=True, env=env)
    return shutil.which("rclone")


READBENCH = os.path.join(BUILD, "tests", "granary-readbench")


def fuse_unmount(mnt):
    for cmd in (["fusermount3", "-u", mnt], ["fusermount", "-u", mnt],
                ["fusermount3", "-uz", mnt], ["umount", "-l", mnt]):
        if shutil.which(cmd[0]) and subprocess.run(cmd, capture_output=True).returncode == 0:
            return


def rclone_first_read(rclone, remote, flags, keys, threads, work, renv):
    """Seconds of the first full read of @keys through `rclone mount
    --vfs-cache-mode full`, @threads readers (granary-readbench)."""
    mnt = os.path.join(work, "rclone-mnt")
    cache = os.path.join(work, "rclone-cache")
    os.makedirs(mnt)
    os.makedirs(cache)
    cmd = [rclone, "mount", remote, mnt, "--cache-dir", cache, "--read-only",
           "--vfs-cache-mode", "full", "--dir-cache-time", "1h", "--attr-timeout", "1h",
           "--vfs-cache-max-size", "100G", "--vfs-cache-max-age", "24h",
           "--log-level", "ERROR"] + flags
    proc = subprocess.Popen(cmd, env=renv, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        end = time.time() + 30
        while not os.path.ismount(mnt):
            if proc.poll() is not None or time.time() > end:
                raise SystemExit("rclone mount did not come up")
            time.sleep(0.05)
        listing = os.path.join(work, "mount-files.txt")
        with open(listing, "w") as f:
            f.write("\n".join(os.path.join(mnt, k) for k in keys) + "\n")
        p = subprocess.run([READBENCH, "-t", str(threads), listing], capture_output=True,
                           text=True, check=True)
        r = json.loads(p.stdout.strip().splitlines()[-1])
        if r["errors"] or r["files"] != len(keys):
            raise SystemExit("rclone mount first read: %s" % r)
        return r["seconds"]
    finally:
        fuse_unmount(mnt)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(mnt, ignore_errors=True)


def make_objects(n, size, dirs, seed=5):
    rnd = random.Random(seed)
    return [("d%03d/obj%05d.bin" % (i % dirs, i), rnd.randbytes(size)) for i in range(n)]


def timed(fn):
    t = time.monotonic()
    fn()
    return time.monotonic() - t


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def proc_cpu(pid):
    """CPU seconds of a running process."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def row(name, n, nbytes, secs, extra=None):
    r = {"tool": name, "objects": n, "bytes": nbytes, "seconds": round(secs, 3),
         "objects_per_s": round(n / secs, 1), "MiB_per_s": round(nbytes / secs / 2**20, 1)}
    if extra:
        r.update(extra)
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", choices=("http", "s3"), default="http")
    ap.add_argument("--objects", type=int, default=5000)
    ap.add_argument("--size", type=int, default=110 * 1024)
    ap.add_argument("--delay-ms", type=float, default=5.0)
    ap.add_argument("--jobs", type=int, default=64, help="granary warm --jobs")
    ap.add_argument("--connections", type=int, default=0,
                    help="granaryd fetch.connections (default: the daemon's, 16)")
    ap.add_argument("--curl-objects", type=int, default=0,
                    help="objects the curl loop copies (default all; its rate is per object)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--no-rclone", action="store_true")
    ap.add_argument("--no-rclone-mount", action="store_true")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "warm_remote.json"))
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="granary-bench-remote-")
    objs = make_objects(args.objects, args.size, max(1, args.objects // 100))
    keys = [k for k, _ in objs]
    total = sum(len(b) for _, b in objs)
    servers = []
    runs = {}  # tool -> list of rows, one a round
    order = []

    def record(r):
        if r["tool"] not in runs:
            runs[r["tool"]] = []
            order.append(r["tool"])
        runs[r["tool"]].append(r)
        print(json.dumps(r), flush=True)

    try:
        if args.backend == "http":
            root = os.path.join(work, "www")
            for key, data in objs:
                os.makedirs(os.path.join(root, os.path.dirname(key)), exist_ok=True)
                with open(os.path.join(root, key), "wb") as f:
                    f.write(data)
            origin = Nginx(work, root).start()
            servers.append(origin)
        else:
            origin = S3rver(work).start()
            servers.append(origin)
            S3Client(origin.endpoint).put_many("bucket", objs, threads=8)
        proxy = Proxy(origin.port, delay_ms=args.delay_ms).start()
        base = proxy.url + ("bucket/" if args.backend == "s3" else "")
        print("%d objects of %d bytes (%.0f MiB) via %s with %.1f ms per request, %d round(s)"
              % (len(objs), args.size, total / 2**20, args.backend, args.delay_ms,
                 args.rounds), flush=True)

        mount = {"path": "/bench/data", "backend": args.backend, "url": base,
                 "consistency": "immutable"}
        genv = {}
        if args.backend == "s3":
            mount["region"] = "us-east-1"
            genv = {"AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET}
        gextra = {"fetch": {"connections": args.connections}} if args.connections else {}

        def run_granary(rnd):
            d = Daemon(work, [mount], name="g%d" % rnd,
                       cache={"capacity": "%dM" % (total * 2 // 2**20 + 64)},
                       log={"level": "warning"}, **gextra)
            d.start(extra_env=genv)
            n_before = len(proxy.requests())
            try:
                p = None
                c0 = children_cpu()

                def warm():
                    nonlocal p
                    p = subprocess.run([GRANARY, "warm", "/bench/data", "--jobs",
                                        str(args.jobs)], capture_output=True, text=True,
                                       env=d.env())

                secs = timed(warm)
                cpu = children_cpu() - c0 + proc_cpu(d.proc.pid)
                if p.returncode != 0:
                    raise SystemExit("granary warm failed:\n%s%s" % (p.stdout, p.stderr))
                st = d.status()
                if st["counters"]["fetches"] != len(objs):
                    raise SystemExit("granary fetched %d of %d" % (
                        st["counters"]["fetches"], len(objs)))
                label = "granary warm --jobs %d" % args.jobs
                if args.connections:
                    label += " (fetch.connections %d)" % args.connections
                reqs = proxy.requests()[n_before:]
                record(row(label, len(objs), total, secs, {
                    "cpu_s": round(cpu, 2), "requests": len(reqs),
                    "requests_by_method": {m: sum(1 for q in reqs if q.method == m)
                                           for m in sorted({q.method for q in reqs})}}))
            finally:
                d.stop()
                shutil.rmtree(d.dir, ignore_errors=True)

        n_curl = args.curl_objects or len(objs)
        curl_auth = []
        if args.backend == "s3":
            curl_auth = ["--aws-sigv4", "aws:amz:us-east-1:s3", "-u", S3_KEY + ":" + S3_SECRET,
                         "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"]

        def run_curl():
            dest = os.path.join(work, "curl")
            os.makedirs(dest)

            def curl_loop():
                for i, (key, _) in enumerate(objs[:n_curl]):
                    out = os.path.join(dest, "%05d" % i)
                    subprocess.run(["curl", "-sS", "-f", "-o", out] + curl_auth + [base + key],
                                   check=True)

            secs = timed(curl_loop)
            nbytes = sum(len(b) for _, b in objs[:n_curl])
            record(row("curl loop (sequential)", n_curl, nbytes, secs))
            shutil.rmtree(dest)

        rclone = None if args.no_rclone else ensure_rclone()
        renv = dict(os.environ)
        renv.pop("AWS_CA_BUNDLE", None)
        renv["RCLONE_CONFIG"] = os.path.join(work, "rclone.conf")
        open(renv["RCLONE_CONFIG"], "w").close()
        listing = os.path.join(work, "files.txt")
        with open(listing, "w") as f:
            f.write("\n".join(keys) + "\n")
        if args.backend == "http":
            src = [":http:", "--http-url", base]
        else:
            src = [":s3:bucket", "--s3-provider", "Other", "--s3-endpoint",
                   proxy.url.rstrip("/"), "--s3-access-key-id", S3_KEY,
                   "--s3-secret-access-key", S3_SECRET, "--s3-region", "us-east-1",
                   "--s3-force-path-style"]

        def run_rclone_copy(label, extra):
            dest = os.path.join(work, "rclone")
            cmd = [rclone, "copy"] + src + [dest, "--files-from", listing, "--no-traverse",
                                            "-q"] + extra
            p = None

            def rc_copy():
                nonlocal p
                p = subprocess.run(cmd, capture_output=True, text=True, env=renv)

            c0 = children_cpu()
            secs = timed(rc_copy)
            cpu = children_cpu() - c0
            if p.returncode != 0:
                raise SystemExit("rclone failed:\n%s" % p.stderr[-3000:])
            copied = sum(len(fs) for _, _, fs in os.walk(dest))
            if copied != len(objs):
                raise SystemExit("rclone copied %d of %d" % (copied, len(objs)))
            record(row(label, len(objs), total, secs, {"cpu_s": round(cpu, 2)}))
            shutil.rmtree(dest)

        mount_ok = rclone and not args.no_rclone_mount and os.path.exists("/dev/fuse")
        hproxy = None
        mremote, mflags = src[0], src[1:]
        if mount_ok and args.backend == "http":
            # rclone's http backend lists directories from nginx's HTML autoindex
            html = Nginx(work, root, name="nginx-html")
            with open(html.conf) as f:
                conf = f.read().replace("autoindex_format json;", "autoindex_format html;")
            with open(html.conf, "w") as f:
                f.write(conf)
            html.start()
            servers.append(html)
            hproxy = Proxy(html.port, delay_ms=args.delay_ms).start()
            mflags = ["--http-url", hproxy.url]

        def run_rclone_mount():
            c0 = children_cpu()
            secs = rclone_first_read(rclone, mremote, mflags, keys, args.jobs, work, renv)
            record(row("rclone vfs full, first read (%d threads)" % args.jobs, len(objs),
                       total, secs, {"cpu_s": round(children_cpu() - c0, 2)}))

        for rnd in range(args.rounds):
            run_granary(rnd)
            if rnd == 0:
                run_curl()
            if rclone:
                run_rclone_copy("rclone copy (defaults)", [])
                run_rclone_copy("rclone copy --transfers 64 --checkers 64",
                                ["--transfers", "64", "--checkers", "64"])
            if mount_ok:
                run_rclone_mount()
        if hproxy:
            hproxy.stop()
        proxy.stop()
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(work, ignore_errors=True)

    results = []
    for tool in order:
        rs = runs[tool]
        med = dict(rs[0])
        med["seconds"] = round(statistics.median(r["seconds"] for r in rs), 3)
        med["objects_per_s"] = round(med["objects"] / med["seconds"], 1)
        med["MiB_per_s"] = round(sum(r["bytes"] for r in rs[:1]) / med["seconds"] / 2**20, 1)
        if "cpu_s" in med:
            med["cpu_s"] = round(statistics.median(r["cpu_s"] for r in rs), 2)
            med["cpu_ms_per_object"] = round(med["cpu_s"] * 1000 / med["objects"], 2)
        med["rounds_seconds"] = [r["seconds"] for r in rs]
        results.append(med)
    g = results[0]["objects_per_s"]
    for r in results[1:]:
        r["granary_speedup"] = round(g / r["objects_per_s"], 2)
    report = {"backend": args.backend, "objects": len(objs), "object_bytes": args.size,
              "delay_ms": args.delay_ms, "cpus": os.cpu_count(), "rounds": args.rounds,
              "loadavg_after": os.getloadavg(),
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "results": results}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    print()
    print("| tool | objects | seconds (median) | objects/s | CPU ms/object | rounds, s | "
          "granary is |")
    print("| --- | ---: | ---: | ---: | ---: | --- | ---: |")
    for r in results:
        sp = "" if r is results[0] else "%.1fx faster" % r["granary_speedup"]
        cpu = "%.2f" % r["cpu_ms_per_object"] if "cpu_ms_per_object" in r else ""
        print("| %s | %d | %.2f | %.0f | %s | %s | %s |" % (
            r["tool"], r["objects"], r["seconds"], r["objects_per_s"], cpu,
            ", ".join("%.1f" % x for x in r["rounds_seconds"]), sp))
    print("\nwritten: %s" % args.out)


if __name__ == "__main__":
    main()
