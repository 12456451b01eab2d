#!/usr/bin/env bash
# KenLM for building language models: compile lmplz and build_binary from the kenlm source package
# on PyPI, once, and install the kenlm Python module (queries, perplexity) into the virtualenv.
#
#   bash tools/build_kenlm.sh
#
# Binaries go to .cache/kenlm/bin (KENLM_CACHE=/somewhere moves the cache); deepspeech_pytorch.lm
# finds them there, in $KENLM_BIN, or on PATH. Each step is skipped when its result is already
# there, so running it again is quick. The first run takes a few minutes on two cores.
# Needs Debian's boost, eigen and compression headers, cmake and a C++ compiler (installed when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-.venv/bin/python}"
CACHE="${KENLM_CACHE:-$PWD/.cache/kenlm}"
BIN="$CACHE/bin"
JOBS="$(nproc 2>/dev/null || echo 2)"

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
packages="build-essential cmake libboost-program-options-dev libboost-system-dev libboost-thread-dev
          libboost-test-dev libeigen3-dev zlib1g-dev libbz2-dev liblzma-dev"
missing=$(for p in $packages; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"; done)
if [ -n "$missing" ]; then
  echo "installing Debian packages: $missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

have_binaries() { [ -x "$BIN/lmplz" ] && [ -x "$BIN/build_binary" ]; }
have_module() { "$PYTHON" -c "import kenlm" 2>/dev/null; }

if have_binaries && have_module; then
  echo "KenLM already built: $BIN (lmplz, build_binary); kenlm Python module installed"
  exit 0
fi

# The source package, downloaded once. No build isolation: the metadata step needs only setuptools,
# and build isolation with --no-binary :all: would compile cmake itself from source.
mkdir -p "$CACHE/src"
sdist=$(ls "$CACHE"/src/kenlm-*.tar.gz 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$sdist" ]; then
  "$PYTHON" -m pip download -q --no-deps --no-binary :all: --no-build-isolation kenlm -d "$CACHE/src"
  sdist=$(ls "$CACHE"/src/kenlm-*.tar.gz | sort -V | tail -n 1)
fi
source_dir="$CACHE/src/$(basename "$sdist" .tar.gz)"
[ -d "$source_dir" ] || tar -xzf "$sdist" -C "$CACHE/src"

if ! have_binaries; then
  started=$SECONDS
  echo "building lmplz and build_binary from $(basename "$sdist") ..."
  # KENLM_MAX_ORDER stays at KenLM's default of 6, the most the KenLM inside flashlight-text reads.
  cmake -S "$source_dir" -B "$CACHE/build" -DCMAKE_BUILD_TYPE=Release >"$CACHE/cmake.log" 2>&1 \
    || { tail -n 30 "$CACHE/cmake.log"; echo "cmake failed: see $CACHE/cmake.log" >&2; exit 1; }
  cmake --build "$CACHE/build" -j "$JOBS" --target lmplz build_binary >"$CACHE/build.log" 2>&1 \
    || { tail -n 30 "$CACHE/build.log"; echo "build failed: see $CACHE/build.log" >&2; exit 1; }
  mkdir -p "$BIN"
  cp "$CACHE/build/bin/lmplz" "$CACHE/build/bin/build_binary" "$BIN/"
  echo "built in $((SECONDS - started)) s"
fi

if ! have_module; then
  started=$SECONDS
  wheel=$(ls "$CACHE"/wheels/kenlm-*.whl 2>/dev/null | tail -n 1 || true)
  if [ -z "$wheel" ]; then
    echo "building the kenlm Python module ..."
    "$PYTHON" -m pip wheel -q --no-deps --no-build-isolation "$sdist" -w "$CACHE/wheels"
    wheel=$(ls "$CACHE"/wheels/kenlm-*.whl | tail -n 1)
  fi
  "$PYTHON" -m pip install -q --no-deps "$wheel"
  echo "kenlm Python module installed in $((SECONDS - started)) s"
fi

echo "KenLM binaries: $BIN (lmplz, build_binary)"
