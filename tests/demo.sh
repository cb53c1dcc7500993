#!/bin/sh
# make demo: a sample dataset on a stand-in NAS directory, granaryd over it,
# `granary warm`, then a reader through the LD_PRELOAD shim, cold and warm.
set -eu
BUILD=${BUILD:-build}
TOP=$(cd "$(dirname "$0")/.." && pwd)
case "$BUILD" in /*) ;; *) BUILD="$TOP/$BUILD" ;; esac
DEMO="$BUILD/demo"
FILES=${DEMO_FILES:-3000}
GRANARYD="$BUILD/daemon/granaryd"
GRANARY="$BUILD/client/granary"
SHIM="$BUILD/client/libgranary-preload.so"

rm -rf "$DEMO"
mkdir -p "$DEMO"
echo "== 1. a sample dataset: $FILES files in 30 class folders under $DEMO/nas"
/usr/bin/python3 - "$DEMO/nas" "$FILES" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(42)
for i in range(n):
    d = os.path.join(root, "train", "class%02d" % (i % 30))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "sample%05d.bin" % i), "wb") as f:
        f.write(rnd.randbytes(int(rnd.lognormvariate(10.3, 0.5))))
PY
du -sh "$DEMO/nas" | sed 's/^/   /'

cat > "$DEMO/granary.yaml" <<YAML
# The demo's settings; every other key keeps its built-in default.
socket: $DEMO/granary.sock
cache:
  dir: $DEMO/cache
  capacity: 4G
mounts:
  - path: $DEMO/nas
    backend: posix
    consistency: strict
YAML

echo "== 2. granaryd --config $DEMO/granary.yaml"
"$GRANARYD" --config "$DEMO/granary.yaml" 2>"$DEMO/granaryd.log" &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT INT TERM
export GRANARY_SOCKET="$DEMO/granary.sock"
i=0
until "$GRANARY" status >/dev/null 2>&1; do
	i=$((i + 1))
	if [ $i -gt 200 ] || ! kill -0 $PID 2>/dev/null; then
		echo "granaryd did not start:"
		cat "$DEMO/granaryd.log"
		exit 1
	fi
	sleep 0.05
done
sed 's/^/   /' "$DEMO/granaryd.log"

READER="$DEMO/reader.py"
cat > "$READER" <<'PY'
import os, sys, time
root, label = sys.argv[1], sys.argv[2]
paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)
t0 = time.perf_counter()
n = 0
for p in paths:
    with open(p, "rb") as f:
        n += len(f.read())
dt = time.perf_counter() - t0
print("   %-34s %6d files %8.1f MB in %6.3f s: %8.0f files/s %7.1f MB/s" % (
    label, len(paths), n / 1e6, dt, len(paths) / dt, n / 1e6 / dt))
PY

echo "== 3. a trainer reads the dataset through the shim, nothing cached (cold)"
LD_PRELOAD="$SHIM" /usr/bin/python3 "$READER" "$DEMO/nas" "cold, through granary (misses)"

echo "== 4. evict, then granary warm pre-loads the dataset"
"$GRANARY" evict "$DEMO/nas" >/dev/null
"$GRANARY" warm "$DEMO/nas" --jobs 16

echo "== 5. the same trainer again: every open is a hit on the local cache (warm)"
LD_PRELOAD="$SHIM" /usr/bin/python3 "$READER" "$DEMO/nas" "warm, through granary (hits)"
/usr/bin/python3 "$READER" "$DEMO/nas" "direct from the stand-in NAS"

echo "== 6. granary status"
"$GRANARY" status | sed 's/^/   /'

echo "== 7. stopping granaryd"
kill -TERM $PID
wait $PID || true
trap - EXIT INT TERM
tail -n 1 "$DEMO/granaryd.log" | sed 's/^/   /'
echo "The stand-in NAS is a local directory here, so direct reads are fast; on a"
echo "real NAS or object store the cold column is what trainers wait for."
