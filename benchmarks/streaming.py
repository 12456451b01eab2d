"""Live transcription figures for one stream, fed in real time: how long after a word ends in the audio it
shows in a partial, how long after the end of speech the final comes (the endpoint's silence counted
separately), and the real-time factor per stream.

    python benchmarks/streaming.py                                   # the bundled model (utterance mode), greedy
    python benchmarks/streaming.py --decoder beam --chunk-seconds 0.1
    python benchmarks/streaming.py --model stream.pt                 # a streaming checkpoint (true streaming)
    python benchmarks/streaming.py --preset ds2_stream               # random weights: RTF only (no real words)

The stream is espeak-ng sentences (or --wav files) with --gap seconds of silence between them. A word's end in
the audio is where the offline transcriber (the same model, whole sentence) puts it. The stream is fed chunk
by chunk on a simulated real-time clock: a chunk is ready when its last sample has "arrived", and is
processed once the previous one is done, for as long as `accept_audio` really takes on this machine
(--threads torch threads; 2 cores is the project's reference). A word shows when the utterance's text so far
(partial, or final) has it at its place. Prints one JSON line.
"""

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Tuple

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from deepspeech_pytorch.audio import load_audio  # noqa: E402

SENTENCES = [
    "the cat sat on the mat",
    "open the door please",
    "green light means go",
    "a quick brown fox jumps over the lazy dog",
    "please call stella and ask her to bring these things with her from the store",
    "set blue at four now",
]


def percentile(values: List[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def spoken(texts: List[str], voice: str) -> List[np.ndarray]:
    audio = []
    with tempfile.TemporaryDirectory() as folder:
        for number, text in enumerate(texts):
            path = os.path.join(folder, f"{number}.wav")
            subprocess.run(["espeak-ng", "-v", voice, "-w", path, text], check=True)
            audio.append(load_audio(path))
    return audio


def build_stream(pieces: List[np.ndarray], gap: float, rate: int) -> Tuple[np.ndarray, List[float]]:
    """The pieces with `gap` seconds of silence before each (and after the last); their start times."""
    silence = np.zeros(int(gap * rate), np.float32)
    parts, starts, position = [], [], 0
    for piece in pieces:
        parts += [silence, piece]
        starts.append((position + len(silence)) / rate)
        position += len(silence) + len(piece)
    parts.append(silence)
    return np.concatenate(parts), starts


def load(args):
    from deepspeech_pytorch.inference import LoadedModel, load_model

    if not args.preset:
        return load_model(args.model)
    import torch

    from deepspeech_pytorch.models import build_model, preset

    bundled = load_model()  # its alphabet and feature settings; running normalisation for the random model
    features = dataclasses.replace(bundled.features, normalization="running",
                                   mean=[-6.0] * bundled.features.num_features, std=[3.0] * bundled.features.num_features)
    torch.manual_seed(0)
    model = build_model(preset(args.preset), features.num_features, len(bundled.alphabet)).eval()
    return LoadedModel(model, bundled.alphabet, features, f"{args.preset} (random weights)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="checkpoint (default: the bundled model)")
    parser.add_argument("--preset", help="random weights of this model preset (RTF only)")
    parser.add_argument("--decoder", default="greedy", choices=["greedy", "beam"])
    parser.add_argument("--chunk-seconds", type=float, default=0.32)
    parser.add_argument("--gap", type=float, default=1.5, help="silence between sentences (seconds)")
    parser.add_argument("--endpoint-silence", type=float, default=0.8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--voice", default="en-us")
    parser.add_argument("--wav", nargs="*", help="speech files instead of espeak-ng sentences")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from deepspeech_pytorch.inference import Transcriber
    from deepspeech_pytorch.streaming import StreamingTranscriber

    loaded = load(args)
    rate = loaded.features.sample_rate
    pieces = [load_audio(path, rate) for path in args.wav] if args.wav else spoken(SENTENCES, args.voice)
    audio, starts = build_stream(pieces, args.gap, rate)
    offline = Transcriber(loaded, args.decoder)
    references = []  # per sentence: [(word, end in the stream's timeline)]
    for piece, start in zip(pieces, starts):
        result = offline.transcribe(piece)
        references.append([(w.word, start + w.end) for w in result.words])

    stream = StreamingTranscriber(loaded, args.decoder, endpoint_silence_seconds=args.endpoint_silence)
    stream.accept_audio(np.zeros(int(0.1 * rate), np.float32))  # warm-up (first calls build kernels)
    stream = StreamingTranscriber(loaded, args.decoder, endpoint_silence_seconds=args.endpoint_silence)
    size = max(1, int(args.chunk_seconds * rate))
    clock = compute = 0.0
    cpu_started = time.process_time()
    events = []  # (time the update is out, texts: the utterance's text so far, finals)
    for first in range(0, len(audio) + size, size):
        chunk = audio[first: first + size]
        arrived = min(len(audio), first + size) / rate
        started = time.perf_counter()
        update = stream.accept_audio(chunk) if first < len(audio) else stream.finish()
        spent = time.perf_counter() - started
        compute += spent
        clock = max(clock, arrived) + spent
        events.append((clock, update))

    word_latency: List[float] = []
    final_latency: List[float] = []
    shown = missed = 0
    utterance = 0  # which sentence the stream is in, by finals seen
    pending: Dict[Tuple[int, int], float] = {}  # (sentence, word) -> seconds from its end to its showing
    for out, update in events:
        texts = [final.text for final in update.finals] + ([update.partial] if update.partial else [])
        for offset, text in enumerate(texts):
            sentence = utterance + offset
            if sentence >= len(references):
                continue
            words = text.split()
            for index, (word, end) in enumerate(references[sentence]):
                if index < len(words) and words[index] == word and (sentence, index) not in pending:
                    pending[(sentence, index)] = out - end
        for final in update.finals:
            if utterance < len(references) and references[utterance]:
                final_latency.append(out - references[utterance][-1][1] - args.endpoint_silence)
            utterance += 1
    for sentence, words in enumerate(references):
        for index in range(len(words)):
            if (sentence, index) in pending:
                word_latency.append(pending[(sentence, index)])
                shown += 1
            else:
                missed += 1
    cpu = time.process_time() - cpu_started
    seconds = len(audio) / rate
    figures = {
        "model": loaded.name, "mode": stream.mode, "decoder": args.decoder, "chunk_seconds": args.chunk_seconds,
        "threads": args.threads, "audio_seconds": round(seconds, 2), "rtf": round(compute / seconds, 4),
        "cpu_seconds_per_audio_second": round(cpu / seconds, 4),  # all threads: the CPU a stream takes
        "words": shown + missed, "words_shown": shown,
        "word_latency_median": round(statistics.median(word_latency), 3) if word_latency else None,
        "word_latency_p95": round(percentile(word_latency, 0.95), 3) if word_latency else None,
        "final_latency_after_endpoint_median": round(statistics.median(final_latency), 3) if final_latency else None,
        "final_latency_after_endpoint_max": round(max(final_latency), 3) if final_latency else None,
        "endpoint_silence_seconds": args.endpoint_silence, "finals": utterance,
        "sentences": len(references),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
