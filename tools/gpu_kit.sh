#!/usr/bin/env bash
# The GPU training kit (docs/gpu_kit.md): one device call trains the bundled model from scratch on the
# game corpora's real speech, espeak-ng voices synthesized there, and channel/room/noise augmentation.
#
#   bash tools/gpu_kit.sh pack         here: gpu_kit/carry (<= what the call carries beside the tree)
#   bash tools/gpu_kit.sh run          there: unpack, synthesize, train against a deadline, choose, $OUT
#   bash tools/gpu_kit.sh smoke        here: the whole kit on 20 clips a corpus, CPU, about 3 minutes
#   bash tools/gpu_kit.sh throughput   here: utterances/s of one data worker with the kit's augmentation
#   bash tools/gpu_kit.sh hold         here, before packing: the large tracked files out of the index and the
#                                      folder into $HELD (the tracked tree is over the 64 MiB a call carries)
#   bash tools/gpu_kit.sh release      here, after the call: them back, staged as they were
#   bash tools/gpu_kit.sh cpu          here, without a GPU: continue the lineage on this machine's CPU (bf16
#                                      autocast, batch 64), resumable; then choose on Drascula val -> $CPU_WORK/out
#
# Settings come from the environment (defaults below). The run keeps to BUDGET_SECONDS from its start:
# synthesis is sized from the planned training steps, training gets what is left (max_minutes), and the
# one-cycle schedule is planned for STEPS_PER_SECOND so that it ends as the time does.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-run}
if [ "$MODE" = cpu ]; then  # the CPU continuation's defaults (docs/gpu_kit.md, "Without a GPU"); the environment wins
  : "${DEVICE:=cpu}" "${PRECISION:=bf16}" "${BATCH:=64}" "${LR:=7.5e-4}" "${EPOCHS:=4}" "${WORKERS:=1}" "${EVERY_STEPS:=50}" \
    "${REAL_REPEATS:=2}"
fi
KIT=${KIT:-gpu_kit/carry}
WORK=${WORK:-/tmp/gpu_kit_work}
OUT=${OUT:-gpu_kit/out}
PY=${PYTHON:-python3}
CORES=$(nproc)
WORKERS=${WORKERS:-$((CORES > 2 ? CORES - 2 : 1))}     # data workers while training (14 of 16 cores)
MODEL=${MODEL:-ds2_cpu_wide}
MODEL_ARGS=${MODEL_ARGS:-}                 # e.g. "model.hidden_size=640"
STREAM_MODEL=${STREAM_MODEL:-}             # e.g. ds2_stream: a second model trained at the same time on the same
                                           # data, sharing the GPU and splitting the workers; its files go to $OUT/stream
STREAM_ARGS=${STREAM_ARGS:-features.normalization=running}  # the streaming model's causal features
DEVICE=${DEVICE:-cuda}
PRECISION=${PRECISION:-fp16}
BATCH=${BATCH:-64}
LR=${LR:-1.5e-3}
EPOCHS=${EPOCHS:-10}                     # one-cycle over this many epochs; synthesis fills them
STEPS_PER_SECOND=${STEPS_PER_SECOND:-8.5}  # planning rate (an H100 ran ds2_cpu_wide at ~9/s, batch 64, fp16)
BUDGET_SECONDS=${BUDGET_SECONDS:-540}    # the whole run, start to $OUT
FINISH_SECONDS=${FINISH_SECONDS:-75}     # kept for choosing the checkpoint and writing $OUT
TRAIN_START_SECONDS=${TRAIN_START_SECONDS:-45}  # train.py's start: imports, statistics, CUDA, workers
SYNTH_SECONDS_PER_SECOND=${SYNTH_SECONDS_PER_SECOND:-70}  # espeak-ng audio seconds per second per core
SYNTH_MEAN_SECONDS=${SYNTH_MEAN_SECONDS:-2.9}  # mean synthesized utterance
MAX_SYNTH_HOURS=${MAX_SYNTH_HOURS:-15}
ROOMS=${ROOMS:-256}
REAL_REPEATS=${REAL_REPEATS:-1}
EVERY_STEPS=${EVERY_STEPS:-500}
MIN_TRAIN_MINUTES=${MIN_TRAIN_MINUTES:-0.5}
VAL_SECONDS=${VAL_SECONDS:-5}            # one validation pass (Drascula val) and the epoch's checkpoints

# The kit's augmentation, measured with `throughput` (docs/gpu_kit.md): on top of configs/bundled.yaml's
# SpecAugment, speed 0.9-1.1 and gain +-6 dB.
augment_settings() {  # $1: the unpacked work folder
  echo "augment.noise.enabled=true augment.noise.manifest=$1/noise/noise.jsonl augment.noise.probability=0.4" \
       "augment.noise.min_snr_db=5 augment.noise.max_snr_db=30" \
       "$( [ -d "$1/rirs" ] && echo "augment.room.enabled=true augment.room.probability=0.3 augment.room.directory=$1/rirs")" \
       "augment.channel.enabled=true augment.channel.telephone_probability=0.1" \
       "augment.channel.bandlimit_probability=0.2 augment.channel.codec_probability=0.15" \
       "augment.silence.enabled=true augment.silence.probability=0.3" \
       "augment.babble.enabled=true augment.babble.probability=0.1"
}

now() { date +%s; }
elapsed() { echo $(( $(now) - T0 )); }
say() { echo "[gpu_kit +$(elapsed)s] $*"; }

untar() {  # tar.xz through Python: the image may have no xz program
  "$PY" -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter='tar')" "$1" "$2"
}

install_site() {  # wheels the device's Python lacks (site.tar.xz), and the engines, if carried
  if [ -f "$KIT/site.tar.xz" ]; then
    mkdir -p "$WORK/site" && untar "$KIT/site.tar.xz" "$WORK/site"
    export PYTHONPATH="$PWD:$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
  else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  fi
  if [ -f "$KIT/engines.tar.xz" ]; then
    local engines="$WORK/engines"
    mkdir -p "$engines" && untar "$KIT/engines.tar.xz" "$engines"
    # pico2wave and the corpus builder look in the Debian places; link them where nothing is there yet
    if [ -d "$engines/share/pico/lang" ] && [ -n "$(ls "$engines/share/pico/lang")" ] && [ ! -e /usr/share/pico/lang ]; then
      mkdir -p /usr/share/pico && ln -s "$engines/share/pico/lang" /usr/share/pico/lang || true
    fi
    if [ -n "$(ls "$engines/share/mbrola" 2>/dev/null)" ] && [ ! -e /usr/share/mbrola ]; then
      ln -s "$engines/share/mbrola" /usr/share/mbrola || true
    fi
    SYNTH_ENV=(env "PATH=$engines/bin:$PATH" "LD_LIBRARY_PATH=$engines/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
               "ESPEAK_DATA_PATH=$engines/share")
    SYNTH_ENGINES=espeak-ng  # and whatever else was carried (engines --pico / --mbrola)
    if [ -x "$engines/bin/pico2wave" ]; then SYNTH_ENGINES+=,pico; fi
    if [ -x "$engines/bin/mbrola" ]; then SYNTH_ENGINES+=,mbrola; fi
  else
    SYNTH_ENV=(env)
    SYNTH_ENGINES=espeak-ng
  fi
}

train_one() {  # $1 model preset, $2 checkpoint folder, $3 data workers, $4 extra settings; uses run's locals
  # shellcheck disable=SC2046,SC2086
  "$PY" train.py --config-name bundled model="$1" \
    data.train_manifest="$WORK/train.jsonl" ${first_val:+data.val_manifest="$first_val"} \
    data.batch_size="$BATCH" data.num_workers="$3" device="$DEVICE" precision="$PRECISION" \
    epochs="$EPOCHS" max_minutes="$minutes" optim.learning_rate="$LR" log_dir=null \
    checkpoint.directory="$2" checkpoint.every_steps="$EVERY_STEPS" checkpoint.keep_every_epoch=true \
    $4 $(augment_settings "$WORK")
}

run() {
  T0=$(now)
  mkdir -p "$OUT" "$WORK"
  exec > >(tee -a "$OUT/run.log") 2>&1
  export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
  say "kit $KIT -> $WORK, out $OUT; $CORES cores, $WORKERS data workers; model $MODEL${STREAM_MODEL:+ and $STREAM_MODEL} on $DEVICE ($PRECISION)"
  [ -f "$KIT/kit.json" ] || { echo "error: $KIT/kit.json not found: carry the folder made by 'gpu_kit.sh pack'"; exit 1; }
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  install_site
  "$PY" -c "import torch, soundfile, soxr, hydra, jiwer; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

  say "unpack"
  "$PY" tools/gpu_kit.py unpack --kit "$KIT" --work "$WORK" --workers "$CORES" --rooms "$ROOMS" > "$WORK/unpacked.out"
  local real val text
  real=$("$PY" -c "import json; d=json.load(open('$WORK/unpacked.json')); print(' '.join(p + ':$REAL_REPEATS' for p in d['train'].values()))")
  val=$("$PY" -c "import json; d=json.load(open('$WORK/unpacked.json')); print(' '.join(d['val'].values()))")
  text=$("$PY" -c "import json; print(json.load(open('$WORK/unpacked.json')).get('text') or '')")
  "$PY" -c "import json; d=json.load(open('$WORK/unpacked.json')); print('hours', d['hours'], 'in', d['seconds'], 's')"

  # Plan: training seconds left after synthesis, the steps they hold, the synthetic hours that fill EPOCHS.
  local plan synth_hours train_seconds
  plan=$("$PY" - "$WORK/unpacked.json" <<EOF
import json, sys
d = json.load(open(sys.argv[1]))
real = sum(sum(1 for _ in open(p)) for p in d["train"].values()) * $REAL_REPEATS
left = $BUDGET_SECONDS - $(elapsed) - $FINISH_SECONDS - $TRAIN_START_SECONDS
# synthesis takes seconds too: solve train + synth = left, synth = hours * 3600 / (cores * speed)
speed = $CORES * $SYNTH_SECONDS_PER_SECOND
hours = 0.0
for _ in range(20):
    train = max(left - (hours * 3600 / speed + 15 if hours > 0 else 0), 60 * $MIN_TRAIN_MINUTES)
    per_epoch = max(train - $EPOCHS * $VAL_SECONDS, 30) * $STEPS_PER_SECOND * $BATCH / $EPOCHS
    hours = min(max(per_epoch - real, 0) * $SYNTH_MEAN_SECONDS / 3600, $MAX_SYNTH_HOURS) if "$text" else 0.0
print(f"{hours:.2f} {train:.0f}")
EOF
)
  read -r synth_hours train_seconds <<<"$plan"
  say "plan: $synth_hours h of espeak-ng, about $train_seconds s of training, $EPOCHS epochs"

  local manifests=($real) synth_val=""
  if [ -n "$text" ] && [ "$synth_hours" != "0.00" ]; then
    say "synthesize $synth_hours h ($SYNTH_ENGINES)"
    # seed 0, and no carried engine with 10 voices but espeak-ng: the same 26 held-out voices as the project's
    # synthetic10h val/test split, so they stay unheard; the text is a sample of that corpus's training pool.
    if "${SYNTH_ENV[@]}" timeout $(( 60 + ${synth_hours%.*} * 20 )) "$PY" data/synthetic.py --output-dir "$WORK/synth" \
         --hours "$("$PY" -c "print(round($synth_hours / 0.9, 2))")" --text-source "$text" --engines "$SYNTH_ENGINES" \
         --seed 0 --workers "$CORES" --quiet; then
      manifests+=("$WORK/synth/train.jsonl:1")
      synth_val="$WORK/synth/val.jsonl"
    else
      say "synthesis failed or ran out of time: training on the real speech alone"
    fi
  fi
  "$PY" tools/gpu_kit.py mix --output "$WORK/train.jsonl" "${manifests[@]}"

  local first_val=${val%% *} minutes
  minutes=$("$PY" -c "print(round(max(($BUDGET_SECONDS - $(elapsed) - $FINISH_SECONDS - $TRAIN_START_SECONDS) / 60, $MIN_TRAIN_MINUTES), 2))")
  say "train: $minutes minutes at most"
  local model_args=$MODEL_ARGS stream_args=$STREAM_ARGS  # carried weights (pack INIT=, STREAM_INIT=): continue from them
  [ -f "$KIT/init.pt" ] && model_args+=" checkpoint.finetune_from=$(cd "$KIT" && pwd)/init.pt" && say "$MODEL continues from the carried init.pt"
  [ -f "$KIT/stream_init.pt" ] && stream_args+=" checkpoint.finetune_from=$(cd "$KIT" && pwd)/stream_init.pt"
  local workers=$WORKERS
  [ -n "$STREAM_MODEL" ] && workers=$(( WORKERS / 2 > 0 ? WORKERS / 2 : 1 ))
  if [ -n "$STREAM_MODEL" ]; then
    say "and $STREAM_MODEL ($STREAM_ARGS) beside it, $workers workers each"
    [ -f "$KIT/stream_init.pt" ] && say "$STREAM_MODEL continues from the carried stream_init.pt"
    train_one "$STREAM_MODEL" "$WORK/stream_ckpt" "$workers" "$stream_args" > "$WORK/stream_train.json" 2> "$WORK/stream_train.log" &
    local stream_pid=$!
  fi
  train_one "$MODEL" "$WORK/ckpt" "$workers" "$model_args" | tee "$OUT/train.json" || say "train.py failed: finishing with what it saved"
  if [ -n "$STREAM_MODEL" ]; then
    wait "$stream_pid" || say "the streaming model's train.py failed: finishing with what it saved"
    tail -n 30 "$WORK/stream_train.log"; cat "$WORK/stream_train.json"
  fi

  say "finish"
  local vals=()
  for v in $val $synth_val; do vals+=(--val "$v"); done
  if [ -n "$STREAM_MODEL" ]; then  # 8 files come back: 2 + 2 parts, two results.json, train.json, run.log
    "$PY" tools/gpu_kit.py finish --checkpoints "$WORK/stream_ckpt" "${vals[@]}" --out "$OUT/stream" --workers 4 &
    local finish_pid=$!
    "$PY" tools/gpu_kit.py finish --checkpoints "$WORK/ckpt" "${vals[@]}" --out "$OUT" --workers 4
    wait "$finish_pid" || say "finishing the streaming model failed"
  else
    "$PY" tools/gpu_kit.py finish --checkpoints "$WORK/ckpt" "${vals[@]}" --out "$OUT" --workers 8 --with-last
  fi
  say "done: $(ls "$OUT" | tr '\n' ' ')"
}

noise_clips() {  # SCRATCH: the noise and the music clips, made once
  [ -f "$1/noise/noise.jsonl" ] || "$PY" data/noise.py --output-dir "$1/noise" --kinds white,pink,brown,hum,babble --quiet
  [ -f "$1/music/noise.jsonl" ] || "$PY" data/noise.py --output-dir "$1/music" --kinds music --clip-seconds 6 --quiet
}

noise_and_rooms_here() {  # SCRATCH WORK ROOMS: both clip sets in WORK/noise/noise.jsonl and ROOMS simulated rooms in WORK/rirs
  noise_clips "$1"
  mkdir -p "$2/noise"
  "$PY" tools/gpu_kit.py mix --output "$2/noise/noise.jsonl" "$1/noise/noise.jsonl" "$1/music/noise.jsonl" > /dev/null
  [ -d "$2/rirs" ] || "$PY" tools/gpu_kit.py rooms --output "$2/rirs" --rooms "$3"
}

pack() {  # here: the corpora of /work/datasets, the noise set, wheels for the device's Python 3.12
  local scratch=${SCRATCH:-/work/scratch/gpu_kit}
  mkdir -p "$scratch/whl"
  if [ -z "$(ls "$scratch/whl"/*.whl 2>/dev/null)" ]; then
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 -d "$scratch/whl" soundfile==0.14.0 cffi==2.1.1 pycparser==3.12 soxr==1.1.0 \
      hydra-core==1.3.8 omegaconf==2.3.1 jiwer==4.0.0 rapidfuzz==3.14.6 pyroomacoustics==0.10.1
    "$PY" -m pip wheel -q --no-deps -w "$scratch/whl" antlr4-python3-runtime==4.9.3  # sdist only on PyPI
  fi
  noise_clips "$scratch"
  # ENGINES_ARGS="--pico --mbrola us1,us2,us3,en1" and CODEC=ffmpeg:8 where the tree leaves room (docs/gpu_kit.md)
  local engines="$scratch/engines$(echo "${ENGINES_ARGS:-}" | tr -dc 'a-z0-9').tar.xz"
  # shellcheck disable=SC2086
  [ -f "$engines" ] || "$PY" tools/gpu_kit.py engines --output "$engines" ${ENGINES_ARGS:-}
  [ -f "$scratch/train_text.txt" ] || "$PY" tools/gpu_kit.py text --output "$scratch/train_text.txt"
  "$PY" tools/gpu_kit.py pack --output "${1:-gpu_kit/carry}" --force --fit ${CODEC:+--codec "$CODEC"} \
    --speech "${QUEEN:-/work/datasets/queen/queen_train.jsonl}" --speech "${SKY:-/work/datasets/sky/sky_train.jsonl}" \
    --val "${DRASCULA_VAL:-/work/datasets/drascula/val.jsonl}" \
    --noise "$scratch/noise/noise.jsonl" --noise "$scratch/music/noise.jsonl" \
    --wheels "$scratch/whl" --engines "$engines" --text "$scratch/train_text.txt" \
    --text-lines "${TEXT_LINES:-12000}" --workers 2 ${INIT:+--init "$INIT"} ${STREAM_INIT:+--stream-init "$STREAM_INIT"}
}

smoke() {  # the whole kit on a tiny slice, on this machine's CPU: a checkpoint and a val WER must come out
  local dir=${SMOKE_DIR:-/tmp/gpu_kit_smoke}
  rm -rf "$dir" && mkdir -p "$dir"
  local scratch=${SCRATCH:-/work/scratch/gpu_kit}
  [ -f "$scratch/engines.tar.xz" ] || "$PY" tools/gpu_kit.py engines --output "$scratch/engines.tar.xz"
  [ -f "$scratch/noise/noise.jsonl" ] || "$PY" data/noise.py --output-dir "$scratch/noise" --kinds white,pink,brown,hum,babble --quiet
  head -c 20000 "${TEXT:-$scratch/train_text.txt}" | head -n -1 > "$dir/text.txt"
  "$PY" tools/gpu_kit.py pack --output "$dir/carry" --max-mib 64 --codec soundfile:0.99 --limit 20 --val-limit 20 \
    --speech "${QUEEN:-/work/datasets/queen/queen_train.jsonl}" --speech "${SKY:-/work/datasets/sky/sky_train.jsonl}" \
    --val "${DRASCULA_VAL:-/work/datasets/drascula/val.jsonl}" --noise "$scratch/noise/noise.jsonl" \
    --engines "$scratch/engines.tar.xz" --text "$dir/text.txt" --workers 2 ${INIT:+--init "$INIT"} \
    ${STREAM_INIT:+--stream-init "$STREAM_INIT"}
  KIT="$dir/carry" WORK="$dir/work" OUT="$dir/out" DEVICE=cpu PRECISION=fp32 MODEL=ds2_tiny BATCH=8 WORKERS=2 \
    EPOCHS=2 BUDGET_SECONDS=${SMOKE_SECONDS:-150} FINISH_SECONDS=30 TRAIN_START_SECONDS=20 STEPS_PER_SECOND=1 \
    SYNTH_MEAN_SECONDS=2.5 MAX_SYNTH_HOURS=0.02 ROOMS=4 EVERY_STEPS=5 MIN_TRAIN_MINUTES=0.5 bash "$0" run
  "$PY" - "$dir/out/results.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
chosen = r["candidates"][r["chosen"]]
assert r["files"] and all(name.startswith("model-fp16.pt.") for name in r["files"][:1]), r["files"]
assert all(0 <= s["wer"] for s in chosen["scores"].values()), chosen
print("smoke passed:", r["chosen"], chosen["scores"], r["files"])
EOF
}

throughput() {  # one data worker here, the kit's augmentation, on the corpus named by MANIFEST
  local scratch=${SCRATCH:-/work/scratch/gpu_kit} work=${WORK_HERE:-/tmp/gpu_kit_throughput}
  noise_and_rooms_here "$scratch" "$work" "${ROOMS_HERE:-16}"
  # shellcheck disable=SC2046
  "$PY" tools/gpu_kit.py throughput --manifest "${MANIFEST:-/work/datasets/queen/queen_train.jsonl}" \
    --items "${ITEMS:-300}" features.kind=mel features.n_mels=64 augment.spec_augment.enabled=true \
    augment.spec_augment.max_freq_width=10 augment.spec_augment.max_time_width=20 \
    augment.perturb.speed_enabled=true augment.perturb.gain_enabled=true $(augment_settings "$work")
}

cpu() {  # here: the lineage trained on by this machine's CPU, checkpointed every EVERY_STEPS; run again to resume
  WORK=${CPU_WORK:-/work/scratch/lineage_cpu}
  local init=${INIT:-/work/scratch/lineage/ds2_cpu_wide.pt} first_val=${DRASCULA_VAL:-/work/datasets/drascula/val.jsonl}
  local minutes=${CPU_MINUTES:-105} scratch=${SCRATCH:-/work/scratch/gpu_kit}
  if [ ! -f "$init" ] && [ ! -f "$WORK/ckpt/last.pt" ]; then
    echo "error: INIT=$init not found and nothing to resume in $WORK/ckpt: name the lineage's checkpoint" >&2; exit 1
  fi
  T0=$(now)
  noise_and_rooms_here "$scratch" "$WORK" "${ROOMS_HERE:-48}"
  # the kit's data, made here: espeak-ng (seed 0: split (a)'s held-out voices stay unheard) and Pico + MBROLA
  # reading the synthetic corpus's training pool; RHVoice, festival and Kokoro stay unheard (split (b))
  if [ ! -f "$WORK/espeak/train.jsonl" ]; then
    say "synthesize ${ESPEAK_HOURS:-6} h of espeak-ng"
    "$PY" data/synthetic.py --output-dir "$WORK/espeak" --hours "${ESPEAK_HOURS:-6}" --engines espeak-ng --seed 0 --quiet
  fi
  if [ ! -f "$WORK/pico_mbrola/train.jsonl" ]; then
    [ -f "$scratch/train_text.txt" ] || "$PY" tools/gpu_kit.py text --output "$scratch/train_text.txt"
    say "synthesize ${PICO_MBROLA_HOURS:-2.5} h of Pico and MBROLA"
    "$PY" data/synthetic.py --output-dir "$WORK/pico_mbrola" --hours "${PICO_MBROLA_HOURS:-2.5}" --engines pico,mbrola \
      --text-source "$scratch/train_text.txt" --seed 0 --quiet
  fi
  "$PY" tools/gpu_kit.py mix --output "$WORK/train.jsonl" "${QUEEN:-/work/datasets/queen/queen_train.jsonl}:$REAL_REPEATS" \
    "${SKY:-/work/datasets/sky/sky_train.jsonl}:$REAL_REPEATS" "$WORK/espeak/train.jsonl" "$WORK/pico_mbrola/train.jsonl"
  say "train $MODEL on $DEVICE ($PRECISION, batch $BATCH), $EPOCHS epochs, $minutes minutes at most"
  local from=""  # a run to resume (ckpt/last.pt) wins over INIT; INIT may be gone by then
  [ -f "$init" ] && from="checkpoint.finetune_from=$init"
  train_one "$MODEL" "$WORK/ckpt" "$WORKERS" "$from checkpoint.resume=true data.max_duration=12 \
    data.sorted_first_epoch=false optim.warmup_fraction=0.05 $MODEL_ARGS" || say "train.py failed: finishing with what it saved"
  say "finish"
  "$PY" tools/gpu_kit.py finish --checkpoints "$WORK/ckpt" --val "$first_val" --out "$WORK/out" --device "$DEVICE" \
    --workers "$(nproc)" --with-last
  say "done: $WORK/out"
}

# The large tracked files that need not travel: the bundled model, its int8 twin and its LM
HELD_FILES="deepspeech_pytorch/pretrained/default.pt deepspeech_pytorch/pretrained/default.int8.onnx
  deepspeech_pytorch/pretrained/default.lm.bin"
HELD=${HELD:-/work/scratch/held}

hold() {  # out of git's index and out of the folder, so they travel neither way the device tool counts
  if [ -n "$(ls -A "$HELD" 2>/dev/null)" ]; then
    echo "error: $HELD is not empty (an earlier hold not released?): run 'release' or look at what is there" >&2; exit 1
  fi
  local f
  for f in $HELD_FILES; do
    git ls-files --error-unmatch "$f" >/dev/null 2>&1 && [ -f "$f" ] || { echo "error: $f is not a tracked file here" >&2; exit 1; }
  done
  for f in $HELD_FILES; do
    mkdir -p "$HELD/$(dirname "$f")"
    git rm -q --cached "$f" && mv "$f" "$HELD/$f"
  done
  local tree
  tree=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -n 1 | cut -f 1)
  echo "held in $HELD: $HELD_FILES" | tr -s ' \n' ' '; echo
  echo "the tracked tree is now $(( tree / 1048576 )) MiB; commit only with named paths until 'release'"
}

release() {  # back where they were, staged again; git status then shows nothing of them
  local f
  for f in $HELD_FILES; do
    if [ -f "$HELD/$f" ]; then
      mkdir -p "$(dirname "$f")" && mv "$HELD/$f" "$f" && git add "$f"
    fi
  done
  find "$HELD" -type d -empty -delete 2>/dev/null || true
  # shellcheck disable=SC2086
  if [ -n "$(git status --porcelain -- $HELD_FILES)" ]; then
    echo "error: not all of them are back as committed:" >&2
    # shellcheck disable=SC2086
    git status --short -- $HELD_FILES >&2; exit 1
  fi
  echo "released: the large files are back"
}

case "$MODE" in
  run) run ;;
  pack) shift; pack "$@" ;;
  smoke) smoke ;;
  throughput) throughput ;;
  hold) hold ;;
  release) release ;;
  cpu) cpu ;;
  *) echo "usage: bash tools/gpu_kit.sh run|pack [FOLDER]|smoke|throughput|hold|release|cpu" >&2; exit 2 ;;
esac
