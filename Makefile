# Thin wrapper over CMake. `make demo` and `make test` work on a fresh Debian 12.
BUILD ?= build
CMAKE_FLAGS ?=
JOBS ?= $(shell nproc)

.PHONY: all deps build test unit demo clean format sanitize memcheck fuzz soak

all: build

deps:
	@tests/lib/deps.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja $(CMAKE_FLAGS)

build: $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

# Every test: cmocka unit tests, then integration tests against real daemons.
test: deps build
	cd $(BUILD) && ctest --output-on-failure -j 2

unit: build
	cd $(BUILD) && ctest --output-on-failure -L unit

# Start granaryd over a sample dataset, warm it, read it through the shim.
demo: deps build
	@BUILD=$(BUILD) tests/demo.sh

# ASan + UBSan build in $(ASAN_BUILD); the unit and integration tests under
# it (the fuzzers build their own). ASan and LeakSanitizer reports go to
# $(ASAN_BUILD)/sanitizer-logs (log_path), which must stay empty: a leak found
# when a daemon exits fails the run even where a test does not check the
# daemon's exit status. UBSan stops a process at its first report
# (-fno-sanitize-recover), which fails the test that started it; the report
# is in that daemon's log (the test prints it). The log directory is sticky and
# world-writable: test_security runs readers and a daemon as other users.
# Left out, each for a reason:
# - test_package checks the .deb built from the build directory: its Depends
#   and files would be those of an instrumented build (libasan), not of what
#   ships; `make test` runs it on the release build.
# About 5 minutes on 2 CPUs, build included (docs/reliability.md).
ASAN_BUILD ?= build-asan
SANITIZE_EXCLUDE ?= test_package
sanitize: deps
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DGRANARY_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	@logs=$(abspath $(ASAN_BUILD))/sanitizer-logs; rm -rf "$$logs"; mkdir -p "$$logs"; chmod 1777 "$$logs"; \
	cd $(ASAN_BUILD) && ASAN_OPTIONS=$${ASAN_OPTIONS:+$$ASAN_OPTIONS:}log_path=$$logs/asan \
		ctest --output-on-failure -j 2 -L 'unit|integration' -E '$(SANITIZE_EXCLUDE)'; \
	rc=$$?; \
	for f in "$$logs"/*; do [ -e "$$f" ] || continue; \
		echo "== sanitizer report $$f"; cat "$$f"; rc=1; done; \
	exit $$rc

# The unit tests under valgrind memcheck: any error, or a leak of memory no
# longer reachable (definite or indirect), fails. Memory still reachable at
# exit (libc, dlopen, libibverbs' providers) is not a leak.
memcheck: deps build
	@set -e; for src in tests/unit/test_*.c; do \
		t=$(BUILD)/tests/$$(basename $$src .c); \
		echo "== valgrind $$t"; \
		valgrind -q --error-exitcode=99 --leak-check=full \
			--errors-for-leak-kinds=definite,indirect \
			"$$t" >/dev/null || { echo "memcheck failed: $$t"; exit 1; }; \
	done

# libFuzzer targets (clang, ASan + UBSan), 10 minutes each over their seeds;
# FUZZ_SECONDS=60 for a shorter run. Crash inputs land in build-fuzz/artifacts.
FUZZ_SECONDS ?= 600
fuzz: deps
	tests/fuzz/run_fuzz.sh --seconds $(FUZZ_SECONDS) --build-dir $(CURDIR)/build-fuzz --jobs $(JOBS)

# The long loops that `make test` runs shortened: the load test in full
# (64 clients, 100,000 opens, three rounds) and 50 kill -9 rounds.
# Run directly, not by ctest, whose per-test timeout is sized for the short forms.
soak: deps build
	@for t in load crash; do \
		echo "== soak: test_$$t"; \
		GRANARY_SOAK=1 GRANARY_CRASH_ROUNDS=50 GRANARY_BUILD=$(abspath $(BUILD)) \
		GRANARY_SRC=$(CURDIR) PYTHONPATH=$(CURDIR)/tests/lib:$(CURDIR)/client/python \
		/usr/bin/python3 tests/integration/test_$$t.py || exit 1; \
	done

# The data-stall benchmark (tests/bench/stall): a trainer's GPU utilisation
# through granary against direct reads, rclone, s3fs and a local copy, plus
# warm read rates, warming time and a 1,000,000-object catalog. Rewrites the
# "Data stall" section of docs/benchmarks.md, docs/bench-plots/stall-*.png and
# tests/bench/results/stall.json. About 15 minutes on this 2-CPU machine.
BENCH_ENV = GRANARY_BUILD=$(abspath $(BUILD)) GRANARY_SRC=$(CURDIR) \
	GRANARY_LIB=$(abspath $(BUILD))/client/libgranary.so \
	PYTHONPATH=$(CURDIR)/tests/lib:$(CURDIR)/client/python
bench: deps build
	$(BENCH_ENV) /usr/bin/python3 tests/bench/stall/bench_stall.py $(BENCH_ARGS)

# The same harness on a tiny dataset, under 3 minutes: every contender is
# started, read through and stopped, and the tables are produced. It checks
# that the harness works, not speed; docs/ is left alone.
bench-quick: deps build
	$(BENCH_ENV) /usr/bin/python3 tests/bench/stall/bench_stall.py --quick $(BENCH_ARGS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
