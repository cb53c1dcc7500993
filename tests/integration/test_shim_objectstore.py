"""Directory listing through the shim on object-store mounts, whose paths exist
only through granary: a bucket in real s3rver laid out as an ImageFolder (and
the same tree behind real nginx for an http mount). Through the shim,
os.listdir, os.scandir, os.walk, os.fwalk, glob and `ls -R` show exactly the
tree they show on the local copy; a prefix stats as a directory, a missing
one is ENOENT, a file opened as a directory ENOTDIR; 2,500 keys in one prefix
(many LIST pages) come back complete without duplicates; a torchvision
ImageFolder + DataLoader(num_workers=2) epoch over the S3 mount finds the
same classes and samples as over the local tree, with the same bytes and the
same decoded pixels; with the daemon gone a listing is EIO."""
import json
import os
import random
import subprocess

from harness import DEBIAN_PYTHON, PRELOAD, Skip, check, run
from servers import S3_KEY, S3_SECRET, Nginx, S3Client, S3rver

S3_MOUNT = "/granary-objtest/s3"
HTTP_MOUNT = "/granary-objtest/web"
MANY = 2500

# Everything a program sees of a tree through the listing calls, as JSON.
LISTER = r'''
import errno, glob, json, os, stat, sys

root = sys.argv[1]


def rel(p):
    r = os.path.relpath(p, root)
    return "" if r == "." else r


out = {"listdir": {}, "scandir": {}, "walk": [], "fwalk": [], "dirfd": {}}
for top, dirs, files in os.walk(root):
    out["walk"].append([rel(top), sorted(dirs), sorted(files)])
    names = os.listdir(top)
    out["listdir"][rel(top)] = sorted(names)
    assert len(names) == len(set(names)), "duplicates in %s" % top
    with os.scandir(top) as it:
        ents = [[e.name, e.is_dir(), e.is_file(), e.is_symlink(), e.inode() != 0] for e in it]
    out["scandir"][rel(top)] = sorted(ents)
for top, dirs, files, fd in os.fwalk(root):
    st = os.fstat(fd)
    assert stat.S_ISDIR(st.st_mode), "fwalk: fstat of %s is not a directory" % top
    out["fwalk"].append([rel(top), sorted(dirs), sorted(files)])
    # the descriptor lists and resolves names itself, as os.fwalk relies on
    out["dirfd"][rel(top)] = [sorted(os.listdir(fd)),
                              sorted(stat.S_ISDIR(os.stat(n, dir_fd=fd).st_mode)
                                     for n in dirs + files)]
out["walk"].sort()  # visited in listing order: the local file system's is another
out["fwalk"].sort()
out["glob"] = sorted(rel(p) for p in glob.glob(os.path.join(root, "**", "*.png"),
                                                recursive=True))

# a directory opened as a descriptor, as os.fwalk opens the top
fd = os.open(os.path.join(root, "train"), os.O_RDONLY | os.O_DIRECTORY)
out["o_directory"] = [stat.S_ISDIR(os.fstat(fd).st_mode), sorted(os.listdir(fd)),
                      os.path.samestat(os.fstat(fd), os.lstat(os.path.join(root, "train")))]
os.close(fd)

st = os.stat(os.path.join(root, "train", "class0"))
out["stat_dir"] = [stat.S_ISDIR(st.st_mode), os.path.isdir(os.path.join(root, "train")),
                   os.access(os.path.join(root, "train", "class0"), os.R_OK | os.X_OK)]
out["stat_file"] = os.path.isfile(os.path.join(root, "train", "class0", "img000.png"))


def errname(fn, *args):
    try:
        fn(*args)
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))


missing = os.path.join(root, "train", "no-such-class")
afile = os.path.join(root, "train", "class0", "img000.png")
out["errors"] = {
    "listdir_missing": errname(os.listdir, missing),
    "scandir_missing": errname(lambda p: list(os.scandir(p)), missing),
    "stat_missing": errname(os.stat, missing),
    "access_missing": str(os.access(missing, os.R_OK)),
    "listdir_file": errname(os.listdir, afile),
    "open_dir_file": errname(os.open, afile, os.O_RDONLY | os.O_DIRECTORY),
}
names = os.listdir(os.path.join(root, "many"))
out["many"] = [len(names), len(set(names)), sorted(names) == ["k%05d" % i for i in
                                                             range(len(names))]]
json.dump(out, open(sys.argv[2], "w"), indent=0, sort_keys=True)
'''

# An ImageFolder epoch: each sample's path, class, and digests of its raw
# bytes and of its decoded pixels.
LOADER = r'''
import hashlib, json, sys
import numpy as np
import torch
from torchvision import datasets
from PIL import Image

root, out = sys.argv[1], sys.argv[2]


def load(path):
    with open(path, "rb") as f:
        raw = f.read()
    img = Image.open(path).convert("RGB")
    pixels = np.asarray(img).tobytes()
    return hashlib.sha256(raw).hexdigest(), hashlib.sha256(pixels).hexdigest()


class Indexed(datasets.ImageFolder):
    def __getitem__(self, i):
        (raw, pixels), label = super().__getitem__(i)
        return i, raw, pixels, label


ds = Indexed(root, loader=load)
dl = torch.utils.data.DataLoader(ds, batch_size=8, shuffle=True, num_workers=2,
                                 collate_fn=lambda b: b)
seen = {}
for batch in dl:
    for i, raw, pixels, label in batch:
        path = ds.samples[i][0][len(root) + 1:]
        assert path not in seen, "sample %s twice" % path
        seen[path] = [raw, pixels, label]
json.dump({"classes": ds.classes, "n": len(ds), "seen": seen}, open(out, "w"), sort_keys=True)
'''


def make_tree(root):
    """An ImageFolder (3 classes x 40 PNGs, a nested directory in one class),
    a few other files, and MANY keys in one prefix. Returns {key: bytes}."""
    from PIL import Image  # Debian's python3-pil
    rnd = random.Random(5)
    objs = {}
    for c in range(3):
        for i in range(40):
            img = Image.new("RGB", (8 + i % 5, 6 + c))
            img.putdata([(rnd.randrange(256), rnd.randrange(256), rnd.randrange(256))
                         for _ in range(img.size[0] * img.size[1])])
            key = "train/class%d/img%03d.png" % (c, i)
            if c == 1 and i >= 36:
                key = "train/class1/nested/%simg%03d.png" % ("deep/" if i > 36 else "", i)
            path = os.path.join(root, key)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            img.save(path)
            objs[key] = open(path, "rb").read()
    # s3rver (3.7) leaves out of a delimited listing a prefix whose keys all lie
    # two or more levels further down: every prefix here holds a key itself
    for key, data in (("README.txt", b"three classes\n"), ("meta/labels.txt", b"a\nb\nc\n"),
                      ("meta/odd name + x.txt", b"odd\n"), ("train/LICENSE", b"CC0\n")):
        objs[key] = data
    for i in range(MANY):
        objs["many/k%05d" % i] = b"%d\n" % i
    for key, data in objs.items():
        path = os.path.join(root, key)
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
    return objs


def lister(wd, root, name, env=None):
    script = os.path.join(wd.path, "lister.py")
    with open(script, "w") as f:
        f.write(LISTER)
    out = os.path.join(wd.path, name + ".json")
    p = subprocess.run([DEBIAN_PYTHON, script, root, out], env=env, capture_output=True,
                       text=True, timeout=300)
    check(p.returncode == 0, "%s: lister exited %d:\n%s" % (name, p.returncode,
                                                             p.stderr[-3000:]))
    return json.load(open(out))


def ls_r(root, env=None):
    p = subprocess.run(["ls", "-R", root], env=env, capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout.replace(root, "ROOT"), p.stderr


def compare(want, got, what):
    for k in sorted(set(want) | set(got)):
        check(k in got, "%s: no %s" % (what, k))
        check(want.get(k) == got[k], "%s: %s differs:\nlocal   %s\nthrough %s" % (
            what, k, json.dumps(want.get(k))[:1500], json.dumps(got[k])[:1500]))


def check_listing(wd, d, local, mount, name):
    want = lister(wd, local, name + "-local")
    # the local tree itself must show what the test means to check
    check(want["errors"]["listdir_missing"] == "ENOENT" and want["many"] == [MANY, MANY, True],
          "local tree: %s %s" % (want["errors"], want["many"]))
    check(len(want["glob"]) == 120, "local glob found %d PNGs" % len(want["glob"]))
    got = lister(wd, mount, name, env=d.env(LD_PRELOAD=PRELOAD))
    compare(want, got, name)

    rc, out, err = ls_r(local)
    check(rc == 0, "ls -R of the local tree: %d %s" % (rc, err))
    rc2, out2, err2 = ls_r(mount, env=d.env(LD_PRELOAD=PRELOAD))
    check(rc2 == 0 and out2 == out, "%s: ls -R through the shim: rc %d %s\n%s" % (
        name, rc2, err2[-500:], out2[:1000]))


def epoch(wd, root, name, env=None):
    script = os.path.join(wd.path, "loader.py")
    with open(script, "w") as f:
        f.write(LOADER)
    out = os.path.join(wd.path, name + ".json")
    p = subprocess.run([DEBIAN_PYTHON, script, root, out], env=env, capture_output=True,
                       text=True, timeout=300)
    check(p.returncode == 0, "%s: loader exited %d:\n%s" % (name, p.returncode,
                                                             p.stderr[-3000:]))
    return json.load(open(out))


def main(wd):
    try:
        subprocess.run([DEBIAN_PYTHON, "-c", "import torch, torchvision, PIL, numpy"],
                       check=True, capture_output=True, timeout=120)
    except (subprocess.CalledProcessError, OSError):
        raise Skip("Debian's python3-torch/torchvision/pil are missing; make deps installs them")
    if not os.path.exists(PRELOAD):
        raise Skip("the shim is not built")
    import sys
    sys.path.insert(0, "/usr/lib/python3/dist-packages")
    local = os.path.join(wd.path, "tree")
    objs = make_tree(local)

    s3 = S3rver(wd.path).start()
    ng = Nginx(wd.path, local).start()
    try:
        S3Client(s3.endpoint).put_many("bucket", list(objs.items()), threads=16)
        run_all(wd, s3, ng, local, objs)
    finally:
        ng.stop()
        s3.stop()


def run_all(wd, s3, ng, local, objs):
    d = wd.daemon([{"path": S3_MOUNT, "backend": "s3", "url": s3.endpoint + "/bucket/",
                    "region": "us-east-1"},
                   {"path": HTTP_MOUNT, "backend": "http", "url": ng.url}])
    d.start(extra_env={"AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET})
    env = d.env(LD_PRELOAD=PRELOAD)
    try:
        check_listing(wd, d, local, S3_MOUNT, "s3")
        check_listing(wd, d, local, HTTP_MOUNT, "http")

        # ---- an ImageFolder epoch over the bucket ----
        want = epoch(wd, os.path.join(local, "train"), "epoch-local")
        check(want["classes"] == ["class0", "class1", "class2"] and want["n"] == 120,
              "local ImageFolder: %s, %d samples" % (want["classes"], want["n"]))
        got = epoch(wd, S3_MOUNT + "/train", "epoch-s3", env=env)
        check(got["classes"] == want["classes"] and got["n"] == want["n"],
              "ImageFolder over S3: %s, %d samples (expected %s, %d)" % (
                  got["classes"], got["n"], want["classes"], want["n"]))
        check(got["seen"] == want["seen"], "ImageFolder over S3: samples differ: %s" % sorted(
            k for k in set(got["seen"]) | set(want["seen"])
            if got["seen"].get(k) != want["seen"].get(k))[:5])
        import hashlib
        for key, (raw, _, _) in got["seen"].items():
            check(hashlib.sha256(objs["train/" + key]).hexdigest() == raw,
                  "%s: bytes differ from the source" % key)
        st = d.status()["counters"]
        check(st["fetches"] >= 120, "the epoch did not read through granary: %s" % st)
    finally:
        d.stop()

    # ---- the daemon gone: a listing of an object store is EIO ----
    p = subprocess.run([DEBIAN_PYTHON, "-c", "import os, sys\n"
                        "try:\n    os.listdir(sys.argv[1])\nexcept OSError as e:\n"
                        "    print(e.errno)\nelse:\n    print('listed')",
                        S3_MOUNT + "/train"], env=env, capture_output=True, text=True,
                       timeout=120)
    # the shim has no mount table without a daemon: the path is just absent
    check(p.stdout.strip() in ("5", "2"), "listing with the daemon gone: %r %r" % (
        p.stdout, p.stderr[-500:]))


run(main, "shim_objectstore")
