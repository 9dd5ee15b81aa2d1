# Thin wrapper over CMake. `make test` and `make demo` start from a fresh
# Debian 12 machine: they install the dependencies first.
BUILD ?= build
JOBS ?= $(shell nproc)
RECIPE ?= recipes/debian-12-minimal.toml
DEMO_OUT ?= out/debian-12-minimal
PREFIX ?= /usr/local

.PHONY: all deps configure build test test-unit test-tool test-integration test-matrix demo bench fuzz install clean

all: build

deps:
	./scripts/install-deps.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_INSTALL_PREFIX=$(PREFIX)

configure: $(BUILD)/build.ninja

build: configure
	cmake --build $(BUILD) -j $(JOBS)

test: deps
	$(MAKE) build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 1500 -LE matrix

test-unit: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -L unit

test-tool: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -L tool

test-integration: build
	cd $(BUILD) && ctest --output-on-failure -L integration

# Other architectures and suites, baked and booted: about an hour on 2 cores,
# most of it an arm64 bake's package scripts under qemu-user.
test-matrix: deps
	$(MAKE) build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -L matrix

demo: deps
	$(MAKE) build
	$(BUILD)/kiln bake $(RECIPE) -o $(DEMO_OUT)
	@# A demo instance left by an earlier run goes first; none is the usual case.
	@$(BUILD)/kiln destroy demo >/dev/null 2>&1 || true
	$(BUILD)/kiln boot $(DEMO_OUT) --name demo --detach --wait-ready
	$(BUILD)/kiln list
	$(BUILD)/kiln shutdown demo --wait

bench: build
	./bench/run-all.sh

# `make fuzz FUZZ_SECONDS=600 FUZZ_TARGETS="tar_reader_fuzz"`: libFuzzer
# with ASan and UBSan, each target in turn (tests/fuzz/run-fuzzers.sh).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
fuzz: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) ./tests/fuzz/run-fuzzers.sh $(FUZZ_TARGETS)

install: build
	cmake --install $(BUILD)

clean:
	rm -rf $(BUILD)
