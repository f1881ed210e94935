#!/usr/bin/env bash
# make test-tsan: the tests of a ThreadSanitizer build (cmake -DVLAD_TSAN=ON), daemons included.
#   scripts/test-tsan.sh [BUILD_DIR] [ctest args...]   (default build-tsan; -LE "slow|python")
# Every test and every vlad / vlad-sim a test starts is built with TSan and runs with
#   halt_on_error=1   a race ends the process at once (exit 66): a daemon that dies fails its
#                     test through missing replies or its exit status;
#   log_path          each process writes its reports to BUILD_DIR/tsan-reports/tsan.PID, and
#                     any such file fails this script, so a race in a child whose exit the test
#                     never checks is not lost;
#   suppressions      tests/tsan.supp: uninstrumented Debian libraries only.
# ctest runs in a session of its own: a test that TSan halts cannot stop the daemon it started,
# so what is left in that session when ctest returns is killed (by pid) and named.
set -uo pipefail
cd "$(dirname "$0")/.."
SRC=$(pwd)
BUILD=${1:-build-tsan}
shift || true
[ $# -gt 0 ] || set -- -LE "slow|python"
JOBS=${JOBS:-$(nproc)}
REPORTS=$SRC/$BUILD/tsan-reports
[ -f "$BUILD/CTestTestfile.cmake" ] || { echo "test-tsan: no $BUILD (cmake -DVLAD_TSAN=ON first)" >&2; exit 1; }
rm -rf "$REPORTS" && mkdir -p "$REPORTS"
SIDFILE=$SRC/$BUILD/tsan-session

export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$SRC/tests/tsan.supp log_path=$REPORTS/tsan"
rc=0
(cd "$BUILD" && setsid -w bash -c 'echo $$ >"$0"; exec ctest --output-on-failure -j "$1" "${@:2}"' \
    "$SIDFILE" "$JOBS" "$@") || rc=$?

# processes of that session still alive: children of tests that were halted before clean-up
sid=$(cat "$SIDFILE" 2>/dev/null || true)
left=()
if [ -n "$sid" ]; then
  for d in /proc/[0-9]*; do
    st=$(cat "$d/stat" 2>/dev/null) || continue
    rest=${st##*) }                      # fields after "(comm) ": state ppid pgrp session ...
    read -r _ _ _ s _ <<<"$rest"
    [ "$s" = "$sid" ] && left+=("${d#/proc/}")
  done
fi
if [ ${#left[@]} -gt 0 ]; then
  for p in "${left[@]}"; do
    echo "test-tsan: killing pid $p left behind: $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)"
    kill -KILL "$p" 2>/dev/null || true
  done
fi
rm -f "$SIDFILE"

shopt -s nullglob
reports=("$REPORTS"/tsan.*)
if [ ${#reports[@]} -gt 0 ]; then
  for f in "${reports[@]}"; do
    echo "== ThreadSanitizer report $f"
    cat "$f"
  done
  echo "test-tsan: ${#reports[@]} process(es) with ThreadSanitizer reports (above; kept in $REPORTS)" >&2
  exit 1
fi
[ "$rc" -eq 0 ] || { echo "test-tsan: ctest failed ($rc), no ThreadSanitizer report" >&2; exit "$rc"; }
echo "test-tsan: all tests passed, no ThreadSanitizer reports"
