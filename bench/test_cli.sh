#!/usr/bin/env bash
# vlad-bench's command line, registered by bench/CMakeLists.txt:
#   test_cli.sh opts BIN       every subcommand's option table: a bad value or an unknown option
#                              exits 2 naming the option; --help exits 0 with the table
#   test_cli.sh plot BIN DIR   --plot DIR writes PNGs (vlash in its quickest setting, engine
#                              --quick); without gnuplot the benchmark still exits 0 and says so;
#                              vlash's table columns and JSON fields
#   test_cli.sh determinism BIN DIR   vlash twice with one seed: the same JSON
#   test_cli.sh serve BIN DIR  vlad-bench serve --quick: its table and JSON fields, lockstep exact,
#                              --resume
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
    expect_bad "--modes: 'fast': expected sync, naive, vlash or merge" vlash --modes sync,fast
    expect_bad "--modes: 'naive,vlash': sync must be listed" vlash --modes naive,vlash
    expect_bad "--seed-set: 'test': expected one of dev|held-out" vlash --seed-set test
    expect_bad "--seed: 1000000: run seeds from 1000000 on are the held-out set" vlash --seed 1000000
    expect_bad "--bootstrap: 5 is out of range" vlash --bootstrap 5
    expect_bad "--merge-weight: 2 is out of range" vlash --merge-weight 2
    expect_bad "--tasks: 'fly' is not a task" vlash --tasks reach,fly --seeds-only
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
    if "$bin" --help | grep -q "^  serve "; then
        expect_bad "--robots: '1,9': 9 is out of range 1..8" serve --robots 1,9
        expect_bad "--rtt" serve --rtt 0,x
        expect_bad "--modes: 'fast': expected lockstep, wall or both" serve --modes fast
        expect_bad "--images: 'png': expected one of raw|jpeg" serve --images png
        expect_bad "--jpeg-quality: 0 is out of range" serve --jpeg-quality 0
        subs="engine policy vlash soak kv serve"
    else
        subs="engine policy vlash soak kv"
    fi
    for sub in $subs; do
        out=$("$bin" $sub --help 2>/dev/null); rc=$?
        [ "$rc" -eq 0 ] || err "vlad-bench $sub --help: exit $rc"
        grep -q "^usage: vlad-bench $sub" <<<"$out" || err "vlad-bench $sub --help: no usage line"
        grep -q -- "--json FILE" <<<"$out" || err "vlad-bench $sub --help: --json not listed"
    done
    "$bin" vlash --help | grep -q -- "--episodes N .*\[1..100000\] (default 50)" ||
        err "vlad-bench vlash --help: --episodes without its bounds and default"
    for o in --modes --seed-set --held-out --bootstrap --merge-weight --seeds-only; do
        "$bin" vlash --help | grep -q -- "^  $o" || err "vlad-bench vlash --help: $o not listed"
    done
    # the held-out seed set: none of its episode seeds among the training data's or the dev
    # sample's (exit 0, both counts 0); a run seed of the training data shares them all (exit 1)
    out=$("$bin" vlash --seeds-only --held-out --episodes 200 --tasks reach,track,whack 2>&1); rc=$?
    [ "$rc" -eq 0 ] || err "vlash --seeds-only --held-out: exit $rc"
    grep -q "^seed set held-out: run seed 1000001 " <<<"$out" || err "held-out: no seed line: $out"
    grep -q "training episodes (training/make_default_model.sh): 0;" <<<"$out" ||
        err "held-out: shares episodes with the training data: $out"
    grep -q "every task): 0$" <<<"$out" || err "held-out: shares episodes with the dev seeds: $out"
    out=$("$bin" vlash --seeds-only --seed 101 --tasks reach --episodes 300 2>/dev/null); rc=$?
    [ "$rc" -eq 1 ] || err "vlash --seeds-only --seed 101 (a training seed): exit $rc, want 1"
    grep -q "make_default_model.sh): 300$" <<<"$out" || err "seed 101: the overlap not counted: $out"
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
    for f in vlash-trajectory vlash-latency vlash-success vlash-completion vlash-speedup; do
        is_png "$dir/png/$f.png" || err "$dir/png/$f.png: missing or not a PNG"
        grep -q "^picture: $dir/png/$f.png" "$dir/vlash.out" || err "vlash did not report $f.png"
    done
    # the table's columns and the JSON's fields for every cell
    grep -q "| success \[Wilson 95%\] | completion s \[bootstrap 95%\] (n) | completion speed-up vs sync, paired" \
        "$dir/vlash.out" || err "vlash: the table lacks its success/completion/speed-up columns"
    grep -q "^seed set dev: run seed 1;" "$dir/vlash.out" || err "vlash: no seed set line"
    for k in success_wilson95_lo completion_boot95_lo_s completion_speedup_vs_sync \
             completion_speedup_boot95_hi completion_speedup_pairs fraction_of_ideal \
             execution_rate_speedup_vs_sync '"seed_set"' '"disjoint"'; do
        grep -q "$k" "$dir/vlash.json" || err "vlash.json: no $k"
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
determinism)
    # vlash with a fixed seed (episodes and bootstrap): the same JSON twice (4 short runs)
    dir=$3
    rm -rf "$dir"; mkdir -p "$dir"
    work=$(mktemp -d "${TMPDIR:-/tmp}/vlad-bench-det.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    for i in 1 2; do
        "$bin" vlash --episodes 2 --deltas 4 --tasks whack --modes sync,naive --no-wall --jobs 2 \
            --work "$work/r$i" --json "$dir/det$i.json" --plot '' >"$dir/det$i.out" 2>&1 ||
            err "vlad-bench vlash (run $i): exit $? (see $dir/det$i.out)"
    done
    [ -s "$dir/det1.json" ] || err "vlash wrote no JSON"
    if ! cmp -s "$dir/det1.json" "$dir/det2.json"; then
        err "vlash: two runs with one seed wrote different JSON (runs kept in $work)"
        diff "$dir/det1.json" "$dir/det2.json" | head -20 >&2
        trap - EXIT
    fi
    grep -q '"completion_speedup_vs_sync"' "$dir/det1.json" || err "det1.json: no completion_speedup_vs_sync"
    ;;
serve)
    # vlad-bench serve --quick: N = 1, 2 robots on one vlad-serve, lockstep and wall clock, RTT 0
    # and 20 ms, one reach episode each, the batching baselines and the local references; the
    # table's columns and the JSON's fields (behaviour only: nothing timed is asserted)
    dir=$3
    rm -rf "$dir"; mkdir -p "$dir"
    work=$(mktemp -d "${TMPDIR:-/tmp}/vlad-bench-serve.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    "$bin" serve --quick --work "$work" --json "$dir/serve.json" >"$dir/serve.out" 2>&1 ||
        err "vlad-bench serve --quick: exit $? (see $dir/serve.out)"
    [ $fail -eq 0 ] || trap - EXIT
    grep -q "| clock | N | RTT ms | server | success \[Wilson 95%\] | local engine, same Δ | exact | chunk p50 / p99 ms | Δ ticks | stalls / ep | req/s | mean batch | bytes / req |" \
        "$dir/serve.out" || err "serve: the table lacks its columns"
    grep -q "^batching gain" "$dir/serve.out" || err "serve: no batching-gain lines"
    j=$dir/serve.json
    [ -s "$j" ] || err "serve wrote no JSON"
    for k in '"cells"' '"batching_gain"' '"local_references"' '"per_robot"' chunk_latency_p50_ms \
             chunk_latency_p99_ms delay_ticks_mean stall_ticks_per_episode success_wilson95_lo \
             success_wilson95_hi requests_per_s mean_batch request_bytes '"local_reference"' \
             '"max_batch_1"' '"independent"' '"machine"' '"episode_success"'; do
        grep -q "$k" "$j" || err "serve.json: no $k"
    done
    # 4 lockstep + 4 wall-clock shared cells, the two baselines at N = 2; lockstep is exact
    [ "$(grep -cE '"kind":[[:space:]]*"remote"' "$j")" -eq 10 ] || err "serve.json: expected 10 remote cells"
    [ "$(grep -cE '"exact":[[:space:]]*true' "$j")" -eq 4 ] || err "serve.json: the lockstep cells are not all exact"
    grep -qE '"robots":[[:space:]]*2' "$j" || err "serve.json: no N = 2 cell"
    # --resume reads the finished cells back: the same table, nothing run again
    "$bin" serve --quick --resume --work "$work" --json "$dir/resumed.json" >"$dir/resumed.out" 2>&1 ||
        err "vlad-bench serve --quick --resume: exit $?"
    [ "$(grep -c 'from .*cell.json' "$dir/resumed.out")" -ge 10 ] || err "--resume ran cells again"
    diff <(grep '^| lockstep' "$dir/serve.out") <(grep '^| lockstep' "$dir/resumed.out") >/dev/null ||
        err "--resume: another lockstep table"
    ;;
*)
    echo "usage: test_cli.sh opts|plot|determinism|serve BIN [DIR]" >&2
    exit 2
    ;;
esac
[ $fail -eq 0 ] && echo "ok"
exit $fail
