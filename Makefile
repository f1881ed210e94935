# vlad — top-level entry points. Everything real lives in CMake; this file does set-up.
#   make demo   install missing packages (as root), build, run the demo
#   make test   install, build (release + ASan/UBSan + TSan + libFuzzer + valgrind), run every test
#   make build  just build into build/
#   make fuzz   run each libFuzzer target FUZZ_SECONDS (60) seconds (fuzz/README.md)
#   make test-tsan      ThreadSanitizer build (build-tsan/) and run of the tests, daemons included
#   make test-valgrind  memcheck (build-vg/): integration tests and the daemon against the sim
#   make soak           vlad-bench soak for SOAK_MINUTES (10) at 200 Hz (build-soak/)
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
FUZZ_SECONDS ?= 60
SOAK_MINUTES ?= 10

.PHONY: all deps build build-asan test test-release test-asan demo bench clean
.PHONY: fuzz-build test-fuzz fuzz
.PHONY: build-tsan test-tsan build-vg test-valgrind build-soak soak

all: build

deps:
	@scripts/deps.sh

build: deps
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DVLAD_WERROR=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build build -j $(JOBS)

build-asan: deps
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DVLAD_WERROR=ON -DVLAD_SANITIZE=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build build-asan -j $(JOBS)

test-release: build
	@cd build && ctest --output-on-failure -j $(JOBS)

test-asan: build-asan
	@cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --output-on-failure -j $(JOBS) -LE "slow|python"

# libFuzzer targets (clang, build-fuzz/): test-fuzz replays fuzz/crashes/ and runs each target
# briefly from fuzz/corpus/; it skips, saying so, where clang cannot be installed (not root)
fuzz-build: deps
	@JOBS=$(JOBS) fuzz/run.sh build

test-fuzz: deps
	@JOBS=$(JOBS) fuzz/run.sh test

fuzz: deps
	@JOBS=$(JOBS) fuzz/run.sh fuzz $(FUZZ_SECONDS)

# ThreadSanitizer (build-tsan/, Debug): every test but the slow and Python ones, and every
# vlad / vlad-sim they start, built with TSan too; any TSan report of any process fails
# (scripts/test-tsan.sh says how; tests/tsan.supp: uninstrumented Debian libraries only)
build-tsan: deps
	@cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DVLAD_WERROR=ON -DVLAD_TSAN=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build build-tsan -j $(JOBS)

test-tsan: build-tsan
	@JOBS=$(JOBS) scripts/test-tsan.sh build-tsan

# valgrind memcheck (build-vg/, Debug, no sanitizer): the two integration tests, then the real
# daemon under valgrind against vlad-sim (scripts/valgrind-daemon.sh); errors or definite
# leaks fail
VALGRIND = valgrind -q --error-exitcode=9 --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite
build-vg: deps
	@cmake -S . -B build-vg -DCMAKE_BUILD_TYPE=Debug -DVLAD_WERROR=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build build-vg -j $(JOBS)

test-valgrind: build-vg
	@for t in test_integration test_async_daemon; do \
		echo "== valgrind $$t"; \
		VLAD_BIN=$(CURDIR)/build-vg/bin VLAD_SRC=$(CURDIR) $(VALGRIND) build-vg/tests/$$t || exit 1; \
	done
	@scripts/valgrind-daemon.sh build-vg/bin

# soak: daemon + simulator + the default model at 200 Hz, wall clock (configs/sim-arm-200hz.yaml)
build-soak: deps
	@cmake -S . -B build-soak -DCMAKE_BUILD_TYPE=Release -DVLAD_WERROR=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build build-soak -j $(JOBS) --target vlad vlad-sim vlad-bench

soak: build-soak
	@build-soak/bin/vlad-bench soak --minutes $(SOAK_MINUTES) --json build-soak/soak.json

test: test-release test-asan test-fuzz test-tsan test-valgrind

demo: build
	@scripts/demo.sh

clean:
	rm -rf build build-asan build-fuzz build-tsan build-vg build-soak
