"""A torchvision ImageFolder + DataLoader(num_workers=2) epoch through the
real shim over a generated JPEG tree: every sample's bytes equal the source,
and the opens were served by granary. Then the daemon is killed in the middle
of an epoch: the epoch completes with correct data (the shim falls open), and
once the daemon is back, opens go through the cache again."""
import hashlib
import json
import os
import subprocess
import time

from harness import DEBIAN_PYTHON, PRELOAD, Skip, check, run

LOADER = r'''
import hashlib, json, os, sys, time
import torch
from torchvision import datasets
from PIL import Image

root, out, gate = sys.argv[1], sys.argv[2], sys.argv[3]

def load(path):
    with open(path, "rb") as f:
        data = f.read()
    img = Image.open(path)
    img.load()
    return hashlib.sha256(data).hexdigest(), img.size

class Indexed(datasets.ImageFolder):
    def __getitem__(self, i):
        (digest, size), label = super().__getitem__(i)
        return i, digest, label, size[0] * size[1]

ds = Indexed(root, loader=load)
dl = torch.utils.data.DataLoader(ds, batch_size=8, shuffle=True, num_workers=2,
                                 collate_fn=lambda b: b)
seen = {}
for n, batch in enumerate(dl):
    for i, digest, label, pixels in batch:
        seen[ds.samples[i][0]] = digest
    if n == 3 and gate != "-":
        open(gate, "w").close()          # tell the test: kill the daemon now
        while os.path.exists(gate):
            time.sleep(0.01)
json.dump(seen, open(out, "w"))
'''


def make_images(root, classes=4, per_class=40):
    from PIL import Image  # Debian's python3-pil, imported by /usr/bin/python3
    import random
    rnd = random.Random(3)
    digests = {}
    for c in range(classes):
        d = os.path.join(root, "class%d" % c)
        os.makedirs(d, exist_ok=True)
        for i in range(per_class):
            p = os.path.join(d, "img%03d.jpg" % i)
            img = Image.new("RGB", (64 + i, 48 + c))
            img.putdata([(rnd.randrange(256), rnd.randrange(256), rnd.randrange(256))
                         for _ in range(img.size[0] * img.size[1])])
            img.save(p, quality=90)
            digests[p] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return digests


def epoch(wd, d, root, name, gate="-", on_gate=None):
    script = os.path.join(wd.path, "loader.py")
    with open(script, "w") as f:
        f.write(LOADER)
    out = os.path.join(wd.path, name + ".json")
    p = subprocess.Popen([DEBIAN_PYTHON, script, root, out, gate],
                         env=d.env(LD_PRELOAD=PRELOAD), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    if on_gate:
        end = time.time() + 120
        while not os.path.exists(gate) and p.poll() is None and time.time() < end:
            time.sleep(0.01)
        check(os.path.exists(gate), "the loader never reached the middle of its epoch")
        on_gate()
        os.unlink(gate)
    _, err = p.communicate(timeout=300)
    check(p.returncode == 0, "%s: loader exited %d:\n%s" % (name, p.returncode, err[-3000:]))
    return json.load(open(out))


def main(wd):
    try:
        subprocess.run([DEBIAN_PYTHON, "-c", "import torch, torchvision, PIL"], check=True,
                       capture_output=True, timeout=120)
    except (subprocess.CalledProcessError, OSError):
        raise Skip("Debian's python3-torch/torchvision/pil are missing; make deps installs them")
    if not os.path.exists(PRELOAD):
        raise Skip("the shim is not built")
    root = os.path.join(wd.path, "nas", "train")
    import sys
    sys.path.insert(0, "/usr/lib/python3/dist-packages")
    digests = make_images(root)
    d = wd.daemon([{"path": os.path.join(wd.path, "nas"), "backend": "posix",
                    "consistency": "strict"}])
    d.start()

    def verify(seen, name):
        check(len(seen) == len(digests), "%s: %d samples of %d" % (name, len(seen),
                                                                   len(digests)))
        bad = [p for p, h in seen.items() if digests.get(p) != h]
        check(not bad, "%s: wrong bytes for %s" % (name, bad[:3]))

    verify(epoch(wd, d, root, "cold"), "cold epoch")
    st = d.status()["counters"]
    check(st["fetches"] == len(digests), "cold epoch fetched %d of %d" % (st["fetches"],
                                                                        len(digests)))
    verify(epoch(wd, d, root, "warm"), "warm epoch")
    st = d.status()["counters"]
    check(st["fetches"] == len(digests), "warm epoch fetched again: %s" % st)
    check(st["hits"] >= len(digests), "warm epoch not served from the cache: %s" % st)

    gate = os.path.join(wd.path, "gate")
    verify(epoch(wd, d, root, "killed", gate, on_gate=d.kill9), "epoch with the daemon killed")
    d.start()
    before = d.status()["counters"]
    verify(epoch(wd, d, root, "back"), "epoch after the restart")
    after = d.status()["counters"]
    check(after["opens"] - before["opens"] >= len(digests),
          "after the restart the opens did not go through the cache: %s" % after)
    check(after["hits"] - before["hits"] >= len(digests), "restart lost the cache: %s" % after)
    d.stop()


run(main, "shim_dataloader")
