#!/usr/bin/env bash
# test_readme — the README's shell commands, checked and (the cheap ones) run.
#
#   check: every command line of every ```sh block of README.md must name something that
#          exists — build/bin/PROGRAM (built, and every --option on the line listed by
#          `PROGRAM --help`, or by `PROGRAM SUB --help` after a subcommand it lists), a `make` target of the Makefile, a script, a Python file or
#          module, a folder to cd into. Output lines and shell built-ins are not commands.
#   run:   every ```sh block preceded by the line `<!-- readme-test: run -->` runs as written,
#          as one bash script with `set -e`, in a scratch copy of the repository layout (its
#          configs/sim-arm.yaml on free loopback ports, with its own e-stop latch file):
#          build/bin, models, sim point at the real ones. A command whose comment says
#          "Ctrl-C" runs for 4 s and then gets SIGINT, as a user would end it.
# Usage: test_readme.sh [check|run|all]   (VLAD_SRC: the repository, VLAD_BIN: the programs)
set -euo pipefail

what=${1:-all}
SRC=$(cd "${VLAD_SRC:-.}" && pwd)
BIN=$(cd "${VLAD_BIN:-$SRC/build/bin}" && pwd)
README=$SRC/README.md
tmp=$(mktemp -d /tmp/vlad-readme-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail=0
err() { echo "test_readme: $*" >&2; fail=1; }

# ---- the blocks: $tmp/block-N.sh, and $tmp/run-N for the ones marked to run ----------
awk -v dir="$tmp" '
  /^<!-- readme-test: run -->/ { mark = 1; next }
  /^```sh[ \t]*$/ { n++; inblk = 1; if (mark) print "" > (dir "/run-" n); mark = 0;
                    printf "" > (dir "/block-" n ".sh"); next }
  /^```/ { inblk = 0; mark = 0; next }
  inblk { print > (dir "/block-" n ".sh"); next }
  NF { mark = 0 }
' "$README"
nblocks=$(ls "$tmp"/block-*.sh 2>/dev/null | wc -l)
[ "$nblocks" -ge 5 ] || err "found only $nblocks sh blocks in README.md"

# ---- check ------------------------------------------------------------------------------
declare -A help_of
help_text() { # the --help of a built program, cached
  local p=$1
  if [ -z "${help_of[$p]+x}" ]; then
    local prog=${p%% *} rest=
    [[ $p == *" "* ]] && rest=${p#* } # "PROG SUB": the subcommand's --help
    help_of[$p]=$("$BIN/$prog" $rest --help 2>&1 || true)
  fi
  printf '%s' "${help_of[$p]}"
}

check_command() { # one simple command (words), the block and line it came from
  local where=$1; shift
  local words=("$@") i=0
  while [ $i -lt ${#words[@]} ] && [[ ${words[$i]} == [A-Za-z_]*=* ]]; do i=$((i + 1)); done
  [ $i -lt ${#words[@]} ] || return 0
  local cmd=${words[$i]}
  case $cmd in
    build/bin/*)
      local prog=${cmd#build/bin/}
      if [ ! -x "$BIN/$prog" ]; then err "$where: $cmd is not a built program"; return; fi
      local h; h=$(help_text "$prog")
      # a subcommand (vlad-bench serve ...): its own --help lists its options
      local sub=${words[$((i + 1))]:-}
      if [[ -n $sub && $sub != -* ]] && grep -qE "^  $sub( |$)" <<<"$h"; then
        h=$(help_text "$prog $sub")
      fi
      for w in "${words[@]:$((i + 1))}"; do
        [[ $w == --* && $w != -- && $w != --help ]] || continue
        local opt=${w%%=*}
        grep -q -- "$opt\b" <<<"$h" || err "$where: $cmd $opt: not in '$prog --help'"
      done ;;
    make)
      for w in "${words[@]:$((i + 1))}"; do
        [[ $w == -* || $w == *=* ]] && continue
        grep -Eq "^$w:" "$SRC/Makefile" || err "$where: make $w: no such target in the Makefile"
      done ;;
    scripts/*|training/*.sh|tests/*.sh|fuzz/*.sh)
      [ -x "$SRC/$cmd" ] || err "$where: $cmd does not exist or is not executable" ;;
    cd)
      [ -d "$SRC/${words[$((i + 1))]:-.}" ] || err "$where: cd ${words[$((i + 1))]}: no such folder" ;;
    python3|/usr/bin/python3)
      local a=${words[$((i + 1))]:-}
      if [ "$a" = -m ]; then
        local m=${words[$((i + 2))]}
        [ -d "$SRC/training/$m" ] || [ -d "$SRC/robot_io/python/$m" ] ||
          err "$where: python3 -m $m: no such module in training/ or robot_io/python/"
      elif [[ $a == *.py ]]; then
        [ -f "$SRC/$a" ] || err "$where: $a does not exist"
      fi ;;
  esac
}

check_block() {
  local f=$1 b; b=$(basename "$f" .sh)
  local ln=0 line
  while IFS= read -r line || [ -n "$line" ]; do
    ln=$((ln + 1))
    line=${line%%[[:space:]]#*}          # the comment
    [[ $line =~ ^[[:space:]]*# ]] && continue
    [ -n "${line//[[:space:]]/}" ] || continue
    # split into simple commands on ; && || | &
    local parts; parts=$(sed -E 's/(\&\&|\|\||;|\||&)/\n/g' <<<"$line")
    while IFS= read -r part; do
      [ -n "${part//[[:space:]]/}" ] || continue
      # words, with quoted strings kept whole (no expansion)
      local -a words=()
      # (no expansion: $, ` and * become _; redirections and their files go)
      part=$(sed -E -e 's/[$`*]/_/g' -e 's/[0-9]*>>?(&[0-9]+| *[^ &|;]+)//g' -e 's/< *[^ ]+//g' <<<"$part")
      eval "words=($part)" 2>/dev/null || { err "$b:$ln: cannot parse: $part"; continue; }
      check_command "README $b line $ln" "${words[@]}"
    done <<<"$parts"
  done <"$f"
}

if [ "$what" = check ] || [ "$what" = all ]; then
  for f in "$tmp"/block-*.sh; do check_block "$f"; done
  [ $fail -eq 0 ] && echo "test_readme: every command of $nblocks blocks names what exists"
fi

# ---- run ----------------------------------------------------------------------------------
free_port() { python3 - <<'EOF' 2>/dev/null || echo $((20000 + RANDOM % 20000))
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])
EOF
}

run_block() {
  local n=$1
  local ws=$tmp/ws-$n
  mkdir -p "$ws/configs" "$ws/build"
  ln -s "$BIN" "$ws/build/bin"
  ln -s "$SRC/models" "$ws/models"
  ln -s "$SRC/sim" "$ws/sim"
  local p1 p2 p3; p1=$(free_port); p2=$(free_port); p3=$(free_port)
  sed -E -e "s#tcp://127.0.0.1:5550#tcp://127.0.0.1:$p1#; s#tcp://127.0.0.1:5551#tcp://127.0.0.1:$p2#" \
         -e "s#tcp://127.0.0.1:5552#tcp://127.0.0.1:$p3#" \
         -e "s#^safety:#safety:\n  estop_file: $ws/estop#" \
         "$SRC/configs/sim-arm.yaml" >"$ws/configs/sim-arm.yaml"
  grep -q "127.0.0.1:$p3" "$ws/configs/sim-arm.yaml" || { err "block $n: could not move the ports"; return; }
  {
    echo 'set -eu -o pipefail'
    echo 'trap '\''kill $(jobs -p) 2>/dev/null || true'\'' EXIT'
    while IFS= read -r line || [ -n "$line" ]; do
      if [[ $line == *Ctrl-C* ]]; then
        local c=${line%%[[:space:]]#*}
        echo "timeout --preserve-status -s INT 4 $c"
      else
        echo "$line"
      fi
    done <"$tmp/block-$n.sh"
  } >"$ws/script.sh"
  echo "test_readme: running README block $n:"
  sed 's/^/    /' "$tmp/block-$n.sh"
  if ! (cd "$ws" && timeout 240 bash "$ws/script.sh" >"$ws/out.log" 2>&1); then
    err "README block $n failed; its output:"
    sed 's/^/    | /' "$ws/out.log" >&2
    return
  fi
  sed 's/^/    | /' "$ws/out.log" | tail -n 40
}

if [ "$what" = run ] || [ "$what" = all ]; then
  runs=0
  for r in "$tmp"/run-*; do
    [ -e "$r" ] || continue
    run_block "${r##*-}"
    runs=$((runs + 1))
  done
  [ $runs -ge 1 ] || err "no block is marked <!-- readme-test: run -->"
fi
exit $fail
