"""QoS: background work is paced by fetch.bg_rate and a reader overtakes it.

100 files of 64 KiB are warmed (WARM requests sent all at once on one
connection) with fetch.bg_rate 256 KiB/s: status shows most of them queued
as background work and the background bytes held to the rate. A reader that
opens one of the queued files gets it at once (the fetch is promoted), with
the source's bytes, and so does a reader of a file nobody warms. Stopping the
daemon with background work still queued cancels it and exits cleanly.
"""
import os
import struct
import time

from harness import check, item, make_tree, message, run

N = 100
SIZE = 64 * 1024
RATE = 256 * 1024


def main(wd):
    nas = os.path.join(wd.path, "nas")
    rels = make_tree(nas, N, SIZE, SIZE, dirs=1, prefix="w")
    other = make_tree(os.path.join(nas, "other"), 5, SIZE, SIZE, dirs=1, prefix="o")
    d = wd.daemon([{"path": nas, "backend": "posix", "consistency": "immutable"}],
                  fetch={"bg_rate": RATE, "max_parallel": 8, "fg_reserved": 2})
    d.start()
    warm = d.conn()
    t0 = time.monotonic()
    for i, rel in enumerate(rels):
        warm.send_raw(message("WARM", item("PATH", os.path.join(nas, rel)), i + 1))
    time.sleep(0.5)
    q = d.status()["qos"]
    check(q["bg_queued"] > N // 2, "the rate should hold most warms in the queue: %s" % q)
    check(q["bg_inflight"] <= 6, "background exceeds its share of slots: %s" % q)

    reader = d.conn()
    for rel in (rels[-1], os.path.join("other", other[0])):
        path = os.path.join(nas, rel)
        t = time.monotonic()
        r, data = reader.read(path)
        lat = time.monotonic() - t
        check(r.status == 0, "read %s: %s" % (path, r.errmsg))
        check(data == open(path, "rb").read(), "bytes differ: %s" % path)
        check(lat < 1.0, "a reader waited %.2f s behind background work" % lat)
    q = d.status()["qos"]
    check(q["promoted"] >= 1, "the queued warm of the file read was not promoted: %s" % q)
    elapsed = time.monotonic() - t0
    # background bytes: at most the rate over the time, plus a bucket and the
    # fetches in flight
    limit = RATE * elapsed + max(RATE / 4, 65536) + 8 * SIZE
    check(q["bg_bytes"] <= limit, "background bytes %d over the rate (limit %d after %.1f s)" % (
        q["bg_bytes"], limit, elapsed))
    print("after %.1f s: %s" % (elapsed, q))

    # stop with work queued: it is cancelled, the daemon exits at once and cleanly
    t = time.monotonic()
    rc = d.stop()
    check(rc == 0, "granaryd exit status %d" % rc)
    check(time.monotonic() - t < 5, "stopping took %.1f s" % (time.monotonic() - t))
    errors = 0
    try:
        while True:
            r = warm.recv()
            errors += r.status != 0
    except (OSError, struct.error):
        pass  # the connection closed: every answer was read
    check(errors > 0, "queued warms should have been answered with an error at stop")
    warm.close()
    reader.close()


run(main, "qos")
