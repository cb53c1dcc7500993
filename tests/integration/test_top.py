"""granary top against a real granaryd, as a script reads it and on a terminal.

A warm runs (its background fetches held to 512 KiB/s so it lasts a while)
while a reader keeps opening ten files that are already cached, after ten
misses and ten hits on them. `granary top --iterations 3 --interval 0.5` with
stdout on a pipe prints three plain blocks and no escape codes; each shows
nonzero fetches/s and backend bytes/s, a hit ratio over the interval of 100%
(only hits in it) and one since the start that matches the hits and misses it
prints, with the ten misses; the mount that was read shows the same and the
idle mount shows none.

Then, under tmux when it is installed: top draws a screen, q quits it with
exit status 0, Ctrl-C quits a second one the same way, and both leave the
terminal in canonical mode with echo on.
"""
import os
import re
import shutil
import subprocess
import threading
import time

from harness import GRANARY, Fail, check, make_tree, run

HEADER = re.compile(r"^granary top  ", re.M)
HIT = re.compile(r"^hit ratio  now (\S+), since start (\S+) \((\d+) hits, (\d+) misses\)$", re.M)
FETCHES = re.compile(r"^fetches    (\S+)/s, in flight (\d+), errors (\S+)/s", re.M)
BACKEND = re.compile(r"^bytes      local \S+ \S+, backend (\S+) (\S+)/s,", re.M)


def rate_value(text):
    """'42' -> 42.0, '12.3k' -> 12300.0"""
    mult = {"k": 1e3, "M": 1e6, "G": 1e9}.get(text[-1:], 1)
    return float(text.rstrip("kMG")) * mult


def percent(h, m):
    return "%.1f%%" % (100.0 * h / (h + m))


def mount_row(block, path):
    for line in block.splitlines():
        words = line.split()
        if words and words[0] == path:
            return words
    raise Fail("no row for %s in:\n%s" % (path, block))


def check_blocks(out, nas, idle):
    check("\033" not in out, "escape codes in output to a pipe:\n%r" % out[:500])
    starts = [m.start() for m in HEADER.finditer(out)]
    check(len(starts) == 3, "expected 3 blocks, got %d:\n%s" % (len(starts), out))
    blocks = [out[a:b] for a, b in zip(starts, starts[1:] + [len(out)])]
    for i, b in enumerate(blocks):
        m = FETCHES.search(b)
        check(m, "block %d has no fetches line:\n%s" % (i, b))
        check(rate_value(m.group(1)) > 0, "block %d: no fetches/s during a warm:\n%s" % (i, b))
        m = BACKEND.search(b)
        check(m and float(m.group(1)) > 0, "block %d: no backend bytes/s:\n%s" % (i, b))

        m = HIT.search(b)
        check(m, "block %d has no hit ratio line:\n%s" % (i, b))
        now, since, hits, misses = m.group(1), m.group(2), int(m.group(3)), int(m.group(4))
        check(misses == 10, "block %d: %d misses, expected the 10 first reads" % (i, misses))
        check(hits > 10, "block %d: %d hits: the reader's hits are missing" % (i, hits))
        check(since == percent(hits, misses),
              "block %d: since start %s, expected %s for %d hits and %d misses" % (
                  i, since, percent(hits, misses), hits, misses))
        check(now == "100.0%", "block %d: hit ratio over the interval %s, expected 100.0%% "
              "(only hits in it)" % (i, now))

        row = mount_row(b, nas)
        # MOUNT BACKEND HIT-NOW HIT-ALL MISS/S NEW/S OBJECTS BYTES(2 words)
        check(row[1] == "posix" and row[2] == "100.0%" and row[3] == since,
              "block %d: mount row %s, expected hit ratios 100.0%% and %s" % (i, row, since))
        check(row[4] == "0/s", "block %d: misses/s %s on the mount, expected 0/s" % (i, row[4]))
        check(rate_value(row[5].rstrip("/s")) > 0,
              "block %d: no new objects/s on the mount during the warm: %s" % (i, row))
        row = mount_row(b, idle)
        check(row[2] == "-" and row[3] == "-", "block %d: idle mount row %s" % (i, row))


def tmux_part(wd, d, nas):
    tmux = shutil.which("tmux")
    if not tmux:
        print("tmux is not installed: the terminal part of this test is skipped")
        return
    sock = os.path.join(wd.path, "tmux.sock")
    script = os.path.join(wd.path, "top.sh")
    with open(script, "w") as f:
        f.write("""trap : INT
export GRANARY_SOCKET='%s'
modes() { stty -a | tr ' ;' '\\n\\n' | grep -x -e '-\\?icanon' -e '-\\?echo' | sed "s/^/$1 /"; }
'%s' top --interval 0.2
echo "first-exit=$?"
modes first
read -r again
'%s' top --interval 0.2
echo "second-exit=$?"
modes second
exec sleep 120
""" % (d.socket, GRANARY, GRANARY))
    env = dict(os.environ)
    env.pop("TMUX", None)
    base = [tmux, "-S", sock, "-f", "/dev/null"]

    def pane():
        p = subprocess.run(base + ["capture-pane", "-p", "-t", "top"], capture_output=True,
                           text=True, env=env)
        return p.stdout

    def wait_for(pred, what, timeout=15):
        end = time.time() + timeout
        text = ""
        while time.time() < end:
            text = pane()
            if pred(text):
                return text
            time.sleep(0.1)
        raise Fail("%s; the pane shows:\n%s" % (what, text))

    subprocess.run(base + ["new-session", "-d", "-s", "top", "-x", "120", "-y", "40",
                           "sh " + script], check=True, env=env)
    try:
        screen = wait_for(lambda t: "(q quits)" in t and "hit ratio  now" in t,
                          "top drew no screen")
        check(nas in screen, "the screen has no row for %s:\n%s" % (nas, screen))
        check("cache      [" in screen, "no cache bar on a 120-column screen:\n" + screen)
        # a frame after the first has rates
        wait_for(lambda t: re.search(r"^fetches    \d", t, re.M), "top did not refresh")
        subprocess.run(base + ["send-keys", "-t", "top", "q"], check=True, env=env)
        text = wait_for(lambda t: "first-exit=" in t and "first echo" in t, "q did not quit top")
        check("first-exit=0" in text, "top quit by q exited non-zero:\n" + text)
        check("first icanon" in text and "first -icanon" not in text,
              "the terminal was left in non-canonical mode:\n" + text)
        check("first echo" in text and "first -echo" not in text,
              "the terminal was left without echo:\n" + text)

        subprocess.run(base + ["send-keys", "-t", "top", "Enter"], check=True, env=env)
        wait_for(lambda t: "(q quits)" in t, "the second top drew no screen")
        subprocess.run(base + ["send-keys", "-t", "top", "C-c"], check=True, env=env)
        text = wait_for(lambda t: "second-exit=" in t and "second echo" in t,
                        "Ctrl-C did not quit top")
        check("second-exit=0" in text, "top quit by Ctrl-C exited non-zero:\n" + text)
        check("second icanon" in text and "second -icanon" not in text,
              "Ctrl-C left the terminal in non-canonical mode:\n" + text)
        check("second echo" in text and "second -echo" not in text,
              "Ctrl-C left the terminal without echo:\n" + text)
    finally:
        subprocess.run(base + ["kill-server"], capture_output=True, env=env)


def main(wd):
    nas = os.path.join(wd.path, "nas")
    idle = os.path.join(wd.path, "idle")
    os.makedirs(idle)
    hot = make_tree(os.path.join(nas, "hot"), 10, dirs=1, prefix="h")
    make_tree(os.path.join(nas, "bulk"), 3000, min_size=512, max_size=4096, seed=2)
    d = wd.daemon([{"path": nas, "backend": "posix"}, {"path": idle, "backend": "posix"}],
                  fetch={"bg_rate": "512K"})
    d.start()

    # ten misses, then ten hits: 50% since the start
    c = d.conn()
    for _ in range(2):
        for rel in hot:
            r, _data = c.read(os.path.join(nas, "hot", rel))
            check(r.status == 0, "read %s: %s" % (rel, r.errmsg))
    st = d.status()["counters"]
    check((st["hits"], st["misses"]) == (10, 10), "counters after the first reads: %s" % st)

    warm = subprocess.Popen([GRANARY, "warm", "--quiet", os.path.join(nas, "bulk")],
                            env=d.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    stop = threading.Event()
    reads = [0]

    def reader():
        rc = d.conn()
        while not stop.is_set():
            for rel in hot:
                r, _data = rc.read(os.path.join(nas, "hot", rel))
                if r.status == 0:
                    reads[0] += 1
            time.sleep(0.01)
        rc.close()

    t = threading.Thread(target=reader, daemon=True)
    try:
        end = time.time() + 20
        while d.status()["counters"]["fetches"] <= 10 and time.time() < end:
            time.sleep(0.05)
        t.start()
        while reads[0] == 0 and time.time() < end:
            time.sleep(0.01)
        check(reads[0] > 0, "the reader read nothing")
        p = d.cli("top", "--iterations", "3", "--interval", "0.5", timeout=60)
        print(p.stdout)
        check(p.returncode == 0, "granary top exited %d: %s" % (p.returncode, p.stderr))
        check(warm.poll() is None, "the warm ended before top did: it proves nothing "
              "about rates during a warm")
        check_blocks(p.stdout, nas, idle)
    finally:
        stop.set()
        if t.is_alive():
            t.join(10)
    out, _ = warm.communicate(timeout=120)
    check(warm.returncode == 0, "warm failed:\n%s" % out)

    # usage errors
    for args in (["--interval", "0"], ["--interval", "x"], ["--iterations", "0"], ["extra"]):
        p = d.cli("top", *args)
        check(p.returncode == 2, "top %s exited %d, expected 2" % (args, p.returncode))

    tmux_part(wd, d, nas)
    d.stop()


if __name__ == "__main__":
    run(main, "top")
