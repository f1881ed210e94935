#!/usr/bin/env bash
# compare.sh — the C engine vs ONNX Runtime (CPU EP, one thread each), same checkpoints, same
# inputs, interleaved rounds. See docs/BENCH_ORT.md.
#
#   bench/ort/compare.sh [--quick] [--only default|smolvla] [--rounds R] [--json FILE]
#                        [--ort-version V]
#
#   --quick        fewer rounds and inferences (a smoke run, minutes)
#   --only S       one scale: default (models/vlad-default.safetensors, 1.5 M params) or
#                  smolvla (vlad_config_smolvla(), 317 M params, random F32 weights, seed 1234)
#   --rounds R     rounds per scale (default: 11 at default scale, each process 10 warm-up +
#                  100 timed inferences; 7 at SmolVLA scale, 1 + 4; --quick: 3 of 3 + 10 and
#                  2 of 1 + 2)
#   --ort-version V  ONNX Runtime from npm onnxruntime-node@V installed under out/ort-V
#                  (default: the package.json pin, installed in bench/ort/node_modules)
#   --json FILE    where to write the aggregated results (default:
#                  bench/ort/out/runs/<UTC time>/result.json)
#
# Steps: builds the engine in build-ho (incremental) and bench/ort/out/c_runner, installs
# onnxruntime-node (package.json pin) if absent, writes the SmolVLA-scale checkpoint if absent,
# exports the ONNX graphs + inputs + twin reference (export.py, a python3 with torch)
# when stale,
# then per scale R rounds; each round runs one C process and one ORT process (the order
# alternates: C first in odd rounds, ORT first in even ones), each under GNU time -v
# (peak RSS), each doing W warm-up + N timed full inferences. aggregate.py prints the table.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK=$HERE/out
BUILD=$ROOT/build-ho
# the first python3 on PATH that imports torch (Debian's python3-torch lives beside its
# python3, which another interpreter may shadow on PATH)
PY_TORCH=
for py in $(type -ap python3); do
  if "$py" -c 'import torch' 2>/dev/null; then PY_TORCH=$py; break; fi
done
[ -n "$PY_TORCH" ] || { echo "compare.sh: no python3 on PATH imports torch (apt-get install python3-torch)" >&2; exit 1; }
PY=python3

quick=0 only="" rounds="" json="" ortv=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --only) only=${2:?}; shift ;;
    --rounds) rounds=${2:?}; shift ;;
    --json) json=${2:?}; shift ;;
    --ort-version) ortv=${2:?}; shift ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "compare.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
case "$only" in ""|default|smolvla) ;; *) echo "compare.sh: --only default|smolvla" >&2; exit 2 ;; esac
case "$rounds" in ""|[1-9]|[1-9][0-9]) ;; *) echo "compare.sh: --rounds 1..99" >&2; exit 2 ;; esac
scales="default smolvla"
[ -n "$only" ] && scales=$only
log() { echo "[compare $(date +%T)] $*" >&2; }
mkdir -p "$WORK"

# ---- C engine: build-ho and the runner ------------------------------------------------------
# the engine as the tree has it now: configure once, then an incremental build of the engine
# library and vlad-policy only (the rest of the tree is not needed here)
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  log "configuring $BUILD"
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DVLAD_WERROR=ON >/dev/null
fi
log "building the engine in $BUILD (vlad_policy, vlad-policy)"
cmake --build "$BUILD" -j2 --target vlad_policy vlad-policy >/dev/null
RUNNER=$WORK/c_runner
if [ ! -x "$RUNNER" ] || [ "$HERE/c_runner.c" -nt "$RUNNER" ] \
   || [ "$BUILD/policy/libvlad_policy.a" -nt "$RUNNER" ]; then
  log "building $RUNNER"
  # include and library folders from pkg-config (Debian's libcjson-dev, libopenblas-dev)
  # shellcheck disable=SC2046
  cc -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -I"$ROOT/policy" -I"$ROOT/common" \
     $(pkg-config --cflags libcjson openblas) "$HERE/c_runner.c" \
     "$BUILD/policy/libvlad_policy.a" "$BUILD/common/libvlad_common.a" \
     $(pkg-config --libs libcjson openblas) -lpng16 -lyaml -lpthread -lm -o "$RUNNER"
fi

# ---- ONNX Runtime ---------------------------------------------------------------------------
# --ignore-scripts: the CPU binaries ship inside the package (the install script only fetches
# the CUDA / TensorRT providers)
if [ -n "$ortv" ]; then
  ORTDIR=$WORK/ort-$ortv
  if [ ! -f "$ORTDIR/node_modules/onnxruntime-node/package.json" ]; then
    log "installing onnxruntime-node@$ortv into $ORTDIR"
    mkdir -p "$ORTDIR"
    npm install --prefix "$ORTDIR" --ignore-scripts --no-audit --no-fund --no-save \
      "onnxruntime-node@$ortv" >/dev/null
  fi
  export ORT_NODE_DIR=$ORTDIR
else
  ORTDIR=$HERE
  unset ORT_NODE_DIR
  if [ ! -f "$HERE/node_modules/onnxruntime-node/package.json" ]; then
    log "installing onnxruntime-node (package.json)"
    (cd "$HERE" && npm install --ignore-scripts --no-audit --no-fund >/dev/null)
  fi
fi
ORT_VERSION=$(node -p "require('$ORTDIR/node_modules/onnxruntime-node/package.json').version")
log "ONNX Runtime $ORT_VERSION (onnxruntime-node, CPU EP)"

# ---- checkpoints and exports ----------------------------------------------------------------
ckpt_of() {
  case "$1" in
    default) echo "$ROOT/models/vlad-default.safetensors" ;;
    smolvla) echo "$WORK/smolvla/model.safetensors" ;;
  esac
}
for s in $scales; do
  d=$WORK/$s
  mkdir -p "$d"
  ck=$(ckpt_of "$s")
  if [ ! -f "$ck" ]; then
    log "writing the SmolVLA-scale checkpoint $ck (vlad-policy random --preset smolvla --seed 1234)"
    "$BUILD/bin/vlad-policy" random --preset smolvla --seed 1234 --out "$ck"
  fi
  stale=0
  for f in prefix.onnx step.onnx noop.onnx reference.json meta.json inputs.bin obs.json; do
    if [ ! -f "$d/$f" ] || [ "$ck" -nt "$d/$f" ] || [ "$HERE/export.py" -nt "$d/$f" ]; then stale=1; fi
  done
  if [ $stale = 1 ]; then
    log "[$s] exporting ONNX + inputs + twin reference (float64) into $d"
    "$PY_TORCH" "$HERE/export.py" --model "$ck" --out "$d" 2> "$d/export.log" >&2 \
      || { cat "$d/export.log" >&2; exit 1; }
  fi
done

# ---- rounds ---------------------------------------------------------------------------------
RUN=$WORK/runs/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RUN"
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
FLAGS=$(grep -m1 '^flags' /proc/cpuinfo)
AVX512=no; case "$FLAGS" in *avx512f*) AVX512=yes ;; esac
cat > "$RUN/env.json" <<EOF
{"date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "cpu": "$CPU", "nproc": $(nproc), "avx512f": "$AVX512",
 "kernel": "$(uname -r)", "ort_version": "$ORT_VERSION", "node": "$(node --version)",
 "loadavg_start": "$(cut -d' ' -f1-3 /proc/loadavg)", "quick": $quick}
EOF

for s in $scales; do
  d=$WORK/$s
  out=$RUN/$s
  mkdir -p "$out"
  cp "$d/reference.json" "$d/meta.json" "$out/"
  if [ "$s" = default ]; then
    R=${rounds:-$([ $quick = 1 ] && echo 3 || echo 11)}
    IT=$([ $quick = 1 ] && echo 10 || echo 100); WU=$([ $quick = 1 ] && echo 3 || echo 10)
  else
    R=${rounds:-$([ $quick = 1 ] && echo 2 || echo 7)}
    IT=$([ $quick = 1 ] && echo 2 || echo 4); WU=1
  fi
  ck=$(ckpt_of "$s")
  for r in $(seq 1 "$R"); do
    order="c ort"; [ $((r % 2)) = 0 ] && order="ort c"
    for who in $order; do
      log "[$s] round $r/$R: $who ($WU warm-up + $IT timed; load $(cut -d' ' -f1 /proc/loadavg))"
      cut -d' ' -f1-3 /proc/loadavg > "$out/round$r.$who.load"
      if [ "$who" = c ]; then
        OPENBLAS_NUM_THREADS=1 env time -v -o "$out/round$r.c.time" \
          "$RUNNER" --model "$ck" --input "$d/obs.json" --iters "$IT" --warmup "$WU" --threads 1 \
          > "$out/round$r.c.json"
      else
        OMP_NUM_THREADS=1 env time -v -o "$out/round$r.ort.time" \
          node "$HERE/run_ort.js" "$d" --iters "$IT" --warmup "$WU" --spin 0 --opt all \
          > "$out/round$r.ort.json"
      fi
    done
  done
done
sed -i "s/\"quick\": $quick}/\"quick\": $quick, \"loadavg_end\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}/" "$RUN/env.json"
"$PY" "$HERE/aggregate.py" "$RUN" --json "${json:-$RUN/result.json}"
