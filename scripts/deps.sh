#!/usr/bin/env bash
# Installs the Debian packages vlad needs to build and test, when they are missing.
# As root it runs apt-get; otherwise it stops and names the missing packages.
# Usage: scripts/deps.sh [extra-package ...]
set -euo pipefail

pkgs=(cmake make gcc pkg-config
      libzmq3-dev libprotobuf-c-dev protobuf-c-compiler libyaml-dev
      libopenblas-dev libcmocka-dev libcjson-dev libturbojpeg0-dev
      libmujoco-dev libosmesa6-dev libpng-dev zlib1g-dev gnuplot-nox
      valgrind
      protobuf-compiler python3-zmq python3-protobuf python3-numpy python3-yaml
      "$@")  # valgrind: make test-valgrind (gcc's libtsan2 comes with gcc: make test-tsan);
             # protoc + python3-*: the Python client robot_io/python (skipped by CMake without)
# libFuzzer (make test-fuzz, make fuzz): installed as root like the rest; without root a missing
# one is no error here (test-fuzz says so and skips)
fuzz_pkgs=(clang libclang-rt-14-dev)

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if [ "$(id -u)" -eq 0 ]; then
  for p in "${fuzz_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "vlad: missing Debian packages: ${missing[*]}" >&2
  echo "vlad: install them as root: apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "vlad: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
