"""Real servers for the object-store tests, on loopback in a temporary directory.

- Nginx: Debian's nginx serving a directory with Range and a JSON autoindex,
  started with its own configuration (pid, logs and temp paths in the work
  directory) and an access log that tests count requests in.
- S3rver: the npm package s3rver holding buckets in a directory; installed
  with npm into a cache directory on first use. It accepts any well-formed
  V4 signature, so tests that check signing put a SigV4Proxy in front.
- Proxy: an HTTP/1.1 proxy (asyncio, in a thread) that adds a delay to every
  request, can inject faults (503, a Content-Length larger than the body, a
  connection closed mid-body), run a hook before a request is forwarded, and
  verify AWS Signature V4 with the secret it is given.
- S3Client: just enough of the S3 API, signed, to fill a bucket.
"""
import asyncio
import datetime
import hashlib
import hmac
import http.client
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse

S3RVER_VERSION = "3.7.1"
S3_KEY = "S3RVER"
S3_SECRET = "S3RVER"


# A remote mount's fetch settings small enough for tests to see every path:
# the first range, one more request, and parallel chunks of large objects.
SMALL_FETCH = {"large_threshold": "1M", "chunk_size": "256K", "chunk_parallel": 4, "retries": 4,
               "timeout": "5s"}


def gets_per_object(size):
    """GETs of one cold object under SMALL_FETCH: its first range of chunk_size,
    then the rest (in chunks when it is large, else in one more request)."""
    chunk = 256 * 1024
    if size <= chunk:
        return 1
    if size >= 1 << 20:
        return (size + chunk - 1) // chunk
    return 2


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20, proc=None, what="server"):
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("%s exited with %s" % (what, proc.returncode))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("%s did not listen on port %d" % (what, port))


# ---- nginx ----

class Nginx:
    """nginx serving @root on 127.0.0.1:@port; stop() or kill() it."""

    LOG_FORMAT = '$request_method "$uri" $status $body_bytes_sent "$http_range"'

    def __init__(self, workdir, root, port=None, name="nginx"):
        self.dir = os.path.join(workdir, name)
        self.root = os.path.abspath(root)
        self.port = port or free_port()
        self.conf = os.path.join(self.dir, "nginx.conf")
        self.access_log = os.path.join(self.dir, "access.log")
        self.error_log = os.path.join(self.dir, "error.log")
        self.proc = None
        os.makedirs(self.dir, exist_ok=True)
        temps = "\n".join("    %s_temp_path %s;" % (t, os.path.join(self.dir, t))
                          for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        user = "user root root;\n" if os.geteuid() == 0 else ""
        with open(self.conf, "w") as f:
            f.write("""%(user)sworker_processes 1;
daemon off;
pid %(dir)s/nginx.pid;
error_log %(err)s warn;
events { worker_connections 4096; }
http {
    log_format granary '%(fmt)s';
    access_log %(acc)s granary;
%(temps)s
    default_type application/octet-stream;
    sendfile on;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    server {
        listen 127.0.0.1:%(port)d;
        root %(root)s;
        location / {
            autoindex on;
            autoindex_format json;
        }
    }
}
""" % dict(user=user, dir=self.dir, err=self.error_log, fmt=self.LOG_FORMAT,
           acc=self.access_log, temps=temps, port=self.port, root=self.root))

    @property
    def url(self):
        return "http://127.0.0.1:%d/" % self.port

    def start(self):
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        log = open(os.path.join(self.dir, "stderr.log"), "ab")
        self.proc = subprocess.Popen([nginx, "-c", self.conf, "-p", self.dir],
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_port(self.port, proc=self.proc, what="nginx")
        return self

    def kill(self):
        """SIGKILL: the master and its worker die at once, mid-transfer."""
        if self.proc and self.proc.poll() is None:
            pids = [self.proc.pid]
            try:
                out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True,
                                     text=True).stdout
                pids += [int(p) for p in out.split()]
            except OSError:
                pass
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait()
        self.proc = None

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def requests(self, method=None):
        """(method, uri, status, bytes, range) of every request logged so far."""
        out = []
        try:
            with open(self.access_log) as f:
                for line in f:
                    parts = line.split('"')
                    if len(parts) < 4:
                        continue
                    m = parts[0].strip()
                    uri = parts[1]
                    st, nbytes = parts[2].split()
                    if method is None or m == method:
                        out.append((m, uri, int(st), int(nbytes), parts[3]))
        except FileNotFoundError:
            pass
        return out

    def clear_log(self):
        open(self.access_log, "w").close()
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)  # reopen
            time.sleep(0.1)


# ---- s3rver ----

def npm_cache_dir():
    base = os.environ.get("GRANARY_NPM_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "granary-tests",
        "npm")
    return base


def ensure_s3rver():
    """Path of the s3rver program, installing it with npm when missing."""
    d = npm_cache_dir()
    exe = os.path.join(d, "node_modules", ".bin", "s3rver")
    if os.path.exists(exe):
        return exe
    npm = shutil.which("npm")
    if not npm or not shutil.which("node"):
        raise RuntimeError("node and npm are needed to install s3rver")
    os.makedirs(d, exist_ok=True)
    p = subprocess.run([npm, "install", "--prefix", d, "--no-audit", "--no-fund",
                        "--loglevel=error", "s3rver@" + S3RVER_VERSION],
                       capture_output=True, text=True, timeout=600)
    if p.returncode != 0 or not os.path.exists(exe):
        raise RuntimeError("npm install s3rver failed:\n" + p.stdout[-2000:] + p.stderr[-2000:])
    return exe


class S3rver:
    def __init__(self, workdir, buckets=("bucket",), port=None, name="s3rver"):
        # virtual-host addressing: http://BUCKET.s3.localhost:PORT/ (libcurl resolves
        # *.localhost to loopback by itself); path-style addressing works as well
        self.dir = os.path.join(workdir, name)
        self.data = os.path.join(self.dir, "data")
        self.port = port or free_port()
        self.buckets = list(buckets)
        self.proc = None
        os.makedirs(self.data, exist_ok=True)

    @property
    def endpoint(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self):
        exe = ensure_s3rver()
        args = [exe, "-d", self.data, "-a", "127.0.0.1", "-p", str(self.port), "--silent",
                "--service-endpoint", "localhost"]
        for b in self.buckets:
            args += ["--configure-bucket", b]
        log = open(os.path.join(self.dir, "s3rver.log"), "ab")
        env = dict(os.environ)
        # s3rver's continuation tokens use DES, which OpenSSL 3 keeps in its legacy provider
        env["NODE_OPTIONS"] = (env.get("NODE_OPTIONS", "") + " --openssl-legacy-provider").strip()
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        wait_port(self.port, proc=self.proc, what="s3rver")
        return self

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


# ---- AWS Signature V4 ----

def _uri_encode(s, keep_slash):
    safe = "-_.~" + ("/" if keep_slash else "")
    return urllib.parse.quote(s, safe=safe)


def _hmac(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signing_key(secret, date, region, service):
    k = _hmac(("AWS4" + secret).encode(), date)
    k = _hmac(k, region)
    k = _hmac(k, service)
    return _hmac(k, "aws4_request")


def canonical_query(query):
    pairs = []
    if query:
        for part in query.split("&"):
            if not part:
                continue
            k, _, v = part.partition("=")
            pairs.append((_uri_encode(urllib.parse.unquote(k), False),
                          _uri_encode(urllib.parse.unquote(v), False)))
    pairs.sort()
    return "&".join("%s=%s" % kv for kv in pairs)


def canonical_request(method, path, query, headers, signed):
    """headers: dict of lower-case name -> value as received."""
    uri = _uri_encode(urllib.parse.unquote(path), True) or "/"
    canon_headers = "".join("%s:%s\n" % (h, " ".join(headers.get(h, "").split()))
                            for h in signed)
    payload = headers.get("x-amz-content-sha256", hashlib.sha256(b"").hexdigest())
    return "\n".join([method, uri, canonical_query(query), canon_headers, ";".join(signed),
                      payload])


def sign_headers(method, host, path, query, key, secret, region, extra=None, now=None):
    """Headers (dict) that sign a request with an unsigned payload."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    amzdate = now.strftime("%Y%m%dT%H%M%SZ")
    date = amzdate[:8]
    headers = {"host": host, "x-amz-date": amzdate, "x-amz-content-sha256": "UNSIGNED-PAYLOAD"}
    for k, v in (extra or {}).items():
        headers[k.lower()] = v
    signed = sorted(headers)
    creq = canonical_request(method, path, query, headers, signed)
    scope = "%s/%s/s3/aws4_request" % (date, region)
    sts = "\n".join(["AWS4-HMAC-SHA256", amzdate, scope,
                     hashlib.sha256(creq.encode()).hexdigest()])
    sig = hmac.new(signing_key(secret, date, region, "s3"), sts.encode(),
                   hashlib.sha256).hexdigest()
    headers["authorization"] = ("AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, "
                                "Signature=%s" % (key, scope, ";".join(signed), sig))
    return headers


def verify_sigv4(method, target, headers, secrets):
    """None when the request is signed with a known key's secret, else (code, message).
    @headers: lower-case name -> value; @secrets: access key -> secret."""
    auth = headers.get("authorization")
    if not auth:
        return ("AccessDenied", "Anonymous access is forbidden")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return ("InvalidRequest", "only AWS4-HMAC-SHA256 is accepted")
    fields = {}
    for part in auth[len("AWS4-HMAC-SHA256 "):].split(","):
        k, _, v = part.strip().partition("=")
        fields[k] = v
    try:
        cred = fields["Credential"].split("/")
        key, date, region, service, term = cred
        signed = fields["SignedHeaders"].split(";")
        sig = fields["Signature"]
    except (KeyError, ValueError):
        return ("AuthorizationHeaderMalformed", "malformed Authorization header")
    if key not in secrets:
        return ("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist")
    for h in ("host", "x-amz-date", "x-amz-content-sha256"):
        if h not in signed:
            return ("AccessDenied", "%s is not signed" % h)
    if signed != sorted(signed):
        return ("SignatureDoesNotMatch", "SignedHeaders not sorted")
    amzdate = headers.get("x-amz-date", "")
    if not amzdate.startswith(date) or term != "aws4_request":
        return ("SignatureDoesNotMatch", "credential scope does not match the date")
    try:
        when = datetime.datetime.strptime(amzdate, "%Y%m%dT%H%M%SZ").replace(
            tzinfo=datetime.timezone.utc)
    except ValueError:
        return ("AccessDenied", "bad x-amz-date")
    skew = abs((datetime.datetime.now(datetime.timezone.utc) - when).total_seconds())
    if skew > 900:
        return ("RequestTimeTooSkewed", "The difference between the request time and the "
                "current time is too large")
    path, _, query = target.partition("?")
    creq = canonical_request(method, path, query, headers, signed)
    scope = "/".join([date, region, service, term])
    sts = "\n".join(["AWS4-HMAC-SHA256", amzdate, scope,
                     hashlib.sha256(creq.encode()).hexdigest()])
    want = hmac.new(signing_key(secrets[key], date, region, service), sts.encode(),
                    hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, sig):
        return ("SignatureDoesNotMatch", "The request signature we calculated does not match "
                "the signature you provided. Check your key and signing method.")
    return None


class S3Client:
    """Signed PUT/DELETE/GET of objects, path-style, for filling buckets."""

    def __init__(self, endpoint, key=S3_KEY, secret=S3_SECRET, region="us-east-1"):
        u = urllib.parse.urlparse(endpoint)
        self.host = u.netloc
        self.key, self.secret, self.region = key, secret, region
        self.local = threading.local()

    def _conn(self):
        c = getattr(self.local, "conn", None)
        if c is None:
            c = http.client.HTTPConnection(self.host, timeout=60)
            self.local.conn = c
        return c

    def request(self, method, path, body=b"", query=""):
        path = _uri_encode(path, True)
        extra = {"content-length": str(len(body))} if method == "PUT" else None
        h = sign_headers(method, self.host, path, query, self.key, self.secret, self.region,
                         extra)
        for attempt in range(3):
            c = self._conn()
            try:
                c.request(method, path + ("?" + query if query else ""), body=body or None,
                          headers=h)
                r = c.getresponse()
                data = r.read()
                return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data
            except (ConnectionError, http.client.HTTPException):
                c.close()
                self.local.conn = None
                if attempt == 2:
                    raise

    def put(self, bucket, key, data):
        st, h, body = self.request("PUT", "/%s/%s" % (bucket, key), data)
        if st != 200:
            raise RuntimeError("PUT %s/%s: %d %s" % (bucket, key, st, body[:300]))
        return h.get("etag")

    def delete(self, bucket, key):
        st, _, body = self.request("DELETE", "/%s/%s" % (bucket, key))
        if st not in (200, 204):
            raise RuntimeError("DELETE %s/%s: %d %s" % (bucket, key, st, body[:300]))

    def put_many(self, bucket, items, threads=8):
        """items: list of (key, bytes)."""
        errors = []
        lock = threading.Lock()
        it = iter(items)

        def worker():
            while True:
                with lock:
                    nxt = next(it, None)
                if nxt is None:
                    return
                try:
                    self.put(bucket, nxt[0], nxt[1])
                except Exception as e:  # noqa: BLE001 - reported below
                    errors.append(e)
                    return

        ts = [threading.Thread(target=worker) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        if errors:
            raise errors[0]


# ---- the proxy ----

class Request:
    def __init__(self, n, method, target, headers):
        self.n = n  # 0-based, in arrival order
        self.method = method
        self.target = target
        self.path = urllib.parse.unquote(target.partition("?")[0])
        self.headers = headers  # lower-case names

    def __repr__(self):
        return "%d %s %s %s" % (self.n, self.method, self.target,
                                self.headers.get("range", ""))


class Proxy:
    """HTTP/1.1 proxy to 127.0.0.1:@upstream_port.

    delay_ms: added before every request is forwarded.
    fault(req) -> None | "503" | "truncate" | "close" | "stall": what to do with a
        request. "truncate" answers with a Content-Length larger than the body it
        sends, then closes; "close" closes the connection halfway through the body;
        "stall" waits stall_s seconds before forwarding (a server that hangs).
    hook(req): runs (in the proxy's thread) before the request is forwarded.
    secrets: {access key: secret}: when set, requests must carry a valid
        AWS SigV4 signature, else 403 with an S3 error document.
    """

    def __init__(self, upstream_port, delay_ms=0, fault=None, hook=None, secrets=None,
                 port=None, stall_s=5.0):
        self.upstream_port = upstream_port
        self.stall_s = stall_s
        self.delay_ms = delay_ms
        self.fault = fault
        self.hook = hook
        self.secrets = secrets
        self.port = port or free_port()
        self.log = []  # Request objects with .status and .fault set
        self.n = 0
        self.lock = threading.Lock()
        self.loop = None
        self.thread = None
        self.server = None
        self.ready = threading.Event()

    @property
    def url(self):
        return "http://127.0.0.1:%d/" % self.port

    def start(self):
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("proxy did not start")
        return self

    def stop(self):
        if self.loop:
            self.loop.call_soon_threadsafe(self._shutdown)
            self.thread.join(10)

    def _shutdown(self):
        self.server.close()
        for t in asyncio.all_tasks(self.loop):
            t.cancel()
        self.loop.stop()

    def _run(self):
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._client, "127.0.0.1", self.port, backlog=1024))
        self.ready.set()
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    def requests(self, method=None):
        with self.lock:
            return [r for r in self.log if method is None or r.method == method]

    @staticmethod
    async def _read_head(reader):
        data = await reader.readuntil(b"\r\n\r\n")
        lines = data.decode("latin-1").split("\r\n")
        first = lines[0]
        headers = {}
        raw = []
        for ln in lines[1:]:
            if not ln:
                continue
            k, _, v = ln.partition(":")
            headers[k.strip().lower()] = v.strip()
            raw.append((k.strip(), v.strip()))
        return first, headers, raw

    @staticmethod
    async def _read_body(reader, headers, method, status=None):
        if method == "HEAD" or status in (204, 304) or (status is not None and status < 200):
            return b""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            out = b""
            while True:
                line = await reader.readuntil(b"\r\n")
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    return out
                out += await reader.readexactly(size)
                await reader.readexactly(2)
        n = int(headers.get("content-length", "0") or 0)
        return await reader.readexactly(n) if n else b""

    @staticmethod
    def _error(status, reason, code, message, head=False):
        body = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code>"
                "<Message>%s</Message></Error>" % (code, message)).encode()
        hdr = ("HTTP/1.1 %d %s\r\nContent-Type: application/xml\r\nContent-Length: %d\r\n"
               "\r\n" % (status, reason, len(body))).encode()
        return hdr + (b"" if head else body)

    async def _client(self, reader, writer):
        up_r = up_w = None
        try:
            while True:
                try:
                    first, headers, raw = await self._read_head(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                method, target, _ = first.split(" ", 2)
                body = await self._read_body(reader, headers, method if method != "HEAD"
                                             else "GET")
                with self.lock:
                    req = Request(self.n, method, target, headers)
                    self.n += 1
                    self.log.append(req)
                req.status = None
                req.fault = None
                if self.delay_ms:
                    await asyncio.sleep(self.delay_ms / 1000.0)
                if self.secrets is not None:
                    bad = verify_sigv4(method, target, headers, self.secrets)
                    if bad:
                        req.status = 403
                        writer.write(self._error(403, "Forbidden", bad[0], bad[1],
                                                 method == "HEAD"))
                        await writer.drain()
                        continue
                fault = self.fault(req) if self.fault else None
                req.fault = fault
                if fault == "503":
                    req.status = 503
                    writer.write(self._error(503, "Service Unavailable", "SlowDown",
                                             "Please reduce your request rate.",
                                             method == "HEAD"))
                    await writer.drain()
                    continue
                if fault == "stall":
                    await asyncio.sleep(self.stall_s)
                if self.hook:
                    self.hook(req)
                if up_w is None:
                    up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
                up_w.write(("%s\r\n" % first).encode("latin-1"))
                for k, v in raw:
                    up_w.write(("%s: %s\r\n" % (k, v)).encode("latin-1"))
                up_w.write(b"\r\n" + body)
                await up_w.drain()
                sfirst, sheaders, sraw = await self._read_head(up_r)
                status = int(sfirst.split(" ")[1])
                if status == 206 and sheaders.get("content-range", "").endswith("/0"):
                    # s3rver answers a range of an empty object with 206 and a
                    # Content-Length of 1 it never sends; S3 itself says 416
                    up_w.close()
                    up_r = up_w = None
                    req.status = 416
                    writer.write(self._error(416, "Requested Range Not Satisfiable",
                                             "InvalidRange", "The requested range is not "
                                             "satisfiable")
                                 .replace(b"\r\n\r\n", b"\r\nContent-Range: bytes */0\r\n\r\n", 1))
                    await writer.drain()
                    continue
                req.status = status
                sbody = await self._read_body(up_r, sheaders, method, status)
                if sheaders.get("connection", "").lower() == "close":
                    up_w.close()
                    up_r = up_w = None
                out = [sfirst]
                declared = len(sbody)
                if fault == "truncate" and sbody:
                    declared = len(sbody) + max(1, len(sbody) // 2)
                for k, v in sraw:
                    if k.lower() in ("transfer-encoding", "content-length"):
                        continue
                    out.append("%s: %s" % (k, v))
                if method != "HEAD" and status not in (204, 304):
                    out.append("Content-Length: %d" % declared)
                elif "content-length" in sheaders:
                    out.append("Content-Length: %s" % sheaders["content-length"])
                writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))
                if fault == "close" and sbody:
                    writer.write(sbody[:len(sbody) // 2])
                    await writer.drain()
                    return
                writer.write(sbody)
                await writer.drain()
                if fault == "truncate" and sbody:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:
            return
        finally:
            for w in (writer, up_w):
                if w is not None:
                    try:
                        w.close()
                    except Exception:  # noqa: BLE001 - closing anyway
                        pass
