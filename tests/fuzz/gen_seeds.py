#!/usr/bin/python3
"""Write the seed corpora of the fuzz targets into tests/fuzz/corpus/<target>/.

Run it again after a change to the wire format or the configuration keys; the
files it writes are committed. Inputs a fuzzing run found worth keeping are
added by `run_fuzz.sh --merge-seeds` next to these.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))

MAGIC, VERSION, REPLY = 0x594E5247, 1, 0x8000
T = dict(HELLO=1, OPEN=2, STAT=3, WARM=4, LIST=5, STATUS=6, LS=7, EVICT=8, DROP=9,
         PIN=10, EPOCH=11, HINT=12, VERIFY=13)
TAG = dict(STATUS=1, ERRMSG=2, PATH=3, FLAGS=4, SIZE=5, MTIME_NS=6, MODE=7, SOURCE=8,
           NAME=9, TYPE=10, COOKIE=11, JSON=12, COUNT=13, COUNT2=14, MOUNT=15,
           BACKEND=16, DATASET=17, EPOCH=18, STATE=19, CACHED=20, INO=21)


def item(tag, value):
    if isinstance(value, str):
        value = value.encode()
    return struct.pack("=HHI", TAG[tag], 0, len(value)) + value


def u32(v):
    return struct.pack("=I", v)


def i32(v):
    return struct.pack("=i", v)


def u64(v):
    return struct.pack("=Q", v)


def msg(mtype, items=(), mid=1, reply=False, version=VERSION):
    body = b"".join(item(t, v) for t, v in items)
    typ = (T[mtype] if isinstance(mtype, str) else mtype) | (REPLY if reply else 0)
    return struct.pack("=IHHII", MAGIC, version, typ, mid, len(body)) + body


def raw(mtype, body, mid=1):
    return struct.pack("=IHHII", MAGIC, VERSION, T[mtype], mid, len(body)) + body


def proto_seeds():
    nas = "/mnt/nas/datasets/train/n01440764/n01440764_10026.JPEG"
    return {
        "hello": msg("HELLO"),
        "open": msg("OPEN", [("PATH", nas)], 2),
        "open_nofetch": msg("OPEN", [("PATH", nas), ("FLAGS", u32(1))], 3),
        "open_messy_path": msg("OPEN", [("PATH", "//mnt/nas/./datasets//a/b/")], 4),
        "stat": msg("STAT", [("PATH", "/mnt/nas/datasets")], 5),
        "list_cookie": msg("LIST", [("PATH", "/mnt/nas/datasets/train"),
                                    ("COOKIE", "n01443537")], 6),
        "hint": msg("HINT", [("DATASET", "imagenet"), ("FLAGS", u32(3)),
                             ("PATH", "/granary/imagenet/a"), ("PATH", "/granary/imagenet/b")], 7),
        "epoch": msg("EPOCH", [("DATASET", "nas"), ("PATH", "/mnt/nas/datasets")], 8),
        "pin_unpin": msg("PIN", [("PATH", "/mnt/nas/datasets/train"), ("FLAGS", u32(1))], 9),
        "verify": msg("VERIFY", [], 10),
        "reply_error": msg("OPEN", [("STATUS", i32(-13)),
                                    ("ERRMSG", "uid 65534 may not read /x")], 2, reply=True),
        "reply_open": msg("OPEN", [("STATUS", i32(0)), ("SIZE", u64(110592)),
                                   ("MTIME_NS", u64(1767225600123456789)),
                                   ("MODE", u32(0o100644)), ("INO", u64(1234)),
                                   ("SOURCE", u32(0))], 2, reply=True),
        "reply_hello": msg("HELLO", [("STATUS", i32(0)), ("MOUNT", "/mnt/nas/datasets"),
                                     ("BACKEND", u32(1)), ("FLAGS", u32(1))], 1, reply=True),
        "reply_undecodable": msg(0, [("STATUS", i32(-74))], 0, reply=True),
        "truncated_item": raw("OPEN", struct.pack("=HHI", TAG["PATH"], 0, 100) + b"/short"),
        "bad_version": msg("OPEN", [("PATH", "/a")], version=9),
        "path_dotdot": msg("OPEN", [("PATH", "/mnt/nas/../etc/passwd")], 11),
        "path_nul": msg("OPEN", [("PATH", "/mnt/nas/a\0b")], 12),
    }


def config_seeds():
    with open(os.path.join(SRC, "config", "granary.yaml")) as f:
        example = f.read()
    return {
        "example.yaml": example,
        "minimal.yaml": "socket: /tmp/g.sock\ncache:\n  dir: /tmp/g-cache\n  capacity: 1G\n"
                        "mounts:\n  - path: /mnt/nas\n    backend: posix\n",
        "flow.yaml": "{socket: /s, cache: {dir: /c, capacity: 1.5T, high_watermark: 0.9, "
                     "low_watermark: 0.8}, mounts: [{path: /a, consistency: {ttl: 5m}}, "
                     "{path: /b, backend: http, url: 'http://h/b'}]}\n",
        "s3_peers.yaml": "mounts:\n  - path: /granary/x\n    backend: s3\n"
                         "    url: http://127.0.0.1:9000/bucket/x/\n    region: us-east-1\n"
                         "    allow_uids: [1000, 0]\n    allow_gids: []\n"
                         "peers:\n  self: n1\n  provider: \"tcp;ofi_rxm\"\n"
                         "  nodes:\n    - { name: n1, address: 127.0.0.1:7471 }\n"
                         "    - { name: n2, address: 127.0.0.1:7472 }\n"
                         "log:\n  level: debug\nmetrics:\n  listen: 127.0.0.1:9471\n",
        "anchors.yaml": "x: &a\n  dir: /c\ncache: *a\nfetch: {timeout: 250ms, bg_rate: 100M}\n",
        "bad_nested.yaml": "mounts:\n  - path: /a\n  - path: /a/b\n",
        "bad_type.yaml": "cache:\n  capacity: lots\n",
    }


def path_seeds():
    return {
        "simple": "/mnt/nas/datasets/train/x.JPEG\n/mnt/nas/datasets",
        "messy": "//mnt/./nas//datasets/./train/\n/mnt/nas/",
        "root": "/\n/",
        "dotdot": "/mnt/nas/../etc/passwd\n/mnt/nas",
        "dots_in_names": "/a/..b/c../.../.x\n/a",
        "sibling": "/mnt/nas2/x\n/mnt/nas",
        "long_name": "/a/" + "n" * 255 + "/b\n/a",
        "too_long_name": "/a/" + "n" * 256 + "\n/a",
        "relative": "a/b\n/a",
        "nul": "/a/b\0c\n/a",
    }


def s3_seeds():
    page = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        "<Name>bucket</Name><Prefix>train/</Prefix><KeyCount>4</KeyCount>"
        "<MaxKeys>4</MaxKeys><Delimiter>/</Delimiter><IsTruncated>true</IsTruncated>"
        "<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM="
        "</NextContinuationToken>"
        "<Contents><Key>train/a.jpg</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified>"
        "<ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag><Size>110592</Size>"
        "<StorageClass>STANDARD</StorageClass></Contents>"
        "<Contents><Key>train/b &amp; c.jpg</Key><Size>0</Size></Contents>"
        "<Contents><Key>train/caf\u00e9.jpg</Key><Size>18446744073709551615</Size></Contents>"
        "<CommonPrefixes><Prefix>train/n01440764/</Prefix></CommonPrefixes>"
        "<CommonPrefixes><Prefix>train/n01443537/</Prefix></CommonPrefixes>"
        "</ListBucketResult>")
    return {
        "page.xml": page,
        "last_page.xml": "<ListBucketResult><IsTruncated>false</IsTruncated>"
                         "<Contents><Key>k</Key><Size>7</Size></Contents></ListBucketResult>",
        "empty.xml": '<?xml version="1.0"?><ListBucketResult '
                     'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name>'
                     "<KeyCount>0</KeyCount><IsTruncated>false</IsTruncated></ListBucketResult>",
        "error.xml": '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchBucket</Code>'
                     "<Message>The specified bucket does not exist</Message>"
                     "<BucketName>b</BucketName><RequestId>4442587FB7D0A2F9</RequestId></Error>",
        "no_key.xml": "<ListBucketResult><Contents><Size>1</Size></Contents></ListBucketResult>",
        "bad_size.xml": "<ListBucketResult><Contents><Key>k</Key><Size>-1</Size></Contents>"
                        "</ListBucketResult>",
        "entities.xml": '<?xml version="1.0"?><!DOCTYPE l [<!ENTITY e "x&#38;y">]>'
                        "<ListBucketResult><Contents><Key>&e;&#x263A;&lt;</Key><Size>3</Size>"
                        "</Contents></ListBucketResult>",
        "malformed.xml": "<ListBucketResult><Contents><Key>k</Contents>",
    }


def write(target, seeds):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        if isinstance(data, str):
            data = data.encode()
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


def main():
    write("fuzz_proto", proto_seeds())
    write("fuzz_config", config_seeds())
    write("fuzz_path", path_seeds())
    write("fuzz_s3_list", s3_seeds())


if __name__ == "__main__":
    main()
