# Thin wrapper over CMake. `make demo` and `make test` work on a fresh Debian 12.
BUILD ?= build
CMAKE_FLAGS ?=
JOBS ?= $(shell nproc)

.PHONY: all deps build test unit demo clean format sanitize fuzz soak

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

# ASan + UBSan build and test run.
sanitize:
	$(MAKE) test BUILD=build-asan CMAKE_FLAGS="-DGRANARY_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug"

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

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) build-asan
