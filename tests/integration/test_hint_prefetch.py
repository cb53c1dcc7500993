"""With a hinted order the daemon prefetches ahead of the reader.

A posix mount of 300 files; `granary hint --order FILE` sends a shuffled
order; after the first reads status shows prefetched objects, and reading
the rest in that order is mostly hits, with the source's bytes every time.
An epoch advance without a new order makes the order stale and stops the
prefetcher; an order sent after the epoch's first read is the next epoch's,
and the prefetcher starts on it when that epoch begins. On a cache too small
for the window the prefetcher backs off instead of evicting what the reader
still needs, paced by the reader, and every read still returns the right bytes.
"""
import os
import random
import time

from harness import check, make_tree, run

N = 300
WINDOW = 32


def hint_of(d):
    return d.status()["mounts"][0]["hint"]


def wait_for(fn, what, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        v = fn()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


def reads_counted(st, epoch):
    """Reads of the dataset the status @st counted in @epoch; -1 in another epoch."""
    ds = st["datasets"][0]
    return ds["hits"] + ds["misses"] if ds["epoch"] == epoch else -1


def write_order(path, paths):
    with open(path, "w") as f:
        f.write("\n".join(paths) + "\n")


def read_all(c, paths, data):
    for p in paths:
        r, got = c.read(p)
        check(r.status == 0, "read failed %s: %s" % (p, r.errmsg))
        check(got == data[p], "bytes differ: %s" % p)


def main(wd):
    nas = os.path.join(wd.path, "nas")
    rels = make_tree(nas, N, 8 * 1024, 24 * 1024, dirs=6)
    paths = [os.path.join(nas, r) for r in rels]
    data = {p: open(p, "rb").read() for p in paths}
    d = wd.daemon([{"path": nas, "backend": "posix", "consistency": "immutable"}],
                  policy={"prefetch_window": WINDOW})
    d.start()

    # epoch 1: the order is sent before any read, so it is this epoch's
    order = list(paths)
    random.Random(7).shuffle(order)
    ofile = os.path.join(wd.path, "order1.txt")
    write_order(ofile, order)
    out = d.cli("hint", "--order", ofile, check_rc=0).stdout
    check("hinted %d of %d" % (N, N) in out, "hint output: %r" % out)
    h = hint_of(d)
    check(h["paths"] == N and h["complete"], "hint status: %s" % h)
    check(h["phase"] == "current", "an order sent before any read is this epoch's: %s" % h)
    # nothing is fetched before the reader starts on the order. No sleep: the
    # status above shows the whole order taken in, and each HINT weighs
    # prefetching before it is answered (hint_add ends in prefetch_kick), so
    # that status and any later one show every prefetch the order started
    check(hint_of(d)["prefetch_issued"] == 0, "prefetched before any read: %s" % hint_of(d))

    c = d.conn()
    read_all(c, order[:1], data)
    wait_for(lambda: hint_of(d)["prefetched"] >= WINDOW, "the first window")
    h = hint_of(d)
    check(h["prefetch_issued"] <= WINDOW, "more than the window ahead: %s" % h)
    read_all(c, order[1:5], data)
    h = wait_for(lambda: (lambda h: h if h["prefetched"] > WINDOW else None)(hint_of(d)),
                 "prefetches beyond the first window")
    check(h["position"] == 5, "position after 5 reads: %s" % h)
    read_all(c, order[5:], data)
    st = d.status()
    ds = st["datasets"][0]
    h = st["mounts"][0]["hint"]
    print("epoch 1 with hint: hits=%d misses=%d prefetched=%d issued=%d refused=%d" % (
        ds["hits"], ds["misses"], h["prefetched"], h["prefetch_issued"], h["prefetch_refused"]))
    check(ds["epoch"] == 1, "still epoch 1: %s" % ds)
    check(ds["hits"] > ds["misses"], "prefetched reads should mostly hit: %s" % ds)
    check(ds["hits"] + ds["misses"] == N, "every read counted: %s" % ds)
    check(h["position"] == N and h["prefetch_failed"] == 0, "hint status: %s" % h)
    check(st["qos"]["bg_started"] >= h["prefetch_issued"],
          "prefetches are background work: %s" % st["qos"])

    # an epoch advance with no new order: the old one is stale, nothing more is fetched
    d.cli("drop", nas, check_rc=0)
    d.cli("epoch", "--path", nas, check_rc=0)
    h = hint_of(d)
    check(h["phase"] == "stale", "the last epoch's order must be stale: %s" % h)
    issued = h["prefetch_issued"]
    read_all(c, order[:20], data)
    # each read weighs prefetching before it is answered (hint_seen); once
    # the daemon has counted all 20 in the new epoch, whatever they started
    # shows in the same status
    st = wait_for(lambda: (lambda st: st if reads_counted(st, 2) >= 20 else None)(d.status()),
                  "the 20 reads of epoch 2 to be counted")
    h = st["mounts"][0]["hint"]
    check(h["prefetch_issued"] == issued, "a stale order must not prefetch: %s" % h)

    # an order sent after the epoch's first read is the next epoch's
    order2 = list(paths)
    random.Random(8).shuffle(order2)
    ofile2 = os.path.join(wd.path, "order2.txt")
    write_order(ofile2, order2)
    d.cli("hint", "--order", ofile2, check_rc=0)
    h = hint_of(d)
    check(h["phase"] == "upcoming" and h["epoch"] == 3, "order for the next epoch: %s" % h)
    # reads of this epoch do not move the position in the next one's order
    read_all(c, order[20:40], data)
    check(hint_of(d)["position"] == 0, "position moved by the old epoch's reads")
    d.cli("epoch", "--path", nas, check_rc=0)
    h = hint_of(d)
    check(h["phase"] == "current" and h["epoch"] == 3, "the order's epoch began: %s" % h)
    read_all(c, order2, data)
    ds = d.status()["datasets"][0]
    check(ds["epoch"] == 3 and ds["hits"] > ds["misses"],
          "epoch 3 with its order sent ahead should mostly hit: %s" % ds)
    c.close()
    check(d.stop() == 0, "granaryd exit status")

    # a cache too small for the window: the prefetcher backs off, reads stay right
    small = wd.daemon([{"path": nas, "backend": "posix", "consistency": "immutable"}],
                      name="small", policy={"prefetch_window": 200},
                      cache={"capacity": 40 * 24 * 1024, "high_watermark": 0.9,
                             "low_watermark": 0.8})
    small.start()
    small.cli("hint", "--order", ofile, check_rc=0)
    c = small.conn()
    read_all(c, order, data)
    c.close()
    st = small.status()
    h = st["mounts"][0]["hint"]
    print("small cache: prefetched=%d refused=%d stalled=%s hits=%d misses=%d used=%d" % (
        h["prefetched"], h["prefetch_refused"], h["prefetch_stalled"],
        st["counters"]["hits"], st["counters"]["misses"], st["cache"]["used"]))
    check(st["cache"]["used"] <= st["cache"]["capacity"] * 0.9, "over the high watermark")
    # it backs off until the reader moves on: about one refusal per read at most
    check(h["prefetch_refused"] <= N, "the prefetcher must back off on a full cache: %s" % h)
    check(st["counters"]["hits"] > st["counters"]["misses"],
          "prefetching paced by the reader should still hit: %s" % st["counters"])
    check(h["prefetch_failed"] == 0, "prefetch errors: %s" % h)
    check(small.stop() == 0, "granaryd exit status")


run(main, "hint_prefetch")
