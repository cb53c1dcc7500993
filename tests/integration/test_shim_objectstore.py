"""Directory listing through the shim on object-store mounts, whose paths exist
only through granary: a bucket in real s3rver laid out as an ImageFolder (and
the same tree behind real nginx for an http mount). Through the shim,
os.listdir, os.scandir, os.walk, os.fwalk, glob and `ls -R` show exactly the
tree they show on the local copy; a prefix stats as a directory, a missing
one is ENOENT, a file opened as a directory ENOTDIR; 2,500 keys in one prefix
(many LIST pages) come back complete without duplicates; a torchvision
ImageFolder + DataLoader(num_workers=2) epoch over the S3 mount finds the
same classes and samples as over the local tree, with the same bytes and the
same decoded pixels. The C calls (readdir_r, telldir/seekdir, dirfd,
scandir) are checked through ctypes, with threads sharing one stream and a
fork in the middle of a listing; with the daemon gone a listing is EIO."""
import json
import os
import random
import subprocess
import time

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

# The C calls themselves (ctypes finds the shim's definitions first), threads
# sharing one stream, a fork in the middle of a listing, and the daemon gone.
API = r'''
import ctypes, errno, json, os, stat, sys, threading, time

root, local, gate, out = sys.argv[1:5]
libc = ctypes.CDLL(None, use_errno=True)


class Dirent(ctypes.Structure):
    _fields_ = [("d_ino", ctypes.c_uint64), ("d_off", ctypes.c_int64),
                ("d_reclen", ctypes.c_ushort), ("d_type", ctypes.c_ubyte),
                ("d_name", ctypes.c_char * 256)]


P = ctypes.POINTER(Dirent)
vp = ctypes.c_void_p
for name, res, args in (("opendir", vp, [ctypes.c_char_p]), ("fdopendir", vp, [ctypes.c_int]),
                        ("readdir", P, [vp]), ("readdir64", P, [vp]),
                        ("readdir_r", ctypes.c_int, [vp, P, ctypes.POINTER(P)]),
                        ("telldir", ctypes.c_long, [vp]), ("seekdir", None, [vp, ctypes.c_long]),
                        ("rewinddir", None, [vp]), ("closedir", ctypes.c_int, [vp]),
                        ("dirfd", ctypes.c_int, [vp]), ("free", None, [vp]),
                        ("scandir", ctypes.c_int, [ctypes.c_char_p,
                                                   ctypes.POINTER(ctypes.POINTER(P)), vp, vp])):
    f = getattr(libc, name)
    f.restype, f.argtypes = res, args
DT_DIR, DT_REG = 4, 8
res = {}


def opendir(path):
    ctypes.set_errno(0)
    d = libc.opendir(path.encode())
    return d, ctypes.get_errno()


def read_all(d, fn=libc.readdir64, limit=None):
    names = []
    while limit is None or len(names) < limit:
        ctypes.set_errno(0)
        e = fn(d)
        if not e:
            err = ctypes.get_errno()
            if err:
                return names, err
            break
        names.append((e.contents.d_name.decode(), e.contents.d_type, e.contents.d_ino))
    return names, 0


top = os.path.join(root, "train", "class1")
d, err = opendir(top)
assert d, "opendir %s: errno %d" % (top, err)
ents, err = read_all(d, libc.readdir)
res["readdir"] = sorted((n, t) for n, t, ino in ents)
res["ino_nonzero"] = all(ino for _, _, ino in ents)
# telldir/seekdir/rewinddir
libc.rewinddir(d)
read_all(d, limit=5)
pos = libc.telldir(d)
after = read_all(d, limit=3)[0]
libc.seekdir(d, pos)
res["seekdir"] = read_all(d, limit=3)[0] == after
libc.rewinddir(d)
res["rewinddir"] = read_all(d)[0] == ents
# dirfd: a descriptor that stats as this directory and lists it
fd = libc.dirfd(d)
res["dirfd"] = [fd >= 0 and stat.S_ISDIR(os.fstat(fd).st_mode),
                sorted(os.listdir(fd)) == sorted(n for n, _, _ in ents if n not in (".", ".."))]
res["closedir"] = libc.closedir(d)
# readdir_r
d, _ = opendir(top)
entry, result, names = Dirent(), P(), []
while libc.readdir_r(d, ctypes.byref(entry), ctypes.byref(result)) == 0 and result:
    names.append(entry.d_name.decode())
libc.closedir(d)
res["readdir_r"] = sorted(names) == sorted(n for n, _, _ in ents)
# scandir, sorted by alphasort
nl = ctypes.POINTER(P)()
n = libc.scandir(top.encode(), ctypes.byref(nl), None,
                 ctypes.cast(libc.alphasort, ctypes.c_void_p).value)
res["scandir"] = [nl[i].contents.d_name.decode() for i in range(n)]
for i in range(n):
    libc.free(ctypes.cast(nl[i], vp))
libc.free(ctypes.cast(nl, vp))
# errors
res["opendir_missing"] = errno.errorcode.get(opendir(os.path.join(root, "nope"))[1])
res["opendir_file"] = errno.errorcode.get(opendir(os.path.join(top, "img000.png"))[1])
# a real directory still goes to libc, also while a listing of the shim's is open
v, _ = opendir(top)
d, _ = opendir(local)
res["real"] = sorted(n for n, _, _ in read_all(d)[0]) == sorted(os.listdir(local) + [".", ".."])
libc.closedir(d)
libc.closedir(v)

# four threads reading one stream of 2,500 keys: each entry once
many = os.path.join(root, "many")
d, _ = opendir(many)
got, lock = [], threading.Lock()


def share():
    while True:
        e = libc.readdir64(d)
        if not e:
            return
        name = e.contents.d_name.decode()
        with lock:
            got.append(name)


ts = [threading.Thread(target=share) for _ in range(4)]
for t in ts:
    t.start()
for t in ts:
    t.join()
libc.closedir(d)
res["shared_stream"] = [len(got), len(set(got))]

# eight threads listing different directories at once
lists, errs = {}, []


def lister(path):
    try:
        for _ in range(5):
            lists.setdefault(path, set()).add(tuple(sorted(os.listdir(path))))
    except OSError as e:
        errs.append(str(e))


dirs = [os.path.join(root, "train", "class%d" % c) for c in range(3)] + [many] + \
    [os.path.join(root, p) for p in ("meta", "train", "", "train/class1/nested")]
ts = [threading.Thread(target=lister, args=(p,)) for p in dirs]
for t in ts:
    t.start()
for t in ts:
    t.join()
res["threads"] = [errs, {os.path.relpath(p, root): [len(v), len(next(iter(v)))]
                         for p, v in lists.items()}]

# a fork with a listing half read: parent and child each read the rest
d, _ = opendir(many)
first = read_all(d, limit=100)[0]
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    rest, err = read_all(d)
    fresh = len(os.listdir(many))
    os.write(w, json.dumps([len(rest), err, fresh]).encode())
    os._exit(0)
os.close(w)
rest, err = read_all(d)
child = json.loads(os.read(r, 4096))
os.waitpid(pid, 0)
res["fork"] = [len(first), len(rest), err, child]
# keep this stream open, not read past its first page, over the daemon's end
d, _ = opendir(many)
read_all(d, limit=10)

# the daemon goes away: no original to fall open to, so EIO
open(gate, "w").close()
while os.path.exists(gate):
    time.sleep(0.01)
res["down_opendir"] = errno.errorcode.get(opendir(os.path.join(root, "meta"))[1])
res["down_readdir"] = errno.errorcode.get(read_all(d)[1])
try:
    os.listdir(os.path.join(root, "train"))
    res["down_listdir"] = "ok"
except OSError as e:
    res["down_listdir"] = errno.errorcode.get(e.errno)
json.dump(res, open(out, "w"), sort_keys=True)
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
    # ls -l stats every entry and asks for its extended attributes
    p = subprocess.run(["ls", "-lR", mount + "/train", mount + "/meta"], capture_output=True,
                       text=True, env=d.env(LD_PRELOAD=PRELOAD), timeout=120)
    check(p.returncode == 0 and not p.stderr and p.stdout.count(".png") == 120 and
          "dr-xr-xr-x" in p.stdout, "%s: ls -lR through the shim: rc %d %s\n%s" % (
              name, p.returncode, p.stderr[-500:], p.stdout[:500]))


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

        api_checks(wd, d, local, env)
    finally:
        d.stop()


def api_checks(wd, d, local, env):
    script = os.path.join(wd.path, "api.py")
    with open(script, "w") as f:
        f.write(API)
    gate = os.path.join(wd.path, "gate")
    out = os.path.join(wd.path, "api.json")
    p = subprocess.Popen([DEBIAN_PYTHON, script, S3_MOUNT, local, gate, out], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end = time.time() + 240
    while not os.path.exists(gate) and p.poll() is None and time.time() < end:
        time.sleep(0.01)
    if not os.path.exists(gate):
        p.kill()
        check(False, "the API script never got to the daemon's end: %s" % (
            p.communicate(timeout=60)[1][-3000:]))
    d.stop()
    os.unlink(gate)
    _, err = p.communicate(timeout=120)
    check(p.returncode == 0, "API script exited %d:\n%s" % (p.returncode, err[-3000:]))
    res = json.load(open(out))

    class1 = os.path.join(local, "train", "class1")
    want = sorted([(".", 4), ("..", 4)] + [(n, 4 if os.path.isdir(os.path.join(class1, n)) else 8)
                                           for n in os.listdir(class1)])
    check([tuple(e) for e in res["readdir"]] == want, "readdir: %s\nexpected %s" % (
        res["readdir"], want))
    for k in ("ino_nonzero", "seekdir", "rewinddir", "readdir_r", "real"):
        check(res[k] is True, "%s: %s" % (k, res[k]))
    check(res["dirfd"] == [True, True] and res["closedir"] == 0, "dirfd/closedir: %s %s" % (
        res["dirfd"], res["closedir"]))
    check(res["scandir"] == sorted(n for n, _ in want), "scandir: %s" % res["scandir"])
    check(res["opendir_missing"] == "ENOENT" and res["opendir_file"] == "ENOTDIR",
          "opendir errors: %s %s" % (res["opendir_missing"], res["opendir_file"]))
    check(res["shared_stream"] == [MANY + 2, MANY + 2], "4 threads on one stream of %d: %s" % (
        MANY + 2, res["shared_stream"]))
    errs, lists = res["threads"]
    check(not errs, "threads listing at once: %s" % errs)
    for rel, (variants, n) in lists.items():
        check(variants == 1, "threads: %s listed %d different ways" % (rel, variants))
        want_n = len(os.listdir(os.path.join(local, rel)))
        check(n == want_n, "threads: %s has %d entries, expected %d" % (rel, n, want_n))
    check(res["fork"] == [100, MANY + 2 - 100, 0, [MANY + 2 - 100, 0, MANY]],
          "a listing across fork: %s" % res["fork"])
    check(res["down_opendir"] == "EIO" and res["down_readdir"] == "EIO" and
          res["down_listdir"] == "EIO", "daemon gone: opendir %s, readdir %s, listdir %s" % (
              res["down_opendir"], res["down_readdir"], res["down_listdir"]))


run(main, "shim_objectstore")
