"""The granary CLI and the Python binding against a real granaryd.

warm with a manifest (comments, a directory, a missing file): exit 1 and the
failure listed; a second warm fetches nothing; usage errors exit 2; every verb
answers --help; status/stats/ls --json parse; pin, evict, epoch, hint; the
Python Client reads the same bytes as the NAS, and HintedSampler sends each
epoch's order through a DataLoader.
"""
import json
import os
import re
import subprocess
import sys

from harness import (BUILD, DEBIAN_PYTHON, GRANARY, LIBGRANARY, SRC, check, make_tree, run)

VERBS = ["warm", "status", "stats", "ls", "stat", "evict", "drop", "pin", "unpin", "epoch",
         "hint", "verify", "mounts", "version", "help", "top"]

PY_CHECK = r'''
import os, sys, json
import granary
nas = sys.argv[1]
rels = json.loads(sys.argv[2])
c = granary.Client()
s = c.warm([nas], jobs=8)
assert s["failed"] == [] and s["files"] == len(rels), s
for r in rels[:20]:
    fd = c.open(os.path.join(nas, r))
    with os.fdopen(fd, "rb") as f, open(os.path.join(nas, r), "rb") as g:
        assert f.read() == g.read(), r
try:
    c.stat(os.path.join(nas, "no-such-file"))
    raise SystemExit("stat of a missing file succeeded")
except granary.GranaryError as e:
    assert e.errno == 2, e

import torch

class Files(torch.utils.data.Dataset):
    def __init__(self):
        self.files = [os.path.join(nas, r) for r in rels]
    def __len__(self):
        return len(self.files)
    def __getitem__(self, i):
        with open(self.files[i], "rb") as f:
            return len(f.read())

ds = Files()
sampler = granary.HintedSampler(ds, generator=torch.Generator().manual_seed(1))
loader = torch.utils.data.DataLoader(ds, sampler=sampler, batch_size=16)
epochs = []
for _ in range(2):
    it = iter(loader)
    n = len(next(it))
    # the order reached the daemon as the epoch that is starting, the first one too
    hint = [m for m in c.status()["mounts"] if m["path"] == nas][0]["hint"]
    assert hint["phase"] == "current" and hint["paths"] == len(rels), hint
    assert hint["epoch"] == sampler.last_epoch, (hint, sampler.last_epoch)
    n += sum(len(b) for b in it)
    assert n == len(rels), n
    assert sampler.last_hinted == len(rels), sampler.last_hinted
    epochs.append(sampler.last_epoch)
assert epochs[1] == epochs[0] + 1, epochs
print("python ok", epochs)
'''


def cli(d, *args, rc=None):
    return d.cli(*args, check_rc=rc)


def main(wd):
    nas = os.path.join(wd.path, "nas")
    rels = make_tree(nas, 300, 1, 16 * 1024, dirs=6)
    d = wd.daemon([{"path": nas, "backend": "posix"}])
    d.start()

    manifest = os.path.join(wd.path, "manifest.txt")
    missing = os.path.join(nas, "d00", "missing.bin")
    with open(manifest, "w") as f:
        f.write("# the first two directories, one file, one missing file\n\n")
        f.write("%s/d00\n%s/d01/   # a directory line\n" % (nas, nas))
        f.write("%s\n%s\n" % (os.path.join(nas, rels[2]), missing))
    p = cli(d, "warm", "--manifest", manifest, "--jobs", "4", rc=1)
    want = 100 + 1  # d00 and d01 hold 50 each, plus one file of d02
    m = re.search(r"warmed (\d+) files \((\d+) bytes\) in [0-9.]+ s: (\d+) fetched, "
                  r"(\d+) already cached, (\d+) failed", p.stdout)
    check(m, "no summary line:\n" + p.stdout + p.stderr)
    check(int(m.group(1)) == want and int(m.group(3)) == want and m.group(5) == "1",
          "summary: " + m.group(0))
    check("granary: failed: %s: No such file or directory" % missing in p.stderr,
          "missing file not listed:\n" + p.stderr)

    p = cli(d, "warm", nas, rc=0)
    m = re.search(r"warmed 300 files .*: (\d+) fetched, (\d+) already cached, 0 failed",
                  p.stdout)
    check(m and int(m.group(1)) == 300 - want and int(m.group(2)) == want,
          "second warm: " + p.stdout)
    check(d.status()["counters"]["fetches"] == 300, "refetched: %s" % d.status()["counters"])

    # usage
    for args in (["warm"], ["warm", "--jobs", "0", nas], ["nosuchverb"], ["ls"],
                 ["epoch", "a", "--path", nas], ["hint"], ["status", "--bogus"]):
        p = d.cli(*args)
        check(p.returncode == 2 and p.stderr.startswith("granary: "),
              "granary %s: exit %d, stderr %r" % (" ".join(args), p.returncode, p.stderr))
    for v in VERBS:
        p = d.cli(v, "--help")
        check(p.returncode == 0 and "usage: granary " + v in p.stdout,
              "granary %s --help: %d %r" % (v, p.returncode, p.stdout[:200]))
    p = d.cli("status", "--socket", os.path.join(wd.path, "nothing.sock"))
    check(p.returncode == 1 and "is granaryd running?" in p.stderr, "no daemon: " + p.stderr)

    # data verbs
    st = json.loads(cli(d, "status", "--json", rc=0).stdout)
    check(st["cache"]["objects"] == 300, "status --json: %s" % st["cache"])
    human = cli(d, "status", rc=0).stdout
    check(re.search(r"^objects\s+300$", human, re.M) and nas in human, "status:\n" + human)
    ctr = json.loads(cli(d, "stats", "--json", rc=0).stdout)
    check(ctr["fetches"] == 300, "stats --json: %s" % ctr)
    ls = json.loads(cli(d, "ls", os.path.join(nas, "d03"), "--json", rc=0).stdout)
    check(len(ls) == 50 and all(e["state"] == "cached" for e in ls), "ls: %s" % ls[:3])
    p = cli(d, "pin", os.path.join(nas, "d04"), rc=0)
    check("pinned 50 objects" in p.stdout, p.stdout)
    ls = json.loads(cli(d, "ls", os.path.join(nas, "d04"), "--json", rc=0).stdout)
    check(all(e["state"] == "pinned" for e in ls), "after pin: %s" % ls[:3])
    cli(d, "unpin", os.path.join(nas, "d04"), rc=0)
    p = cli(d, "evict", os.path.join(nas, "d05"), rc=0)
    check("evicted 50 objects" in p.stdout, p.stdout)
    check(d.status()["cache"]["objects"] == 250, "after evict")
    p = cli(d, "epoch", "--path", nas, rc=0)
    check(re.search(r": epoch \d+$", p.stdout.strip()), p.stdout)
    order = os.path.join(wd.path, "order.txt")
    with open(order, "w") as f:
        f.write("\n".join(os.path.join(nas, r) for r in reversed(rels)) + "\n")
    p = cli(d, "hint", "--order", order, rc=0)
    check("hinted 300 of 300 paths" in p.stdout, p.stdout)
    p = cli(d, "verify", rc=0)
    check("checked 250 objects, 0 bad" in p.stdout, p.stdout)

    # Python binding, with torch, under Debian's python
    env = d.env(GRANARY_LIB=LIBGRANARY,
                PYTHONPATH=os.path.join(SRC, "client", "python"))
    p = subprocess.run([DEBIAN_PYTHON, "-c", PY_CHECK, nas, json.dumps(rels)], env=env,
                       capture_output=True, text=True, timeout=300)
    check(p.returncode == 0 and "python ok" in p.stdout,
          "python binding:\n" + p.stdout + p.stderr[-3000:])
    print(p.stdout.strip())


if __name__ == "__main__":
    run(main, "client_cli")
