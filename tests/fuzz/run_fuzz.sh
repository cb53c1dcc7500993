#!/bin/sh
# Build the libFuzzer targets with clang (ASan + UBSan) in a build directory of
# their own and run each for a bounded time over its seed corpus.
#
#   tests/fuzz/run_fuzz.sh [--seconds N] [--build-dir DIR] [--jobs N]
#                          [--merge-seeds] [TARGET...]
#
# --seconds N     time per target (default 15: the ctest entry); `make fuzz`
#                 passes 600
# --build-dir DIR where the clang build, the growing corpus (DIR/corpus/T),
#                 logs (DIR/logs/T.log) and crash inputs (DIR/artifacts/) go;
#                 default build-fuzz at the top of the source tree
# --jobs N        targets run at the same time (default 1)
# --merge-seeds   afterwards, add the inputs that reach new coverage to
#                 tests/fuzz/corpus/T (to commit by hand)
#
# Seeds (tests/fuzz/corpus/T/) are only read. Exit 0 when every target ran
# clean, 1 when one found a crash, a leak or a broken invariant (its input is
# kept under artifacts/ and named in the output), 77 when clang is missing.
set -u

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
seconds=15
build="$src/build-fuzz"
jobs=1
merge=0
targets=""

while [ $# -gt 0 ]; do
	case "$1" in
	--seconds) seconds=$2; shift 2 ;;
	--build-dir) build=$2; shift 2 ;;
	--jobs) jobs=$2; shift 2 ;;
	--merge-seeds) merge=1; shift ;;
	-h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	-*) echo "run_fuzz.sh: unknown option $1" >&2; exit 2 ;;
	*) targets="$targets $1"; shift ;;
	esac
done
[ -n "$targets" ] || targets="fuzz_proto fuzz_config fuzz_path fuzz_s3_list"

cc=$(command -v clang || true)
if [ -z "$cc" ]; then
	echo "SKIP: clang is not installed (make deps installs it); libFuzzer needs it"
	exit 77
fi

generator=""
command -v ninja >/dev/null 2>&1 && generator="-G Ninja"
mkdir -p "$build"
# shellcheck disable=SC2086
if ! cmake -S "$here" -B "$build" $generator -DCMAKE_C_COMPILER="$cc" \
	>"$build/configure.log" 2>&1; then
	cat "$build/configure.log"
	echo "FAIL: configuring the fuzz targets failed"
	exit 1
fi
# shellcheck disable=SC2086
if ! cmake --build "$build" --target $targets >"$build/build.log" 2>&1; then
	tail -n 60 "$build/build.log"
	echo "FAIL: building the fuzz targets failed"
	exit 1
fi

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
mkdir -p "$build/logs" "$build/artifacts"

# run_one TARGET: fuzz it; the verdict is the exit code, the story in the log
run_one() {
	t=$1
	seeds="$here/corpus/$t"
	work="$build/corpus/$t"
	log="$build/logs/$t.log"
	dict=""
	# a wire message is at most 64 KiB; configs, paths and listings need less
	case "$t" in
	fuzz_proto) max_len=65536 ;;
	fuzz_path) max_len=9000 ;;
	*) max_len=16384 ;;
	esac
	mkdir -p "$work"
	[ -f "$here/$t.dict" ] && dict="-dict=$here/$t.dict"
	# shellcheck disable=SC2086
	"$build/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
		-max_len="$max_len" -print_final_stats=1 -artifact_prefix="$build/artifacts/$t-" \
		$dict "$work" "$seeds" >"$log" 2>&1
}

# summary TARGET RC: one line per target with its figures
summary() {
	t=$1
	rc=$2
	log="$build/logs/$t.log"
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
	corp=$(grep -o 'corp: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
	if [ "$rc" -eq 0 ]; then
		printf '%-14s ok    %ss  %s runs (%s/s)  coverage %s  corpus %s\n' "$t" "$seconds" \
			"${execs:-?}" "${rate:-?}" "${cov:-?}" "${corp:-?}"
	else
		printf '%-14s FAIL  exit %s; log %s\n' "$t" "$rc" "$log"
		grep -E 'ERROR: |invariant broken|runtime error|SUMMARY' "$log" | head -n 8
		grep -o "Test unit written to .*" "$log" | head -n 1
	fi
}

failed=0
# shellcheck disable=SC2086
set -- $targets
while [ $# -gt 0 ]; do
	n=0
	while [ $# -gt 0 ] && [ "$n" -lt "$jobs" ]; do
		run_one "$1" &
		eval "pid_$n=\$! tgt_$n=\$1"
		n=$((n + 1))
		shift
	done
	j=0
	while [ "$j" -lt "$n" ]; do
		eval "pid=\$pid_$j t=\$tgt_$j"
		wait "$pid"
		rc=$?
		summary "$t" "$rc"
		[ "$rc" -eq 0 ] || failed=1
		j=$((j + 1))
	done
done

if [ "$merge" -eq 1 ]; then
	for t in $targets; do
		"$build/$t" -merge=1 "$here/corpus/$t" "$build/corpus/$t" \
			>"$build/logs/$t.merge.log" 2>&1 &&
			echo "$t: seeds merged into $here/corpus/$t"
	done
fi

[ "$failed" -eq 0 ] || exit 1
exit 0
