"""fp32 PyTorch vs int8 PyTorch vs ONNX Runtime fp32 vs ONNX Runtime int8, in one run on the same clips:
real-time factor at batch 1 and 8, peak memory, model file size, and WER/CER on test splits (greedy, and
beam search with the model's LM).

    python benchmarks/backends.py --export-dir exported \
        --split drascula=/work/datasets/drascula/test.jsonl --split engines=/work/datasets/unseen_engines/all.jsonl \
        --max-clips 100 --speed-clips 16

The four model files are the ones export.py writes (made here first when --export-dir lacks them, calibrated
and checked on the bundled samples): <name>.ts.pt is not timed, the checkpoint is what fp32 PyTorch runs.
Only the acoustic model differs between the rows: audio, features (PyTorch's), the log-softmax and the
decoders are shared, whole clips without voice-activity detection, as test.py scores them. ONNX Runtime runs
through the library's backend (onnx_backend.load_onnx: its session settings, idle threads not spinning).

RTF: (features + model + greedy decoding) seconds per audio second over the --speed-clips clips (model_rtf:
the acoustic model's share alone), batch 1
(one clip at a time) and batch 8 (clips of similar length together), the best of --repeats passes taken
round-robin across the backends so that load from other processes falls on all of them alike. Peak memory:
the high-water resident set of a fresh process that loads the backend and transcribes those clips at batch 8
(`peak_rss_mb`), and how much of it came after the imports (`model_rss_mb`). WER/CER: corpus totals on the
first --max-clips clips of each split (the bundled samples are always a split).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from deepspeech_pytorch.audio import load_audio  # noqa: E402
from deepspeech_pytorch.configs import FeatureConfig  # noqa: E402
from deepspeech_pytorch.datasets import read_manifest  # noqa: E402
from deepspeech_pytorch.decoders import build_decoder  # noqa: E402
from deepspeech_pytorch.export import FORMATS, METADATA_FILE, export_all  # noqa: E402
from deepspeech_pytorch.features import FeatureExtractor, seconds_per_frame  # noqa: E402
from deepspeech_pytorch.inference import PRETRAINED_DIR, LoadedModel, load_model  # noqa: E402
from deepspeech_pytorch.labels import Alphabet  # noqa: E402
from deepspeech_pytorch.metrics import error_counts  # noqa: E402

BACKENDS = ("torch_fp32", "torch_int8", "onnxruntime_fp32", "onnxruntime_int8")
FILES = {"torch_int8": "torchscript_int8", "onnxruntime_fp32": "onnx", "onnxruntime_int8": "onnx_int8"}
SAMPLES_MANIFEST = os.path.join(PRETRAINED_DIR, "samples", "samples.jsonl")
Runner = Callable[[torch.Tensor, torch.Tensor], Tuple[torch.Tensor, torch.Tensor]]


def model_files(loaded: LoadedModel, export_dir: str) -> Dict[str, str]:
    """The exported files of the four backends (exported first if missing); torch_fp32 is the checkpoint."""
    paths = {backend: os.path.join(export_dir, loaded.name + FORMATS[fmt]) for backend, fmt in FILES.items()}
    missing = [FILES[b] for b, p in paths.items() if not os.path.isfile(p)]
    if missing:
        folder = os.path.join(PRETRAINED_DIR, "samples")
        samples = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".wav"))
        export_all(loaded, export_dir, samples, missing)
    return {"torch_fp32": loaded.path, **paths}


def runner(backend: str, loaded: LoadedModel, path: str, threads: int) -> Runner:
    """features (batch, freq, frames), lengths (batch,) -> logits (batch, time, classes), output lengths."""
    if backend == "torch_fp32":
        model = loaded.model.eval()
        return lambda x, n: model(x, n)
    if backend == "torch_int8":
        scripted = torch.jit.load(path, map_location="cpu")
        return lambda x, n: scripted(x, n)
    from deepspeech_pytorch.onnx_backend import load_onnx  # the library's onnxruntime backend and its session settings

    model = load_onnx(path, "cpu", threads)[0]

    def run(x: torch.Tensor, n: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        logits, out = model(x.numpy(), n.numpy())
        return torch.from_numpy(logits), torch.from_numpy(out)

    return run


def batches(waveforms: Sequence[np.ndarray], batch_size: int) -> List[List[int]]:
    """Indices in groups of `batch_size`, each group of clips of similar length (sorted by length)."""
    order = sorted(range(len(waveforms)), key=lambda i: len(waveforms[i]))
    return [order[i: i + batch_size] for i in range(0, len(order), batch_size)]


@torch.inference_mode()
def log_probs(run: Runner, extractor: FeatureExtractor, waveforms: Sequence[np.ndarray],
              group: Sequence[int]) -> Tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(waveforms[i]) for i in group])
    padded = torch.zeros(len(group), int(lengths.max()))
    for row, index in enumerate(group):
        padded[row, : len(waveforms[index])] = torch.from_numpy(waveforms[index])
    features, frames = extractor(padded, lengths)
    logits, output_lengths = run(features, frames)
    return torch.log_softmax(logits.float(), dim=-1), output_lengths


def transcribe(run: Runner, extractor: FeatureExtractor, decoder, waveforms: Sequence[np.ndarray],
               batch_size: int) -> List[str]:
    texts = [""] * len(waveforms)
    for group in batches(waveforms, batch_size):
        probabilities, lengths = log_probs(run, extractor, waveforms, group)
        for index, hypothesis in zip(group, decoder.decode(probabilities, lengths)):
            texts[index] = hypothesis.text
    return texts


def rss_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def exported_metadata(path: str) -> Dict[str, str]:
    """The metadata export.py stores in an ONNX file (metadata_props) or a TorchScript file (extra file)."""
    if path.endswith(".onnx"):
        import onnxruntime

        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        return dict(session.get_modelmeta().custom_metadata_map)
    extra = {METADATA_FILE: ""}
    torch.jit.load(path, map_location="cpu", _extra_files=extra)
    return json.loads(extra[METADATA_FILE])


def memory_worker(backend: str, path: str, clip_paths: List[str], threads: int) -> None:
    """In a fresh process: load one backend, transcribe the clips at batch 8, print the memory figures."""
    torch.set_num_threads(threads)
    before = rss_mb("VmRSS")
    if backend == "torch_fp32":
        loaded = load_model(path)
        features, alphabet, frame_seconds = loaded.features, loaded.alphabet, \
            seconds_per_frame(loaded.features) * loaded.model.time_stride
    else:  # what the exported file says about itself: the fp32 weights are not loaded
        meta = exported_metadata(path)
        features = FeatureConfig(**json.loads(meta["feature_config"]))
        alphabet = Alphabet(tuple(json.loads(meta["labels"])))
        frame_seconds, loaded = float(meta["seconds_per_frame"]), None
    run = runner(backend, loaded, path, threads)
    decoder = build_decoder("greedy", alphabet, frame_seconds)
    waveforms = [load_audio(p, features.sample_rate) for p in clip_paths]
    transcribe(run, FeatureExtractor(features), decoder, waveforms, 8)
    peak = rss_mb("VmHWM")
    print(json.dumps({"peak_rss_mb": round(peak, 1), "model_rss_mb": round(peak - before, 1)}))


def read_split(path: str, max_clips: int) -> Tuple[List[str], List[str]]:
    entries = read_manifest(path)[:max_clips]
    return [e.audio_path for e in entries], [e.text for e in entries]


def table(rows: List[Dict[str, object]], columns: Sequence[str]) -> str:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    lines = [" | ".join(c.ljust(widths[c]) for c in columns), "-|-".join("-" * widths[c] for c in columns)]
    lines += [" | ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="checkpoint (default: the bundled model)")
    parser.add_argument("--export-dir", default="exported", help="where the exported files are (or are written)")
    parser.add_argument("--split", action="append", default=[], metavar="NAME=MANIFEST",
                        help="a test split to score (repeatable); the bundled samples are always scored")
    parser.add_argument("--max-clips", type=int, default=100, help="first clips of each split scored (0: speed only)")
    parser.add_argument("--speed-clips", type=int, default=16, help="clips of the first split (else the samples) timed")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per backend and batch size (best kept)")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads of PyTorch and ONNX Runtime")
    parser.add_argument("--no-beam", action="store_true", help="greedy WER only (beam + LM is the slow part)")
    parser.add_argument("--output", default=None, help="also write the JSON here")
    parser.add_argument("--memory-worker", nargs=2, metavar=("BACKEND", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--clips", nargs="*", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_worker:
        memory_worker(args.memory_worker[0], args.memory_worker[1], args.clips, args.threads)
        return
    torch.set_num_threads(args.threads)
    loaded = load_model(args.model)
    files = model_files(loaded, args.export_dir)
    runs = {backend: runner(backend, loaded, files[backend], args.threads) for backend in BACKENDS}
    extractor = FeatureExtractor(loaded.features)
    frame_seconds = seconds_per_frame(loaded.features) * loaded.model.time_stride
    greedy = build_decoder("greedy", loaded.alphabet, frame_seconds)
    beam = None if args.no_beam or loaded.model_lm is None else \
        build_decoder("beam", loaded.alphabet, frame_seconds, loaded.model_lm)
    splits = [("samples", SAMPLES_MANIFEST)] + [tuple(s.split("=", 1)) for s in args.split]
    rate = loaded.features.sample_rate

    # speed: the same clips for every backend, round-robin passes, best pass kept
    speed_paths, _ = read_split(splits[1][1] if len(splits) > 1 else SAMPLES_MANIFEST, args.speed_clips)
    speed_clips = [load_audio(p, rate) for p in speed_paths]
    audio_seconds = sum(len(c) for c in speed_clips) / rate
    load = os.getloadavg()[0]
    speed: Dict[Tuple[str, int], float] = {}
    model_speed: Dict[Tuple[str, int], float] = {}
    for batch_size in (1, 8):
        for backend in BACKENDS:  # warm-up
            transcribe(runs[backend], extractor, greedy, speed_clips[:batch_size], batch_size)
        for _ in tqdm(range(args.repeats), desc=f"timing batch {batch_size}", file=sys.stderr):
            for backend in BACKENDS:
                inside = [0.0]

                def timed(x, n, run=runs[backend]):
                    started = time.perf_counter()
                    result = run(x, n)
                    inside[0] += time.perf_counter() - started
                    return result

                started = time.perf_counter()
                transcribe(timed, extractor, greedy, speed_clips, batch_size)
                elapsed = time.perf_counter() - started
                speed[backend, batch_size] = min(speed.get((backend, batch_size), float("inf")), elapsed)
                model_speed[backend, batch_size] = min(model_speed.get((backend, batch_size), float("inf")), inside[0])

    # memory: one fresh process per backend
    memory = {}
    for backend in BACKENDS:
        done = subprocess.run([sys.executable, os.path.abspath(__file__), "--memory-worker", backend, files[backend],
                               "--threads", str(args.threads), "--clips", *speed_paths], capture_output=True, text=True)
        memory[backend] = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else \
            {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}

    # accuracy: the same clips and decoders for every backend
    accuracy: Dict[Tuple[str, str], Dict[str, float]] = {}
    for split, manifest in splits if args.max_clips > 0 else []:
        paths, references = read_split(manifest, args.max_clips)
        waveforms = [load_audio(p, rate) for p in paths]
        for backend in tqdm(BACKENDS, desc=f"scoring {split} ({len(paths)} clips)", file=sys.stderr):
            outputs = {}
            for group in batches(waveforms, 8):
                probabilities, lengths = log_probs(runs[backend], extractor, waveforms, group)
                for row, index in enumerate(group):
                    outputs[index] = (probabilities[row: row + 1, : int(lengths[row])], lengths[row: row + 1])
            figures = {"clips": len(paths)}
            for name, decoder in (("greedy", greedy), ("beam", beam)):
                if decoder is None:
                    continue
                texts = [decoder.decode(*outputs[i])[0].text for i in range(len(paths))]
                counts = error_counts(references, texts)
                figures[f"{name}_wer"], figures[f"{name}_cer"] = round(100 * counts.wer, 2), round(100 * counts.cer, 2)
            accuracy[split, backend] = figures

    fp32_bytes = os.path.getsize(os.path.join(args.export_dir, loaded.name + FORMATS["onnx"]))
    rows = []
    for backend in BACKENDS:
        row = {"backend": backend, "file_mb": round(os.path.getsize(files[backend]) / 1e6, 1),
               "size_vs_fp32": round(os.path.getsize(files[backend]) / fp32_bytes, 3),
               "rtf_b1": round(speed[backend, 1] / audio_seconds, 4),
               "rtf_b8": round(speed[backend, 8] / audio_seconds, 4),
               "speedup_b1": round(speed["torch_fp32", 1] / speed[backend, 1], 2),
               "speedup_b8": round(speed["torch_fp32", 8] / speed[backend, 8], 2),
               "model_rtf_b1": round(model_speed[backend, 1] / audio_seconds, 4),
               "model_rtf_b8": round(model_speed[backend, 8] / audio_seconds, 4),
               "model_speedup_b1": round(model_speed["torch_fp32", 1] / model_speed[backend, 1], 2),
               "model_speedup_b8": round(model_speed["torch_fp32", 8] / model_speed[backend, 8], 2), **memory[backend]}
        for split, _ in splits if accuracy else []:
            figures = accuracy[split, backend]
            for key in ("greedy_wer", "greedy_cer", "beam_wer", "beam_cer"):
                if key in figures:
                    row[f"{split}_{key}"] = figures[key]
        rows.append(row)
    summary = {"model": loaded.name, "threads": args.threads, "load_average_at_start": round(load, 2),
               "speed_clips": len(speed_clips), "speed_audio_seconds": round(audio_seconds, 1),
               "fp32_file_mb": round(fp32_bytes / 1e6, 1),
               "checkpoint_mb": round(os.path.getsize(loaded.path) / 1e6, 1),
               "splits": {s: accuracy[s, BACKENDS[0]]["clips"] for s, _ in splits if accuracy}, "rows": rows}
    print(f"{loaded.name}: {len(speed_clips)} clips, {audio_seconds:.1f} s timed; {args.threads} threads; "
          f"load average {load:.2f}; fp32 file {fp32_bytes / 1e6:.1f} MB (checkpoint {summary['checkpoint_mb']} MB)")
    print(table(rows, ["backend", "file_mb", "size_vs_fp32", "rtf_b1", "rtf_b8", "speedup_b1", "speedup_b8",
                       "model_rtf_b1", "model_rtf_b8", "model_speedup_b1", "model_speedup_b8", "peak_rss_mb",
                       "model_rss_mb"]))
    accuracy_columns = ["backend"] + [c for c in rows[0] if any(c.startswith(f"{s}_") for s, _ in splits)]
    if accuracy:
        print(table(rows, accuracy_columns))
    print(json.dumps(summary))
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(summary, handle, indent=1)


if __name__ == "__main__":
    main()
