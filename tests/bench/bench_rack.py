#!/usr/bin/python3
"""The rack: three nodes whose caches each hold a third of the dataset,
against one node with the same cache; and read throughput by object size from
a peer against from the backend.

Hit ratio. A dataset of --objects objects of --size bytes is served by nginx
on loopback. Each epoch is a new random order of every object.
- single: one granaryd, cache a third of the dataset, reads each whole epoch.
- rack: three granaryd (peers over --provider, placement partition), each
  cache a third of the dataset; each epoch is split in three shards, one per
  node, read at the same time (three data-parallel trainers).
The first epoch is cold; the next ones are warm. A read is a hit when the backend
is not asked for it: the hit ratio of an epoch is one minus the GETs nginx
logged over the reads. Reads are also counted by where granaryd says the
bytes came from: this node's cache (local) or another node (peer). The epoch policy bounds a single node at about a
third.

Throughput. For each object size, distinct objects (--mib MiB of them) are
read once through the protocol (OPEN, read the descriptor to the end):
- backend: a node without peers, cold: nginx, staging file, hand-over;
- peer: node1 of a warm rack, objects owned by the other two (partition:
  node1 keeps no copy, so every read crosses the transport).
Sequentially and with --parallel clients at once; each figure is the median
of --reps runs (the backend node's cache is emptied before each).

Figures go to tests/bench/results/rack.json and a Markdown table is printed.
Run from a build: GRANARY_BUILD=build python3 tests/bench/bench_rack.py
"""
import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

from harness import SOURCE, Conn, Daemon, Skip, require_rack  # noqa: E402
from servers import Nginx, free_port  # noqa: E402

SECRET = "rack-secret-for-the-benchmark-0123456789\n"


def write_dataset(root, prefix, n, size, seed):
    rnd = random.Random(seed)
    rels = []
    for i in range(n):
        rel = "%s/d%02d/o%05d.bin" % (prefix, i % 16, i)
        os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
        with open(os.path.join(root, rel), "wb") as f:
            f.write(rnd.randbytes(size))
        rels.append(rel)
    return rels


def rack_daemons(workdir, mounts, n, provider, capacity, tag):
    ports = [free_port() for _ in range(n)]
    nodes = [{"name": "node%d" % (i + 1), "address": "127.0.0.1:%d" % ports[i]}
             for i in range(n)]
    secret = os.path.join(workdir, "rack.secret")
    with open(secret, "w") as f:
        f.write(SECRET)
    os.chmod(secret, 0o600)
    ds = []
    for i in range(n):
        peers = {"self": nodes[i]["name"], "provider": provider, "secret_file": secret,
                 "heartbeat": "250ms", "miss_limit": 8, "nodes": nodes}
        ds.append(Daemon(workdir, mounts, name="%s-node%d" % (tag, i + 1),
                         cache={"capacity": str(capacity)}, log={"level": "warning"},
                         peers=peers))
    for d in ds:
        d.start()
    end = time.time() + 30
    while time.time() < end:
        if all(d.status()["rack"]["live"] == n for d in ds):
            return ds
        time.sleep(0.05)
    raise RuntimeError("the rack did not come up")


def read_all(d, paths, sources=None):
    """Read @paths through @d; count sources; return bytes read."""
    c = Conn(d.socket, timeout=120)
    nbytes = 0
    for p in paths:
        r, data = c.read(p)
        if r.status != 0:
            raise RuntimeError("OPEN %s failed: %d %s" % (p, r.status, r.errmsg))
        nbytes += len(data)
        if sources is not None:
            s = SOURCE.get(r.u32("SOURCE"), "?")
            sources[s] = sources.get(s, 0) + 1
    c.close()
    return nbytes


def read_parallel(d, paths, nclients, sources=None):
    """Read @paths split over @nclients connections at once; bytes read."""
    parts = [paths[i::nclients] for i in range(nclients)]
    results, errors, lock = [], [], threading.Lock()

    def work(part):
        local = {}
        try:
            n = read_all(d, part, local)
        except Exception as e:  # report, do not hang the join
            errors.append(e)
            return
        with lock:
            results.append(n)
            if sources is not None:
                for k, v in local.items():
                    sources[k] = sources.get(k, 0) + v

    ts = [threading.Thread(target=work, args=(p,)) for p in parts]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]
    return sum(results)


def backend_gets(ng, prefix):
    return sum(1 for _, uri, st, _, _ in ng.requests("GET")
               if st in (200, 206) and uri.startswith(prefix))


def ratio(src):
    total = sum(src.values()) or 1
    return {k: round(v / total, 4) for k, v in sorted(src.items())}


def bench_hit_ratio(args, workdir, ng, rels):
    size_total = args.objects * args.size
    capacity = int(size_total * args.cache_fraction)
    mounts = [{"path": "/data/hr", "backend": "http", "url": ng.url + "hr/",
               "consistency": "immutable"}]
    paths = ["/data/hr/" + r[len("hr/"):] for r in rels]
    rnd = random.Random(77)
    orders = []
    for _ in range(args.epochs):
        o = list(paths)
        rnd.shuffle(o)
        orders.append(o)
    out = {"objects": args.objects, "size": args.size, "capacity_per_node": capacity,
           "epochs": args.epochs}

    # one node, cache a third
    d = Daemon(workdir, mounts, name="single", cache={"capacity": str(capacity)},
               log={"level": "warning"})
    d.start()
    single = []
    for e, order in enumerate(orders):
        src = {}
        g0 = backend_gets(ng, "/hr/")
        t = time.monotonic()
        read_all(d, order, src)
        single.append({"epoch": e + 1, "seconds": round(time.monotonic() - t, 2),
                       "reads": len(order), "backend_gets": backend_gets(ng, "/hr/") - g0,
                       "sources": src, "ratios": ratio(src)})
        d.cli("epoch", "/data/hr", check_rc=0)
    d.stop()
    out["single"] = single

    # three nodes, each cache a third, each reading a shard of every epoch
    ds = rack_daemons(workdir, mounts, 3, args.provider, capacity, "hr")
    rack = []
    for e, order in enumerate(orders):
        src = {}
        shards = [order[i::3] for i in range(3)]
        errs = []

        def shard(i):
            try:
                local = {}
                read_all(ds[i], shards[i], local)
                with lock:
                    for k, v in local.items():
                        src[k] = src.get(k, 0) + v
            except Exception as ex:
                errs.append(ex)

        lock = threading.Lock()
        g0 = backend_gets(ng, "/hr/")
        t = time.monotonic()
        ts = [threading.Thread(target=shard, args=(i,)) for i in range(3)]
        for th in ts:
            th.start()
        for th in ts:
            th.join()
        if errs:
            raise errs[0]
        rack.append({"epoch": e + 1, "seconds": round(time.monotonic() - t, 2),
                     "reads": len(order), "backend_gets": backend_gets(ng, "/hr/") - g0,
                     "sources": src, "ratios": ratio(src)})
        for x in ds:
            x.cli("epoch", "/data/hr", check_rc=0)
    for x in ds:
        x.stop()
    out["rack"] = rack
    return out


def median_rate(nbytes, fn, reps):
    """MiB/s of @fn moving @nbytes, the median of @reps runs."""
    rates = []
    for _ in range(reps):
        t = time.monotonic()
        fn()
        rates.append(nbytes / (time.monotonic() - t) / 2**20)
    return round(sorted(rates)[len(rates) // 2], 1)


def bench_throughput(args, workdir, ng, sizes):
    out = []
    for size, rels in sizes:
        mounts = [{"path": "/data/tp", "backend": "http", "url": ng.url + "tp/",
                   "consistency": "immutable"}]
        paths = ["/data/tp/" + r[len("tp/"):] for r in rels]
        nbytes = size * len(paths)
        row = {"size": size, "objects": len(paths)}

        # backend: cold reads by a node without peers (its cache emptied before each run)
        d = Daemon(workdir, mounts, name="tp-backend-%d" % size, log={"level": "warning"})
        d.start()

        def cold(fn):
            def run():
                d.cli("evict", "/data/tp", check_rc=0)
                fn()
            return run

        row["backend_seq_MiB_s"] = median_rate(nbytes, cold(lambda: read_all(d, paths)),
                                               args.reps)
        row["backend_par_MiB_s"] = median_rate(
            nbytes, cold(lambda: read_parallel(d, paths, args.parallel)), args.reps)
        d.stop()

        # peer: warm the owners through node1, then read what node1 does not own
        ds = rack_daemons(workdir, mounts, 3, args.provider, 4 * nbytes + (64 << 20),
                          "tp%d" % size)
        read_all(ds[0], paths)
        c = Conn(ds[0].socket)
        remote = []
        for p in paths:
            r, _ = c.read(p, nofetch=True)
            if r.status != 0:  # not cached on node1: owned by a peer
                remote.append(p)
        c.close()
        rbytes = size * len(remote)
        src = {}
        row["peer_seq_MiB_s"] = median_rate(rbytes, lambda: read_all(ds[0], remote, src),
                                            args.reps)
        row["peer_par_MiB_s"] = median_rate(
            rbytes, lambda: read_parallel(ds[0], remote, args.parallel, src), args.reps)
        row["peer_objects"] = len(remote)
        row["peer_sources"] = src
        for x in ds:
            x.stop()
        out.append(row)
        print("size %8d: backend %7.1f / %7.1f MiB/s, peer %7.1f / %7.1f MiB/s (seq / %d par)"
              % (size, row["backend_seq_MiB_s"], row["backend_par_MiB_s"],
                 row["peer_seq_MiB_s"], row["peer_par_MiB_s"], args.parallel), flush=True)
    return out


def fmt_size(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return ("%d %s" % (n, unit)) if n == int(n) else ("%.1f %s" % (n, unit))
        n /= 1024
    return str(n)


def markdown(res):
    hr = res["hit_ratio"]
    lines = ["Hit ratio, %d objects of %s, cache per node %s, provider %s:" %
             (hr["objects"], fmt_size(hr["size"]), fmt_size(hr["capacity_per_node"]),
              res["provider"]), "",
             "| run | epoch | served locally | from a peer | backend GETs | hit ratio | seconds |",
             "|---|---|---|---|---|---|---|"]
    for name in ("single node", "rack of 3"):
        for e in hr["single" if name == "single node" else "rack"]:
            r = e["ratios"]
            hit = 1 - e["backend_gets"] / e["reads"]
            lines.append("| %s | %d%s | %.1f%% | %.1f%% | %d | **%.1f%%** | %.1f |" % (
                name, e["epoch"], " (cold)" if e["epoch"] == 1 else "",
                100 * r.get("local", 0), 100 * r.get("peer", 0), e["backend_gets"], 100 * hit,
                e["seconds"]))
    lines += ["", "Read throughput by object size (MiB/s, median of %d runs; sequential / %d "
              "clients):" % (res["reps"], res["parallel"]), "",
              "| object size | backend, cold | from a peer | peer / backend |",
              "|---|---|---|---|"]
    for r in res["throughput"]:
        lines.append("| %s | %.1f / %.1f | %.1f / %.1f | %.1fx / %.1fx |" % (
            fmt_size(r["size"]), r["backend_seq_MiB_s"], r["backend_par_MiB_s"],
            r["peer_seq_MiB_s"], r["peer_par_MiB_s"],
            r["peer_seq_MiB_s"] / max(r["backend_seq_MiB_s"], 0.1),
            r["peer_par_MiB_s"] / max(r["backend_par_MiB_s"], 0.1)))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--provider", default="tcp;ofi_rxm")
    ap.add_argument("--objects", type=int, default=1800)
    ap.add_argument("--size", type=int, default=128 * 1024)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--sizes", default="4096,65536,1048576,8388608,33554432")
    ap.add_argument("--mib", type=int, default=64, help="MiB of objects per size")
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--cache-fraction", type=float, default=1 / 3,
                    help="each node's cache as a fraction of the dataset")
    ap.add_argument("--reps", type=int, default=3, help="runs per figure (the median)")
    ap.add_argument("--skip-hit-ratio", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "rack.json"))
    args = ap.parse_args()
    try:
        require_rack()
    except Skip as e:
        print("SKIP: %s" % e)
        sys.exit(77)

    workdir = tempfile.mkdtemp(prefix="granary-bench-rack-")
    root = os.path.join(workdir, "www")
    hr_rels = [] if args.skip_hit_ratio else write_dataset(root, "hr", args.objects,
                                                            args.size, 1)
    sizes = []
    for i, s in enumerate(int(x) for x in args.sizes.split(",") if not args.skip_throughput):
        n = max(8, min(2000, (args.mib << 20) // s))
        sizes.append((s, write_dataset(root, "tp/s%d" % s, n, s, 100 + i)))
    ng = Nginx(workdir, root).start()
    res = {"provider": args.provider, "parallel": args.parallel, "reps": args.reps,
           "machine": "%d CPUs, loopback" % os.cpu_count()}
    try:
        if not args.skip_hit_ratio:
            res["hit_ratio"] = bench_hit_ratio(args, workdir, ng, hr_rels)
            for name in ("single", "rack"):
                for e in res["hit_ratio"][name]:
                    print("%-6s epoch %d: %s, %d backend GETs for %d reads, in %.1fs" % (
                        name, e["epoch"], e["ratios"], e["backend_gets"], e["reads"],
                        e["seconds"]), flush=True)
        res["throughput"] = bench_throughput(args, workdir, ng, sizes)
    finally:
        ng.stop()
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)
    if "hit_ratio" in res:
        print()
        print(markdown(res))
    print("\nresults: %s (work directory %s)" % (args.out, workdir))


if __name__ == "__main__":
    main()
