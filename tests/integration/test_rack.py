"""The rack: three granaryd processes on loopback sharing their caches, over
tcp;ofi_rxm and over shm.

- A dataset on nginx read through the shim on each node in turn is
  byte-identical, and nginx serves each object exactly once: the owner of an
  object (rendezvous hashing) fetches it, the others get it from the owner.
  Under `partition` only the owner keeps a copy; under `replicate` the reader
  keeps one too.
- One node killed with SIGKILL in the middle of an epoch, over both
  transports: first an owner serving a reader, then a reader that others are
  writing into. The reads on the others complete with correct bytes (they fall
  back to the backend), the survivors go on serving each other (a second
  epoch on them makes no backend request), and the node rejoins when it is
  restarted and serves its cache again.
- A node with a wrong rack secret is refused, logged, and gets nothing from
  the others: every object it reads comes from the backend.
"""
import collections
import json
import os
import random
import subprocess
import sys
import time

from harness import DEBIAN_PYTHON, PRELOAD, Fail, check, make_tree, require_rack, run
from servers import Nginx, free_port

SECRET = "rack-secret-for-the-tests-0123456789\n"
# A machine shared with other tests can stall a process for a few hundred
# milliseconds: that must not look like a death (it would only cost speed, but
# the tests count backend requests). A killed node is noticed within a second.
HEARTBEAT = {"heartbeat": "200ms", "miss_limit": 5}

# Reads every path given on stdin's first line (JSON list) with plain open()
# through the shim, prints one JSON line per file: path, sha256, size.
READER = r"""
import hashlib, json, sys
paths = json.loads(sys.stdin.readline())
for p in paths:
    with open(p, "rb") as f:
        data = f.read()
    print(json.dumps([p, hashlib.sha256(data).hexdigest(), len(data)]), flush=True)
"""


def sha256_file(path):
    import hashlib
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def write_secret(path, text=SECRET, mode=0o600):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


class Rack:
    """@n granaryd processes named node1..nodeN sharing one mount list."""

    def __init__(self, wd, mounts, n=3, provider="tcp;ofi_rxm", tag="", secrets=None,
                 listed=None, capacity="1G", host="127.0.0.1", log_level="info", extra=None):
        self.wd = wd
        self.provider = provider
        listed = listed or n
        ports = [free_port() for _ in range(listed)]
        self.names = ["node%d" % (i + 1) for i in range(listed)]
        self.nodes = [{"name": self.names[i], "address": "%s:%d" % (host, ports[i])}
                      for i in range(listed)]
        secret = write_secret(os.path.join(wd.path, "rack%s.secret" % tag))
        self.daemons = []
        for i in range(n):
            sf = (secrets or {}).get(self.names[i], secret)
            settings = {"log": {"level": log_level},
                        "cache": {"capacity": capacity},
                        "peers": dict(HEARTBEAT, self=self.names[i], provider=provider,
                                      secret_file=sf, nodes=self.nodes)}
            settings.update(extra or {})
            self.daemons.append(wd.daemon(mounts, name="%s%s" % (self.names[i], tag),
                                          **settings))

    def start(self):
        for d in self.daemons:
            d.start()
        return self

    def rack_status(self, i):
        return self.daemons[i].status()["rack"]

    def wait_live(self, want, which=None, timeout=20):
        """Wait until each daemon in @which sees @want live nodes (itself included)."""
        which = range(len(self.daemons)) if which is None else which
        end = time.time() + timeout
        last = None
        while time.time() < end:
            last = [self.rack_status(i)["live"] for i in which]
            if all(x == want for x in last):
                return
            time.sleep(0.05)
        raise Fail("rack did not reach %d live nodes: %s" % (want, last))

    def stop(self):
        for d in self.daemons:
            if d.alive():
                rc = d.stop()
                check(rc == 0, "%s exited with %s" % (d.dir, rc))


def read_through_shim(d, paths, timeout=300):
    """Read @paths with Python's open() through the shim on daemon @d."""
    p = subprocess.run([DEBIAN_PYTHON, "-c", READER], input=json.dumps(paths) + "\n",
                       capture_output=True, text=True, env=d.env(LD_PRELOAD=PRELOAD),
                       timeout=timeout)
    check(p.returncode == 0, "reader through the shim failed:\n%s" % p.stderr[-3000:])
    return {x[0]: (x[1], x[2]) for x in map(json.loads, p.stdout.splitlines())}


def check_bytes(got, root, prefix, rels, who):
    for rel in rels:
        check(prefix + rel in got, "%s did not read %s" % (who, rel))
        want = sha256_file(os.path.join(root, rel))
        check(got[prefix + rel][0] == want, "%s: bytes of %s differ" % (who, rel))


def gets_per_uri(ng, prefix="/"):
    c = collections.Counter()
    for m, uri, st, _, _ in ng.requests("GET"):
        if st in (200, 206) and uri.startswith(prefix):
            c[uri] += 1
    return c


def holders(rack, path):
    """Which daemons hold a cached copy of @path (OPEN without fetching)."""
    out = []
    for i, d in enumerate(rack.daemons):
        if not d.alive():
            continue
        c = d.conn()
        r, _ = c.read(path, nofetch=True)
        c.close()
        if r.status == 0:
            out.append(i)
    return out


def make_dataset(root, n, seed):
    rels = make_tree(root, n, 0, 256 * 1024, dirs=8, seed=seed)
    rnd = random.Random(seed)
    # larger than a window (1 MiB) and than several: pipelined chunks
    for name, size in (("big/a.bin", 5 * 1024 * 1024 + 17), ("big/b.bin", 2 * 1024 * 1024),
                       ("big/c.bin", 1024 * 1024 - 1)):
        os.makedirs(os.path.join(root, "big"), exist_ok=True)
        with open(os.path.join(root, name), "wb") as f:
            f.write(rnd.randbytes(size))
        rels.append(name)
    open(os.path.join(root, "empty.bin"), "wb").close()
    rels.append("empty.bin")
    return rels


# ---- scenario 1: each node in turn, exactly one backend fetch per object ----

def scenario_share(wd, provider, tag, host="127.0.0.1"):
    root = os.path.join(wd.path, "www" + tag)
    rels = make_dataset(os.path.join(root, "part"), 150, seed=11)
    rep = make_dataset(os.path.join(root, "rep"), 40, seed=12)
    ng = Nginx(wd.path, root, name="nginx" + tag).start()
    try:
        mounts = [
            {"path": "/data/part", "backend": "http", "url": ng.url + "part/",
             "consistency": "immutable", "placement": "partition"},
            {"path": "/data/rep", "backend": "http", "url": ng.url + "rep/",
             "consistency": "immutable", "placement": "replicate"},
        ]
        rack = Rack(wd, mounts, provider=provider, tag=tag, host=host).start()
        rack.wait_live(3)
        st = rack.rack_status(0)
        check(st["provider"] == provider, "provider in use: %s" % st["provider"])
        paths = ["/data/part/" + r for r in rels] + ["/data/rep/" + r for r in rep]
        for i, d in enumerate(rack.daemons):
            got = read_through_shim(d, paths)
            check_bytes(got, os.path.join(root, "part"), "/data/part/", rels, "node%d" % (i + 1))
            check_bytes(got, os.path.join(root, "rep"), "/data/rep/", rep, "node%d" % (i + 1))
            gets = gets_per_uri(ng)
            check(len(gets) == len(rels) + len(rep),
                  "after node%d: %d objects fetched from nginx, want %d" %
                  (i + 1, len(gets), len(rels) + len(rep)))
            extra = {u: c for u, c in gets.items() if c != 1}
            check(not extra, "objects fetched more than once from nginx: %s" %
                  list(extra.items())[:5])

        # every node fetched from the other two and served them
        for i in range(3):
            st = rack.rack_status(i)
            for n in st["nodes"]:
                if n["self"]:
                    continue
                check(n["up"] and n["fetched"] > 0 and n["served"] > 0,
                      "node%d about %s: %s" % (i + 1, n["name"], n))
                check(n["fetch_failures"] == 0, "node%d: failures fetching from %s: %s" %
                      (i + 1, n["name"], n))
            counters = rack.daemons[i].status()["counters"]
            check(counters["bytes_peer"] > 0, "node%d counted no peer bytes" % (i + 1))

        # node2's and node3's reads of node1's objects were peer reads on node1:
        # they count once per epoch there and never reveal a next epoch, so
        # node1 (whose own reader read each object once) is still in epoch 1
        ds = {x["name"]: x for x in rack.daemons[0].status()["datasets"]}
        check(ds["/data/part"]["epoch"] == 1,
              "node1 advanced its epoch on peers' reads: %s" % ds["/data/part"])

        # partition: each object is kept by exactly one node
        owners = collections.Counter()
        for rel in rels:
            if rel == "empty.bin":
                continue
            h = holders(rack, "/data/part/" + rel)
            check(len(h) == 1, "partition: %s is cached on nodes %s" % (rel, h))
            owners[h[0]] += 1
        check(len(owners) == 3 and min(owners.values()) > len(rels) // 6,
              "partition: shares per node %s" % dict(owners))
        # replicate: every node that read an object keeps it
        for rel in rep:
            if rel == "empty.bin":
                continue
            h = holders(rack, "/data/rep/" + rel)
            check(h == [0, 1, 2], "replicate: %s is cached on nodes %s" % (rel, h))

        # a second epoch on node3: nothing from the backend, replicate all local
        before = sum(gets_per_uri(ng).values())
        got = read_through_shim(rack.daemons[2], paths)
        check_bytes(got, os.path.join(root, "part"), "/data/part/", rels, "node3 again")
        check(sum(gets_per_uri(ng).values()) == before, "a warm epoch went to the backend")
        rack.stop()
    finally:
        ng.stop()


# ---- scenario 2: a node killed mid-epoch, then back ----

def node_about(rack, i, name):
    return [n for n in rack.rack_status(i)["nodes"] if n["name"] == name][0]


def read_and_kill(reader_node, victim, paths):
    """Read @paths through the shim on @reader_node; SIGKILL @victim a third
    of the way through. Returns the lines read and how many came before."""
    reader = subprocess.Popen([DEBIAN_PYTHON, "-c", READER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=reader_node.env(LD_PRELOAD=PRELOAD))
    reader.stdin.write(json.dumps(paths) + "\n")
    reader.stdin.flush()
    lines = []
    while len(lines) < len(paths) // 3:
        line = reader.stdout.readline()
        check(line, "reader ended early: %s" % reader.stderr.read()[-2000:])
        lines.append(line.strip())
    victim.kill9()
    killed_at = len(lines)
    lines += [line.strip() for line in reader.stdout]
    err = reader.stderr.read()
    check(reader.wait(300) == 0, "reader failed:\n%s" % err[-3000:])
    return {x[0]: (x[1], x[2]) for x in map(json.loads, lines)}, killed_at


def survivors_exchange(rack, ng, paths, root, what):
    """node1 and node2 alone: node1 reads everything (node3's share comes
    from the backend or from whichever survivor owns it now), then node2 reads
    everything and the backend sees no request at all: every object came from
    node2's cache or from node1, so the survivors still serve each other."""
    check_bytes(read_through_shim(rack.daemons[0], paths), root, "/data/k/",
                [p[len("/data/k/"):] for p in paths], "node1 " + what)
    gets = sum(gets_per_uri(ng).values())
    fetched = node_about(rack, 1, "node1")["fetched"]
    check_bytes(read_through_shim(rack.daemons[1], paths), root, "/data/k/",
                [p[len("/data/k/"):] for p in paths], "node2 " + what)
    check(sum(gets_per_uri(ng).values()) == gets,
          "node2 %s: %d objects from the backend, want none (node1 holds the rest)" %
          (what, sum(gets_per_uri(ng).values()) - gets))
    n1 = node_about(rack, 1, "node1")
    check(n1["up"] and n1["fetched"] > fetched,
          "node2 %s: nothing fetched from node1: %s" % (what, n1))


def scenario_kill(wd, provider, tag):
    root = os.path.join(wd.path, "www" + tag)
    rels = make_tree(os.path.join(root, "d"), 600, 1, 192 * 1024, dirs=8, seed=21)
    droot = os.path.join(root, "d")
    # objects of many chunks, so that writes are in flight when a reader dies
    rnd = random.Random(22)
    os.makedirs(os.path.join(droot, "big"), exist_ok=True)
    bigs = []
    for i in range(12):
        with open(os.path.join(droot, "big/%02d.bin" % i), "wb") as f:
            f.write(rnd.randbytes(6 * 1024 * 1024 + i))
        bigs.append("big/%02d.bin" % i)
    rels += bigs
    ng = Nginx(wd.path, root, name="nginx" + tag).start()
    try:
        mounts = [{"path": "/data/k", "backend": "http", "url": ng.url + "d/",
                   "consistency": "immutable"}]
        rack = Rack(wd, mounts, provider=provider, tag=tag,
                    extra={"fetch": {"timeout": "5s", "retries": 2}}).start()
        rack.wait_live(3)
        paths = ["/data/k/" + r for r in rels]
        # warm the rack: node1 reads everything, so every owner holds its share
        check_bytes(read_through_shim(rack.daemons[0], paths), droot, "/data/k/", rels,
                    "node1 warm-up")

        # 1. an owner dies: node2 reads; node3 (serving it) dies a third of the way
        d2, d3 = rack.daemons[1], rack.daemons[2]
        got, killed_at = read_and_kill(d2, d3, paths)
        check_bytes(got, droot, "/data/k/", rels, "node2 with node3 killed")
        rack.wait_live(2, which=[0, 1])
        n3 = node_about(rack, 1, "node3")
        check(not n3["up"] and n3["downs"] >= 1, "node2 about node3 after the kill: %s" % n3)
        check("peer down name=node3" in d2.logtext(), "node2 did not log node3 down")
        survivors_exchange(rack, ng, paths, droot, "with node3 killed")

        # node3 returns with its cache and is used again
        d3.start()
        rack.wait_live(3)
        served_before = {n["name"]: n["served"] for n in rack.rack_status(2)["nodes"]}
        gets_before = sum(gets_per_uri(ng).values())
        check_bytes(read_through_shim(rack.daemons[0], paths), droot, "/data/k/", rels,
                    "node1 after node3 rejoined")
        served_after = {n["name"]: n["served"] for n in rack.rack_status(2)["nodes"]}
        check(served_after["node1"] > served_before["node1"],
              "node3 served nothing after rejoining: %s -> %s" % (served_before, served_after))
        check(sum(gets_per_uri(ng).values()) == gets_before,
              "after the rejoin a warm epoch went to the backend (%d GETs)" %
              (sum(gets_per_uri(ng).values()) - gets_before))

        # 2. a reader dies: node3 reads the large objects (node1 and node2 write
        # them into it) and is killed a third of the way, in the middle of one;
        # the writers must not be left waiting on it
        reader = subprocess.Popen([DEBIAN_PYTHON, "-c", READER], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=d3.env(LD_PRELOAD=PRELOAD))
        reader.stdin.write(json.dumps(["/data/k/" + r for r in bigs]) + "\n")
        reader.stdin.flush()
        for _ in range(len(bigs) // 3):
            check(reader.stdout.readline(), "reader on node3 ended early")
        time.sleep(0.01)
        d3.kill9()
        reader.kill()
        reader.wait()
        rack.wait_live(2, which=[0, 1])
        survivors_exchange(rack, ng, paths, droot, "with reader node3 killed")
        d3.start()
        rack.wait_live(3)
        check_bytes(read_through_shim(d3, paths), droot, "/data/k/", rels,
                    "node3 after its second restart")
        replaced = [i + 1 for i in range(2) if "rack endpoint replaced" in
                    rack.daemons[i].logtext()]
        print("kill (%s): owner node3 killed after %d of %d reads; survivors served each "
              "other; rejoined; reader node3 killed; survivors served each other; rejoined"
              "%s" % (provider, killed_at, len(paths),
                      "; endpoint replaced on node%s" % replaced if replaced else ""))
        rack.stop()
    finally:
        ng.stop()


# ---- scenario 3: a wrong secret ----

def scenario_wrong_secret(wd, provider, tag):
    root = os.path.join(wd.path, "www" + tag)
    rels = make_tree(os.path.join(root, "d"), 120, 1, 64 * 1024, dirs=4, seed=31)
    ng = Nginx(wd.path, root, name="nginx" + tag).start()
    try:
        mounts = [{"path": "/data/s", "backend": "http", "url": ng.url + "d/",
                   "consistency": "immutable"}]
        bad = write_secret(os.path.join(wd.path, "bad%s.secret" % tag),
                           "not-the-rack-secret-at-all-9876543210\n")
        rack = Rack(wd, mounts, n=4, provider=provider, tag=tag,
                    secrets={"node4": bad}).start()
        rack.wait_live(3, which=[0, 1, 2])
        paths = ["/data/s/" + r for r in rels]
        check_bytes(read_through_shim(rack.daemons[0], paths), os.path.join(root, "d"),
                    "/data/s/", rels, "node1")
        check(sum(gets_per_uri(ng).values()) == len(rels), "warm-up fetched objects twice")

        intruder = rack.daemons[3]
        check(rack.rack_status(3)["live"] == 1, "node4 sees live peers: %s" %
              rack.rack_status(3))
        got = read_through_shim(intruder, paths)
        check_bytes(got, os.path.join(root, "d"), "/data/s/", rels, "node4")
        # everything node4 read came from the backend, nothing from the rack
        check(sum(gets_per_uri(ng).values()) == 2 * len(rels),
              "node4 did not read everything from the backend")
        check(intruder.status()["counters"]["bytes_peer"] == 0, "node4 got bytes from peers")
        for i in range(3):
            st = rack.rack_status(i)
            n4 = [n for n in st["nodes"] if n["name"] == "node4"][0]
            check(n4["served"] == 0 and not n4["up"], "node%d about node4: %s" % (i + 1, n4))
            log = rack.daemons[i].logtext()
            check("peer refused: wrong rack secret name=node4 step=hello" in log,
                  "node%d did not log the refusal" % (i + 1))
            check(n4["refused"] > 0, "node%d counted no refusal of node4: %s" % (i + 1, n4))
        # node4 refuses the others' HELLOs in turn: their proofs fail its secret
        check("peer refused: wrong rack secret name=node" in intruder.logtext(),
              "node4 did not log that the others failed its check")
        rack.stop()
    finally:
        ng.stop()


# ---- start-up refuses a loose secret ----

def scenario_loose_secret(wd):
    loose = write_secret(os.path.join(wd.path, "loose.secret"), mode=0o644)
    port = free_port()
    d = wd.daemon([], name="loose", peers={
        "self": "a", "provider": "tcp;ofi_rxm", "secret_file": loose,
        "nodes": [{"name": "a", "address": "127.0.0.1:%d" % port},
                  {"name": "b", "address": "127.0.0.1:%d" % free_port()}]})
    try:
        d.start()
    except Fail:
        pass
    else:
        d.stop()
        raise Fail("granaryd started with a rack secret of mode 0644")
    check("must not be readable by group or others" in d.logtext(),
          "no clear message for a loose secret:\n" + d.logtext())


def main(wd):
    require_rack()
    only = os.environ.get("GRANARY_RACK_ONLY")
    t0 = time.time()
    steps = [
        ("share over tcp", lambda: scenario_share(wd, "tcp;ofi_rxm", "-tcp")),
        ("share over shm", lambda: scenario_share(wd, "shm", "-shm")),
        ("kill over tcp", lambda: scenario_kill(wd, "tcp;ofi_rxm", "-ktcp")),
        ("kill over shm", lambda: scenario_kill(wd, "shm", "-kshm")),
        ("wrong secret", lambda: scenario_wrong_secret(wd, "tcp;ofi_rxm", "-sec")),
        ("loose secret", lambda: scenario_loose_secret(wd)),
    ]
    for name, fn in steps:
        if only and only not in name:
            continue
        t = time.time()
        fn()
        print("%s: ok in %.1fs" % (name, time.time() - t))
        sys.stdout.flush()
    print("rack: all in %.1fs" % (time.time() - t0))


if __name__ == "__main__":
    run(main, "rack")
