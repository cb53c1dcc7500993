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

# ASan + UBSan build; unit and integration tests under it (not the fuzzers,
# which build their own, nor the packaging and load tests).
sanitize: deps
	cmake -S . -B build-asan -G Ninja -DGRANARY_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ctest --output-on-failure -j 2 -L 'unit|integration' -E 'test_package|test_load'

# The unit tests under valgrind memcheck: any error or leak fails.
memcheck: build
	@set -e; for src in tests/unit/test_*.c; do \
		t=$(BUILD)/tests/$$(basename $$src .c); \
		echo "== valgrind $$t"; \
		valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
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
	rm -rf $(BUILD) build-asan
