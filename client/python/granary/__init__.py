"""granary: Python binding of libgranary, the client of the granaryd cache.

    import granary
    granary.warm(["/mnt/nas/imagenet/train"])       # pre-warm, returns a summary
    fd = granary.Client().open("/mnt/nas/imagenet/train/n01/x.JPEG")

    sampler = granary.HintedSampler(train_set)      # PyTorch: sends each epoch's order
    loader = torch.utils.data.DataLoader(train_set, sampler=sampler, ...)

The library is found through $GRANARY_LIB, else a build tree next to this
source (build*/client/libgranary.so), else the system's libgranary.so. The
socket is $GRANARY_SOCKET, else /run/granary/granary.sock. torch is imported
only when HintedSampler is used.
"""

import ctypes
import ctypes.util
import errno as _errno
import glob
import os
import threading
import time

__all__ = ["Client", "GranaryError", "warm", "hint", "epoch", "status", "default_client",
           "HintedSampler", "SOURCE_LOCAL", "SOURCE_BACKEND", "SOURCE_PEER",
           "SOURCE_DIRECT"]

SOURCE_LOCAL = 0    # already cached
SOURCE_BACKEND = 1  # fetched from the backend now
SOURCE_PEER = 2     # fetched from a peer of the rack
SOURCE_DIRECT = 3   # readable, not kept (the cache policy declined it)

_SOURCE_NAMES = {0: "local", 1: "backend", 2: "peer", 3: "direct"}
_FTYPES = {1: "file", 2: "dir", 3: "other"}
_STATES = {0: "absent", 1: "cached", 2: "fetching", 3: "pinned"}
_BACKENDS = {1: "posix", 2: "http", 3: "s3"}

O_NOFETCH = 0x1
MOUNT_FAILOPEN = 0x1


class GranaryError(OSError):
    """A request that failed: errno, strerror, and the daemon's own words."""

    def __init__(self, err, what=None, message=""):
        err = abs(err)
        text = _lib().granary_strerror(err).decode(errors="replace")
        if message:
            text = "%s (%s)" % (text, message)
        if what is not None:
            super().__init__(err, text, what)
        else:
            super().__init__(err, text)
        self.message = message


# ---- the library ----

class _Stat(ctypes.Structure):
    _fields_ = [("size", ctypes.c_uint64), ("mtime_ns", ctypes.c_int64),
                ("mode", ctypes.c_uint32), ("type", ctypes.c_uint32),
                ("source", ctypes.c_uint32), ("cached", ctypes.c_uint32),
                ("ino", ctypes.c_uint64)]


class _Entry(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("type", ctypes.c_uint32),
                ("size", ctypes.c_uint64), ("state", ctypes.c_uint32)]


_PROGRESS_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_uint64, ctypes.c_int,
                                ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
_ENTRY_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(_Entry), ctypes.c_void_p)
_MOUNT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32, ctypes.c_uint32,
                             ctypes.c_void_p)
_FILE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_uint64, ctypes.c_void_p)

_lib_handle = None
_lib_lock = threading.Lock()


def _candidates():
    env = os.environ.get("GRANARY_LIB")
    if env:
        yield env
        return
    here = os.path.dirname(os.path.abspath(__file__))
    # client/python/granary -> the source tree's root, where build*/ lives
    for root in (os.path.normpath(os.path.join(here, "..", "..", "..")),
                 os.path.normpath(os.path.join(here, "..", ".."))):
        for path in sorted(glob.glob(os.path.join(root, "build*", "client", "libgranary.so"))):
            yield path
    found = ctypes.util.find_library("granary")
    if found:
        yield found
    yield "libgranary.so.0"


def _declare(lib):
    P = ctypes.c_void_p
    S = ctypes.c_char_p
    I = ctypes.c_int
    U64P = ctypes.POINTER(ctypes.c_uint64)
    sigs = {
        "granary_connect": (P, [S, ctypes.POINTER(I)]),
        "granary_close": (None, [P]),
        "granary_open": (I, [P, S, ctypes.c_uint, ctypes.POINTER(_Stat)]),
        "granary_stat": (I, [P, S, ctypes.POINTER(_Stat)]),
        "granary_warm_one": (I, [P, S, U64P, ctypes.POINTER(I)]),
        "granary_warm": (I, [P, ctypes.POINTER(S), ctypes.c_size_t, ctypes.c_uint,
                             _PROGRESS_FN, P]),
        "granary_list": (I, [P, S, _ENTRY_FN, P]),
        "granary_ls": (I, [P, S, _ENTRY_FN, P]),
        "granary_walk": (I, [P, S, _FILE_FN, P]),
        "granary_evict": (I, [P, S, U64P]),
        "granary_drop": (I, [P, S, U64P]),
        "granary_pin": (I, [P, S, I, U64P]),
        "granary_epoch_name": (I, [P, S, S, U64P, ctypes.c_char_p, ctypes.c_size_t]),
        "granary_hint": (ctypes.c_long, [P, S, ctypes.POINTER(S), ctypes.c_size_t]),
        "granary_status_json": (I, [P, ctypes.POINTER(ctypes.c_void_p)]),
        "granary_verify": (I, [P, S, U64P, U64P]),
        "granary_mounts": (I, [P, _MOUNT_FN, P]),
        "granary_last_error": (S, [P]),
        "granary_strerror": (S, [I]),
        "granary_free": (None, [P]),
        "granary_version": (S, []),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args


def _lib():
    global _lib_handle
    if _lib_handle is not None:
        return _lib_handle
    with _lib_lock:
        if _lib_handle is None:
            tried = []
            for path in _candidates():
                try:
                    lib = ctypes.CDLL(path)
                    _declare(lib)
                except (OSError, AttributeError) as e:
                    tried.append("%s: %s" % (path, e))
                    continue
                _lib_handle = lib
                break
            else:
                raise ImportError("libgranary.so not found (set GRANARY_LIB); tried:\n  " +
                                  "\n  ".join(tried))
    return _lib_handle


def _path(p):
    """An absolute path as bytes: relative ones are taken from the working directory,
    '..' resolved as written (symbolic links are not followed: mounts are prefixes)."""
    p = os.fspath(p)
    if isinstance(p, bytes):
        p = os.fsdecode(p)
    return os.fsencode(os.path.abspath(p))


def _check(rc, what=None):
    if rc < 0:
        msg = _lib().granary_last_error(None) or b""
        raise GranaryError(-rc, what, msg.decode(errors="replace"))
    return rc


def _strv(items):
    arr = (ctypes.c_char_p * max(len(items), 1))()
    arr[:len(items)] = items
    return arr


# ---- the client ----

class Client:
    """One connection to granaryd. Thread-safe: threads may share it, but a
    forked child must make its own (the module's default client does so).

    Failures raise GranaryError (an OSError: .errno, .strerror, .message)."""

    def __init__(self, socket=None):
        lib = _lib()
        err = ctypes.c_int(0)
        self._socket = socket
        self._g = lib.granary_connect(os.fsencode(socket) if socket else None,
                                      ctypes.byref(err))
        if not self._g:
            where = socket or os.environ.get("GRANARY_SOCKET") or "/run/granary/granary.sock"
            raise GranaryError(-err.value, where)

    def close(self):
        if getattr(self, "_g", None):
            _lib().granary_close(self._g)
            self._g = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def _handle(self):
        if not self._g:
            raise ValueError("granary client is closed")
        return self._g

    # -- files --

    def open(self, path, nofetch=False):
        """A read-only descriptor of the cached copy of path (fetched first on a
        miss unless nofetch). The caller closes it (os.close, or os.fdopen)."""
        st = _Stat()
        p = _path(path)
        return _check(_lib().granary_open(self._handle(), p, O_NOFETCH if nofetch else 0,
                                          ctypes.byref(st)), os.fsdecode(p))

    def stat(self, path):
        """{'size', 'mtime_ns', 'mode', 'type', 'cached', 'ino'} as the daemon sees path."""
        st = _Stat()
        p = _path(path)
        _check(_lib().granary_stat(self._handle(), p, ctypes.byref(st)), os.fsdecode(p))
        return {"size": st.size, "mtime_ns": st.mtime_ns, "mode": st.mode,
                "type": _FTYPES.get(st.type, "other"), "cached": bool(st.cached),
                "ino": st.ino}

    def warm_one(self, path):
        """Cache one file; returns (size, source) with source one of SOURCE_*."""
        size = ctypes.c_uint64(0)
        source = ctypes.c_int(0)
        p = _path(path)
        _check(_lib().granary_warm_one(self._handle(), p, ctypes.byref(size),
                                       ctypes.byref(source)), os.fsdecode(p))
        return size.value, source.value

    def walk(self, path):
        """Every regular file at or under path, as [(path, size)], listed through
        the daemon (object-store mounts included)."""
        out = []

        def cb(p, size, arg):
            out.append((os.fsdecode(p), size))
            return 0

        p = _path(path)
        _check(_lib().granary_walk(self._handle(), p, _FILE_FN(cb), None), os.fsdecode(p))
        return out

    def warm(self, paths, jobs=16, progress=None):
        """Cache every file named in paths (a directory stands for everything under
        it), with up to jobs requests in flight. progress, when given, is called as
        progress(path, size, source, error, message) for every file.

        Returns a summary dict: files, bytes, fetched, cached, direct, seconds and
        failed, a list of (path, errno, text). Raises GranaryError only when the
        connection itself fails."""
        if isinstance(paths, (str, bytes, os.PathLike)):
            paths = [paths]
        start = time.monotonic()
        summary = {"files": 0, "bytes": 0, "fetched": 0, "cached": 0, "direct": 0,
                   "failed": [], "seconds": 0.0}
        dirs = []
        lib = _lib()

        def record(path, size, source, error, message):
            path = os.fsdecode(path)
            message = (message or b"").decode(errors="replace")
            if error == -_errno.EISDIR and dirs is not None:
                dirs.append(path)
                return
            if error:
                text = lib.granary_strerror(error).decode(errors="replace")
                if message:
                    text += " (%s)" % message
                summary["failed"].append((path, -error, text))
            else:
                summary["files"] += 1
                summary["bytes"] += size
                key = {SOURCE_LOCAL: "cached", SOURCE_DIRECT: "direct"}.get(source, "fetched")
                summary[key] += 1
            if progress is not None:
                progress(path, size, source, -error, message)

        def run(batch):
            errors = []

            def cb(path, size, source, error, message, arg):
                try:
                    record(path, size, source, error, message)
                except BaseException as e:  # noqa: B902 - carried out of the C callback
                    errors.append(e)
                    return 1
                return 0

            arr = _strv(batch)
            rc = lib.granary_warm(self._handle(), arr, len(batch), jobs, _PROGRESS_FN(cb),
                                  None)
            if errors:
                raise errors[0]
            if rc < 0 and rc != -_errno.ECANCELED:
                _check(rc, "warm")

        run([_path(p) for p in paths])
        # Directories answered EISDIR: list them through the daemon and warm what is inside.
        found, dirs = dirs, None
        if found:
            files = []
            for d in found:
                try:
                    files.extend(os.fsencode(p) for p, _ in self.walk(d))
                except GranaryError as e:
                    summary["failed"].append((d, e.errno, e.strerror))
            if files:
                run(files)
        summary["seconds"] = time.monotonic() - start
        return summary

    # -- listings --

    def _entries(self, fn, path):
        out = []

        def cb(e, arg):
            e = e.contents
            out.append({"name": os.fsdecode(e.name), "type": _FTYPES.get(e.type, "other"),
                        "size": e.size, "state": _STATES.get(e.state, "?")})
            return 0

        p = _path(path)
        _check(fn(self._handle(), p, _ENTRY_FN(cb), None), os.fsdecode(p))
        return out

    def list(self, path):
        """The entries of a directory: [{'name', 'type', 'size', 'state'}]."""
        return self._entries(_lib().granary_list, path)

    def ls(self, path):
        """Like list(), with each entry's cache state; path may be a file."""
        return self._entries(_lib().granary_ls, path)

    def mounts(self):
        """[{'path', 'backend', 'failopen'}] for every mount the daemon serves."""
        out = []

        def cb(path, backend, flags, arg):
            out.append({"path": os.fsdecode(path), "backend": _BACKENDS.get(backend, "?"),
                        "failopen": bool(flags & MOUNT_FAILOPEN)})
            return 0

        _check(_lib().granary_mounts(self._handle(), _MOUNT_FN(cb), None), "mounts")
        return out

    # -- cache management --

    def _count(self, fn, path, *extra):
        n = ctypes.c_uint64(0)
        p = _path(path)
        _check(fn(self._handle(), p, *extra, ctypes.byref(n)), os.fsdecode(p))
        return n.value

    def evict(self, path):
        """Drop the cached copies at or under path; returns how many."""
        return self._count(_lib().granary_evict, path)

    def drop(self, path):
        """The source of path was changed: forget its cached copy."""
        return self._count(_lib().granary_drop, path)

    def pin(self, path):
        return self._count(_lib().granary_pin, path, 0)

    def unpin(self, path):
        return self._count(_lib().granary_pin, path, 1)

    def verify(self, path=None):
        """Check cached copies against their checksums: (checked, bad_dropped)."""
        checked, bad = ctypes.c_uint64(0), ctypes.c_uint64(0)
        _check(_lib().granary_verify(self._handle(), _path(path) if path else None,
                                     ctypes.byref(checked), ctypes.byref(bad)), "verify")
        return checked.value, bad.value

    # -- epochs --

    def epoch(self, dataset=None, path=None):
        """Advance a dataset's epoch (by name, or the dataset path belongs to);
        returns the new epoch number."""
        n = ctypes.c_uint64(0)
        name = ctypes.create_string_buffer(512)
        _check(_lib().granary_epoch_name(self._handle(),
                                         dataset.encode() if dataset else None,
                                         _path(path) if path else None, ctypes.byref(n),
                                         name, len(name)), "epoch")
        return n.value

    def hint(self, paths, dataset=None):
        """Send the order in which the next epoch reads paths (replacing the last
        one). Returns how many paths the daemon took."""
        items = [_path(p) for p in paths]
        rc = _lib().granary_hint(self._handle(), dataset.encode() if dataset else None,
                                 _strv(items), len(items))
        return _check(rc, "hint")

    # -- status --

    def status(self):
        """The daemon's status document as a dict."""
        import json
        out = ctypes.c_void_p()
        lib = _lib()
        _check(lib.granary_status_json(self._handle(), ctypes.byref(out)), "status")
        try:
            text = ctypes.string_at(out).decode()
        finally:
            lib.granary_free(out)
        return json.loads(text)


# ---- module-level helpers on a shared client ----

_default = None
_default_lock = threading.Lock()


def default_client():
    """The module's shared Client, connected on first use (and again after the
    daemon restarted)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Client()
        return _default


def _forget_default_after_fork():
    # A forked child (a DataLoader worker) must not share the parent's
    # connection: replies would go to whichever process reads first. The old
    # handle is left alone (its lock may have been held at fork time).
    global _default
    _default = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_default_after_fork)


def _with_default(fn):
    """Run fn(client); reconnect once when the daemon went away in between."""
    global _default
    c = default_client()
    try:
        return fn(c)
    except GranaryError as e:
        if e.errno not in (_errno.ECONNRESET, _errno.EPIPE, _errno.ENOTCONN):
            raise
        with _default_lock:
            if _default is c:
                _default = None
            c.close()
        return fn(default_client())


def warm(paths, jobs=16, progress=None):
    """Warm files and directories; returns the summary of Client.warm."""
    return _with_default(lambda c: c.warm(paths, jobs=jobs, progress=progress))


def hint(paths, dataset=None):
    """Send the next epoch's read order; returns how many paths were taken."""
    paths = list(paths)
    return _with_default(lambda c: c.hint(paths, dataset))


def epoch(name=None, path=None):
    """Advance the epoch of dataset name (or of the dataset path belongs to)."""
    return _with_default(lambda c: c.epoch(name, path))


def status():
    return _with_default(lambda c: c.status())


def __getattr__(name):
    # HintedSampler needs torch: build it on first use only.
    if name == "HintedSampler":
        from granary.sampler import _make_hinted_sampler
        cls = _make_hinted_sampler()
        globals()[name] = cls
        return cls
    raise AttributeError("module 'granary' has no attribute %r" % name)
