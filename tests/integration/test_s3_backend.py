"""An S3 mount against s3rver behind a proxy that verifies AWS Signature V4
(s3rver itself does not), path-style and virtual-host style: warmed with the CLI and read back byte for byte
through the protocol and the shim; prefixes as directories; ListObjectsV2
with continuation; single flight counted at the proxy; a wrong secret is a
clear 403 naming the file; a credentials file readable by others is refused
at start-up; 503s and an ETag change between ranges never leave a partial or
mixed object cached."""
import errno
import os
import random
import subprocess
import threading

from harness import PRELOAD, check, run
from servers import S3_KEY, S3_SECRET, SMALL_FETCH, Proxy, S3Client, S3rver, gets_per_object

LARGE = 2 * 1024 * 1024 + 777
FETCH = SMALL_FETCH


def main(wd):
    s3 = S3rver(wd.path).start()
    try:
        run_all(wd, s3)
    finally:
        s3.stop()


def creds_file(wd, name, text, mode=0o600):
    path = os.path.join(wd.path, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def run_all(wd, s3):
    rnd = random.Random(3)
    objs = {}
    for i in range(400):
        objs["train/n%02d/img %04d.jpg" % (i % 8, i)] = rnd.randbytes(rnd.randint(0, 120000))
    objs["val/large0.bin"] = rnd.randbytes(LARGE)
    objs["val/large1.bin"] = rnd.randbytes(LARGE)
    objs["val/empty"] = b""
    objs["odd/a+b=c & d%.bin"] = b"odd\n" * 50
    many = {"many/k%05d" % i: b"%d" % i for i in range(1100)}
    client = S3Client(s3.endpoint)
    client.put_many("bucket", list(objs.items()) + list(many.items()))

    secrets = {S3_KEY: S3_SECRET}
    verify = Proxy(s3.port, secrets=secrets).start()
    failed_once = set()

    def some_503(req):
        # the first try of every other request fails; its retry gets through
        k = (req.method, req.path, req.headers.get("range"))
        if k in failed_once or req.n % 2:
            return None
        failed_once.add(k)
        return "503"

    flaky = Proxy(s3.port, secrets=secrets, fault=some_503).start()
    slow = Proxy(s3.port, secrets=secrets, delay_ms=40).start()
    proxies = [verify, flaky, slow]

    ini = creds_file(wd, "s3.ini", "# the bucket's reader\n[default]\naws_access_key_id = %s\n"
                     "aws_secret_access_key = %s\n" % (S3_KEY, S3_SECRET))
    two = creds_file(wd, "s3.two", "%s\n%s\n" % (S3_KEY, S3_SECRET))

    def mount(path, proxy, **kw):
        m = {"path": path, "backend": "s3", "url": proxy.url + "bucket/", "region": "us-east-1"}
        m.update(kw)
        return m

    d = wd.daemon([mount("/data/s3", verify, credentials_file=ini),
                   mount("/data/prefix", verify, credentials_file=two,
                         url=verify.url + "bucket/train/"),
                   mount("/data/flaky", flaky, credentials_file=ini),
                   # virtual-host style, credentials from the environment
                   mount("/data/vhost", verify, path_style=False,
                         url="http://bucket.s3.localhost:%d/train/" % verify.port),
                   mount("/data/once", slow, credentials_file=ini, consistency="immutable")],
                  fetch=FETCH, cache={"capacity": "2G"})
    d.start(extra_env={"AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET})
    try:
        # ---- warm the bucket, read every object back ----
        p = d.cli("warm", "/data/s3/train", "/data/s3/val", "/data/s3/odd", "--jobs", "16",
                  check_rc=0)
        st = d.status()
        check(st["counters"]["fetches"] == len(objs), "fetches %s, expected %d" % (
            st["counters"], len(objs)))
        denied = [q for q in verify.requests() if q.status == 403]
        check(not denied, "requests refused by the signature check: %s" % denied[:3])
        ranged = [q for q in verify.requests() if "range" in q.headers]
        check(len(ranged) >= 2 * (LARGE // (256 * 1024)), "large objects not ranged: %d" %
              len(ranged))
        # a cold warm asks no HEAD of objects (but for the empty one, whose range is
        # refused); the prefixes named on the command line are STATed
        heads = [q.path for q in verify.requests("HEAD") if q.path[len("/bucket/"):] in objs]
        check(heads == ["/bucket/val/empty"], "HEADs of a cold warm: %s" % heads[:5])
        obj_gets = [q for q in verify.requests("GET") if "list-type" not in q.target]
        want_gets = sum(gets_per_object(len(data)) for data in objs.values())
        check(len(obj_gets) == want_gets,
              "a cold warm of %d objects made %d object GETs (expected %d)" % (
                  len(objs), len(obj_gets), want_gets))
        c = d.conn()
        for key, data in objs.items():
            r, got = c.read("/data/s3/" + key)
            check(r.status == 0, "OPEN %s: %d %s" % (key, r.status, r.errmsg))
            check(got == data, "bytes differ for %s" % key)
            check(r.u32("SOURCE") == 0, "%s not served from the cache" % key)

        # a mount on a key prefix, credentials in the two-line form
        for key in list(objs)[:20]:
            r, got = c.read("/data/prefix/" + key[len("train/"):])
            check(r.status == 0 and got == objs[key], "prefix mount: %s %d %s" % (
                key, r.status, r.errmsg))

        # virtual-host addressing: the bucket in the host name
        for key in list(objs)[20:40]:
            r, got = c.read("/data/vhost/" + key[len("train/"):])
            check(r.status == 0 and got == objs[key], "vhost mount: %s %d %s" % (
                key, r.status, r.errmsg))
        vh = [q for q in verify.requests() if q.headers.get("host", "").startswith("bucket.s3.")]
        check(len(vh) >= 20 and all(q.status in (200, 206) for q in vh),
              "virtual-host requests: %d, statuses %s" % (len(vh), {q.status for q in vh}))

        # ---- stat: prefixes are directories, absent keys ENOENT ----
        for path, typ in (("/data/s3", 2), ("/data/s3/train", 2), ("/data/s3/train/n03", 2),
                          ("/data/s3/val/large0.bin", 1)):
            r = c.request("STAT", path=path)
            check(r.status == 0 and r.u32("TYPE") == typ, "STAT %s: %d %s type %s" % (
                path, r.status, r.errmsg, r.get("TYPE")))
        r = c.request("STAT", path="/data/s3/val/large0.bin")
        check(r.u64("SIZE") == LARGE, "STAT size %d" % r.u64("SIZE"))
        for path in ("/data/s3/train/n03/absent.jpg", "/data/s3/nothing"):
            r, _ = c.read(path)
            check(r.status == -errno.ENOENT, "absent %s: %d %s" % (path, r.status, r.errmsg))
        # the mount's top is a directory: never fetched as an object
        for _ in range(2):
            r, _ = c.read("/data/s3")
            check(r.status == -errno.EISDIR, "OPEN of the mount's top: %d %s" % (r.status, r.errmsg))
        c.close()

        # ---- listing: 1100 keys need ListObjectsV2 continuation ----
        p = d.cli("ls", "/data/s3/many", check_rc=0)
        listed = [k for k in many if k.split("/")[1] in p.stdout]
        check(len(listed) == 1100, "ls of 1100 keys shows %d" % len(listed))
        p = d.cli("ls", "/data/s3/train", check_rc=0)
        for i in range(8):
            check("n%02d" % i in p.stdout, "ls train misses n%02d:\n%s" % (i, p.stdout))

        # ---- through the shim ----
        env = d.env(LD_PRELOAD=PRELOAD)
        for key in ("val/large1.bin", "train/n01/img 0001.jpg", "odd/a+b=c & d%.bin"):
            out = subprocess.run(["cat", "/data/s3/" + key], capture_output=True, env=env,
                                 timeout=60)
            check(out.returncode == 0 and out.stdout == objs[key],
                  "cat %s through the shim: rc %d %s" % (key, out.returncode,
                                                         out.stderr[-300:]))

        # ---- single flight: 12 readers of one uncached object ----
        key = "val/large0.bin"
        results = []

        def reader():
            cc = d.conn()
            results.append(cc.read("/data/once/" + key))
            cc.close()

        ts = [threading.Thread(target=reader) for _ in range(12)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        for r, got in results:
            check(r.status == 0 and got == objs[key], "single-flight reader %d %s" % (
                r.status, r.errmsg))
        seen = [q for q in slow.requests() if q.path == "/bucket/" + key]
        heads = sum(1 for q in seen if q.method == "HEAD")
        gets = sum(1 for q in seen if q.method == "GET")
        chunks = gets_per_object(LARGE)
        check(heads == 0 and gets == chunks, "12 readers: %d HEAD, %d GET (expected 0, %d)" % (
            heads, gets, chunks))

        # ---- 503s are retried ----
        p = d.cli("warm", "/data/flaky/val", "/data/flaky/train/n05", "--jobs", "8",
                  check_rc=0)
        check(any(q.fault == "503" for q in flaky.requests()), "no 503 injected")
        c = d.conn()
        for key in [k for k in objs if k.startswith(("val/", "train/n05/"))]:
            r, got = c.read("/data/flaky/" + key)
            check(r.status == 0 and got == objs[key], "after 503s: %s %d" % (key, r.status))
        c.close()
    finally:
        d.stop()

    etag_change(wd, s3, client, objs, secrets, proxies)
    wrong_secret(wd, verify, objs)
    for p in proxies:
        p.stop()


def etag_change(wd, s3, client, objs, secrets, proxies):
    """The object is replaced between two of its ranges: never a mixed object."""
    key = "val/large1.bin"
    new = random.Random(11).randbytes(LARGE)
    state = {"ranges": 0, "replaced": False}

    def replace_on_second_range(req):
        if req.method == "GET" and req.path == "/bucket/" + key and "range" in req.headers:
            state["ranges"] += 1
            if state["ranges"] == 2 and not state["replaced"]:
                state["replaced"] = True
                S3Client(s3.endpoint).put("bucket", key, new)

    px = Proxy(s3.port, secrets=secrets, hook=replace_on_second_range).start()
    proxies.append(px)
    ini = os.path.join(wd.path, "s3.ini")
    d = wd.daemon([{"path": "/data/e", "backend": "s3", "url": px.url + "bucket/",
                    "region": "us-east-1", "credentials_file": ini}],
                  name="g-etag", fetch=dict(FETCH, chunk_parallel=1))
    d.start()
    try:
        c = d.conn()
        r, got = c.read("/data/e/" + key)
        check(state["replaced"], "the object was not replaced between ranges")
        if r.status == 0:
            check(got == new, "read across an ETag change is not the new object: mixed")
        else:
            check(r.status in (-errno.ESTALE, -errno.EAGAIN), "ETag change: %d %s" % (
                r.status, r.errmsg))
        r, got = c.read("/data/e/" + key, nofetch=True)
        check(r.status != 0 or got == new, "cached copy is mixed or old")
        c.close()
        check("changed" in d.logtext(), "no log line about the change")
    finally:
        d.stop()
    objs[key] = new


def wrong_secret(wd, verify, objs):
    bad = creds_file(wd, "s3.bad", "[default]\naws_access_key_id = %s\n"
                     "aws_secret_access_key = not-the-secret\n" % S3_KEY)
    d = wd.daemon([{"path": "/data/s3", "backend": "s3", "url": verify.url + "bucket/",
                    "region": "us-east-1", "credentials_file": bad}], name="g-bad")
    d.start()
    try:
        key = "train/n01/img 0001.jpg"
        c = d.conn()
        r = c.request("WARM", path="/data/s3/" + key)
        check(r.status == -errno.EACCES, "wrong secret: WARM answered %d %s" % (r.status,
                                                                             r.errmsg))
        check("403" in r.errmsg and "SignatureDoesNotMatch" in r.errmsg,
              "wrong secret: message %r" % r.errmsg)
        c.close()
        p = d.cli("warm", "/data/s3/" + key)
        out = p.stdout + p.stderr
        check(p.returncode != 0, "warm with a wrong secret exited 0")
        check("/data/s3/" + key in out and "403 Forbidden" in out and
              "SignatureDoesNotMatch" in out,
              "warm with a wrong secret does not say so clearly:\n" + out)
        # a listing refused says why too (its message once came out empty)
        c = d.conn()
        r = c.request("LS", path="/data/s3/train")
        check(r.status == -errno.EACCES and "SignatureDoesNotMatch" in r.errmsg,
              "LS with a wrong secret: %d %r" % (r.status, r.errmsg))
        c.close()
        check("not-the-secret" not in d.logtext(), "the secret reached the log")
    finally:
        d.stop()

    # a credentials file others can read is refused at start-up
    loose = creds_file(wd, "s3.loose", "%s\n%s\n" % (S3_KEY, S3_SECRET), mode=0o644)
    d = wd.daemon([{"path": "/data/s3", "backend": "s3", "url": verify.url + "bucket/",
                    "region": "us-east-1", "credentials_file": loose}], name="g-loose")
    d.start(wait=False)
    rc = d.proc.wait(20)
    log = d.logtext()
    check(rc != 0, "granaryd started with a credentials file of mode 0644")
    check(loose in log and "0644" in log, "refusal does not name the file and mode:\n" + log)
    check(S3_SECRET + "\n" not in log, "the secret reached the log")
    d.proc = None


run(main, "s3_backend")
