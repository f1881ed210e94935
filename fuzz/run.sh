#!/usr/bin/env bash
# fuzz/run.sh — build and run the libFuzzer targets (fuzz/README.md).
#   fuzz/run.sh build        configure + build build-fuzz/ (clang, -DVLAD_FUZZ=ON, target `fuzzers`)
#   fuzz/run.sh test         build, replay fuzz/crashes/<target>/, then FUZZ_RUNS (20000) executions
#                            of each target from its seed corpus, seed 1; any finding fails.
#                            Without clang/libFuzzer and without root to install it: skips (exit 0)
#   fuzz/run.sh fuzz [SECS]  build, then each target for SECS seconds (60), its corpus growing in
#                            build-fuzz/corpus-work/<target>; findings in build-fuzz/artifacts/<target>/
# Environment: JOBS (build jobs, 2), FUZZ_RUNS, FUZZ_MAX_TIME (test: seconds cap per target, 30),
# FUZZ_TARGETS (space-separated subset), CLANG (the compiler, clang).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-test}
secs=${2:-60}
B=build-fuzz
JOBS=${JOBS:-2}
CLANG=${CLANG:-clang}
targets=${FUZZ_TARGETS:-"fuzz_observation fuzz_command fuzz_profile fuzz_safetensors fuzz_config"}

have_libfuzzer() {
    command -v "$CLANG" >/dev/null 2>&1 || return 1
    local d
    d=$(mktemp -d)
    printf '%s\n' 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n);' \
        'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }' \
        >"$d/probe.c"
    local ok=0
    "$CLANG" -fsanitize=fuzzer,address,undefined "$d/probe.c" -o "$d/probe" >/dev/null 2>&1 || ok=1
    rm -rf "$d"
    return $ok
}

if ! have_libfuzzer; then
    msg="clang with libFuzzer is not installed (Debian: apt-get install clang libclang-rt-14-dev; scripts/deps.sh does it as root)"
    if [ "$mode" = test ] && [ "$(id -u)" -ne 0 ]; then
        echo "test-fuzz: skipped: $msg" >&2
        exit 0
    fi
    echo "fuzz: $msg" >&2
    exit 1
fi

cmake -S . -B "$B" -DCMAKE_C_COMPILER="$CLANG" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVLAD_WERROR=ON \
    -DVLAD_TESTS=OFF -DVLAD_FUZZ=ON >/dev/null
# (run from make: without its MAKEFLAGS, the nested make prints no "Entering directory" lines)
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL cmake --build "$B" -j "$JOBS" --target fuzzers
[ "$mode" = build ] && exit 0

export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
mkdir -p "$B/logs"
common=(-timeout=10 -rss_limit_mb=2048 -print_final_stats=1)

stats() { # the last status line of a libFuzzer log: executions, coverage, exec/s
    grep -E '^#[0-9]+' "$1" | tail -1 || true
}

fail=0
for t in $targets; do
    bin=$B/fuzz/$t
    [ -x "$bin" ] || { echo "fuzz: $bin not built" >&2; exit 1; }
    case $t in # longest input: the seeds' sizes and a little room to grow
        fuzz_safetensors) maxlen=16384 ;; fuzz_profile) maxlen=8192 ;; *) maxlen=4096 ;;
    esac
    dict=()
    [ -f "fuzz/dict/$t.dict" ] && dict=(-dict="fuzz/dict/$t.dict")
    art=$B/artifacts/$t
    mkdir -p "$art"
    log=$B/logs/$t.log
    if [ "$mode" = test ]; then
        # 1. every committed reproducer of a fixed bug runs clean
        shopt -s nullglob
        crashes=(fuzz/crashes/$t/*)
        shopt -u nullglob
        if [ ${#crashes[@]} -gt 0 ]; then
            if ! "$bin" "${common[@]}" "${crashes[@]}" >"$log" 2>&1; then
                echo "test-fuzz: $t: a reproducer in fuzz/crashes/$t/ fails again:" >&2
                tail -40 "$log" >&2
                fail=1
                continue
            fi
        fi
        # 2. a short deterministic run from the seed corpus
        work=$B/corpus-test/$t
        rm -rf "$work" && mkdir -p "$work"
        if "$bin" "${common[@]}" "${dict[@]}" -seed=1 -runs="${FUZZ_RUNS:-20000}" \
            -max_total_time="${FUZZ_MAX_TIME:-30}" -artifact_prefix="$art/" \
            "$work" "fuzz/corpus/$t" >"$log" 2>&1; then
            printf 'test-fuzz: %-17s ok  (%d reproducers) %s\n' "$t" ${#crashes[@]} "$(stats "$log")"
        else
            echo "test-fuzz: $t: FAILED (input saved in $art/, log $log):" >&2
            tail -60 "$log" >&2
            fail=1
        fi
    else
        work=$B/corpus-work/$t
        mkdir -p "$work"
        echo "fuzz: $t for ${secs}s (corpus $work, findings $art/)"
        if "$bin" "${common[@]}" "${dict[@]}" -max_len="$maxlen" -max_total_time="$secs" \
            -artifact_prefix="$art/" \
            "$work" "fuzz/corpus/$t" >"$log" 2>&1; then
            echo "fuzz: $t: $(stats "$log")"
        else
            echo "fuzz: $t: FINDING (saved in $art/, log $log):" >&2
            tail -60 "$log" >&2
            fail=1
        fi
    fi
done
exit $fail
