#!/usr/bin/env bash
# One-time set-up on a fresh Debian machine (Python 3.11): system packages, a virtual environment
# in .venv, the CPU build of PyTorch, then this package with its server, LM and development extras,
# and KenLM's tools.
# Safe to run again: every step is skipped or quick when already done.
set -euo pipefail
cd "$(dirname "$0")"

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
packages="espeak-ng libsndfile1 sox"
[ -f data/APT_PACKAGES.txt ] && packages="$packages $(grep -v '^#' data/APT_PACKAGES.txt | tr '\n' ' ')"
# SVOX Pico (libttspico-utils) and MBROLA voices are in Debian's contrib/non-free sections: enable them
# beside the main sources, with the same mirrors.
main_sources=/etc/apt/sources.list.d/debian.sources
extra_sources=/etc/apt/sources.list.d/deepspeech-contrib-non-free.sources
if [ -f "$main_sources" ] && ! grep -qsE '^(Components:|deb ).*non-free( |$)' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list; then
  sed 's/^Components: .*/Components: contrib non-free/' "$main_sources" | $SUDO tee "$extra_sources" >/dev/null
fi
missing=$(for p in $packages; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"; done)
if [ -n "$missing" ]; then
  echo "installing Debian packages: $missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
# torch first, pinned, so pip takes the CPU wheel instead of resolving a multi-GB CUDA build.
# GPU users: install the torch build for their CUDA version here instead (see the README).
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/pip install -q "torch==${TORCH_VERSION:-2.13.0}"
.venv/bin/pip install -q -e ".[torch,server,dev,lm,augment,synthesis]"
bash tools/build_kenlm.sh  # lmplz, build_binary and the kenlm module, built once and cached in .cache/kenlm
echo "set-up done: $(.venv/bin/python -c 'import torch, deepspeech_pytorch; print("torch", torch.__version__)')"
