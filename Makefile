# Thin wrapper over CMake. `make demo` and `make test` work on a fresh Debian 12.
BUILD ?= build
CMAKE_FLAGS ?=
JOBS ?= $(shell nproc)

.PHONY: all deps build test unit demo clean format sanitize

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

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) build-asan
