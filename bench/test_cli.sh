#!/usr/bin/env bash
# vlad-bench's command line, registered by bench/CMakeLists.txt:
#   test_cli.sh opts BIN       every subcommand's option table: a bad value or an unknown option
#                              exits 2 naming the option; --help exits 0 with the table
#   test_cli.sh plot BIN DIR   --plot DIR writes PNGs (vlash in its quickest setting, engine
#                              --quick); without gnuplot the benchmark still exits 0 and says so
set -u
mode=$1 bin=$2
fail=0
err() { echo "FAIL: $*" >&2; fail=1; }

# expect_bad WANT_IN_STDERR ARGS...: exit 2 and the message names the option
expect_bad() {
    local want=$1; shift
    local out rc
    out=$("$bin" "$@" 2>&1 >/dev/null); rc=$?
    [ "$rc" -eq 2 ] || err "vlad-bench $*: exit $rc, want 2"
    grep -qF -- "$want" <<<"$out" || err "vlad-bench $*: no '$want' in: $(head -1 <<<"$out")"
}

is_png() { [ -s "$1" ] && [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]; }

case $mode in
opts)
    expect_bad "--episodes: 0 is out of range" vlash --episodes 0
    expect_bad "--episodes: expected an integer, got 'x'" vlash --episodes x
    expect_bad "unknown option '--bogus'" vlash --bogus 1
    expect_bad "--episodes needs a value" vlash --episodes
    expect_bad "--deltas" vlash --deltas 0,x
    expect_bad "--deltas" vlash --deltas 0,99
    expect_bad "--jobs: 9 is out of range" vlash --jobs 9
    expect_bad "--episodes: 0 is out of range" policy --episodes 0
    expect_bad "--mode: 'fast': expected one of sync|naive|vlash" policy --mode fast
    expect_bad "--K: -1 is out of range" policy --K -1
    expect_bad "--threads: 0 is out of range" engine --threads 0
    expect_bad "--widen: 'some'" engine --widen some
    expect_bad "--only: 'big'" kv --only big
    expect_bad "--closed-loop-clock" kv --closed-loop-clock sometimes
    expect_bad "--frames: expected an integer" kv --frames 1.5
    expect_bad "--minutes: 0 is out of range" soak --minutes 0
    expect_bad "--seed: expected an unsigned integer" soak --seed -3
    expect_bad "unexpected argument 'stray'" soak stray
    for sub in engine policy vlash soak kv; do
        out=$("$bin" $sub --help 2>/dev/null); rc=$?
        [ "$rc" -eq 0 ] || err "vlad-bench $sub --help: exit $rc"
        grep -q "^usage: vlad-bench $sub" <<<"$out" || err "vlad-bench $sub --help: no usage line"
        grep -q -- "--json FILE" <<<"$out" || err "vlad-bench $sub --help: --json not listed"
    done
    "$bin" vlash --help | grep -q -- "--episodes N .*\[1..100000\] (default 50)" ||
        err "vlad-bench vlash --help: --episodes without its bounds and default"
    ;;
plot)
    dir=$3
    rm -rf "$dir"; mkdir -p "$dir"
    if ! command -v gnuplot >/dev/null; then
        echo "gnuplot not installed: skipped" >&2
        exit 77
    fi
    # the runs' ipc:// sockets live in --work: a short path (sun_path holds 107 bytes)
    work=$(mktemp -d "${TMPDIR:-/tmp}/vlad-bench-plot.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    "$bin" vlash --episodes 1 --deltas 0,4 --tasks reach,track --no-wall --jobs 2 \
        --work "$work" --json "$dir/vlash.json" --plot "$dir/png" >"$dir/vlash.out" 2>&1 ||
        err "vlad-bench vlash --plot: exit $? (see $dir/vlash.out; runs in $work, kept)"
    [ $fail -eq 0 ] || trap - EXIT
    for f in vlash-trajectory vlash-latency vlash-success vlash-completion; do
        is_png "$dir/png/$f.png" || err "$dir/png/$f.png: missing or not a PNG"
        grep -q "^picture: $dir/png/$f.png" "$dir/vlash.out" || err "vlash did not report $f.png"
    done
    "$bin" engine --quick --only default --no-twin --plot "$dir/png" >"$dir/engine.out" 2>&1 ||
        err "vlad-bench engine --plot: exit $? (see $dir/engine.out)"
    is_png "$dir/png/engine-breakdown.png" || err "$dir/png/engine-breakdown.png: missing or not a PNG"
    # without gnuplot on PATH: one line saying so, exit 0, no picture
    PATH=/nonexistent "$bin" engine --quick --only default --no-twin --plot "$dir/nognuplot" \
        >"$dir/nognuplot.out" 2>&1 || err "vlad-bench engine without gnuplot: exit $?"
    grep -q "gnuplot not found" "$dir/nognuplot.out" || err "no 'gnuplot not found' message"
    [ ! -e "$dir/nognuplot/engine-breakdown.png" ] || err "a picture without gnuplot?"
    ;;
*)
    echo "usage: test_cli.sh opts|plot BIN [DIR]" >&2
    exit 2
    ;;
esac
[ $fail -eq 0 ] && echo "ok"
exit $fail
