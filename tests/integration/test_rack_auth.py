"""The rack under impersonation: three honest granaryd over tcp;ofi_rxm, and
two more on other loopback addresses (127.0.0.5, 127.0.0.6) that know the
address list but not the secret and call themselves node2 and node1. Each of
them sends HELLOs in that name to the honest nodes it lists, again and again,
as any process on the network could.

While they do, and while readers on the honest nodes read a dataset through
the rack:

- every honest node sees every other honest node up the whole time: no down,
  no new handshake (the sessions in place are the ones from before the
  attack), an uptime that only grows;
- the forged HELLOs are counted as refused, per claimed name, on the nodes
  they reached, and at least 50 of them were sent;
- the refusals are logged at most once a second per name, each line saying
  how many were held back since the last: fewer lines than forged HELLOs;
- the reads return bytes equal to the source, every object from the backend
  once (the owners served the others over their untouched sessions).

A replicated copy is never more visible than its source: on a NAS mount
placed `replicate`, root reads world-readable files in an open directory and
in a 0700 one through node1; for the copies node1 got from their owners,
`nobody` gets exactly what the kernel gives it reading the originals, over
the protocol and through the shim (whose shared index holds only copies
every local user may read).

Replay (a captured HELLO, CHAL, AUTH or authenticated message sent again)
cannot be staged with real parts here: the transport is libfabric, and
nothing but granaryd speaks it. tests/unit/test_peer_auth.c covers the rule
that decides it, on the functions peer.c itself uses.
"""
import errno
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import DEBIAN_PYTHON, PRELOAD, Conn, as_user, check, require_rack, run  # noqa: E402
from servers import Nginx  # noqa: E402
from test_rack import (HEARTBEAT, READER, Rack, check_bytes, gets_per_uri,  # noqa: E402
                       holders, make_dataset, write_secret)

PROVIDER = "tcp;ofi_rxm"
FORGED_MIN = 50       # forged HELLOs refused by the honest nodes, at least
PER_PAIR_MIN = 12     # on each (honest node, claimed name): the attack lasts seconds
ATTACK_TIMEOUT = 60   # seconds
NOBODY = 65534
NOGROUP = 65534


def free_port_on(host):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def peers_of(rack, i):
    """Node @i's view of the others: name -> its entry in status."""
    return {n["name"]: n for n in rack.rack_status(i)["nodes"] if not n["self"]}


def forger(wd, rack, mounts, claimed, host, secret):
    """A granaryd that calls itself @claimed, bound to @host, with @secret."""
    nodes = [dict(n) for n in rack.nodes]
    for n in nodes:
        if n["name"] == claimed:
            n["address"] = "%s:%d" % (host, free_port_on(host))
    return wd.daemon(mounts, name="forger-" + claimed,
                     log={"level": "info"},
                     peers=dict(HEARTBEAT, self=claimed, provider=PROVIDER, secret_file=secret,
                                nodes=nodes))


def start_reader(wd, d, paths, who):
    """Read @paths through the shim on @d in the background; its output to files."""
    base = os.path.join(wd.path, "reader-" + who)
    with open(base + ".in", "w") as f:
        f.write(json.dumps(paths) + "\n")
    with open(base + ".in") as fin, open(base + ".out", "w") as fout, \
            open(base + ".err", "w") as ferr:
        p = subprocess.Popen([DEBIAN_PYTHON, "-c", READER], stdin=fin, stdout=fout,
                             stderr=ferr, env=d.env(LD_PRELOAD=PRELOAD))
    return p, base, who


def finish_reader(reader):
    p, base, who = reader
    rc = p.wait(timeout=300)
    with open(base + ".out") as f:
        out = f.read()
    with open(base + ".err") as f:
        err = f.read()
    check(rc == 0, "reader on %s failed:\n%s" % (who, err[-3000:]))
    return {x[0]: (x[1], x[2]) for x in map(json.loads, out.splitlines())}


def full_log(d):
    with open(d.log, errors="replace") as f:
        return f.read()


def scenario_impersonation(wd):
    root = os.path.join(wd.path, "www")
    rels = make_dataset(os.path.join(root, "d"), 200, seed=41)
    droot = os.path.join(root, "d")
    ng = Nginx(wd.path, root, name="nginx").start()
    try:
        mounts = [{"path": "/data/a", "backend": "http", "url": ng.url + "d/",
                   "consistency": "immutable", "placement": "partition"}]
        rack = Rack(wd, mounts, provider=PROVIDER).start()
        rack.wait_live(3)
        names = rack.names

        # the sessions in place: two handshakes per pair (one each way), once
        # both have completed
        end = time.time() + 20
        while True:
            views = [peers_of(rack, i) for i in range(3)]
            if all(n.get("handshakes", 0) >= 2 for v in views for n in v.values()):
                break
            check(time.time() < end, "sessions did not settle: %s" % views)
            time.sleep(0.05)
        before = views

        bad = write_secret(os.path.join(wd.path, "forger.secret"),
                           "a-guess-at-the-rack-secret-0000000000\n")
        forgers = [forger(wd, rack, mounts, "node2", "127.0.0.5", bad),
                   forger(wd, rack, mounts, "node1", "127.0.0.6", bad)]
        # (honest node index, claimed name) that receive forged HELLOs: each
        # forger says HELLO to the two nodes it lists besides itself
        pairs = [(0, "node2"), (2, "node2"), (1, "node1"), (2, "node1")]
        refused0 = {(i, c): before[i][c]["refused"] for i, c in pairs}

        paths = ["/data/a/" + r for r in rels]
        t_attack = time.time()
        for f in forgers:
            f.start()
        readers = [start_reader(wd, rack.daemons[1], paths, "node2"),
                   start_reader(wd, rack.daemons[2], paths, "node3")]

        # poll through the attack: every honest peer stays up, untouched
        polls = 0
        last_up = {(i, j): 0.0 for i in range(3) for j in names if j != names[i]}
        end = time.time() + ATTACK_TIMEOUT
        while True:
            polls += 1
            for i in range(3):
                view = peers_of(rack, i)
                for name, n in view.items():
                    b = before[i][name]
                    check(n["up"], "poll %d: node%d sees %s down during the attack: %s" %
                          (polls, i + 1, name, n))
                    check(n["downs"] == b["downs"],
                          "poll %d: node%d counted %s down: %s" % (polls, i + 1, name, n))
                    check(n.get("handshakes", 0) == b.get("handshakes", 0),
                          "poll %d: node%d opened new sessions with %s (%s -> %s)" %
                          (polls, i + 1, name, b.get("handshakes"), n.get("handshakes")))
                    check(n["up_seconds"] >= last_up[(i, name)],
                          "poll %d: node%d: %s up since later than before" %
                          (polls, i + 1, name))
                    last_up[(i, name)] = n["up_seconds"]
            for f in forgers:
                check(f.alive(), "a forger exited:\n%s" % f.logtext())
            counts = {(i, c): peers_of(rack, i)[c]["refused"] - refused0[(i, c)]
                      for i, c in pairs}
            readers_done = all(r[0].poll() is not None for r in readers)
            if (sum(counts.values()) >= FORGED_MIN and min(counts.values()) >= PER_PAIR_MIN
                    and readers_done):
                break
            check(time.time() < end, "after %ds: refusals %s, readers done: %s" %
                  (ATTACK_TIMEOUT, counts, readers_done))
            time.sleep(0.05)
        attack_s = time.time() - t_attack

        # the reads: bytes equal to the source, each object once from the backend
        for r in readers:
            check_bytes(finish_reader(r), droot, "/data/a/", rels, r[2])
        gets = gets_per_uri(ng)
        check(len(gets) == len(rels) and all(c == 1 for c in gets.values()),
              "objects fetched from nginx: %d for %d, repeats %s" %
              (len(gets), len(rels), [u for u, c in gets.items() if c != 1][:5]))
        for i in range(3):
            for name, n in peers_of(rack, i).items():
                check(n["fetch_failures"] == 0 and n["serve_failures"] == 0,
                      "node%d with %s: failures: %s" % (i + 1, name, n))
        for i in (1, 2):
            fetched = sum(n["fetched"] for n in peers_of(rack, i).values())
            check(fetched > 0, "node%d fetched nothing from its peers" % (i + 1))

        for f in forgers:
            check(f.stop() == 0, "a forger did not stop cleanly")

        # the log: refusals of each claimed name, at most one line a second,
        # with the number held back; never a peer down or restarted
        total = sum(counts.values())
        for i, claimed in pairs:
            log = full_log(rack.daemons[i])
            refused = peers_of(rack, i)[claimed]["refused"] - refused0[(i, claimed)]
            lines = re.findall(r"peer refused: wrong rack secret name=%s step=hello "
                               r"refused=(\d+) held=(\d+)" % claimed, log)
            check(lines, "node%d logged no refusal of %s" % (i + 1, claimed))
            held = sum(int(h) for _, h in lines)
            check(len(lines) < refused,
                  "node%d: %d refusal lines for %d forged HELLOs in %s's name" %
                  (i + 1, len(lines), refused, claimed))
            check(len(lines) <= attack_s + 2,
                  "node%d: %d refusal lines of %s in %.1fs: more than one a second" %
                  (i + 1, len(lines), claimed, attack_s))
            check(held > 0 and len(lines) + held <= refused,
                  "node%d: lines %d, held back %d, refused %d" %
                  (i + 1, len(lines), held, refused))
            check(int(lines[-1][0]) <= refused,
                  "node%d: the log counts more refusals than status" % (i + 1))
        for i in range(3):
            log = full_log(rack.daemons[i])
            for bad_line in ("peer down", "peer restarted", "peer leaving"):
                check(bad_line not in log, "node%d logged %r during the attack" %
                      (i + 1, bad_line))
        print("impersonation: %d forged HELLOs refused in %.1fs (%s), %d status polls, "
              "no peer down, no new session; reads through the rack equal to the source" %
              (total, attack_s, ", ".join("node%d/%s=%d" % (i + 1, c, n)
                                          for (i, c), n in sorted(counts.items())), polls))
        rack.stop()
    finally:
        ng.stop()


# ---- a replicated copy is no more visible than its source ----

def probe(sock, paths):
    """In a child as nobody: what the kernel and granary say for each path."""
    res = {}
    c = Conn(sock)
    for p in paths:
        e = {}
        try:
            with open(p, "rb") as f:
                e["direct"] = hashlib.sha256(f.read()).hexdigest()
        except OSError as ex:
            e["direct"] = errno.errorcode.get(ex.errno, str(ex.errno))
        r = c.request("OPEN", path=p)
        if r.status == 0 and len(r.fds) == 1:
            with os.fdopen(r.fds[0], "rb") as f:
                e["granary"] = hashlib.sha256(f.read()).hexdigest()
        else:
            for fd in r.fds:
                os.close(fd)
            e["granary"] = errno.errorcode.get(-r.status, str(r.status))
        res[p] = e
    c.close()
    return res


def cat_as_nobody(d, path, shim):
    env = d.env(LD_PRELOAD=PRELOAD) if shim else d.env(GRANARY_DISABLE="1")

    def drop():
        os.setgroups([])
        os.setgid(NOGROUP)
        os.setuid(NOBODY)
    p = subprocess.run(["cat", path], env=env, capture_output=True, preexec_fn=drop,
                       timeout=60)
    return p.returncode, hashlib.sha256(p.stdout).hexdigest()


def scenario_restricted(wd):
    if os.geteuid() != 0:
        print("restricted copies: not run (needs root: readers switch to nobody)")
        return
    os.chmod(wd.path, 0o755)  # nobody reaches the sockets and the NAS below
    nas = os.path.join(wd.path, "nas")
    files = {"open": [], "closed": []}
    for sub, mode in (("open", 0o755), ("closed", 0o700)):
        os.makedirs(os.path.join(nas, sub))
        os.chmod(os.path.join(nas, sub), mode)
        for k in range(24):
            p = os.path.join(nas, sub, "f%02d.bin" % k)
            with open(p, "wb") as f:
                f.write(os.urandom(1000 + 997 * k))
            os.chmod(p, 0o644)
            files[sub].append(p)
    os.chmod(nas, 0o755)
    mounts = [{"path": nas, "backend": "posix", "consistency": "immutable",
               "placement": "replicate"}]
    rack = Rack(wd, mounts, provider=PROVIDER, tag="-r",
                extra={"socket_group": "nogroup"}).start()
    rack.wait_live(3)
    d1 = rack.daemons[0]
    c = d1.conn()
    for p in files["open"] + files["closed"]:
        r, data = c.read(p)
        with open(p, "rb") as f:
            check(r.status == 0 and data == f.read(), "root on node1 read %s: %d %s" %
                  (p, r.status, r.errmsg))
    c.close()
    # the copies node1 holds beside their owner came to it over the rack
    via_rack = {sub: [p for p in ps if len(holders(rack, p)) == 2]
                for sub, ps in files.items()}
    check(via_rack["open"] and via_rack["closed"],
          "node1 got no copy of one kind from a peer: %s" % via_rack)
    paths = via_rack["open"] + via_rack["closed"]
    res = as_user(NOBODY, NOGROUP, probe, d1.socket, paths)
    for p in paths:
        e = res[p]
        check(e["granary"] == e["direct"],
              "nobody on node1, %s (a copy from a peer): the kernel says %s, granary %s" %
              (os.path.relpath(p, nas), e["direct"][:12], e["granary"][:12]))
        check((e["direct"] == "EACCES") == (p in via_rack["closed"]),
              "the kernel's answer for %s: %s" % (p, e["direct"]))
    for p in paths:
        plain, shim = cat_as_nobody(d1, p, False), cat_as_nobody(d1, p, True)
        check(plain == shim, "cat %s as nobody on node1: exit %d without the shim, %d with "
              "it (or other bytes)" % (os.path.relpath(p, nas), plain[0], shim[0]))
    print("restricted copies: %d open and %d closed copies from peers on node1; nobody gets "
          "what the kernel gives it, over the protocol and through the shim" %
          (len(via_rack["open"]), len(via_rack["closed"])))
    rack.stop()


def main(wd):
    require_rack()
    for name, fn in (("impersonation", scenario_impersonation),
                     ("restricted copies", scenario_restricted)):
        t = time.time()
        fn(wd)
        print("%s: ok in %.1fs" % (name, time.time() - t))
        sys.stdout.flush()


if __name__ == "__main__":
    run(main, "rack_auth")
