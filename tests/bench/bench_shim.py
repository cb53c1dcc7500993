"""Benchmark: reading a warm cache through the shim vs reading the files directly.

20,000 files of 110 KiB (override with --files/--size); granary warms them;
then granary-readbench (open, fstat, read, close per file) with 1 and 8
threads, each run three times, through LD_PRELOAD=libgranary-preload.so and
straight from the directory, alternating, in the same run. Prints a Markdown
table and writes tests/bench/results/shim.json. Not a test: no assertion on time.

With --backend http the same files are served by nginx and mounted over http
(consistency immutable by default: what the fast path takes for an object
store); the shim reads the mount's paths, which exist only through granary,
and the direct reads are of the files nginx serves (the local copy). Results
then go to tests/bench/results/shim_http.json.

  /usr/bin/python3 tests/bench/bench_shim.py [--files N] [--size BYTES] [--consistency C]
                                             [--backend posix|http]
"""
import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import BUILD, PRELOAD, SRC, Workdir  # noqa: E402
from servers import Nginx  # noqa: E402

READBENCH = os.path.join(BUILD, "tests", "granary-readbench")


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def readbench(listfile, threads, env):
    """readbench's result, with "cpu_us" per file: the reader's user + system CPU
    (steadier than wall time on a shared machine)."""
    c0 = children_cpu()
    p = subprocess.run([READBENCH, "-t", str(threads), listfile], capture_output=True,
                       text=True, env=env, check=True)
    r = json.loads(p.stdout.strip().splitlines()[-1])
    r["cpu_us"] = (children_cpu() - c0) * 1e6 / max(1, r["files"])
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--size", type=int, default=110 * 1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--consistency", default=None,
                    help="strict for posix, immutable for http unless given")
    ap.add_argument("--backend", choices=("posix", "http"), default="posix")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.consistency is None:
        args.consistency = "strict" if args.backend == "posix" else "immutable"
    if args.out is None:
        args.out = os.path.join(SRC, "tests", "bench", "results",
                                "shim.json" if args.backend == "posix" else "shim_http.json")
    wd = Workdir("bench-shim")
    ng = None
    try:
        # a directory closed to others keeps objects out of the shared index
        os.chmod(wd.path, 0o755)
        nas = os.path.join(wd.path, "nas")
        payload = os.urandom(args.size)
        paths = []
        for i in range(args.files):
            d = os.path.join(nas, "c%03d" % (i % 100))
            os.makedirs(d, exist_ok=True)
            p = os.path.join(d, "s%06d.jpg" % i)
            with open(p, "wb") as f:
                f.write(payload[i % 97:] + payload[:i % 97])
            paths.append(p)
        listfile = os.path.join(wd.path, "list.txt")
        with open(listfile, "w") as f:
            f.write("\n".join(paths) + "\n")
        shim_list, mount = listfile, nas
        if args.backend == "posix":
            cfg = {"path": nas, "backend": "posix", "consistency": args.consistency}
        else:
            # the same files over http: the shim reads paths that exist only through granary
            ng = Nginx(wd.path, nas).start()
            mount = "/granary-bench-shim/web"
            cfg = {"path": mount, "backend": "http", "url": ng.url,
                   "consistency": args.consistency}
            shim_list = os.path.join(wd.path, "list-mount.txt")
            with open(shim_list, "w") as f:
                f.write("\n".join(mount + p[len(nas):] for p in paths) + "\n")
        d = wd.daemon([cfg], cache={"capacity": "64G"}, log={"level": "warning"})
        d.start()
        t0 = time.time()
        d.cli("warm", mount, "--jobs", "32", "--quiet", check_rc=0)
        warm_s = time.time() - t0
        shim_env = d.env(LD_PRELOAD=PRELOAD)
        direct_env = dict(os.environ)
        # page cache hot for both: one untimed pass each
        readbench(listfile, 8, direct_env)
        readbench(shim_list, 8, shim_env)
        results = {}
        for threads in (1, 8):
            shim, direct, shim_cpu, direct_cpu = [], [], [], []
            for _ in range(args.rounds):
                r = readbench(listfile, threads, direct_env)
                direct.append(r["files_per_s"])
                direct_cpu.append(r["cpu_us"])
                r = readbench(shim_list, threads, shim_env)
                if r["errors"]:
                    raise SystemExit("errors reading through the shim: %s" % r)
                shim.append(r["files_per_s"])
                shim_cpu.append(r["cpu_us"])
            results[threads] = {"shim": shim, "direct": direct,
                                "ratio": statistics.median(shim) / statistics.median(direct),
                                "shim_cpu_us": shim_cpu, "direct_cpu_us": direct_cpu}
        st = d.status()
        d.stop()
    finally:
        if ng:
            ng.stop()
        wd.cleanup(True)
    hits = st["counters"]["hits"]
    fast_hits = st["counters"].get("fast_hits", 0)
    expect = args.files * (1 + 2 * args.rounds)
    out = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": {
        "nproc": os.cpu_count(), "kernel": platform.release()},
        "files": args.files, "size": args.size, "consistency": args.consistency,
        "backend": args.backend, "warm_seconds": warm_s, "results": results, "hits": hits,
        "fast_hits": fast_hits, "hits_expected": expect}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print("%d files of %d bytes, %s mount, consistency %s, warm took %.1f s; daemon hits %d "
          "(fast %d) of %d opens" % (args.files, args.size, args.backend, args.consistency,
                                     warm_s, hits, fast_hits, expect))
    print("| threads | direct files/s (median) | through the shim files/s | ratio | "
          "CPU µs per file, direct / shim |")
    print("|---|---|---|---|---|")
    for t, r in results.items():
        print("| %d | %.0f | %.0f | %.2fx | %.1f / %.1f |" % (
            t, statistics.median(r["direct"]), statistics.median(r["shim"]), r["ratio"],
            statistics.median(r["direct_cpu_us"]), statistics.median(r["shim_cpu_us"])))


main()
