"""Which ONNX Runtime int8 recipe to ship: each variant of export.export_onnx_int8 (op types quantized,
per-channel scales, reduced range, static or dynamic convolutions) exported from the same model, then timed
at batch 1 in ONNX Runtime beside the fp32 file (round-robin passes, best kept, 1 and 2 threads) with its
size, max |logit difference| and greedy-transcript CER against the model on the check audio.

    python benchmarks/onnx_int8.py [--model best.pt] [--audio clip.wav ...] [--repeats 10] [--output-dir onnx_variants]

ONNX Runtime has no int8 GRU/LSTM kernel: "recurrent" stores their weights in int8 behind a DequantizeLinear
(the arithmetic stays fp32). "fold" loads a file with session.disable_quant_qdq=1, which lets ONNX Runtime
fold those DequantizeLinear nodes into fp32 weights once at load instead of on every run (and turns off
QDQ fusion, so it is only tried without QDQ convolutions).
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from deepspeech_pytorch.export import (ExportError, check_audio, check_features, export_onnx,  # noqa: E402
                                       export_onnx_int8)
from deepspeech_pytorch.inference import PRETRAINED_DIR, load_model  # noqa: E402

SAMPLES = os.path.join(PRETRAINED_DIR, "samples")
# name: export_onnx_int8 options ("fold": load option, see above)
VARIANTS = {
    "recurrent": dict(conv="fp32", matmul=False),
    "recurrent+matmul": dict(conv="fp32"),
    "recurrent+matmul, fold": dict(conv="fp32", fold=True),
    "recurrent+matmul+conv static, per tensor": dict(per_channel=False),
    "recurrent+matmul+conv static, per channel": dict(),
    "recurrent+matmul+conv static, per channel, reduced range": dict(reduce_range=True),
    "recurrent+matmul+conv dynamic, per channel": dict(conv="dynamic"),
    "matmul+conv static, per channel (fp32 recurrent weights)": dict(recurrent=False),
}


def session(path: str, threads: int, fold: bool = False):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle threads leave the cores be
    if fold:
        options.add_session_config_entry("session.disable_quant_qdq", "1")
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--audio", nargs="+", default=sorted(os.path.join(SAMPLES, f) for f in os.listdir(SAMPLES)
                                                             if f.endswith(".wav")),
                        help="check and calibration audio; the first file is the timed one")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--output-dir", default="onnx_variants")
    args = parser.parse_args()
    loaded = load_model(args.model)
    os.makedirs(args.output_dir, exist_ok=True)
    files, reports, folds = {}, {}, {}
    files["fp32"] = os.path.join(args.output_dir, "fp32.onnx")
    reports["fp32"] = export_onnx(loaded, files["fp32"], args.audio)
    folds["fp32"] = False
    for number, (name, options) in enumerate(VARIANTS.items()):
        options = dict(options)
        folds[name] = options.pop("fold", False)
        files[name] = os.path.join(args.output_dir, f"variant{number}.int8.onnx")
        try:
            reports[name] = export_onnx_int8(loaded, files[name], args.audio, args.audio, max_cer=1.0, **options)
        except ExportError as error:
            print(f"{name}: {error}", file=sys.stderr)
            files.pop(name)
    features, lengths = check_features(loaded, check_audio(args.audio[:1], loaded.features.sample_rate))
    feed = {"features": features.numpy(), "lengths": lengths.numpy()}
    seconds = float(lengths[0]) * loaded.features.window_stride
    sessions = {(name, threads): session(path, threads, folds[name])
                for name, path in files.items() for threads in (1, 2)}
    best = {key: float("inf") for key in sessions}
    for key, runner in sessions.items():
        runner.run(None, feed)
    for _ in range(args.repeats):
        for key, runner in sessions.items():
            started = time.perf_counter()
            runner.run(None, feed)
            best[key] = min(best[key], time.perf_counter() - started)
    rows = []
    for name in files:
        report = reports[name]
        rows.append({"variant": name, "mb": round(os.path.getsize(files[name]) / 1e6, 1),
                     "ms_1_thread": round(1000 * best[name, 1], 1), "ms_2_threads": round(1000 * best[name, 2], 1),
                     "speedup_2_threads": round(best["fp32", 2] / best[name, 2], 2),
                     "max_abs_logit_diff": round(report.max_abs_logit_difference, 3),
                     "transcript_cer_pct": round(100 * report.transcript_cer, 2),
                     "transcripts_equal": f"{report.transcripts_equal}/{report.utterances}"})
    print(f"{loaded.name}: batch 1, {seconds:.1f} s clip, best of {args.repeats}; "
          f"load average {os.getloadavg()[0]:.2f}")
    width = max(len(r["variant"]) for r in rows)
    print(f"{'variant':<{width}} | {'MB':>5} | {'1 thr ms':>8} | {'2 thr ms':>8} | {'x fp32':>6} | "
          f"{'max|dlogit|':>11} | "
          f"{'CER %':>5} | equal")
    for r in rows:
        print(f"{r['variant']:<{width}} | {r['mb']:>5} | {r['ms_1_thread']:>8} | {r['ms_2_threads']:>8} | "
              f"{r['speedup_2_threads']:>6} | {r['max_abs_logit_diff']:>11} | {r['transcript_cer_pct']:>5} | "
              f"{r['transcripts_equal']}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
