#!/usr/bin/python3
"""Trainer simulator: shuffled epochs over a file list, N forked loaders, a
fixed compute time per batch standing for the GPU step.

It behaves like a PyTorch DataLoader with persistent workers: batch i goes to
loader i mod N, each loader keeps `--prefetch` batches queued, and the trainer
consumes batches in order. A loader opens and reads every file of its batch
(open, read to the end, close: what a Dataset's __getitem__ does before
decoding). The trainer waits for the next batch (that wait is the data stall),
then "computes" by sleeping --compute-ms, as a GPU step would keep the host
idle. Per epoch it reports the wall time, the stall time and the GPU
utilisation = compute / wall.

  trainer_sim.py --list FILES [--loaders 8] [--batch 32] [--compute-ms 10]
                 [--epochs 2] [--seed 1] [--hint] [--torch]

--hint starts each epoch in granaryd and sends its order before the epoch's
first read, through the Python module (granary.epoch, then granary.hint).
--torch runs the same loop through a real torch DataLoader (torchvision's
read_file as the loader; with --hint, granary.HintedSampler as the sampler).
--stop-after S ends an epoch early once S seconds have passed (used only
where every epoch is the same: reads with no cache); the fraction read is
reported. Prints one JSON line per epoch, then a summary line.
"""
import argparse
import json
import random
import sys
import time


def read_file(path, buf):
    """Open, read to the end, close; returns the byte count."""
    n = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            k = f.readinto(buf)
            if not k:
                break
            n += k
    return n


def loader_main(conn, paths):
    """A forked loader: receives (batch id, indices), answers (id, bytes, errors, secs)."""
    buf = bytearray(4 << 20)
    while True:
        msg = conn.recv()
        if msg is None:
            break
        bid, idx = msg
        t0 = time.monotonic()
        nbytes = errors = 0
        for i in idx:
            try:
                nbytes += read_file(paths[i], buf)
            except OSError as e:
                errors += 1
                if errors == 1:
                    sys.stderr.write("loader: %s: %s\n" % (paths[i], e))
        conn.send((bid, nbytes, errors, time.monotonic() - t0))
    conn.close()


def epoch_order(n, seed, epoch):
    order = list(range(n))
    random.Random(seed * 1000003 + epoch).shuffle(order)
    return order


def send_hint(paths, order):
    """Start the dataset's next epoch, then send its order: an order that
    arrives before any read of the current epoch is that epoch's order
    (docs/policy.md, "Hinted order"), also on the very first epoch."""
    import granary
    ordered = [paths[i] for i in order]
    t0 = time.monotonic()
    granary.epoch(path=ordered[0])
    granary.hint(ordered)
    return time.monotonic() - t0


def pct(xs, q):
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def epoch_record(epoch, wall, stall, compute, waits, nfiles, nbytes, errors, total_files,
                 hint_s=0.0, cut=False):
    return {"epoch": epoch, "wall_s": round(wall, 4), "stall_s": round(stall, 4),
            "compute_s": round(compute, 4), "gpu_util": round(compute / wall, 4) if wall else 0,
            "files": nfiles, "bytes": nbytes, "errors": errors,
            "fraction": round(nfiles / total_files, 4) if total_files else 0,
            "cut": cut, "hint_s": round(hint_s, 4),
            "files_per_s": round(nfiles / wall, 1) if wall else 0,
            "wait_p50_ms": round(pct(waits, 0.5) * 1e3, 3),
            "wait_p99_ms": round(pct(waits, 0.99) * 1e3, 3)}


def run_sim(args, paths):
    import multiprocessing as mp
    ctx = mp.get_context("fork")
    conns, procs = [], []
    for _ in range(args.loaders):
        a, b = ctx.Pipe()
        p = ctx.Process(target=loader_main, args=(b, paths), daemon=True)
        p.start()
        b.close()
        conns.append(a)
        procs.append(p)
    compute = args.compute_ms / 1000.0
    n = len(paths)
    out = []
    try:
        for e in range(args.epochs):
            order = epoch_order(n, args.seed, e)
            hint_s = send_hint(paths, order) if args.hint else 0.0
            batches = [order[i:i + args.batch] for i in range(0, n, args.batch)]
            nb = len(batches)
            t_start = time.monotonic()
            sent = 0
            depth = args.prefetch * args.loaders
            while sent < min(depth, nb):
                conns[sent % args.loaders].send((sent, batches[sent]))
                sent += 1
            stall = comp = 0.0
            waits = []
            nfiles = nbytes = errors = 0
            cut = False
            done = 0
            for i in range(nb):
                t0 = time.monotonic()
                bid, b_bytes, b_err, _ = conns[i % args.loaders].recv()
                w = time.monotonic() - t0
                assert bid == i, "batch %d arrived for %d" % (bid, i)
                stall += w
                waits.append(w)
                nfiles += len(batches[i])
                nbytes += b_bytes
                errors += b_err
                if sent < nb and not cut:
                    conns[sent % args.loaders].send((sent, batches[sent]))
                    sent += 1
                t1 = time.monotonic()
                time.sleep(compute)
                comp += time.monotonic() - t1
                done = i + 1
                if args.stop_after and time.monotonic() - t_start > args.stop_after \
                        and not cut:
                    cut = True
                if cut and done == sent:
                    break
            wall = time.monotonic() - t_start
            rec = epoch_record(e, wall, stall, comp, waits, nfiles, nbytes, errors, n, hint_s,
                               cut and done < nb)
            out.append(rec)
            print(json.dumps(rec), flush=True)
    finally:
        for c in conns:
            try:
                c.send(None)
            except OSError:
                pass
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
    return out


def run_torch(args, paths):
    import torch
    import torchvision.io
    from torch.utils.data import DataLoader, Dataset, Sampler

    class Files(Dataset):
        def __init__(self, files):
            self.files = files

        def __len__(self):
            return len(self.files)

        def __getitem__(self, i):
            return torchvision.io.read_file(self.files[i])

    class Shuffled(Sampler):
        """The simulator's order, so both modes read the same sequence."""

        def __init__(self, n):
            self.n = n
            self.epoch = 0

        def __len__(self):
            return self.n

        def __iter__(self):
            order = epoch_order(self.n, args.seed, self.epoch)
            self.epoch += 1
            return iter(order)

    def collate(items):
        return sum(t.numel() for t in items), len(items)

    ds = Files(paths)
    sampler = Shuffled(len(paths))
    if args.hint:
        import granary
        sampler = granary.HintedSampler(ds, sampler=sampler)
    torch.set_num_threads(1)
    dl = DataLoader(ds, batch_size=args.batch, sampler=sampler, num_workers=args.loaders,
                    collate_fn=collate, prefetch_factor=args.prefetch,
                    persistent_workers=True, multiprocessing_context="fork")
    compute = args.compute_ms / 1000.0
    out = []
    for e in range(args.epochs):
        t_start = time.monotonic()
        stall = comp = 0.0
        waits = []
        nfiles = nbytes = 0
        it = iter(dl)
        while True:
            t0 = time.monotonic()
            try:
                b_bytes, b_files = next(it)
            except StopIteration:
                break
            w = time.monotonic() - t0
            stall += w
            waits.append(w)
            nfiles += b_files
            nbytes += b_bytes
            t1 = time.monotonic()
            time.sleep(compute)
            comp += time.monotonic() - t1
        wall = time.monotonic() - t_start
        rec = epoch_record(e, wall, stall, comp, waits, nfiles, nbytes, 0, len(paths))
        out.append(rec)
        print(json.dumps(rec), flush=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--list", required=True, help="file with one path per line")
    ap.add_argument("--loaders", type=int, default=8)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--prefetch", type=int, default=2, help="batches queued per loader")
    ap.add_argument("--compute-ms", type=float, default=10.0)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--hint", action="store_true")
    ap.add_argument("--torch", action="store_true")
    ap.add_argument("--stop-after", type=float, default=0.0)
    args = ap.parse_args()
    with open(args.list) as f:
        paths = [ln.strip() for ln in f if ln.strip()]
    epochs = run_torch(args, paths) if args.torch else run_sim(args, paths)
    print(json.dumps({"summary": True, "mode": "torch" if args.torch else "sim",
                      "loaders": args.loaders, "batch": args.batch,
                      "compute_ms": args.compute_ms, "files": len(paths),
                      "epochs": epochs}), flush=True)
    sys.exit(1 if any(e["errors"] for e in epochs) else 0)


if __name__ == "__main__":
    main()
