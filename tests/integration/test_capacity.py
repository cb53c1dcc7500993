"""A cache smaller than the dataset stays under its high watermark, under both
policies, while every read still returns the source's bytes."""
import os
import random

from harness import check, make_tree, run

CAP = 2 * 1024 * 1024
HIGH = 0.95


def main(wd):
    nas = os.path.join(wd.path, "nas")
    rels = make_tree(nas, 400, 8 * 1024, 24 * 1024, dirs=4)
    total = sum(os.path.getsize(os.path.join(nas, r)) for r in rels)
    check(total > 2 * CAP, "dataset should be over twice the cache")
    for policy in ("lru", "epoch"):
        d = wd.daemon([{"path": nas, "backend": "posix", "consistency": "immutable"}],
                      name="g-" + policy,
                      cache={"capacity": CAP, "high_watermark": HIGH, "low_watermark": 0.85},
                      policy={"eviction": policy})
        d.start()
        d.cli("warm", nas, check_rc=0)
        st = d.status()
        check(st["cache"]["used"] <= CAP * HIGH,
              "%s: used %d over high watermark after warm" % (policy, st["cache"]["used"]))
        check(st["cache"]["objects"] > 0, "%s: nothing cached" % policy)
        c = d.conn()
        order = list(rels)
        for epoch in range(3):
            random.Random(epoch).shuffle(order)
            for i, rel in enumerate(order):
                path = os.path.join(nas, rel)
                r, data = c.read(path)
                check(r.status == 0, "%s: read failed %s %s" % (policy, path, r.errmsg))
                check(data == open(path, "rb").read(), "%s: bytes differ %s" % (policy, path))
                if i % 50 == 0:
                    used = d.status()["cache"]["used"]
                    check(used <= CAP * HIGH, "%s: used %d over the high watermark" % (policy,
                                                                                      used))
        c.close()
        st = d.status()
        check(st["counters"]["evictions"] > 0 or st["counters"]["not_admitted"] > 0,
              "%s: a cache this small must evict or refuse: %s" % (policy, st["counters"]))
        print("%s: hits=%d misses=%d evictions=%d not_admitted=%d used=%d" % (
            policy, st["counters"]["hits"], st["counters"]["misses"],
            st["counters"]["evictions"], st["counters"]["not_admitted"], st["cache"]["used"]))
        d.stop()


run(main, "capacity")
