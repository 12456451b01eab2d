#!/usr/bin/env bash
# A torch-free deployment: a fresh venv WITHOUT PyTorch, this package from the local tree with what the
# onnxruntime backend needs, then transcribe.py on the bundled samples with an exported model (greedy and
# beam search). Fails when torch is importable there, a command fails, or a transcript comes out empty.
#
#   bash tools/check_torch_free.sh MODEL.onnx [VENV_DIR]
#
# MODEL.onnx: a model exported by export.py (fp32 or int8); its <stem>.lm.json beside it, if any, gives beam
# search its KenLM. VENV_DIR (default: a temporary folder, removed afterwards) is kept when given, so a rerun
# skips the downloads. PYTHON picks the interpreter (default python3). PyPI must be reachable.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: bash tools/check_torch_free.sh MODEL.onnx [VENV_DIR]" >&2
    exit 2
fi
model=$(realpath "$1")
root=$(cd "$(dirname "$0")/.." && pwd)
samples="$root/deepspeech_pytorch/pretrained/samples"
[ -f "$model" ] || { echo "error: $1: no such model file (export one: python export.py formats=[onnx])" >&2; exit 2; }

work=$(mktemp -d)
venv=$(realpath -m "${2:-$work/venv}")  # absolute: the checks below run from $work
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

if [ ! -x "$venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$venv"
fi
pip() { "$venv/bin/python" -m pip --disable-pip-version-check -q "$@"; }
# What a deployment installs: the base package (ONNX Runtime, Silero VAD's ONNX files in the package) with the
# onnx extra and, for beam search, the lm extra; never the torch extra. Built from a copy so the tree stays clean.
mkdir "$work/src"
cp -r "$root/pyproject.toml" "$root/setup.py" "$root/README.md" "$root/deepspeech_pytorch" "$work/src/"
pip install "$work/src[onnx,lm]"

if "$venv/bin/python" -c "import torch" 2>/dev/null; then
    echo "error: torch is importable in the torch-free venv $venv" >&2
    exit 1
fi

cd "$work"  # outside the source tree: the installed package is the one that runs
status=0
for decoder in greedy beam; do
    out="$work/$decoder.jsonl"
    # -X importtime lists every module the run imported: torch must not be among them
    "$venv/bin/python" -X importtime "$venv/bin/deepspeech-transcribe" "model_path=$model" "$samples" \
        "decoder.type=$decoder" > "$out" 2> "$work/$decoder.err" || {
        echo "error: transcribing with decoder=$decoder failed:" >&2; grep -v "^import time:" "$work/$decoder.err" >&2
        exit 1; }
    if grep -Eq "^import time:.*\|[[:space:]]+torch(\.|$)" "$work/$decoder.err"; then
        echo "error: decoder=$decoder imported torch" >&2
        exit 1
    fi
    "$venv/bin/python" - "$out" "$decoder" <<'EOF' || status=1
import json, sys
records = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
empty = [r["audio_path"] for r in records if not r["transcript"].strip()]
for r in records:
    print(f"{sys.argv[2]:6} {r['model']['backend']:11} {r['audio_path'].rsplit('/', 1)[-1]}: {r['transcript']}")
if len(records) < 3 or empty or any(r["model"]["backend"] != "onnxruntime" for r in records):
    sys.exit(f"error: {len(records)} transcripts, empty: {empty}")
EOF
done
# no model named: a torch-free install runs the bundled model's int8 ONNX twin
"$venv/bin/deepspeech-transcribe" "$samples/sample1.wav" > "$work/default.jsonl" 2> "$work/default.err" || {
    echo "error: transcribing with the bundled model failed:" >&2; cat "$work/default.err" >&2; exit 1; }
grep -q '"backend": "onnxruntime"' "$work/default.jsonl" && grep -q '"transcript": "[a-z]' "$work/default.jsonl" || {
    echo "error: the bundled model did not run through ONNX Runtime: $(cat "$work/default.jsonl")" >&2; exit 1; }
[ $status -eq 0 ] && echo "torch-free install OK: $(basename "$model") transcribed the samples without torch"
exit $status
