#!/usr/bin/python3
"""Benchmark: a foreground read's latency alone vs during a large warm.

A mount holds bulk/ (5,000 files of 64 KiB by default) and probe/ (files
nobody warms). A probe opens one probe file at a time through the daemon's
socket (each a miss: the daemon fetches it from the backend while the probe
waits), reads it, compares its bytes, and pauses 10 ms. Its latency is
measured with the daemon idle, then while `granary warm bulk --jobs 64`
runs. Backends: http (nginx behind a proxy adding --delay-ms per request, in
its own process) and posix (a local directory). Daemon settings: the
defaults (fetch.max_parallel 64, fetch.fg_reserved 16, no bandwidth cap),
background bandwidth capped (fetch.bg_rate 50 MB/s), and, for comparison, no
limit at all (max_parallel 65536, fg_reserved 0: every warm request fetches
at once, as before QoS).
Not a test: no assertion on time. Writes tests/bench/results/qos.json and
prints a Markdown table.

  GRANARY_BUILD=build /usr/bin/python3 tests/bench/bench_qos.py
"""
import argparse
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
from harness import DEBIAN_PYTHON, GRANARY, SRC, Workdir  # noqa: E402
from servers import Nginx, free_port, wait_port  # noqa: E402

PROXY = r"""
import sys
sys.path.insert(0, sys.argv[1])
from servers import Proxy
p = Proxy(int(sys.argv[2]), delay_ms=float(sys.argv[3]), port=int(sys.argv[4])).start()
print("ready", flush=True)
sys.stdin.read()
p.stop()
"""

SETTINGS = [
    ("defaults: 64 slots, 16 reserved, bg_rate unlimited", {}),
    ("bg_rate 50 MB/s", {"bg_rate": "50M"}),
    ("bg_rate 20 MB/s", {"bg_rate": "20M"}),
    ("no limit: 65536 slots, none reserved", {"max_parallel": 65536, "fg_reserved": 0}),
]


def probe(c, paths, data, gap_s, keep_going):
    lat = []
    for p in paths:
        if not keep_going():
            break
        t0 = time.monotonic()
        r, got = c.read(p)
        lat.append(time.monotonic() - t0)
        if r.status != 0 or got != data[p]:
            raise SystemExit("probe read failed %s: %d %s" % (p, r.status, r.errmsg))
        time.sleep(gap_s)
    return lat


def summary(lat):
    s = sorted(lat)
    return {"n": len(s), "median_ms": round(statistics.median(s) * 1e3, 3),
            "mean_ms": round(statistics.mean(s) * 1e3, 3),
            "p95_ms": round(s[min(len(s) - 1, int(0.95 * len(s)))] * 1e3, 3)}


def one_run(wd, name, mount, mpath, probes, data, fetch, jobs, gap_s):
    d = wd.daemon([mount], name=name, log={"level": "warning"}, fetch=fetch,
                  cache={"capacity": "4G"})
    d.start()
    try:
        c = d.conn()
        half = len(probes) // 2
        alone = probe(c, probes[:half], data, gap_s, lambda: True)
        warm = subprocess.Popen([GRANARY, "warm", mpath + "/bulk", "--jobs", str(jobs),
                                 "--quiet"], env=d.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        t0 = time.monotonic()
        while d.status()["counters"]["fetches"] < 50 and warm.poll() is None:
            time.sleep(0.005)
        during = probe(c, probes[half:], data, gap_s, lambda: warm.poll() is None)
        qos = d.status()["qos"]
        out, err = warm.communicate(timeout=1800)
        warm_s = time.monotonic() - t0
        if warm.returncode != 0:
            raise SystemExit("granary warm failed:\n%s%s" % (out, err[-3000:]))
        c.close()
        st = d.status()
    finally:
        d.stop()
    if len(during) < 10:
        raise SystemExit("%s: the warm ended after %d probes; use more files" % (name,
                                                                                 len(during)))
    a, b = summary(alone), summary(during)
    return {"alone": a, "during_warm": b,
            "ratio_median": round(b["median_ms"] / a["median_ms"], 3),
            "ratio_mean": round(b["mean_ms"] / a["mean_ms"], 3),
            "warm_s": round(warm_s, 2), "fetches": st["counters"]["fetches"],
            "qos_during": {k: qos[k] for k in ("fg_inflight", "bg_inflight", "fg_queued",
                                               "bg_queued")},
            "qos": {k: st["qos"][k] for k in ("fg_started", "bg_started", "promoted",
                                              "fg_wait_max_ms")}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=5000)
    ap.add_argument("--size", type=int, default=64 * 1024)
    ap.add_argument("--probes", type=int, default=200)
    ap.add_argument("--gap-ms", type=float, default=10.0)
    ap.add_argument("--jobs", type=int, default=64)
    ap.add_argument("--delay-ms", type=float, default=5.0)
    ap.add_argument("--backends", default="http,posix")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "qos.json"))
    args = ap.parse_args()

    wd = Workdir("bench-qos")
    results = []
    proxy = None
    servers = []
    try:
        root = os.path.join(wd.path, "data")
        rnd = random.Random(5)
        for i in range(args.files):
            rel = os.path.join(root, "bulk", "c%02d" % (i % 50), "s%05d.bin" % i)
            os.makedirs(os.path.dirname(rel), exist_ok=True)
            with open(rel, "wb") as f:
                f.write(rnd.randbytes(args.size))
        probe_rels = []
        for i in range(args.probes * len(SETTINGS)):
            rel = "probe/p%05d.bin" % i
            os.makedirs(os.path.join(root, "probe"), exist_ok=True)
            with open(os.path.join(root, rel), "wb") as f:
                f.write(rnd.randbytes(args.size))
            probe_rels.append(rel)
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
            data = {mpath + "/" + r: open(os.path.join(root, r), "rb").read()
                    for r in probe_rels}
            for k, (label, fetch) in enumerate(SETTINGS):
                probes = [mpath + "/" + r
                          for r in probe_rels[k * args.probes:(k + 1) * args.probes]]
                r = one_run(wd, "%s-%d" % (backend, k), mount, mpath, probes, data, fetch,
                            args.jobs, args.gap_ms / 1e3)
                r.update({"backend": backend, "settings": label, "fetch": fetch,
                          "delay_ms": args.delay_ms if backend == "http" else 0})
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

    report = {"date": time.strftime("%Y-%m-%d %H:%M"),
              "machine": {"nproc": os.cpu_count(), "kernel": platform.release(),
                          "loadavg_1m_at_end": round(os.getloadavg()[0], 2)},
              "files": args.files, "size": args.size, "jobs": args.jobs,
              "probe_gap_ms": args.gap_ms, "runs": results}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    print("\nforeground miss latency, alone vs during `granary warm --jobs %d` of %d files "
          "of %d bytes" % (args.jobs, args.files, args.size))
    print("| backend | settings | alone median | during warm median | ratio | alone p95 "
          "| during p95 | probes during |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print("| %s%s | %s | %.2f ms | %.2f ms | %.2fx | %.2f ms | %.2f ms | %d |" % (
            r["backend"], " +%g ms" % r["delay_ms"] if r["delay_ms"] else "", r["settings"],
            r["alone"]["median_ms"], r["during_warm"]["median_ms"], r["ratio_median"],
            r["alone"]["p95_ms"], r["during_warm"]["p95_ms"], r["during_warm"]["n"]))


main()
