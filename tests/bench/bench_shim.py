"""Benchmark: reading a warm cache through the shim vs reading the files directly.

20,000 files of 110 KiB (override with --files/--size); granary warms them;
then granary-readbench (open, fstat, read, close per file) with 1 and 8
threads, each run three times, through LD_PRELOAD=libgranary-preload.so and
straight from the directory, alternating, in the same run. Prints a Markdown
table and writes tests/bench/results/shim.json. Not a test: no assertion on time.

  /usr/bin/python3 tests/bench/bench_shim.py [--files N] [--size BYTES] [--consistency C]
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import BUILD, PRELOAD, SRC, Workdir  # noqa: E402

READBENCH = os.path.join(BUILD, "tests", "granary-readbench")


def readbench(listfile, threads, env):
    p = subprocess.run([READBENCH, "-t", str(threads), listfile], capture_output=True,
                       text=True, env=env, check=True)
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--size", type=int, default=110 * 1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--consistency", default="strict")
    ap.add_argument("--out", default=os.path.join(SRC, "tests", "bench", "results",
                                                   "shim.json"))
    args = ap.parse_args()
    wd = Workdir("bench-shim")
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
        d = wd.daemon([{"path": nas, "backend": "posix", "consistency": args.consistency}],
                      cache={"capacity": "64G"}, log={"level": "warning"})
        d.start()
        t0 = time.time()
        d.cli("warm", nas, "--jobs", "32", "--quiet", check_rc=0)
        warm_s = time.time() - t0
        shim_env = d.env(LD_PRELOAD=PRELOAD)
        direct_env = dict(os.environ)
        # page cache hot for both: one untimed pass each
        readbench(listfile, 8, direct_env)
        readbench(listfile, 8, shim_env)
        results = {}
        for threads in (1, 8):
            shim, direct = [], []
            for _ in range(args.rounds):
                direct.append(readbench(listfile, threads, direct_env)["files_per_s"])
                r = readbench(listfile, threads, shim_env)
                if r["errors"]:
                    raise SystemExit("errors reading through the shim: %s" % r)
                shim.append(r["files_per_s"])
            results[threads] = {"shim": shim, "direct": direct,
                                "ratio": statistics.median(shim) / statistics.median(direct)}
        st = d.status()
        d.stop()
    finally:
        wd.cleanup(True)
    hits = st["counters"]["hits"]
    expect = args.files * (1 + 2 * args.rounds)
    out = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": {
        "nproc": os.cpu_count(), "kernel": platform.release()},
        "files": args.files, "size": args.size, "consistency": args.consistency,
        "warm_seconds": warm_s, "results": results, "hits": hits,
        "hits_expected": expect}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print("%d files of %d bytes, consistency %s, warm took %.1f s; daemon hits %d of %d opens"
          % (args.files, args.size, args.consistency, warm_s, hits, expect))
    print("| threads | direct files/s (median) | through the shim files/s | ratio |")
    print("|---|---|---|---|")
    for t, r in results.items():
        print("| %d | %.0f | %.0f | %.2fx |" % (t, statistics.median(r["direct"]),
                                               statistics.median(r["shim"]), r["ratio"]))


main()
