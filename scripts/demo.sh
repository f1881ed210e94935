#!/usr/bin/env bash
# make demo: run the daemon against a robot and print what happened.
# (Until the simulator and the default model exist: the bundled fake robot.)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/bin
PROFILE=${PROFILE:-configs/sim-arm.yaml}
LOG=$(mktemp /tmp/vlad-demo-XXXXXX.log)

echo "== vlad demo: daemon + fake robot, profile $PROFILE"
$BIN/vlad --profile "$PROFILE" >"$LOG" 2>&1 &
VLAD=$!
trap 'kill $VLAD 2>/dev/null || true' EXIT
sleep 0.3
$BIN/vlad-fakebot --profile "$PROFILE" --seconds 4 &
BOT=$!
sleep 1
echo "-- vladctl instruction / estop / release while the robot runs"
$BIN/vladctl --profile "$PROFILE" instruction "touch the red target" >/dev/null
sleep 0.5
$BIN/vladctl --profile "$PROFILE" estop "demo" >/dev/null
sleep 1
$BIN/vladctl --profile "$PROFILE" release >/dev/null
wait $BOT
echo "-- vladctl status"
$BIN/vladctl --profile "$PROFILE" status
kill -TERM $VLAD
wait $VLAD
echo "-- vlad exited $? ; its log:"
cat "$LOG"
rm -f "$LOG"
