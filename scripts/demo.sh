#!/usr/bin/env bash
# make demo: the daemon with the default model against the bundled simulator.
#  1. the scripted expert (the reference), in lockstep
#  2. vlad + the default model (VLASH scheduling) driving the simulated arm, in lockstep
#  3. vlad in real time against the simulator; while it acts, vladctl asks it questions (the
#     answers stream on lang.<robot>, decoded on the frame's shared prefill) and for its
#     running commentary; vladctl status at the end
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/bin
PROFILE=${PROFILE:-configs/sim-arm.yaml}
EPISODES=${EPISODES:-5}
MODEL=models/vlad-default.safetensors
LOG=$(mktemp /tmp/vlad-demo-XXXXXX.log)
VLAD=
cleanup() { [ -n "$VLAD" ] && kill "$VLAD" 2>/dev/null; rm -f "$LOG"; }
trap cleanup EXIT

echo "== 1. scripted expert (reference), $EPISODES episodes per task, lockstep"
$BIN/vlad-sim --profile "$PROFILE" --expert --task all --episodes "$EPISODES" --seed 1 --clock lockstep --quiet

if [ ! -f "$MODEL" ]; then
  echo "no $MODEL: train it with training/make_default_model.sh"
  exit 0
fi

echo
echo "== 2. vlad + the default model (async.mode vlash), $EPISODES episodes per task, lockstep"
$BIN/vlad --profile "$PROFILE" --set clock=lockstep >"$LOG" 2>&1 &
VLAD=$!
sleep 0.5
$BIN/vlad-sim --profile "$PROFILE" --task all --episodes "$EPISODES" --seed 1 --clock lockstep \
    --expect-policy --quiet
kill -TERM $VLAD; wait $VLAD || true; VLAD=

echo
echo "== 3. vlad in real time (wall clock), whack, $EPISODES episodes; questions while it acts"
$BIN/vlad --profile "$PROFILE" >"$LOG" 2>&1 &
VLAD=$!
sleep 0.5
$BIN/vlad-sim --profile "$PROFILE" --task whack --episodes "$EPISODES" --seed 2 --clock wall \
    --expect-policy --quiet &
SIM=$!
sleep 2
for q in "which colour is the target?" "where is the target?" "is a target visible?" ""; do
  if [ -n "$q" ]; then echo "\$ vladctl ask \"$q\""; else echo "\$ vladctl ask    (the running commentary)"; fi
  $BIN/vladctl --profile "$PROFILE" ask "$q" || true
  sleep 0.7
done
wait $SIM
$BIN/vladctl --profile "$PROFILE" status
kill -TERM $VLAD; wait $VLAD; echo "vlad exited $?"; VLAD=
echo "-- vlad's log:"
cat "$LOG"
