#!/usr/bin/python3
"""Cold warm of an object-store dataset through a slow link: granary vs a
sequential curl loop vs rclone copy, same objects, same run.

5,000 objects of 110 KiB (by default) are served by nginx (--backend http) or
s3rver (--backend s3) behind a proxy that adds 5 ms to every request. Each
tool starts cold and copies every object once:

- granary: `granary warm MOUNT` into a fresh daemon's cache;
- curl: one `curl -o` per object, one after the other (what a shell loop does);
- rclone: `rclone copy` with its default concurrency, and with 64 transfers.

Figures go to tests/bench/results/warm_remote.json and a Markdown table is
printed. Run from a build: GRANARY_BUILD=build python3 tests/bench/bench_warm_remote.py
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

from harness import GRANARY, Daemon  # noqa: E402
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


def make_objects(n, size, dirs, seed=5):
    rnd = random.Random(seed)
    return [("d%03d/obj%05d.bin" % (i % dirs, i), rnd.randbytes(size)) for i in range(n)]


def timed(fn):
    t = time.monotonic()
    fn()
    return time.monotonic() - t


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
    ap.add_argument("--curl-objects", type=int, default=0,
                    help="objects the curl loop copies (default all; its rate is per object)")
    ap.add_argument("--no-rclone", action="store_true")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "warm_remote.json"))
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="granary-bench-remote-")
    objs = make_objects(args.objects, args.size, max(1, args.objects // 100))
    total = sum(len(b) for _, b in objs)
    servers = []
    results = []
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
        print("%d objects of %d bytes (%.0f MiB) via %s with %.1f ms per request" % (
            len(objs), args.size, total / 2**20, args.backend, args.delay_ms), flush=True)

        # ---- granary ----
        mount = {"path": "/bench/data", "backend": args.backend, "url": base,
                 "consistency": "immutable"}
        env = {}
        if args.backend == "s3":
            mount["region"] = "us-east-1"
            env = {"AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET}
        d = Daemon(work, [mount], cache={"capacity": "%dM" % (total * 2 // 2**20 + 64)},
                   log={"level": "warning"})
        d.start(extra_env=env)
        n_before = len(proxy.requests())
        try:
            p = None

            def warm():
                nonlocal p
                p = subprocess.run([GRANARY, "warm", "/bench/data", "--jobs", str(args.jobs)],
                                   capture_output=True, text=True, env=d.env())

            secs = timed(warm)
            if p.returncode != 0:
                raise SystemExit("granary warm failed:\n%s%s" % (p.stdout, p.stderr))
            st = d.status()
            if st["counters"]["fetches"] != len(objs):
                raise SystemExit("granary fetched %d of %d" % (st["counters"]["fetches"],
                                                               len(objs)))
            results.append(row("granary warm --jobs %d" % args.jobs, len(objs), total, secs,
                               {"requests": len(proxy.requests()) - n_before}))
        finally:
            d.stop()
        print(json.dumps(results[-1]), flush=True)

        # ---- a sequential curl loop ----
        n_curl = args.curl_objects or len(objs)
        dest = os.path.join(work, "curl")
        os.makedirs(dest)
        curl_auth = []
        if args.backend == "s3":
            curl_auth = ["--aws-sigv4", "aws:amz:us-east-1:s3", "-u", S3_KEY + ":" + S3_SECRET,
                         "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"]

        def curl_loop():
            for i, (key, _) in enumerate(objs[:n_curl]):
                out = os.path.join(dest, "%05d" % i)
                subprocess.run(["curl", "-sS", "-f", "-o", out] + curl_auth + [base + key],
                               check=True)

        secs = timed(curl_loop)
        nbytes = sum(len(b) for _, b in objs[:n_curl])
        results.append(row("curl loop (sequential)", n_curl, nbytes, secs))
        print(json.dumps(results[-1]), flush=True)
        shutil.rmtree(dest)

        # ---- rclone copy ----
        if not args.no_rclone:
            rclone = ensure_rclone()
            listing = os.path.join(work, "files.txt")
            with open(listing, "w") as f:
                f.write("\n".join(k for k, _ in objs) + "\n")
            renv = dict(os.environ)
            renv.pop("AWS_CA_BUNDLE", None)
            renv["RCLONE_CONFIG"] = os.path.join(work, "rclone.conf")
            open(renv["RCLONE_CONFIG"], "w").close()
            if args.backend == "http":
                src = [":http:", "--http-url", base]
            else:
                src = [":s3:bucket", "--s3-provider", "Other", "--s3-endpoint",
                       proxy.url.rstrip("/"), "--s3-access-key-id", S3_KEY,
                       "--s3-secret-access-key", S3_SECRET, "--s3-region", "us-east-1",
                       "--s3-force-path-style"]
            for label, extra in (("rclone copy (defaults)", []),
                                 ("rclone copy --transfers 64 --checkers 64",
                                  ["--transfers", "64", "--checkers", "64"])):
                dest = os.path.join(work, "rclone")
                cmd = [rclone, "copy"] + src + [dest, "--files-from", listing, "--no-traverse",
                                                "-q"] + extra
                p = None

                def rc_copy():
                    nonlocal p
                    p = subprocess.run(cmd, capture_output=True, text=True, env=renv)

                secs = timed(rc_copy)
                if p.returncode != 0:
                    raise SystemExit("rclone failed:\n%s" % p.stderr[-3000:])
                copied = sum(len(fs) for _, _, fs in os.walk(dest))
                if copied != len(objs):
                    raise SystemExit("rclone copied %d of %d" % (copied, len(objs)))
                results.append(row(label, len(objs), total, secs))
                print(json.dumps(results[-1]), flush=True)
                shutil.rmtree(dest)
        proxy.stop()
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(work, ignore_errors=True)

    g = results[0]["objects_per_s"]
    for r in results[1:]:
        r["granary_speedup"] = round(g / r["objects_per_s"], 2)
    report = {"backend": args.backend, "objects": len(objs), "object_bytes": args.size,
              "delay_ms": args.delay_ms, "cpus": os.cpu_count(),
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "results": results}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    print()
    print("| tool | objects | seconds | objects/s | MiB/s | granary is |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        sp = "" if r is results[0] else "%.1fx faster" % r["granary_speedup"]
        print("| %s | %d | %.2f | %.0f | %.1f | %s |" % (r["tool"], r["objects"], r["seconds"],
                                                       r["objects_per_s"], r["MiB_per_s"], sp))
    print("\nwritten: %s" % args.out)


if __name__ == "__main__":
    main()
