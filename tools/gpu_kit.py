"""The GPU training kit: pack what one short GPU call needs here, unpack and train there.

    python tools/gpu_kit.py pack --output gpu_kit/carry ...            # here: speech as Opus shards, noise, wheels...
    python tools/gpu_kit.py engines --output engines.tar.xz            # here: espeak-ng for synthesis there
    python tools/gpu_kit.py text --output train_text.txt               # here: the synthetic corpus's training sentences
    python tools/gpu_kit.py unpack --kit gpu_kit/carry --work /tmp/kit # there: 16 kHz WAVs, manifests, rooms
    python tools/gpu_kit.py mix --output train.jsonl a.jsonl:2 b.jsonl # one training manifest, with repeats
    python tools/gpu_kit.py finish --checkpoints ckpt --val v.jsonl --out $OUT   # there: choose, fp16 parts
    python tools/gpu_kit.py bitrate --manifest queen_train.jsonl       # the WER cost of an Opus setting
    python tools/gpu_kit.py throughput --manifest m.jsonl augment.room.enabled=true ...  # one data worker's rate
    python tools/gpu_kit.py rooms --output rirs --rooms 256            # impulse responses as WAVs

tools/gpu_kit.sh strings them together (pack, run, smoke, throughput).

The device machine gets the repository's tracked files plus the carried folder, at most 64 MiB in all
(the tracked files are about 39 MiB), so speech travels as Opus: the clips of a corpus are laid end to
end, GAP_SECONDS of digital silence apart, into a few long streams ("shards"; one Ogg header per shard
instead of one per clip, which alone costs about 2.5 kbps on 2-second clips), at KIT_RATE. An index
(JSON lines) gives each clip's shard, first sample and length; `unpack` decodes the shards in parallel
and writes every clip back as 16 kHz WAV with a manifest. docs/gpu_kit.md has the whole recipe.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
import lzma
import os
import random
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from deepspeech_pytorch.audio import SAMPLE_RATE, load_audio, resample, write_audio  # noqa: E402
from deepspeech_pytorch.datasets import ManifestEntry, read_manifest, write_jsonl  # noqa: E402

logger = logging.getLogger("gpu_kit")

KIT_RATE = 12000  # Hz: the games' speech was recorded at 11.025 kHz, so 12 kHz Opus keeps all of it
GAP_SECONDS = 0.1  # digital silence between clips in a shard: codec frames never straddle two clips
SHARD_SECONDS = 600.0  # audio per shard (10 minutes): real speech makes ~38 shards, decoded in parallel
# Opus settings, ENCODER:VALUE. ffmpeg:KBPS (libopus, VBR): on 60 queen clips Whisper tiny.en's WER was
# 11.8% on the originals, 13.5% at 6 (6.6 kbps in the file), 12.9% at 7, 20.9% at 5.5, 33.0% at 5: 6 is
# the knee. soundfile:LEVEL (libsndfile's compression level, the project's own dependency): 1.0 gave
# 6.7 kbps and 18.4%, 0.99 8.9 kbps and 12.6%. docs/gpu_kit.md has the 300-clip table.
DEFAULT_CODEC = "ffmpeg:6"
FALLBACK_CODEC = "soundfile:0.99"  # where ffmpeg (with libopus) is not installed
KIT_FILE = "kit.json"
INDEX_SUFFIX = ".index.jsonl.xz"  # xz: the plain JSON of 9,615 clips' ids and texts is 1.5 MB
SITE_FILE = "site.tar.xz"  # the wheels the device lacks, unzipped (site-packages layout) and xz-compressed
TREE_LIMIT_MIB = 64.0  # the device tool's limit on what travels: tracked files + carried paths
KIT_MARGIN_MIB = 0.25  # kept free under that limit for files added between packing and the call
INIT_FILE, STREAM_INIT_FILE = "init.pt", "stream_init.pt"  # carried weights to continue from
MAX_OUT_FILES = 8  # the device tool brings back at most 8 files from $OUT, each at most 16 MiB


class KitError(RuntimeError):
    """The kit cannot be packed or unpacked as asked; the message names the file or setting."""


# ---- shards: clips end to end in one Opus stream ---------------------------------------------------------

def parse_codec(codec: str) -> Tuple[str, float]:
    """"ffmpeg:6" -> ("ffmpeg", 6.0); KitError for anything else."""
    encoder, _, value = codec.partition(":")
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if encoder not in ("ffmpeg", "soundfile") or not (number > 0):
        raise KitError(f"codec {codec!r}: expected ffmpeg:KBPS or soundfile:LEVEL (e.g. {DEFAULT_CODEC}, {FALLBACK_CODEC})")
    if encoder == "soundfile" and number > 1:
        raise KitError(f"codec {codec!r}: a soundfile compression level is between 0 and 1")
    if encoder == "ffmpeg" and shutil.which("ffmpeg") is None:
        raise KitError(f"codec {codec!r}: ffmpeg is not installed (apt-get install ffmpeg), or use {FALLBACK_CODEC}")
    return encoder, number


def default_codec() -> str:
    return DEFAULT_CODEC if shutil.which("ffmpeg") else FALLBACK_CODEC


def encode_shard(clips: Sequence[np.ndarray], path: str, codec: str, rate: int = KIT_RATE) -> List[Tuple[int, int]]:
    """Write `clips` (each (samples,) float32 at `rate`) as one Ogg/Opus file, GAP_SECONDS of silence
    between them, with `codec` (parse_codec); returns each clip's (first sample, samples) in the stream."""
    encoder, value = parse_codec(codec)
    gap = np.zeros(int(round(GAP_SECONDS * rate)), dtype=np.float32)
    spans, parts, position = [], [gap], len(gap)
    for clip in clips:
        spans.append((position, len(clip)))
        parts += [np.clip(clip, -1.0, 1.0).astype(np.float32), gap]
        position += len(clip) + len(gap)
    stream = np.concatenate(parts)
    temporary = f"{path}.partial.opus"
    if encoder == "soundfile":
        sf.write(temporary, stream, rate, format="OGG", subtype="OPUS", compression_level=value)
    else:
        source = f"{path}.partial.wav"
        sf.write(source, stream, rate, subtype="FLOAT")
        try:
            result = subprocess.run(["ffmpeg", "-nostdin", "-y", "-loglevel", "error", "-i", source, "-c:a", "libopus",
                                     "-b:a", f"{value:g}k", "-vbr", "on", temporary], capture_output=True, text=True)
        finally:
            os.remove(source)
        if result.returncode != 0:
            raise KitError(f"{path}: ffmpeg failed: {result.stderr.strip()[:300]}")
    os.replace(temporary, path)
    return spans


def decode_shard(path: str, spans: Sequence[Tuple[int, int]], rate: int = KIT_RATE,
                 to_rate: int = SAMPLE_RATE) -> List[np.ndarray]:
    """The clips of a shard at `to_rate`, each (samples,) float32, cut at `spans` (encode_shard's)."""
    stream, stream_rate = sf.read(path, dtype="float32")
    if stream_rate != rate:
        raise KitError(f"{path}: {stream_rate} Hz, the index says {rate} Hz")
    if spans and spans[-1][0] + spans[-1][1] > len(stream):
        raise KitError(f"{path}: {len(stream)} samples, shorter than its index ({spans[-1][0] + spans[-1][1]})")
    return [resample(stream[start: start + length], rate, to_rate) for start, length in spans]


def _load_clip(job: Tuple[str, int]) -> np.ndarray:
    path, rate = job
    return load_audio(path, rate)


def _shard_groups(entries: Sequence[ManifestEntry], seconds: float) -> List[List[int]]:
    groups: List[List[int]] = [[]]
    total = 0.0
    for index, entry in enumerate(entries):
        if groups[-1] and total + entry.duration > seconds:
            groups.append([])
            total = 0.0
        groups[-1].append(index)
        total += entry.duration
    return groups


class _InlinePool:
    """map() in this process, for workers=1 (tests, small kits): no worker start-up."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def map(self, function, items, chunksize: int = 1):
        return map(function, items)


def _pool(workers: int):
    return _InlinePool() if workers <= 1 else concurrent.futures.ProcessPoolExecutor(max_workers=workers)


def pack_corpus(entries: Sequence[ManifestEntry], folder: str, name: str, codec: str, workers: int,
                shard_seconds: float = SHARD_SECONDS) -> dict:
    """Encode a corpus into `folder`/<name>-NN.opus shards and `folder`/<name>.index.jsonl."""
    os.makedirs(folder, exist_ok=True)
    records = []
    with _pool(workers) as pool:
        for number, group in enumerate(_shard_groups(entries, shard_seconds)):
            shard = f"{name}-{number:02d}.opus"
            clips = list(pool.map(_load_clip, [(entries[i].audio_path, KIT_RATE) for i in group], chunksize=16))
            spans = encode_shard(clips, os.path.join(folder, shard), codec)
            for index, (start, length) in zip(group, spans):
                entry = entries[index]
                records.append({"id": entry.utterance_id, "text": entry.text, "duration": round(length / KIT_RATE, 4),
                                "shard": shard, "start": start, "samples": length, **dict(entry.labels)})
            logger.info("%s: %d clips, %.1f min", shard, len(group), sum(entries[i].duration for i in group) / 60)
    write_index(os.path.join(folder, name + INDEX_SUFFIX), records)
    shards = sorted({r["shard"] for r in records})
    size = sum(os.path.getsize(os.path.join(folder, s)) for s in shards)
    seconds = sum(r["samples"] for r in records) / KIT_RATE
    return {"clips": len(records), "hours": round(seconds / 3600, 3), "shards": len(shards), "bytes": size,
            "kbps": round(size * 8 / max(seconds, 1e-9) / 1000, 2), "codec": codec}


def _unique_ids(records: Sequence[dict]) -> List[str]:
    seen: Dict[str, int] = {}
    names = []
    for record in records:
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in (record.get("id") or "clip"))
        count = seen.get(stem, 0)
        seen[stem] = count + 1
        names.append(stem if count == 0 else f"{stem}_{count}")
    return names


def _unpack_shard(job: Tuple[str, List[dict], List[str], str]) -> int:
    path, records, names, out_dir = job
    clips = decode_shard(path, [(r["start"], r["samples"]) for r in records])
    for clip, name in zip(clips, names):
        write_audio(os.path.join(out_dir, name + ".wav"), clip, SAMPLE_RATE)
    return len(clips)


def read_index(path: str) -> List[dict]:
    with lzma.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_index(path: str, records: Sequence[dict]) -> None:
    """A shard index as xz-compressed JSON lines, written to a temporary name and renamed."""
    with lzma.open(f"{path}.partial", "wt", encoding="utf-8", preset=9) as handle:
        handle.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    os.replace(f"{path}.partial", path)


def unpack_corpus(index_path: str, out_dir: str, manifest_path: str, pool) -> int:
    """Decode a packed corpus into `out_dir` (16 kHz WAVs) and a JSON-lines manifest with absolute paths."""
    records = read_index(index_path)
    names = _unique_ids(records)
    folder = os.path.dirname(index_path)
    os.makedirs(out_dir, exist_ok=True)
    by_shard: Dict[str, List[int]] = {}
    for number, record in enumerate(records):
        by_shard.setdefault(record["shard"], []).append(number)
    jobs = [(os.path.join(folder, shard), [records[i] for i in members], [names[i] for i in members], out_dir)
            for shard, members in by_shard.items()]
    done = sum(pool.map(_unpack_shard, jobs))
    lines = []
    for record, name in zip(records, names):
        extra = {k: v for k, v in record.items() if k not in ("id", "text", "duration", "shard", "start", "samples")}
        lines.append({"audio_filepath": os.path.abspath(os.path.join(out_dir, name + ".wav")), "text": record["text"],
                      "duration": round(record["samples"] / KIT_RATE, 4), **extra})
    write_jsonl(manifest_path, lines)
    return done


# ---- room impulse responses -------------------------------------------------------------------------

def simulate_rooms(count: int, workers: int) -> List[np.ndarray]:
    """Rooms 0..count-1 of augment.RoomReverb's fixed family (the default RoomAugmentConfig), simulated once
    here, so the data workers there convolve instead of running pyroomacoustics (0.1-1 s per room)."""
    with _pool(workers) as pool:
        return list(pool.map(_simulate_room, range(count)))


def _simulate_room(number: int) -> np.ndarray:
    from deepspeech_pytorch.augment import RoomReverb
    from deepspeech_pytorch.channel import room_impulse_response
    from deepspeech_pytorch.configs import RoomAugmentConfig

    reverb = RoomReverb(RoomAugmentConfig(), SAMPLE_RATE)
    room, seed = reverb.room(number)
    return room_impulse_response(room, SAMPLE_RATE, seed)


def write_rirs(bank: Dict[str, np.ndarray], folder: str) -> int:
    os.makedirs(folder, exist_ok=True)
    for name, rir in bank.items():
        sf.write(os.path.join(folder, f"{name}.wav"), rir.astype(np.float32), SAMPLE_RATE, subtype="FLOAT")
    return len(bank)


# ---- synthesizers for the device ---------------------------------------------------------------------

ESPEAK_DATA = "/usr/lib/x86_64-linux-gnu/espeak-ng-data"
LIB_DIR = "/usr/lib/x86_64-linux-gnu"
# A stand-in for libpcaudio (espeak-ng's audio output, which pulls in ALSA and PulseAudio): the corpus
# only writes WAV files (espeak-ng -w), so no audio device is ever opened.
PCAUDIO_STUB = r"""
#include <stddef.h>
struct audio_object;
struct audio_object *create_audio_device_object(const char *d, const char *a, const char *n) { return NULL; }
int audio_object_open(struct audio_object *o, int f, unsigned r, unsigned char c) { return -1; }
void audio_object_close(struct audio_object *o) {}
void audio_object_destroy(struct audio_object *o) {}
int audio_object_write(struct audio_object *o, const void *d, size_t b) { return -1; }
int audio_object_drain(struct audio_object *o) { return 0; }
int audio_object_flush(struct audio_object *o) { return 0; }
const char *audio_object_strerror(struct audio_object *o, int e) { return "no audio device (gpu kit stub)"; }
"""


def pack_engines(output: str, mbrola: Sequence[str] = (), pico: bool = False) -> dict:
    """espeak-ng (English data only: 0.6 MB), with SVOX Pico (en-US, en-GB: 1.7 MB more) and MBROLA with
    the named diphone databases (e.g. us1: about 5 MB each) if asked, from this machine's Debian packages,
    as a tar.xz laid out as bin/ lib/ share/{espeak-ng-data,pico/lang,mbrola}: tools/gpu_kit.sh unpacks it
    there and runs the programs with PATH, LD_LIBRARY_PATH and ESPEAK_DATA_PATH pointing into it."""
    import tarfile
    import tempfile

    from deepspeech_pytorch.corpora.tts import MBROLA_DIR, MBROLA_VOICES, PICO_LANG_DIR, PICO_VOICES

    programs = ["espeak-ng"] + (["pico2wave"] if pico else []) + (["mbrola"] if mbrola else [])
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        raise KitError(f"not installed here: {', '.join(missing)} (apt-get install espeak-ng libttspico-utils mbrola)")
    with tempfile.TemporaryDirectory() as root:
        for folder in ("bin", "lib", "share/pico/lang", "share/mbrola"):
            os.makedirs(os.path.join(root, folder))
        for program in programs:
            shutil.copy2(shutil.which(program), os.path.join(root, "bin", program))
        for library in ("libespeak-ng.so.1", "libsonic.so.0") + (("libttspico.so.0", "libpopt.so.0") if pico else ()):
            shutil.copy2(os.path.realpath(os.path.join(LIB_DIR, library)), os.path.join(root, "lib", library))
        stub = os.path.join(root, "pcaudio.c")
        with open(stub, "w") as handle:
            handle.write(PCAUDIO_STUB)
        subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-Wl,-soname,libpcaudio.so.0", "-o",
                        os.path.join(root, "lib", "libpcaudio.so.0"), stub], check=True)
        os.remove(stub)
        data = os.path.join(root, "share", "espeak-ng-data")
        for name in ("phondata", "phonindex", "phontab", "intonations", "en_dict"):
            os.makedirs(data, exist_ok=True)
            shutil.copy2(os.path.join(ESPEAK_DATA, name), os.path.join(data, name))
        shutil.copytree(os.path.join(ESPEAK_DATA, "voices", "!v"), os.path.join(data, "voices", "!v"))
        os.makedirs(os.path.join(data, "lang", "gmw"))
        for name in os.listdir(os.path.join(ESPEAK_DATA, "lang", "gmw")):
            if name.lower().startswith("en"):
                shutil.copy2(os.path.join(ESPEAK_DATA, "lang", "gmw", name), os.path.join(data, "lang", "gmw", name))
        for lang, speaker in (PICO_VOICES.items() if pico else ()):
            for name in (f"{lang}_ta.bin", f"{lang}_{speaker}_sg.bin"):
                shutil.copy2(os.path.join(PICO_LANG_DIR, name), os.path.join(root, "share", "pico", "lang", name))
        voices = [v for v, db in MBROLA_VOICES.items() if db in mbrola]
        if mbrola:
            os.makedirs(os.path.join(data, "voices", "mb"))
            os.makedirs(os.path.join(data, "mbrola_ph"))
            for voice in voices:
                shutil.copy2(os.path.join(ESPEAK_DATA, "voices", "mb", voice), os.path.join(data, "voices", "mb", voice))
                with open(os.path.join(ESPEAK_DATA, "voices", "mb", voice), encoding="utf-8", errors="replace") as h:
                    for line in h:  # "mbrola us1 us_phtrans": the phoneme table it needs
                        if line.startswith("mbrola") and len(line.split()) >= 3:
                            table = line.split()[2]
                            shutil.copy2(os.path.join(ESPEAK_DATA, "mbrola_ph", table), os.path.join(data, "mbrola_ph", table))
            for db in mbrola:
                shutil.copytree(os.path.join(MBROLA_DIR, db), os.path.join(root, "share", "mbrola", db))
        with tarfile.open(output + ".partial", "w:xz", preset=9) as tar:
            for name in sorted(os.listdir(root)):
                tar.add(os.path.join(root, name), arcname=name)
    os.replace(output + ".partial", output)
    return {"output": output, "bytes": os.path.getsize(output), "programs": programs, "mbrola_voices": voices}


def training_text(output: str, seed: int = 0, val_fraction: float = 0.05, test_fraction: float = 0.05) -> dict:
    """The training sentence pool of the project's synthetic corpus (data/synthetic.py's default Debian text,
    seed 0: the same split as datasets/synthetic10h), one sentence a line: no validation or test sentence."""
    from deepspeech_pytorch.corpora.sentences import gather_sentences, interleave
    from deepspeech_pytorch.corpora.synthetic import split_text, write_training_text
    from deepspeech_pytorch.labels import Alphabet

    pools = split_text(interleave(gather_sentences("debian", Alphabet(oov_policy="error")), seed),
                       val_fraction, test_fraction)
    return {"output": output, "sentences": write_training_text(pools["train"], output),
            "held_out": len(pools["val"]) + len(pools["test"])}


# ---- sizes ------------------------------------------------------------------------------------------

def folder_bytes(folder: str) -> int:
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(folder) for name in names)


def tree_files(repo: str) -> Dict[str, int]:
    """Size of each file the device tool sends besides carried paths: tracked files and untracked files git
    does not ignore (as they are in the working tree now: another helper's export counts too)."""
    listed = subprocess.run(["git", "-C", repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.split(b"\0")
    sizes = {}
    for name in listed:
        path = os.path.join(repo, name.decode("utf-8", "surrogateescape"))
        if name and os.path.isfile(path) and not os.path.islink(path):
            sizes[os.path.relpath(path, repo)] = os.path.getsize(path)
    return sizes


def tree_bytes(repo: str) -> int:
    return sum(tree_files(repo).values())


def _largest(repo: str, count: int = 3) -> str:
    sizes = tree_files(repo)
    return ", ".join(f"{name} {size / 2**20:.1f} MiB" for name, size in sorted(sizes.items(), key=lambda i: -i[1])[:count])


# ---- pack -------------------------------------------------------------------------------------------

def _entries(path: str, limit: Optional[int], seed: int) -> List[ManifestEntry]:
    """A manifest's entries in a seeded random order (so a shard is a random sample), at most `limit`."""
    entries = read_manifest(path)
    count = len(entries) if limit is None else min(limit, len(entries))
    return random.Random(f"{seed}/{os.path.basename(path)}").sample(entries, count)


def _corpus_name(path: str) -> str:
    """queen/queen_train.jsonl -> queen_train; drascula/val.jsonl -> drascula_val."""
    stem = os.path.splitext(os.path.basename(path))[0]
    parent = os.path.basename(os.path.dirname(os.path.abspath(path)))
    name = stem if not parent or parent in stem else f"{parent}_{stem}"
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def pack_site(wheels: str, output: str) -> List[str]:
    """Unzip every wheel in `wheels` into one site-packages tree and write it as tar.xz (a third smaller
    than the wheels: they are zip-deflated); the device puts it on PYTHONPATH."""
    import tarfile
    import tempfile
    import zipfile

    names = sorted(name for name in os.listdir(wheels) if name.endswith(".whl"))
    if not names:
        raise KitError(f"{wheels}: no .whl files (docs/gpu_kit.md says which to download)")
    with tempfile.TemporaryDirectory() as site:
        for name in names:
            with zipfile.ZipFile(os.path.join(wheels, name)) as wheel:
                wheel.extractall(site)
        with tarfile.open(output + ".partial", "w:xz", preset=9) as tar:
            for name in sorted(os.listdir(site)):
                tar.add(os.path.join(site, name), arcname=name)
    os.replace(output + ".partial", output)
    return names


def _budget_mib(args: argparse.Namespace) -> Tuple[float, float]:
    """(MiB the kit may take, MiB of the tree that travels anyway)."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tree_mib = tree_bytes(repo) / 2**20
    budget = args.max_mib if args.max_mib is not None else TREE_LIMIT_MIB - KIT_MARGIN_MIB - tree_mib
    return budget, tree_mib


def _drop_shards(out: str, kit: dict, excess: int, max_fraction: float = 0.25) -> List[str]:
    """Remove training shards (the last of the largest corpus first; clips are shuffled before sharding,
    so a shard is a random sample) until `excess` bytes are gone; the indexes are rewritten. Refuses
    (KitError) to drop more than `max_fraction` of the training audio's bytes."""
    total = sum(info["bytes"] for info in kit["train"].values())
    if excess > max_fraction * total:
        repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        raise KitError(f"the kit is {excess / 2**20:.1f} MiB over its budget, more than {max_fraction:.0%} of the "
                       f"training speech: make room in the tree that travels (largest: {_largest(repo)}) "
                       f"or pack less (--limit, --text-lines)")
    dropped: List[str] = []
    while excess > 0:
        name = max(kit["train"], key=lambda n: kit["train"][n]["bytes"])
        index_path = os.path.join(out, "train", name + INDEX_SUFFIX)
        records = read_index(index_path)
        shards = sorted({r["shard"] for r in records})
        if len(shards) <= 1:
            raise KitError(f"cannot fit: {name} is down to one shard and the kit is still {excess} bytes over")
        last = shards[-1]
        size = os.path.getsize(os.path.join(out, "train", last))
        os.remove(os.path.join(out, "train", last))
        records = [r for r in records if r["shard"] != last]
        write_index(index_path, records)
        info = kit["train"][name]
        info.update(clips=len(records), shards=len(shards) - 1, bytes=info["bytes"] - size,
                    hours=round(sum(r["samples"] for r in records) / KIT_RATE / 3600, 3))
        dropped.append(last)
        excess -= size
    return dropped


def pack(args: argparse.Namespace) -> dict:
    out = args.output
    if os.path.exists(out) and os.listdir(out):
        if not args.force:
            raise KitError(f"{out}: folder exists and is not empty (use --force to replace it)")
        shutil.rmtree(out)
    os.makedirs(out, exist_ok=True)
    codec = args.codec or default_codec()
    parse_codec(codec)
    budget, tree_mib = _budget_mib(args)
    started = time.monotonic()
    kit: dict = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rate": KIT_RATE,
                 "gap_seconds": GAP_SECONDS, "codec": codec, "train": {}, "val": {}, "noise": None, "rirs": 0,
                 "wheels": [], "engines": None, "text": None}
    for path in args.speech:
        name = _corpus_name(path)
        kit["train"][name] = pack_corpus(_entries(path, args.limit, args.seed), os.path.join(out, "train"), name,
                                         codec, args.workers, args.shard_seconds)
        logger.info("train %s: %s", name, kit["train"][name])
    for path in args.val:
        name = _corpus_name(path)
        kit["val"][name] = pack_corpus(_entries(path, args.val_limit, args.seed), os.path.join(out, "val"), name,
                                       codec, args.workers, args.shard_seconds)
        logger.info("val %s: %s", name, kit["val"][name])
    if args.noise:
        entries = [e for path in args.noise for e in read_manifest(path)]
        kit["noise"] = pack_corpus(entries, os.path.join(out, "noise"), "noise", codec, args.workers)
    if args.rirs:
        rirs = simulate_rooms(args.rirs, args.workers)
        np.savez_compressed(os.path.join(out, "rirs.npz"),
                            **{f"room{k:04d}": rir.astype(np.float16) for k, rir in enumerate(rirs)})
        kit["rirs"] = len(rirs)
    if args.wheels:
        kit["wheels"] = pack_site(args.wheels, os.path.join(out, SITE_FILE))
    if args.engines:
        shutil.copy2(args.engines, os.path.join(out, "engines.tar.xz"))
        kit["engines"] = os.path.basename(args.engines)
    for flag, name in ((args.init, INIT_FILE), (args.stream_init, STREAM_INIT_FILE)):
        if flag:  # weights to continue from (train.py's checkpoint.finetune_from): training adds up across loans
            from deepspeech_pytorch.checkpoint import load_checkpoint

            load_checkpoint(flag)  # refuse anything that is not a checkpoint here, not there
            shutil.copy2(flag, os.path.join(out, name))
            kit.setdefault("init", {})[name] = {"source": os.path.abspath(flag), "bytes": os.path.getsize(flag)}
    if args.text:
        with open(args.text, encoding="utf-8") as source:
            lines = [line for line in source if line.strip()]
        if args.text_lines is not None and args.text_lines < len(lines):
            lines = random.Random(f"{args.seed}/text").sample(lines, args.text_lines)
        with lzma.open(os.path.join(out, "text.txt.xz"), "wt", encoding="utf-8", preset=9) as target:
            target.writelines(lines)
        kit["text"] = {"source": os.path.abspath(args.text), "lines": len(lines)}
    kit_bytes = folder_bytes(out) + 4096
    excess = kit_bytes - int(budget * 2**20)
    if excess > 0 and args.fit and kit["train"]:
        kit["dropped_shards"] = _drop_shards(out, kit, excess)
        logger.warning("to fit %.1f MiB, dropped training shards %s", budget, ", ".join(kit["dropped_shards"]))
        kit_bytes = folder_bytes(out) + 4096
    kit["bytes"] = kit_bytes
    kit["pack_seconds"] = round(time.monotonic() - started, 1)
    with open(os.path.join(out, KIT_FILE), "w", encoding="utf-8") as handle:
        json.dump(kit, handle, indent=1)
    kit_mib = kit_bytes / 2**20
    logger.info("kit %s: %.2f MiB; the tree that travels with it: %.2f MiB; together %.2f of %.0f MiB",
                out, kit_mib, tree_mib, kit_mib + tree_mib, TREE_LIMIT_MIB)
    if kit_mib > budget:
        raise KitError(f"{out}: {kit_mib:.2f} MiB is over the budget of {budget:.2f} MiB (the device call carries at most "
                       f"{TREE_LIMIT_MIB:.0f} MiB with the {tree_mib:.2f} MiB tree); add --fit, or lower --limit")
    return kit


# ---- unpack -----------------------------------------------------------------------------------------

def unpack(args: argparse.Namespace) -> dict:
    kit_dir, work = args.kit, args.work
    path = os.path.join(kit_dir, KIT_FILE)
    if not os.path.isfile(path):
        raise KitError(f"{path}: not found: is --kit a folder made by `gpu_kit.py pack`?")
    with open(path, encoding="utf-8") as handle:
        kit = json.load(handle)
    os.makedirs(work, exist_ok=True)
    started = time.monotonic()
    result: dict = {"train": {}, "val": {}, "noise": None, "rirs": None}
    with _pool(args.workers) as pool:
        for part in ("train", "val"):
            for name in kit[part]:
                manifest = os.path.join(work, part, f"{name}.jsonl")
                count = unpack_corpus(os.path.join(kit_dir, part, name + INDEX_SUFFIX),
                                      os.path.join(work, part, name), manifest, pool)
                result[part][name] = manifest
                logger.info("%s %s: %d clips -> %s", part, name, count, manifest)
        if kit.get("noise"):
            result["noise"] = os.path.join(work, "noise", "noise.jsonl")
            unpack_corpus(os.path.join(kit_dir, "noise", "noise" + INDEX_SUFFIX), os.path.join(work, "noise", "clips"),
                          result["noise"], pool)
        if args.rooms and not kit.get("rirs"):
            try:  # without rooms the run trains on: gpu_kit.sh leaves room reverb off when rirs/ is missing
                rooms = list(pool.map(_simulate_room, range(args.rooms), chunksize=4))
            except Exception as error:  # pyroomacoustics missing or broken there: one line, not the end of the run
                logger.warning("no rooms simulated (%s: %s): room reverb stays off", type(error).__name__, error)
            else:
                result["rirs"] = os.path.join(work, "rirs")
                write_rirs({f"room{k:04d}": rir for k, rir in enumerate(rooms)}, result["rirs"])
                logger.info("%d rooms simulated -> %s", len(rooms), result["rirs"])
    if kit.get("rirs"):
        with np.load(os.path.join(kit_dir, "rirs.npz")) as bank:
            result["rirs"] = os.path.join(work, "rirs")
            write_rirs({name: bank[name].astype(np.float32) for name in bank.files}, result["rirs"])
    if kit.get("text"):
        result["text"] = os.path.join(work, "text.txt")
        with lzma.open(os.path.join(kit_dir, "text.txt.xz"), "rb") as source, open(result["text"], "wb") as target:
            shutil.copyfileobj(source, target)
    result["hours"] = {part: {name: round(sum(json.loads(line)["duration"] for line in open(path, encoding="utf-8"))
                                          / 3600, 3) for name, path in result[part].items()} for part in ("train", "val")}
    result["seconds"] = round(time.monotonic() - started, 1)
    with open(os.path.join(work, "unpacked.json"), "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=1)
    return result


# ---- mix --------------------------------------------------------------------------------------------

def mix(args: argparse.Namespace) -> dict:
    """One JSON-lines manifest (absolute paths) from manifests given as PATH or PATH:REPEATS."""
    lines, summary = [], {}
    for item in args.manifests:
        path, _, repeats = item.rpartition(":") if item.rsplit(":", 1)[-1].isdigit() else (item, "", "1")
        entries = read_manifest(path)
        for _ in range(int(repeats)):
            lines += [{"audio_filepath": os.path.abspath(e.audio_path), "text": e.text, "duration": e.duration,
                       **dict(e.labels)} for e in entries]
        summary[path] = {"utterances": len(entries), "repeats": int(repeats),
                         "hours": round(sum(e.duration for e in entries) / 3600, 3)}
    write_jsonl(args.output, lines)
    return {"output": args.output, "lines": len(lines), "sources": summary}


# ---- finish: choose on validation, bring back small files ----------------------------------------------

def split_file(path: str, out_dir: str, part_mib: float) -> List[str]:
    """Copy `path` into `out_dir` as <name>.00, <name>.01, ... of at most `part_mib` MiB each (the device
    tool brings back files of at most 16 MiB); `cat <name>.* > <name>` joins them."""
    size, limit = os.path.getsize(path), int(part_mib * 2**20)
    names = []
    with open(path, "rb") as source:
        for number in range(max(1, -(-size // limit))):
            name = f"{os.path.basename(path)}.{number:02d}"
            with open(os.path.join(out_dir, name), "wb") as target:
                target.write(source.read(limit))
            names.append(name)
    return names


def _manifest_names(paths: Sequence[str]) -> List[str]:
    """A distinct name for each validation manifest in results.json: its file name, with its folder where
    two share a file name (drascula/val.jsonl, espeak/val.jsonl). Raises KitError for the same one twice."""
    names = [os.path.basename(path) for path in paths]
    names = [os.path.join(os.path.basename(os.path.dirname(os.path.abspath(path))), name) if names.count(name) > 1
             else name for path, name in zip(paths, names)]
    for name in names:
        if names.count(name) > 1:
            raise KitError(f"--val {name} is given twice: name each validation manifest once")
    return names


def finish(args: argparse.Namespace) -> dict:
    """Greedy WER of best.pt, last.pt and the average of the last `--average` epoch checkpoints on the
    validation manifests; the one best on the first manifest (and last.pt, if another) go to `--out` as
    fp16 inference checkpoints in parts, with results.json."""
    import glob

    import torch

    from deepspeech_pytorch.bundle import inference_state
    from deepspeech_pytorch.checkpoint import average_checkpoints, load_checkpoint, save_checkpoint
    from deepspeech_pytorch.evaluation import evaluate_manifest
    from deepspeech_pytorch.inference import Transcriber, load_model

    folder, out = args.checkpoints, args.out
    val_names = _manifest_names(args.val)
    os.makedirs(out, exist_ok=True)
    states = {}
    for name in ("best", "last"):
        path = os.path.join(folder, f"{name}.pt")
        if os.path.isfile(path):
            states[name] = load_checkpoint(path)
    epochs = sorted(glob.glob(os.path.join(folder, "epoch_*.pt")))
    if args.average > 1 and len(epochs) >= 2:
        chosen = epochs[-args.average:]
        states[f"average{len(chosen)}"] = average_checkpoints(chosen)
    if not states:
        raise KitError(f"{folder}: no best.pt, last.pt or epoch_*.pt to finish")
    results: dict = {"candidates": {}, "val": list(args.val)}
    slim_dir = os.path.join(folder, "fp16")
    os.makedirs(slim_dir, exist_ok=True)
    for name, state in states.items():
        slim = inference_state(state, f"gpu-kit-{name}", half=True, trained_steps=state.get("step"),
                               trained_epochs=state.get("epoch"))
        path = os.path.join(slim_dir, f"{name}-fp16.pt")
        save_checkpoint(path, slim)
        transcriber = Transcriber(load_model(path, device=args.device), "greedy", vad=False, batch_size=32)
        scores = {}
        for manifest, val_name in zip(args.val, val_names):
            result = evaluate_manifest(transcriber, manifest, batch_size=32, num_workers=args.workers, progress=False)
            scores[val_name] = {"wer": round(result.wer, 4), "cer": round(result.cer, 4),
                                "utterances": len(result.utterances)}
        results["candidates"][name] = {"path": path, "epoch": state.get("epoch"), "step": state.get("step"),
                                       "scores": scores}
        logger.info("%s (epoch %s, step %s): %s", name, state.get("epoch"), state.get("step"), scores)
        del transcriber
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    first = val_names[0] if val_names else None
    # lowest CER on the first manifest, WER breaking ties: a short run's WERs all sit near 100% on real speech,
    # where the lowest is an early, nearly blank model (2026-11-29: WER 97.3%, CER 95.9% against 99.3%, 60.6%)
    chosen = min(results["candidates"], key=lambda n: (results["candidates"][n]["scores"][first]["cer"],
                                                       results["candidates"][n]["scores"][first]["wer"])) if first \
        else ("best" if "best" in states else "last")
    results["chosen"] = chosen
    shutil.copy2(results["candidates"][chosen]["path"], os.path.join(slim_dir, "model-fp16.pt"))
    results["files"] = split_file(os.path.join(slim_dir, "model-fp16.pt"), out, args.part_mib)
    last_parts = -(-os.path.getsize(results["candidates"].get("last", {}).get("path", os.devnull)) // int(args.part_mib * 2**20))
    room = MAX_OUT_FILES - len(os.listdir(out)) - 1  # results.json comes too
    if chosen != "last" and "last" in states and args.with_last and states["last"].get("step") != states[chosen].get("step"):
        if last_parts <= room:
            results["files"] += split_file(results["candidates"]["last"]["path"], out, args.part_mib)
        else:
            logger.warning("last.pt left behind: %d more parts would pass the %d files that come back", last_parts, MAX_OUT_FILES)
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=1)
    return results


# ---- bitrate: the WER cost of an Opus setting -------------------------------------------------------

def _normalized(text: str) -> str:
    from deepspeech_pytorch.labels import Alphabet

    return " ".join(Alphabet(oov_policy="drop").normalize(text).split())


def bitrate(args: argparse.Namespace) -> dict:
    """Greedy WER/CER of the bundled model (and Whisper tiny.en, where faster-whisper is installed) on
    `--clips` clips of a manifest: as they are, and through a shard with each of `--codecs` at `--rate`."""
    import torch

    from deepspeech_pytorch.inference import Transcriber, load_model
    from deepspeech_pytorch.metrics import error_counts

    torch.set_num_threads(args.threads)
    entries = _entries(args.manifest, args.clips, args.seed)
    references = [_normalized(e.text) for e in entries]
    original = [load_audio(e.audio_path, SAMPLE_RATE) for e in entries]
    seconds = sum(len(c) for c in original) / SAMPLE_RATE
    conditions: Dict[str, List[np.ndarray]] = {"original": original}
    sizes: Dict[str, float] = {}
    scratch = args.scratch
    os.makedirs(scratch, exist_ok=True)
    for codec in args.codecs:
        rate = args.rate
        path = os.path.join(scratch, f"{codec.replace(':', '-')}-{rate}.opus")
        clips = [resample(c, SAMPLE_RATE, rate) for c in original]
        spans = encode_shard(clips, path, codec, rate)
        name = f"{codec} at {rate} Hz"
        conditions[name] = decode_shard(path, spans, rate)
        sizes[name] = round(os.path.getsize(path) * 8 / seconds / 1000, 2)
    recognizers = {"bundled greedy": None}
    transcriber = Transcriber(load_model(None), "greedy", vad=False)
    try:
        from deepspeech_pytorch.corpora.align import WhisperRecognizer

        recognizers["whisper tiny.en"] = WhisperRecognizer(threads=args.threads)
    except Exception as error:  # the aligner is optional (data-prep extra): measure with the bundled model alone
        logger.warning("no Whisper recognizer (%s): bundled model only", error)
    table = {}
    for name, clips in conditions.items():
        row = {"kbps": sizes.get(name)}
        for recognizer_name, recognizer in recognizers.items():
            if recognizer is None:
                hypotheses = [t.text for t in transcriber.transcribe_many(clips, word_timings=False)]
            else:
                hypotheses = [_normalized(recognizer(clip)) for clip in clips]
            counts = error_counts(references, hypotheses)
            row[recognizer_name] = {"wer": round(100 * counts.wer, 2), "cer": round(100 * counts.cer, 2)}
        table[name] = row
        logger.info("%s: %s", name, row)
    return {"manifest": args.manifest, "clips": len(entries), "minutes": round(seconds / 60, 1), "results": table}


# ---- throughput: what one data worker sustains --------------------------------------------------------

def throughput(args: argparse.Namespace) -> dict:
    """Load + augment + featurise `--items` utterances of a manifest in this one process (as one DataLoader
    worker does, torch on one thread) with the augmentation of `overrides` (augment.*=..., features.*=...
    as train.py takes them); utterances and audio seconds per second, and the share each effect costs."""
    import torch
    from omegaconf import OmegaConf

    from deepspeech_pytorch.augment import build_augmenters
    from deepspeech_pytorch.configs import AugmentConfig, FeatureConfig
    from deepspeech_pytorch.datasets import SpeechDataset
    from deepspeech_pytorch.labels import Alphabet

    torch.set_num_threads(1)
    dotlist = [item.lstrip("+") for item in args.overrides]
    features = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(FeatureConfig), OmegaConf.from_dotlist(
        [item[len("features."):] for item in dotlist if item.startswith("features.")])))
    augment = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(AugmentConfig), OmegaConf.from_dotlist(
        [item[len("augment."):] for item in dotlist if item.startswith("augment.")])))
    entries = _entries(args.manifest, args.items, args.seed)
    waveform, feature = build_augmenters(augment, features.sample_rate, [e.audio_path for e in entries])
    dataset = SpeechDataset(entries, Alphabet(oov_policy="drop"), features, waveform, feature, seed=args.seed)
    for index in range(min(args.warmup, len(dataset))):  # rooms simulated / noise decoded on first use
        dataset[index]
    started, cpu_started = time.perf_counter(), time.process_time()
    for epoch in range(args.epochs):
        dataset.set_epoch(epoch + 1)
        for index in range(len(dataset)):
            sample = dataset[index]
            if sample.failure is not None:
                raise KitError(sample.failure.message)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    count = len(dataset) * args.epochs
    audio = sum(e.duration for e in entries) * args.epochs
    # per CPU second (this process's own time: a busy machine does not bend it) and per wall-clock second
    return {"manifest": args.manifest, "utterances": count, "cpu_seconds": round(cpu, 2), "seconds": round(elapsed, 2),
            "utterances_per_cpu_second": round(count / cpu, 1), "audio_seconds_per_cpu_second": round(audio / cpu, 1),
            "utterances_per_second": round(count / elapsed, 1), "mean_duration": round(audio / count, 2),
            "overrides": args.overrides}


# ---- command line -----------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="make the carry folder here")
    p.add_argument("--output", required=True, help="folder to create (gitignored, e.g. gpu_kit/carry)")
    p.add_argument("--speech", action="append", default=[], help="training manifest (repeatable)")
    p.add_argument("--val", action="append", default=[], help="validation manifest (repeatable)")
    p.add_argument("--noise", action="append", default=[], help="noise manifest from data/noise.py (repeatable)")
    p.add_argument("--rirs", type=int, default=0, help="simulated rooms to carry as a bank of impulse responses")
    p.add_argument("--wheels", help="folder of .whl files the device lacks")
    p.add_argument("--engines", help="engines tarball (tools/gpu_kit.sh engines)")
    p.add_argument("--text", help="sentences for synthesis there, one a line")
    p.add_argument("--text-lines", type=int, default=None, help="a random sample of this many of them")
    p.add_argument("--codec", default=None, help=f"Opus setting (default {DEFAULT_CODEC}, {FALLBACK_CODEC} without ffmpeg)")
    p.add_argument("--init", help="checkpoint the bundled model's training continues from (fp16 inference ones do)")
    p.add_argument("--stream-init", help="checkpoint the streaming model's training continues from")
    p.add_argument("--fit", action="store_true", help="drop training shards until the kit fits the budget")
    p.add_argument("--limit", type=int, default=None, help="at most this many clips of each training manifest")
    p.add_argument("--val-limit", type=int, default=None, help="at most this many clips of each validation manifest")
    p.add_argument("--shard-seconds", type=float, default=SHARD_SECONDS)
    p.add_argument("--max-mib", type=float, default=None,
                   help="refuse a kit larger than this (default: what the device call leaves beside the tree)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    u = sub.add_parser("unpack", help="decode a carry folder into 16 kHz WAVs and manifests")
    u.add_argument("--kit", required=True)
    u.add_argument("--work", required=True)
    u.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    u.add_argument("--rooms", type=int, default=0, help="simulate this many rooms (pyroomacoustics) when the kit has no bank")
    m = sub.add_parser("mix", help="one training manifest from several, with repeats (PATH:N)")
    m.add_argument("manifests", nargs="+")
    m.add_argument("--output", required=True)
    e = sub.add_parser("engines", help="espeak-ng, Pico (and MBROLA) from this machine as a tar.xz for the device")
    e.add_argument("--output", required=True)
    e.add_argument("--mbrola", default="", help="comma separated diphone databases, e.g. us1,us2 (about 5 MB each)")
    e.add_argument("--pico", action="store_true", help="SVOX Pico too (1.7 MB; left out, it is an engine never trained on)")
    f = sub.add_parser("finish", help="choose best/last/averaged on validation; fp16 parts and results.json to --out")
    f.add_argument("--checkpoints", required=True, help="the training run's checkpoint.directory")
    f.add_argument("--val", action="append", default=[], help="validation manifest (the first one chooses)")
    f.add_argument("--out", required=True)
    f.add_argument("--average", type=int, default=3, help="average this many last epoch checkpoints (1: none)")
    f.add_argument("--device", default="auto", help="auto: cuda when there is one")
    f.add_argument("--workers", type=int, default=4)
    f.add_argument("--part-mib", type=float, default=15.0)
    f.add_argument("--with-last", action="store_true", help="bring back last.pt too when another is chosen")
    t = sub.add_parser("throughput", help="utterances/s one data worker sustains with an augmentation")
    t.add_argument("--manifest", required=True)
    t.add_argument("--items", type=int, default=200)
    t.add_argument("--epochs", type=int, default=1)
    t.add_argument("--warmup", type=int, default=20)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("overrides", nargs="*", help="augment.* and features.* settings, as train.py takes them")
    x = sub.add_parser("text", help="the synthetic corpus's training sentence pool (no val/test sentence)")
    x.add_argument("--output", required=True)
    r = sub.add_parser("rooms", help="simulate rooms of augment.RoomReverb's family as impulse-response WAVs")
    r.add_argument("--output", required=True)
    r.add_argument("--rooms", type=int, default=256)
    r.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    b = sub.add_parser("bitrate", help="greedy WER of a manifest's clips before and after Opus shards")
    b.add_argument("--manifest", required=True)
    b.add_argument("--clips", type=int, default=300)
    b.add_argument("--codecs", nargs="+", default=["ffmpeg:6", "ffmpeg:7", "ffmpeg:8", "soundfile:1.0", "soundfile:0.99"])
    b.add_argument("--rate", type=int, default=KIT_RATE)
    b.add_argument("--scratch", default="/tmp/gpu_kit_bitrate")
    b.add_argument("--threads", type=int, default=1)
    b.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        result = {"pack": pack, "unpack": unpack, "mix": mix, "bitrate": bitrate, "throughput": throughput, "finish": finish,
                  "text": lambda a: training_text(a.output),
                  "rooms": lambda a: {"output": a.output, "rooms": write_rirs(
                      {f"room{k:04d}": rir for k, rir in enumerate(simulate_rooms(a.rooms, a.workers))}, a.output)},
                  "engines": lambda a: pack_engines(a.output, [d for d in a.mbrola.split(",") if d], a.pico)}[args.command](args)
    except (KitError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
