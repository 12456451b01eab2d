"""Load test of the transcription server: throughput and latency at 1, 4 and 8 concurrent clients
sending 5-second clips of espeak-ng speech, with dynamic batching on and off, against the offline batch throughput of
the same model (Transcriber.transcribe_many on the same clips, in this process, before any server runs).

    python benchmarks/server_load.py                          # ds2_small with random weights
    python benchmarks/server_load.py --model-path best.pt --clients 1 4 8 --requests 32

Speed does not depend on what the weights have learned, so random weights measure a real model.
The clients run on the same machine as the server and take some of its CPU; on a shared machine
the figures move with whatever else is running.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Sequence

import httpx
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from deepspeech_pytorch.audio import load_audio, write_audio  # noqa: E402
from deepspeech_pytorch.checkpoint import model_state, save_checkpoint  # noqa: E402
from deepspeech_pytorch.configs import FeatureConfig  # noqa: E402
from deepspeech_pytorch.inference import Transcriber, load_model  # noqa: E402
from deepspeech_pytorch.labels import Alphabet  # noqa: E402
from deepspeech_pytorch.models import build_model, presets  # noqa: E402

SAMPLE_RATE = 16000  # Hz


def random_model(preset: str, folder: str) -> str:
    torch.manual_seed(0)
    features, alphabet = FeatureConfig(), Alphabet()
    model = build_model(presets()[preset], features.num_features, len(alphabet))
    path = os.path.join(folder, f"{preset}_random.pt")
    save_checkpoint(path, {**model_state(model, presets()[preset], features, alphabet), "name": f"{preset}_random"})
    return path


SENTENCES = ("the quick brown fox jumps over the lazy dog while the farmer watches from the gate",
             "please call stella and ask her to bring these things with her from the store",
             "a large size in stockings is hard to sell but the shop keeps a few of them anyway")


def make_clips(count: int, seconds: float, folder: str) -> List[str]:
    """`count` WAV files of `seconds` of espeak-ng speech each (speech, so that voice-activity detection
    passes all of it to the model as it would in real use)."""
    paths = []
    for number in range(count):
        raw = os.path.join(folder, f"raw{number}.wav")
        text = " ".join(SENTENCES[(number + k) % len(SENTENCES)] for k in range(3))
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", str(150 + 10 * (number % 5)), "-w", raw, text], check=True)
        samples = load_audio(raw)[: int(seconds * SAMPLE_RATE)]
        paths.append(os.path.join(folder, f"clip{number}.wav"))
        write_audio(paths[-1], samples)
        os.remove(raw)
    return paths


class Offline:
    """The bar: Transcriber.transcribe_many on the same clips (decoded arrays in memory) in batches of
    `batch_size`, in this process, with no HTTP."""

    def __init__(self, model_path: str, clips: Sequence[str], batch_size: int):
        self.transcriber = Transcriber(load_model(model_path), batch_size=batch_size)
        audio = [load_audio(path) for path in clips]
        self.batch = [audio[i % len(audio)] for i in range(batch_size)]
        self.transcriber.transcribe_many(self.batch)  # warm-up

    def measure(self, repeats: int) -> Dict[str, float]:
        """Clips per second in full batches, and the latency of one clip alone (medians of `repeats`)."""
        times, single = [], []
        for _ in range(repeats):
            started = time.perf_counter()
            self.transcriber.transcribe_many(self.batch)
            times.append(time.perf_counter() - started)
            started = time.perf_counter()
            self.transcriber.transcribe(self.batch[0])
            single.append(time.perf_counter() - started)
        return {"clips_per_s": len(self.batch) / statistics.median(times), "single_latency_s": statistics.median(single)}


def report_offline(offline: Dict[str, float], args) -> None:
    print(f"offline: {offline['clips_per_s']:.2f} clips/s in batches of {args.max_batch_size} "
          f"({offline['clips_per_s'] * args.clip_seconds:.1f} audio-s/s); one clip alone "
          f"{offline['single_latency_s'] * 1000:.0f} ms; torch threads {torch.get_num_threads()}", flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    def __init__(self, model_path: str, *overrides: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen([sys.executable, os.path.join(ROOT, "server.py"), f"port={self.port}",
                                         f"model_path={model_path}", "log_level=warning", *overrides],
                                        cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"the server exited:\n{self.log.read().decode(errors='replace')}")
            try:
                if httpx.get(self.url + "/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError("the server did not become ready in 120 s")

    def log_tail(self, characters: int = 4000) -> str:
        """The end of what the server has logged so far (its errors, with tracebacks)."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-characters:]

    def batch_sizes(self) -> tuple:
        values = {}
        for line in httpx.get(self.url + "/metrics").text.splitlines():
            if line.startswith("deepspeech_batch_size_sum") or line.startswith("deepspeech_batch_size_count"):
                name, value = line.split()
                values[name] = float(value)
        return values["deepspeech_batch_size_sum"], values["deepspeech_batch_size_count"]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)
        self.log.close()


def load(url: str, clips: Sequence[bytes], clients: int, requests: int) -> Dict[str, float]:
    """`clients` closed-loop clients (each sends its next request when the last is answered) until
    `requests` have been sent in all."""
    latencies: List[float] = []
    errors: List[str] = []
    counter = iter(range(requests))
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(timeout=300) as session:
            while True:
                with lock:
                    number = next(counter, None)
                if number is None:
                    return
                data = clips[number % len(clips)]
                started = time.perf_counter()
                try:
                    response = session.post(url + "/transcribe", files={"file": ("clip.wav", data, "audio/wav")})
                    ok = response.status_code == 200
                    problem = f"{response.status_code} {response.text[:100]}"
                except httpx.HTTPError as error:
                    ok, problem = False, repr(error)
                elapsed = time.perf_counter() - started
                with lock:
                    (latencies.append(elapsed) if ok else errors.append(problem))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    latencies.sort()
    return {"requests_per_s": len(latencies) / wall,
            "p50_s": latencies[len(latencies) // 2] if latencies else float("nan"),
            "p99_s": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else float("nan"),
            "errors": len(errors), "first_error": errors[0] if errors else ""}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-path", help="a checkpoint; default: --preset with random weights")
    parser.add_argument("--preset", default="ds2_small")
    parser.add_argument("--clip-seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--requests", type=int, default=24, help="requests per measurement")
    parser.add_argument("--max-batch-size", type=int, default=8, help="the batching-on setting")
    parser.add_argument("--max-batch-wait-ms", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2, help="repeat every measurement; the table shows medians")
    parser.add_argument("--threads", type=int, help="torch threads for the offline run and each server "
                        "(OMP_NUM_THREADS); on a busy shared machine 1 avoids stalls of threads waiting for each other")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # inherited by the servers
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as folder:
        model_path = args.model_path or random_model(args.preset, folder)
        clip_paths = make_clips(8, args.clip_seconds, folder)
        clips = [open(path, "rb").read() for path in clip_paths]
        offline = Offline(model_path, clip_paths, args.max_batch_size)
        first = offline.measure(3)
        report_offline(first, args)
        servers = {"on": Server(model_path, f"max_batch_size={args.max_batch_size}",
                                f"max_batch_wait_ms={args.max_batch_wait_ms}"),
                   "off": Server(model_path, "max_batch_size=1")}
        measured: Dict[tuple, List[Dict[str, float]]] = {}
        try:
            for server in servers.values():
                load(server.url, clips, 2, 4)  # warm-up
            # Each round measures every level back to back (offline bar, batching on, batching off) so that
            # the load of a shared machine moves all three alike; the table shows medians over rounds.
            for _ in range(args.rounds):
                for clients in args.clients:
                    bar = offline.measure(2)
                    for mode, server in servers.items():
                        before = server.batch_sizes()
                        result = load(server.url, clips, clients, max(args.requests, 2 * clients))
                        after = server.batch_sizes()
                        result.update(offline_clips_per_s=bar["clips_per_s"],
                                      vs_offline=result["requests_per_s"] / bar["clips_per_s"],
                                      mean_batch=(after[0] - before[0]) / max(1.0, after[1] - before[1]))
                        measured.setdefault((mode, clients), []).append(result)
                        print(json.dumps({"batching": mode, "clients": clients, **result}), flush=True)
        finally:
            for server in servers.values():
                server.stop()
        rows = []
        for (mode, clients), results in measured.items():
            row = {key: statistics.median(r[key] for r in results) for key in results[0] if key != "first_error"}
            row.update(batching=mode, clients=clients, errors=sum(r["errors"] for r in results),
                       audio_s_per_s=row["requests_per_s"] * args.clip_seconds)
            rows.append(row)
        rows.sort(key=lambda row: (row["batching"] == "off", row["clients"]))

    print()
    print("| batching | clients | requests/s | audio-s/s | offline clips/s | x offline | p50 ms | p99 ms | mean batch "
          "| errors |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['batching']} | {row['clients']} | {row['requests_per_s']:.2f} | {row['audio_s_per_s']:.1f} | "
              f"{row['offline_clips_per_s']:.2f} | {row['vs_offline']:.2f} | {row['p50_s'] * 1000:.0f} | "
              f"{row['p99_s'] * 1000:.0f} | {row['mean_batch']:.1f} | {row['errors']} |")
    single = next((r["p50_s"] for r in rows if r["batching"] == "on" and r["clients"] == 1), None)
    top = [r for r in rows if r["batching"] == "on" and r["clients"] == max(args.clients)]
    if single and top:
        top = top[0]
        gain = first["clips_per_s"] * first["single_latency_s"]
        print(f"\noffline, batches of {args.max_batch_size} give {gain:.2f}x the throughput of one clip at a time; "
              f"with {top['clients']} closed-loop clients latency is about {top['clients']} / throughput, so p99 <= 3x "
              f"single-request latency needs a batching gain of at least {top['clients'] / 3:.2f}x")
        print(f"goal at {top['clients']} clients, batching on: throughput {top['vs_offline']:.2f}x offline "
              f"(goal >= 0.8), p99 {top['p99_s'] / single:.2f}x single-request latency (goal <= 3), "
              f"{top['errors']} errors (goal 0)")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
