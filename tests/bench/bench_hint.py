#!/usr/bin/python3
"""Benchmark: a trainer's wait per sample in its first epoch, with and without
a hinted order, same run.

1,000 samples of 64 KiB (override with --files/--size). Backends:

- http: nginx behind a proxy (tests/lib/servers.py, in its own process) that
  adds --delay-ms (5) to every request, as a slow object store would;
- posix: the same files in a local directory (no added delay: a fast NAS).

For each backend, compute time per sample (--compute-ms, default 0 and 2) and
with or without the hint, a fresh daemon with a cold cache serves one epoch
to a trainer process that opens each sample in a shuffled order through the
daemon's socket, reads it, compares its bytes with the source, then
"computes" (sleeps) before the next one. With the hint, the order is sent
first (`granary hint --order FILE`), as the sampler does at the start of an
epoch. The wait per sample is the time from asking for a sample to having
its bytes. Not a test: no assertion on time. Writes
tests/bench/results/hint.json and prints a Markdown table.

  GRANARY_BUILD=build /usr/bin/python3 tests/bench/bench_hint.py
"""
import argparse
import hashlib
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from harness import DEBIAN_PYTHON, SRC, Workdir  # noqa: E402
from servers import Nginx, free_port, wait_port  # noqa: E402

TRAINER = r"""
import hashlib, json, os, sys, time
sys.path.insert(0, sys.argv[4])
from harness import Conn
order = open(sys.argv[2]).read().split()
want = json.load(open(sys.argv[3]))
compute = float(sys.argv[5]) / 1000.0
c = Conn(sys.argv[1])
waits, sources = [], {}
t_start = time.monotonic()
for p in order:
    t0 = time.monotonic()
    r, data = c.read(p)
    waits.append(time.monotonic() - t0)
    if r.status != 0 or hashlib.sha256(data).hexdigest() != want[p]:
        print("bad read %s: %d %s" % (p, r.status, r.errmsg), file=sys.stderr)
        sys.exit(1)
    s = r.u32("SOURCE")
    sources[s] = sources.get(s, 0) + 1
    if compute:
        time.sleep(compute)
total = time.monotonic() - t_start
print(json.dumps({"waits": waits, "total_s": total, "sources": sources}))
"""

PROXY = r"""
import sys
sys.path.insert(0, sys.argv[1])
from servers import Proxy
p = Proxy(int(sys.argv[2]), delay_ms=float(sys.argv[3]), port=int(sys.argv[4])).start()
print("ready", flush=True)
sys.stdin.read()
p.stop()
"""


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def one_run(wd, name, mount, order, mount_order, sums, compute_ms, hint, window):
    d = wd.daemon([mount], name=name, log={"level": "warning"},
                  policy={"prefetch_window": window})
    d.start()
    try:
        ofile = os.path.join(wd.path, "order-%s.txt" % name)
        with open(ofile, "w") as f:
            f.write("\n".join(mount_order) + "\n")
        if hint:
            d.cli("hint", "--order", ofile, check_rc=0)
        p = subprocess.run([DEBIAN_PYTHON, "-c", TRAINER, d.socket, ofile, sums,
                            os.path.join(SRC, "tests", "lib"), str(compute_ms)],
                           capture_output=True, text=True, timeout=1800)
        if p.returncode != 0:
            raise SystemExit("trainer failed (%s):\n%s\n%s" % (name, p.stderr[-3000:],
                                                               d.logtext()))
        out = json.loads(p.stdout.strip().splitlines()[-1])
        st = d.status()
    finally:
        d.stop()
    w = out["waits"]
    ds = st["datasets"][0]
    h = st["mounts"][0]["hint"]
    return {"hint": hint, "compute_ms": compute_ms,
            "wait_mean_ms": round(statistics.mean(w) * 1e3, 3),
            "wait_median_ms": round(statistics.median(w) * 1e3, 3),
            "wait_p99_ms": round(pct(w, 0.99) * 1e3, 3),
            "epoch_s": round(out["total_s"], 3), "hits": ds["hits"], "misses": ds["misses"],
            "prefetched": h["prefetched"], "prefetch_refused": h["prefetch_refused"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--size", type=int, default=64 * 1024)
    ap.add_argument("--delay-ms", type=float, default=5.0)
    ap.add_argument("--compute-ms", default="0,2")
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--backends", default="http,posix")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "hint.json"))
    args = ap.parse_args()
    computes = [float(x) for x in args.compute_ms.split(",")]

    wd = Workdir("bench-hint")
    results = []
    servers = []
    proxy = None
    try:
        root = os.path.join(wd.path, "data")
        rnd = random.Random(3)
        rels = []
        for i in range(args.files):
            rel = "c%02d/s%05d.bin" % (i % 20, i)
            os.makedirs(os.path.join(root, os.path.dirname(rel)), exist_ok=True)
            with open(os.path.join(root, rel), "wb") as f:
                f.write(rnd.randbytes(args.size))
            rels.append(rel)
        order = list(rels)
        random.Random(11).shuffle(order)

        for backend in args.backends.split(","):
            if backend == "http":
                ng = Nginx(wd.path, root).start()
                servers.append(ng)
                port = free_port()
                proxy = subprocess.Popen([DEBIAN_PYTHON, "-c", PROXY,
                                          os.path.join(SRC, "tests", "lib"), str(ng.port),
                                          str(args.delay_ms), str(port)],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         text=True)
                proxy.stdout.readline()
                wait_port(port)
                mpath = "/bench/data"
                mount = {"path": mpath, "backend": "http",
                         "url": "http://127.0.0.1:%d/" % port, "consistency": "immutable"}
            else:
                mpath = root
                mount = {"path": root, "backend": "posix", "consistency": "immutable"}
            mount_order = [mpath + "/" + r for r in order]
            sums = os.path.join(wd.path, "sums-%s.json" % backend)
            with open(sums, "w") as f:
                json.dump({mpath + "/" + r: hashlib.sha256(
                    open(os.path.join(root, r), "rb").read()).hexdigest() for r in rels}, f)
            for compute in computes:
                for hint in (False, True):
                    name = "%s-c%g-%s" % (backend, compute, "hint" if hint else "nohint")
                    r = one_run(wd, name, mount, order, mount_order, sums, compute, hint,
                                args.window)
                    r["backend"] = backend
                    r["delay_ms"] = args.delay_ms if backend == "http" else 0
                    results.append(r)
                    print(json.dumps(r), flush=True)
            if proxy:
                proxy.stdin.close()
                proxy.wait(10)
                proxy = None
    finally:
        if proxy:
            proxy.kill()
        for s in servers:
            s.stop()
        wd.cleanup(True)

    rows = []
    for backend in args.backends.split(","):
        for compute in computes:
            no = [r for r in results if r["backend"] == backend and r["compute_ms"] == compute
                  and not r["hint"]][0]
            yes = [r for r in results if r["backend"] == backend and r["compute_ms"] == compute
                   and r["hint"]][0]
            rows.append({"backend": backend, "delay_ms": no["delay_ms"], "compute_ms": compute,
                         "wait_no_hint_ms": no["wait_mean_ms"],
                         "wait_hint_ms": yes["wait_mean_ms"],
                         "ratio": round(yes["wait_mean_ms"] / no["wait_mean_ms"], 3),
                         "epoch_no_hint_s": no["epoch_s"], "epoch_hint_s": yes["epoch_s"],
                         "hits_hint": yes["hits"]})
    report = {"date": time.strftime("%Y-%m-%d %H:%M"),
              "machine": {"nproc": os.cpu_count(), "kernel": platform.release(),
                          "loadavg_1m_at_end": round(os.getloadavg()[0], 2)},
              "files": args.files, "size": args.size, "prefetch_window": args.window,
              "summary": rows, "runs": results}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    print("\n%d samples of %d bytes, first epoch, cold cache, prefetch_window %d" % (
        args.files, args.size, args.window))
    print("| backend | added delay | compute/sample | wait/sample, no hint | wait/sample, hint "
          "| hint/no hint | epoch time no hint | epoch time hint | hits with hint |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| %s | %g ms | %g ms | %.3f ms | %.3f ms | %.2f | %.2f s | %.2f s | %d/%d |" % (
            r["backend"], r["delay_ms"], r["compute_ms"], r["wait_no_hint_ms"],
            r["wait_hint_ms"], r["ratio"], r["epoch_no_hint_s"], r["epoch_hint_s"],
            r["hits_hint"], args.files))


main()
