#!/usr/bin/env bash
# make test-valgrind, part 2: the real daemon under valgrind memcheck against the simulator.
#   scripts/valgrind-daemon.sh [BIN_DIR]        (default build-vg/bin)
#   VG_MODEL=1 scripts/valgrind-daemon.sh       the profile's model instead (slow: the engine)
# Starts `valgrind vlad` on configs/sim-arm.yaml with the synthetic policy (no model: the
# engine's BLAS would only slow valgrind down, the daemon's own threads, queues and sockets are
# what is checked), endpoints moved to ipc:// in a private folder, real time off. vlad-sim
# (not under valgrind) drives it on the wall clock for two reach and two whack episodes (about
# 12 s, every frame and action through the daemon), then vladctl asks for status and the
# daemon gets SIGTERM. The e-stop latch lives in the private folder too (not the user's). Passes when valgrind reports no error and no definite leak, and
# the daemon exits 0 (valgrind's --error-exitcode=9 would say otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$(pwd)
BIN=${1:-build-vg/bin}
command -v valgrind >/dev/null || { echo "valgrind-daemon: valgrind is not installed (scripts/deps.sh)" >&2; exit 1; }
for b in vlad vlad-sim vladctl; do
  [ -x "$BIN/$b" ] || { echo "valgrind-daemon: no $BIN/$b (build first)" >&2; exit 1; }
done
DIR=$(mktemp -d /tmp/vlad-vg-XXXXXX)
VG=
cleanup() {
  if [ -n "$VG" ] && kill -0 "$VG" 2>/dev/null; then kill -KILL "$VG" 2>/dev/null || true; fi
  rm -rf "$DIR"
}
trap cleanup EXIT

# the shipped profile, paths made absolute, endpoints private to this run
sed -e "s|\.\./|$SRC/|" \
    -e "s|^\(  observations:\).*|\1 ipc://$DIR/obs|" \
    -e "s|^\(  actions:\).*|\1 ipc://$DIR/act|" \
    -e "s|^\(  control:\).*|\1 ipc://$DIR/ctl|" \
    configs/sim-arm.yaml >"$DIR/profile.yaml"

policy=(--set policy.synthetic=true --set policy.model=)
[ "${VG_MODEL:-0}" = 1 ] && policy=()
valgrind --error-exitcode=9 --leak-check=full --errors-for-leak-kinds=definite \
    --show-leak-kinds=definite --track-origins=yes --num-callers=30 --log-file="$DIR/valgrind.log" \
    "$BIN/vlad" --profile "$DIR/profile.yaml" "${policy[@]}" \
    --set realtime=false --set safety.estop_file="$DIR/estop" >"$DIR/vlad.log" 2>&1 &
VG=$!
# wait until the daemon answers (valgrind takes a few seconds to start it)
up=0
for _ in $(seq 1 60); do
  if "$BIN/vladctl" --profile "$DIR/profile.yaml" status >/dev/null 2>&1; then up=1; break; fi
  kill -0 "$VG" 2>/dev/null || break
  sleep 0.5
done
if [ "$up" != 1 ]; then
  echo "valgrind-daemon: the daemon under valgrind did not answer status" >&2
  cat "$DIR/vlad.log" "$DIR/valgrind.log" >&2 || true
  exit 1
fi

sim_rc=0
"$BIN/vlad-sim" --profile "$DIR/profile.yaml" --clock wall --task reach,whack --episodes 2 \
    --seed 3 --expect-policy >"$DIR/sim.log" 2>&1 || sim_rc=$?
"$BIN/vladctl" --profile "$DIR/profile.yaml" status >"$DIR/status.txt" 2>&1 || true

kill -TERM "$VG"
rc=0
wait "$VG" || rc=$?
VG=

echo "== vlad-sim against vlad under valgrind (exit $sim_rc)"
cat "$DIR/sim.log"
echo "== vladctl status before SIGTERM"
cat "$DIR/status.txt"
echo "== the daemon's log (tail)"
tail -n 5 "$DIR/vlad.log"
echo "== valgrind summary (vlad exited $rc)"
sed -n '/HEAP SUMMARY/,$p' "$DIR/valgrind.log" | sed 's/^==[0-9]*== //'

fail=0
grep -q 'ERROR SUMMARY: 0 errors' "$DIR/valgrind.log" || { echo "valgrind-daemon: memcheck errors" >&2; fail=1; }
if grep -q 'definitely lost: [1-9]' "$DIR/valgrind.log"; then
  echo "valgrind-daemon: definite leaks" >&2; fail=1
fi
[ "$rc" = 0 ] || { echo "valgrind-daemon: vlad exited $rc after SIGTERM" >&2; fail=1; }
[ "$sim_rc" = 0 ] || { echo "valgrind-daemon: vlad-sim exited $sim_rc" >&2; fail=1; }
if [ "$fail" != 0 ]; then
  echo "== full valgrind log" >&2
  cat "$DIR/valgrind.log" >&2
  exit 1
fi
echo "valgrind-daemon: ok (no errors, no definite leaks, clean exit)"
