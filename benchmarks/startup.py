"""transcribe.py end to end on one file, torch backend vs onnxruntime backend side by side: wall seconds and
peak RSS of the whole process (start-up, imports, model load, VAD, features, model, decoder), and what the
big imports cost alone.

python benchmarks/startup.py [--onnx MODEL.onnx] [--audio FILE] [--repeats 5] [--decoders greedy beam]

The onnxruntime runs are `transcribe.py FILE backend=onnxruntime` as a user types it: the bundled model's int8
twin (pretrained/default.int8.onnx); --onnx times another exported file (export.py writes them). The torch runs
load the bundled checkpoint. The runs are interleaved (torch, onnxruntime, torch, ...) after a warm-up run of
each, so both backends see the same machine load and the same warm file cache; the table gives the median and
the best run, and the CPU seconds (user + system, less sensitive to other load on the machine). Peak RSS is the
child's ru_maxrss from wait4, the number `/usr/bin/time -v` prints as "Maximum resident set size".

Python's compiled bytecode is cached as on an installed package (pip compiles it at install; a source tree
writes __pycache__ on the first run): the children write theirs under a temporary PYTHONPYCACHEPREFIX during
the warm-up, even where PYTHONDONTWRITEBYTECODE is set (--no-bytecode-cache keeps the environment as it is,
and every run then compiles this project's modules again). The load average before and after is printed:
other work on the machine slows every figure but the CPU seconds.
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
IMPORTS = ("numpy", "hydra", "torch", "onnxruntime", "deepspeech_pytorch.inference")
ENVIRONMENT = dict(os.environ)  # the children's, see main()


def run(command: Sequence[str]) -> Tuple[float, float, float]:
    """(wall seconds, peak RSS in MB, CPU seconds: user + system) of one process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env=ENVIRONMENT)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        sys.exit(f"error: {' '.join(command)} failed: {process.stderr.read().decode()[-500:]}")
    process.stderr.close()
    return wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def import_costs(repeats: int) -> Dict[str, float]:
    """Seconds each import adds to a bare interpreter start (best of `repeats`)."""
    bare = min(run([sys.executable, "-c", "pass"])[0] for _ in range(repeats))
    return {name: min(run([sys.executable, "-c", f"import {name}"])[0] for _ in range(repeats)) - bare
            for name in IMPORTS}


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnx", help="an exported model (.onnx); default: the bundled int8 twin, as "
                                       "backend=onnxruntime picks it")
    parser.add_argument("--checkpoint", default=os.path.join(PRETRAINED, "default.pt"))
    parser.add_argument("--audio", default=DEFAULT_AUDIO)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs of each first (page cache, bytecode)")
    parser.add_argument("--decoders", nargs="+", default=["greedy", "beam"], choices=["greedy", "beam"])
    parser.add_argument("--no-bytecode-cache", action="store_true",
                        help="leave PYTHONDONTWRITEBYTECODE and PYTHONPYCACHEPREFIX as they are")
    args = parser.parse_args()
    cache = None
    if not args.no_bytecode_cache:
        cache = tempfile.mkdtemp(prefix="startup-pycache-")
        ENVIRONMENT.pop("PYTHONDONTWRITEBYTECODE", None)
        ENVIRONMENT["PYTHONPYCACHEPREFIX"] = cache
    onnx_model = [f"model_path={args.onnx}"] if args.onnx else []
    models = {"torch": [f"model_path={args.checkpoint}"], "onnxruntime": onnx_model}
    before = load()
    try:
        results: Dict[Tuple[str, str], List[Tuple[float, float, float]]] = {}
        for repeat in range(args.warmup + args.repeats):
            for decoder in args.decoders:
                for backend, model in models.items():
                    command = [sys.executable, os.path.join(ROOT, "transcribe.py"), *model, args.audio,
                               f"decoder.type={decoder}", f"backend={backend}"]
                    figures = run(command)
                    if repeat >= args.warmup:
                        results.setdefault((backend, decoder), []).append(figures)
        costs = import_costs(args.repeats)
    finally:
        if cache is not None:
            shutil.rmtree(cache, ignore_errors=True)
    print(f"transcribe.py on {os.path.basename(args.audio)}, {args.repeats} interleaved runs each, "
          f"{os.cpu_count()} CPUs; {before} before, {load()} after")
    print(f"onnxruntime model: {args.onnx or 'the bundled int8 twin (default.int8.onnx)'}; bytecode "
          f"{'as the environment has it' if args.no_bytecode_cache else 'cached after the warm-up'}")
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
