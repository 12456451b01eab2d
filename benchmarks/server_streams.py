"""How many live streams the server holds in real time: N websocket clients (GET /ws/transcribe) each send a
23 s conversation (the four bundled samples, 1 s apart, then 1 s of silence) at real-time pace in 0.1 s
chunks, as the page at / does, started 0.37 s apart; for each N the table gives

- final lag: from the end of an utterance's last word in the audio to its final result, less the endpoint
  silence the server waits for by design (median, p95, max over every final of every stream);
- end lag: from the client's end message to the stream's last answer (median, max over streams);
- the server's CPU use (cores; and CPU seconds per second of audio streamed, which bounds how many streams
  idle cores could hold: cores / that) and whether every stream's transcript equals a lone stream's.

A level holds when the p95 final lag and the largest end lag are under 1 s and the transcripts are right.
The server runs the bundled model (or --model-path) with OMP_NUM_THREADS=1 on --cores cores (this process and
the server are pinned to the first ones when the machine has more). The clients share those cores; on a shared
machine the figures move with whatever else runs.

    python benchmarks/server_streams.py                        # 1, 2, 4, 6, 8, 10, 12, 16 streams on 2 cores
    python benchmarks/server_streams.py --streams 8 12 --decoder beam --json streams.json
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from typing import Any, Dict, List

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from deepspeech_pytorch.audio import load_audio  # noqa: E402
from deepspeech_pytorch.configs import StreamingConfig  # noqa: E402
from deepspeech_pytorch.inference import default_model_path  # noqa: E402
from deepspeech_pytorch.stream_client import StreamRefused, chunks_of, stream_audio, to_pcm16  # noqa: E402
from server_load import Server  # noqa: E402

SAMPLE_RATE = 16000  # Hz
CHUNK_SECONDS = 0.1  # audio per message, as the page sends
STAGGER_SECONDS = 0.37  # between stream starts, so that the streams do not speak in step
LAG_LIMIT_SECONDS = 1.0


def conversation() -> np.ndarray:
    """The four bundled samples with 1 s of silence after each: float32 (samples,) at 16 kHz, about 23 s."""
    folder = os.path.join(ROOT, "deepspeech_pytorch", "pretrained", "samples")
    gap = np.zeros(SAMPLE_RATE, np.float32)
    return np.concatenate([part for n in range(1, 5) for part in (load_audio(os.path.join(folder, f"sample{n}.wav")),
                                                                   gap)])


def server_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its threads so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def one_stream(url: str, pcm: bytes, delay: float, speed: float, decoder: str) -> Dict[str, Any]:
    """One client: wait `delay` s, stream `pcm` at `speed` x real time; the finals with their arrival times."""
    await asyncio.sleep(delay)
    loop = asyncio.get_running_loop()
    timeline: Dict[str, float] = {}
    arrivals: List[tuple] = []

    async def paced():
        timeline["start"] = loop.time()
        async for chunk in chunks_of(pcm, SAMPLE_RATE, speed, CHUNK_SECONDS):
            yield chunk
        timeline["end"] = loop.time()  # the end message goes next

    def note(message: Dict[str, Any]) -> None:
        arrivals.append((loop.time(), message))

    finals = await stream_audio(url, paced(), SAMPLE_RATE, decoder=decoder, on_message=note)
    return {"start": timeline["start"], "end": timeline["end"], "last": arrivals[-1][0],
            "finals": [(at, m) for at, m in arrivals if "text" in m], "text": " ".join(f["text"] for f in finals if f["text"])}


async def level(url: str, pcm: bytes, streams: int, decoder: str) -> List[Dict[str, Any]]:
    return await asyncio.gather(*(one_stream(url, pcm, n * STAGGER_SECONDS, 1.0, decoder) for n in range(streams)))


def summarise(results: List[Dict[str, Any]], reference: str, endpoint: float, cpu: float, wall: float,
              audio_seconds: float) -> Dict:
    lags = sorted(at - (r["start"] + m["result"][-1]["end"]) - endpoint
                  for r in results for at, m in r["finals"] if m.get("result"))
    ends = sorted(r["last"] - r["end"] for r in results)
    row = {"streams": len(results), "final_lag_p50_s": statistics.median(lags),
           "final_lag_p95_s": lags[min(len(lags) - 1, int(0.95 * len(lags)))], "final_lag_max_s": lags[-1],
           "end_lag_p50_s": statistics.median(ends), "end_lag_max_s": ends[-1], "server_cores": cpu / wall,
           "cpu_per_audio_s": cpu / (audio_seconds * len(results)),
           "correct": sum(r["text"] == reference for r in results)}
    row["holds"] = (row["final_lag_p95_s"] < LAG_LIMIT_SECONDS and row["end_lag_max_s"] < LAG_LIMIT_SECONDS
                    and row["correct"] == len(results))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-path", default=default_model_path(), help="default: the bundled model")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4, 6, 8, 10, 12, 16])
    parser.add_argument("--decoder", choices=("greedy", "beam"), default="greedy")
    parser.add_argument("--cores", type=int, default=2, help="cores for the server and the clients (default 2)")
    parser.add_argument("--keep-going", action="store_true", help="measure every level, not stop after two that fail")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()

    cores = sorted(os.sched_getaffinity(0))
    if len(cores) > args.cores:
        os.sched_setaffinity(0, cores[: args.cores])  # the server inherits it
    os.environ["OMP_NUM_THREADS"] = "1"
    endpoint = StreamingConfig.endpoint_silence_seconds
    pcm = to_pcm16(conversation())
    server = Server(args.model_path, f"streaming.max_streams={max(args.streams)}",
                    f"streaming.endpoint_silence_seconds={endpoint}")
    url = f"ws://127.0.0.1:{server.port}/ws/transcribe"
    rows = []
    try:
        reference = asyncio.run(one_stream(url, pcm, 0.0, 0.0, args.decoder))["text"]  # also the warm-up
        print(f"{len(pcm) / 2 / SAMPLE_RATE:.1f} s per stream on {min(args.cores, len(cores))} cores; "
              f"a lone stream hears: {reference}", flush=True)
        failed = 0
        for streams in args.streams:
            cpu, started = server_cpu_seconds(server.process.pid), time.monotonic()
            try:
                results = asyncio.run(level(url, pcm, streams, args.decoder))
            except StreamRefused as error:
                sys.exit(f"error: at {streams} streams: {error}; the server logged:\n{server.log_tail()}")
            row = summarise(results, reference, endpoint, server_cpu_seconds(server.process.pid) - cpu,
                            time.monotonic() - started, len(pcm) / 2 / SAMPLE_RATE)
            rows.append(row)
            print(json.dumps({key: round(value, 3) if isinstance(value, float) else value
                              for key, value in row.items()}), flush=True)
            failed = 0 if row["holds"] else failed + 1
            if failed >= 2 and not args.keep_going:
                break
    finally:
        server.stop()

    print()
    print("| streams | final lag p50 s | p95 s | max s | end lag p50 s | max s | server cores | CPU s / audio s "
          "| correct | holds |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['streams']} | {row['final_lag_p50_s']:.2f} | {row['final_lag_p95_s']:.2f} | "
              f"{row['final_lag_max_s']:.2f} | {row['end_lag_p50_s']:.2f} | {row['end_lag_max_s']:.2f} | "
              f"{row['server_cores']:.2f} | {row['cpu_per_audio_s']:.3f} | {row['correct']}/{row['streams']} | "
              f"{'yes' if row['holds'] else 'no'} |")
    held = [row["streams"] for row in rows if row["holds"]]
    print(f"\nthe server holds {max(held) if held else 0} concurrent real-time streams (lag under "
          f"{LAG_LIMIT_SECONDS:g} s, transcripts right); the {args.decoder} decoder")
    cost = statistics.median(row["cpu_per_audio_s"] for row in rows)
    print(f"the streams cost {cost:.3f} CPU s per second of audio: {min(args.cores, len(cores))} idle cores could "
          f"hold at most about {min(args.cores, len(cores)) / cost:.0f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
