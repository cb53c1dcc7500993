#!/usr/bin/python3
"""Profiles behind the data-stall benchmark's missed targets, with perf and
software events only (cpu-clock; this machine has no hardware counters).

  /usr/bin/python3 tests/bench/stall/profile.py [--files 5000] [--delay-ms 10]
                                                 [--backend http] [--what warm,read,ceiling]

- warm: `granary warm` of the mount, profiled system-wide (perf record -a -g
  -e cpu-clock); prints where the CPUs' time went by process (command name)
  and granaryd's hottest symbols, plus the requests the proxy forwarded and
  the warm's rate. Then the same with the proxy's delay set to 0 and to 3x
  --delay-ms: a warm whose time barely moves with the delay is bound by the
  backend's throughput, not by its latency.
- ceiling: what the backend chain (proxy + origin) serves at most: `curl
  --parallel` GETs of every object with 8, 64 and 256 transfers in flight.
- read: the warm read rate (granary-readbench, 8 threads, open/fstat/read/
  close) from the local copy, through the shim on the object-store mount and
  on the NAS mount (posix over rclone without cache), each profiled system-wide;
  prints CPU time by process and the hottest symbols, and the syscalls of one
  shim reader thread (strace -c -f) against a local one.

Findings are written up by hand in notes.md next to this file.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import contenders as C  # noqa: E402


def perf_record(out, fn):
    """Run fn() under a system-wide perf record; returns fn's result."""
    p = subprocess.Popen(["perf", "record", "-a", "-g", "-e", "cpu-clock", "-F", "999", "-o",
                          out, "--", "sleep", "3600"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    try:
        return fn()
    finally:
        p.send_signal(2)
        p.wait(60)


def perf_report(data, sort, limit, comm=None, children=False):
    cmd = ["perf", "report", "-i", data, "--stdio", "--sort", sort, "-g", "none",
           "--percent-limit", "0.5"]
    if not children:
        cmd.append("--no-children")
    if comm:
        cmd += ["--comms", comm]
    p = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in p.stdout.splitlines() if ln.strip() and not ln.startswith("#")]
    return "\n".join(lines[:limit])


def section(title):
    print("\n==== %s ====" % title, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=5000)
    ap.add_argument("--delay-ms", type=float, default=10.0)
    ap.add_argument("--backend", choices=("http", "s3"), default="http")
    ap.add_argument("--what", default="warm,ceiling,read")
    args = ap.parse_args()
    if not shutil.which("perf"):
        raise SystemExit("perf is missing (apt-get install linux-perf)")
    what = args.what.split(",")
    work = tempfile.mkdtemp(prefix="granary-bench-profile-")
    os.chmod(work, 0o755)  # as bench_stall.py: not a restricted path for granaryd
    be = None
    try:
        files = C.make_dataset(os.path.join(work, "data"), args.files)
        rels = [r for r, _ in files]
        be = C.Backend(work, args.backend, os.path.join(work, "data"), files, args.delay_ms)
        be.start_origin()
        print("%d files, %s, %g ms per request; load average %s" % (
            len(files), args.backend, args.delay_ms, os.getloadavg()))
        cap = sum(n for _, n in files) * 2
        if "warm" in what:
            for delay in (args.delay_ms, 0.0, 3 * args.delay_ms):
                be.start_proxy(delay)
                g = C.Granary(work, be, rels, "warm", cap).start()
                data = os.path.join(work, "warm-%g.perf" % delay)
                pids = g.pids() + be.pids()["proxy"] + be.pids()["origin"]
                cpu0 = C.cpu_seconds(pids)
                secs = perf_record(data, g.warm) if delay == args.delay_ms else g.warm()
                section("granary warm, %g ms per request" % delay)
                print("%.1f s, %.0f files/s, requests %s, CPU of granaryd+proxy+origin %.1f s, "
                      "load %s" % (secs, len(rels) / secs, be.proxy.counts(),
                                   C.cpu_seconds(pids) - cpu0, os.getloadavg()))
                if delay == args.delay_ms:
                    print("-- CPU time by process (all CPUs, whole machine); ours: granaryd "
                          "%s, proxy %s, nginx %s, the granary CLI runs `warm`:" % (
                              g.pids(), be.pids()["proxy"], be.pids()["origin"]))
                    print(perf_report(data, "pid", 25))
                    print("-- granaryd's hottest symbols:")
                    print(perf_report(data, "dso,sym", 25, comm="granaryd"))
                g.stop()
                be.stop_proxy()
        if "ceiling" in what:
            be.start_proxy(args.delay_ms)
            cfg = os.path.join(work, "curl.cfg")
            with open(cfg, "w") as f:
                for r in rels:
                    if args.backend == "http":
                        url = be.proxy.url + "ds/" + r
                    else:
                        url = be.proxy.url + "%s/%s/%s" % (C.BUCKET, C.PREFIX, r)
                    f.write('url = "%s"\noutput = "/dev/null"\n' % url)
            auth = []
            if args.backend == "s3":
                auth = ["--aws-sigv4", "aws:amz:us-east-1:s3", "-u", "S3RVER:S3RVER",
                        "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"]
            section("backend ceiling: curl --parallel GETs")
            for par in (8, 64, 256):
                t0 = time.monotonic()
                subprocess.run(["curl", "--no-progress-meter", "--parallel",
                                "--parallel-max", str(par), "-K", cfg] + auth, check=True,
                               stderr=subprocess.DEVNULL)
                dt = time.monotonic() - t0
                print("%3d in flight: %.1f s, %.0f GET/s" % (par, dt, len(rels) / dt))
            be.stop_proxy()
        if "read" in what:
            be.start_proxy(args.delay_ms)
            g = C.Granary(work, be, rels, "warm", cap).start()
            g.warm()
            nas = C.Granary(work, be, rels, "nas", cap).start()
            nas.warm()
            local = C.Local(work, be, rels, os.path.join(work, "data")).start()
            for c in (local, g, nas):
                subprocess.run([C.READBENCH, "-t", "8", "-r", "2", c.listfile], env=c.env(),
                               capture_output=True, check=True)
            section("daemon CPU per open (/proc accounting over 5 rounds, no profiler)")
            for c in (local, g, nas):
                for threads in (1, 8):
                    pids = c.pids()[:1]
                    cpu0, t0 = C.cpu_seconds(pids), time.monotonic()
                    out = subprocess.run([C.READBENCH, "-t", str(threads), "-r", "5",
                                          c.listfile], env=c.env(), capture_output=True,
                                         text=True, check=True).stdout
                    dt, dc = time.monotonic() - t0, C.cpu_seconds(pids) - cpu0
                    rates = [ln.split('"files_per_s": ')[1].split(",")[0]
                             for ln in out.splitlines() if "files_per_s" in ln]
                    print("%-24s %d thread(s): files/s %s; granaryd %.1f us of CPU per open, "
                          "busy %.0f%% of the time" % (c.name, threads, " ".join(rates),
                                                       dc / (5 * len(rels)) * 1e6,
                                                       100 * dc / dt))
            for c in (local, g, nas):
                data = os.path.join(work, "read-%s.perf" % c.key())

                def rb():
                    return subprocess.run([C.READBENCH, "-t", "8", "-r", "3", c.listfile],
                                          env=c.env(), capture_output=True, text=True,
                                          check=True).stdout
                out = perf_record(data, rb)
                section("warm read rate: %s" % c.name)
                print(out.strip())
                print("-- CPU time by process; ours: granaryd %s, readbench runs as "
                      "granary-readben:" % (c.pids()[:1]))
                print(perf_report(data, "pid", 12))
                print("-- hottest symbols, whole machine:")
                print(perf_report(data, "comm,dso,sym", 30))
                st = subprocess.run(["strace", "-f", "-c", "-o", os.path.join(work, "st.txt"),
                                     C.READBENCH, "-t", "1", c.listfile], env=c.env(),
                                    capture_output=True, text=True)
                if st.returncode == 0:
                    print("-- syscalls of one reader thread over %d files (strace -c):" %
                          len(rels))
                    with open(os.path.join(work, "st.txt")) as f:
                        print("".join(f.readlines()[:16]).rstrip())
            g.stop()
            nas.stop()
            be.stop_proxy()
    finally:
        if be:
            be.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
