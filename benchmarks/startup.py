"""transcribe.py end to end on one file, torch backend vs onnxruntime backend side by side: wall seconds and
peak RSS of the whole process (start-up, imports, model load, VAD, features, model, decoder), and what the
big imports cost alone.

python benchmarks/startup.py [--onnx MODEL.onnx] [--audio FILE] [--repeats 5] [--decoders greedy beam]

Without --onnx the bundled model is exported to a temporary folder first (needs torch and onnx). The runs are
interleaved (torch, onnxruntime, torch, ...) after a warm-up run of each, so both backends see the same machine
load and the same warm file cache; the table gives the
median and the best run, and the CPU seconds (user + system, less sensitive to other load on the machine). Peak RSS is the child's ru_maxrss from wait4, the number `/usr/bin/time -v` prints
as "Maximum resident set size".
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRETRAINED = os.path.join(ROOT, "deepspeech_pytorch", "pretrained")
DEFAULT_AUDIO = os.path.join(PRETRAINED, "samples", "sample4.wav")  # 5.2 s
IMPORTS = ("hydra", "torch", "onnxruntime", "deepspeech_pytorch.inference")


def run(command: Sequence[str]) -> Tuple[float, float, float]:
    """(wall seconds, peak RSS in MB, CPU seconds: user + system) of one process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        sys.exit(f"error: {' '.join(command)} failed: {process.stderr.read().decode()[-500:]}")
    process.stderr.close()
    return wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def export_bundled(folder: str) -> str:
    """The bundled model as ONNX in `folder`, with the bundled LM settings beside it."""
    from deepspeech_pytorch.export import export_onnx
    from deepspeech_pytorch.inference import load_model

    path = os.path.join(folder, "default.onnx")
    export_onnx(load_model(), path, [DEFAULT_AUDIO])
    for name in ("default.lm.json", "default.lm.bin", "default.lexicon.txt"):
        os.symlink(os.path.join(PRETRAINED, name), os.path.join(folder, name))
    return path


def import_costs(repeats: int) -> Dict[str, float]:
    """Seconds each import adds to a bare interpreter start (best of `repeats`)."""
    bare = min(run([sys.executable, "-c", "pass"])[0] for _ in range(repeats))
    return {name: min(run([sys.executable, "-c", f"import {name}"])[0] for _ in range(repeats)) - bare
            for name in IMPORTS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnx", help="an exported model (.onnx); default: export the bundled model")
    parser.add_argument("--checkpoint", default=os.path.join(PRETRAINED, "default.pt"))
    parser.add_argument("--audio", default=DEFAULT_AUDIO)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs of each first (page cache, .pyc files)")
    parser.add_argument("--decoders", nargs="+", default=["greedy", "beam"], choices=["greedy", "beam"])
    args = parser.parse_args()
    folder = None
    if args.onnx is None:
        folder = tempfile.mkdtemp(prefix="startup-")
        print("exporting the bundled model to ONNX ...", file=sys.stderr)
        args.onnx = export_bundled(folder)
    try:
        models = {"torch": args.checkpoint, "onnxruntime": args.onnx}
        results: Dict[Tuple[str, str], List[Tuple[float, float, float]]] = {}
        for repeat in range(args.warmup + args.repeats):
            for decoder in args.decoders:
                for backend, model in models.items():
                    command = [sys.executable, os.path.join(ROOT, "transcribe.py"), f"model_path={model}",
                               args.audio, f"decoder.type={decoder}", f"backend={backend}"]
                    figures = run(command)
                    if repeat >= args.warmup:
                        results.setdefault((backend, decoder), []).append(figures)
        costs = import_costs(args.repeats)
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"transcribe.py on {os.path.basename(args.audio)}, {args.repeats} interleaved runs each, "
          f"{os.cpu_count()} CPUs")
    print(f"{'backend':<12} | {'decoder':<7} | {'wall median s':>13} | {'wall best s':>11} | {'CPU median s':>12} | "
          f"{'peak RSS MB':>11}")
    for (backend, decoder), runs in results.items():
        walls = [wall for wall, _, _ in runs]
        print(f"{backend:<12} | {decoder:<7} | {statistics.median(walls):>13.2f} | {min(walls):>11.2f} | "
              f"{statistics.median(cpu for _, _, cpu in runs):>12.2f} | {max(rss for _, rss, _ in runs):>11.0f}")
    print("\nimport alone (best run, seconds over a bare interpreter)")
    for name, seconds in costs.items():
        print(f"{name:<30} {seconds:6.2f}")


if __name__ == "__main__":
    main()
