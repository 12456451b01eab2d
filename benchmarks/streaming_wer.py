"""Streaming WER: how much accuracy live transcription costs. For each test split, WER/CER of
(1) the model offline, scored as test.py scores it (`evaluation.evaluate_manifest`: whole utterances, batched),
(2) the same model streamed: each clip fed to a fresh StreamingTranscriber in chunks of --chunk-seconds, as
    fast as the machine goes (no real-time clock), its text the stream's finals joined (finish() included),
(3) the bundled default model offline (unless --no-default),
and the ratio streaming WER / default offline WER (issue 21's bound: at most 1.25 on the real-speech split).

    python benchmarks/streaming_wer.py --model stream.pt --split real=data/test.jsonl --max-clips 50
    python benchmarks/streaming_wer.py --split samples=deepspeech_pytorch/pretrained/samples/samples.jsonl

A unidirectional checkpoint with causal features streams truly; a bidirectional one (the bundled model) runs in
utterance mode: each final is the offline transcript of one VAD utterance (see deepspeech_pytorch/streaming.py).
Corpus-level WER/CER (edits summed over clips / reference words), references normalised by the model's
alphabet exactly as test.py does. Prints a markdown table, then one JSON line (also written to --json).
"""

import argparse
import json
import os
import sys
import tempfile
from typing import Dict, List, Optional, Tuple

import numpy as np
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_splits(values: List[str]) -> List[Tuple[str, str]]:
    """--split NAME=MANIFEST values -> [(name, manifest)], names unique."""
    splits: List[Tuple[str, str]] = []
    for value in values:
        name, sep, manifest = value.partition("=")
        if not sep or not name or not manifest:
            raise ValueError(f"--split {value!r}: give NAME=MANIFEST, e.g. --split test=data/test.jsonl")
        if name in dict(splits):
            raise ValueError(f"--split {name}: the name is given twice")
        splits.append((name, manifest))
    return splits


def subset_manifest(manifest: str, max_clips: Optional[int], folder: str, name: str) -> Tuple[str, int]:
    """The manifest to score: `manifest` itself when it is scored whole, else its first `max_clips` entries
    written to `folder` (absolute audio paths, same texts and fields). Returns (path, clips)."""
    from deepspeech_pytorch.datasets import read_manifest, write_jsonl

    entries = read_manifest(manifest)  # ManifestError naming the file and line; every clip checked once here
    if max_clips is None or max_clips >= len(entries):
        return manifest, len(entries)
    path = os.path.join(folder, f"{name}.jsonl")
    write_jsonl(path, ({**dict(e.labels), "audio_filepath": os.path.abspath(e.audio_path), "text": e.text,
                        "duration": e.duration} for e in entries[:max_clips]))
    return path, max_clips


def scores(counts) -> Dict[str, float]:
    return {"wer": counts.wer, "cer": counts.cer, "word_edits": counts.word_edits,
            "reference_words": counts.reference_words, "char_edits": counts.char_edits,
            "reference_chars": counts.reference_chars}


def stream_clip(loaded, decoder: str, samples: np.ndarray, chunk: int) -> Tuple[str, int]:
    """One clip through a fresh StreamingTranscriber, `chunk` samples at a time -> (the finals' texts joined,
    how many finals)."""
    from deepspeech_pytorch.streaming import StreamingTranscriber

    stream = StreamingTranscriber(loaded, decoder, word_timings=False)
    finals = []
    for first in range(0, len(samples), chunk):
        finals += stream.accept_audio(samples[first: first + chunk]).finals
    finals += stream.finish().finals
    return " ".join(final.text for final in finals if final.text), len(finals)


def streamed(loaded, decoder: str, utterances: List[dict], chunk_seconds: float, label: str):
    """The offline result's clips (references as test.py normalised them) streamed -> (ErrorCounts, per clip)."""
    from deepspeech_pytorch.audio import load_audio
    from deepspeech_pytorch.metrics import ErrorCounts, utterance_errors

    rate = loaded.features.sample_rate
    chunk = max(1, int(round(chunk_seconds * rate)))
    total, rows = ErrorCounts(), []
    with tqdm(utterances, desc=f"streaming {label}", unit="clip", disable=None, leave=False) as bar:
        for item in bar:
            text, finals = stream_clip(loaded, decoder, load_audio(item["audio_filepath"], rate), chunk)
            errors = utterance_errors(item["reference"], text)
            total = total + errors
            rows.append({"audio_filepath": item["audio_filepath"], "reference": item["reference"],
                         "offline": item["hypothesis"], "streaming": text, "finals": finals})
    return total, rows


def percent(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def table(results: Dict[str, dict], default: bool) -> str:
    head = ["split", "clips", "offline WER", "offline CER", "streaming WER", "streaming CER"]
    if default:
        head += ["default WER", "default CER", "streaming / default WER"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, split in results.items():
        cells = [name, str(split["clips"]), percent(split["offline"]["wer"]), percent(split["offline"]["cer"]),
                 percent(split["streaming"]["wer"]), percent(split["streaming"]["cer"])]
        if default:
            ratio = split["ratio"]
            cells += [percent(split["default"]["wer"]), percent(split["default"]["cer"]),
                      "-" if ratio is None else f"{ratio:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict:
    splits = parse_splits(args.split)
    if args.max_clips is not None and args.max_clips < 1:
        raise ValueError(f"--max-clips {args.max_clips}: give at least 1")
    if not args.chunk_seconds > 0:
        raise ValueError(f"--chunk-seconds {args.chunk_seconds}: give a positive number of seconds")
    import torch

    torch.set_num_threads(args.threads)
    from deepspeech_pytorch.evaluation import evaluate_manifest
    from deepspeech_pytorch.inference import Transcriber, load_model, resolve_model_path
    from deepspeech_pytorch.streaming import streams_natively

    with tempfile.TemporaryDirectory() as folder:
        manifests = [(name, original, *subset_manifest(original, args.max_clips, folder, name))
                     for name, original in splits]
        loaded = load_model(args.model)
        offline = Transcriber(loaded, args.decoder)
        same = (not args.no_default
                and os.path.realpath(resolve_model_path(args.model)) == os.path.realpath(resolve_model_path(None)))
        reference = None if args.no_default or same else Transcriber(load_model(), args.decoder)
        results: Dict[str, dict] = {}
        for name, original, manifest, clips in manifests:
            result = evaluate_manifest(offline, manifest, args.batch_size, 0, progress=True)
            stream_counts, rows = streamed(loaded, args.decoder, result.utterances, args.chunk_seconds, name)
            split = {"manifest": original, "clips": len(result.utterances), "offline": scores(result.counts),
                     "streaming": scores(stream_counts)}
            if not args.no_default:
                counts = result.counts if same else evaluate_manifest(reference, manifest, args.batch_size, 0,
                                                                      progress=True).counts
                split["default"] = scores(counts)
                split["ratio"] = stream_counts.wer / counts.wer if counts.wer else None
            if args.keep_clips:
                split["per_clip"] = rows
            results[name] = split
    return {"model": loaded.info, "mode": "streaming" if streams_natively(loaded) else "utterance",
            "decoder": args.decoder, "chunk_seconds": args.chunk_seconds, "max_clips": args.max_clips,
            "default_model": None if args.no_default else resolve_model_path(None), "splits": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="checkpoint to stream (default: the bundled model, in utterance mode)")
    parser.add_argument("--split", action="append", required=True, metavar="NAME=MANIFEST",
                        help="a test split (repeatable)")
    parser.add_argument("--max-clips", type=int, help="the first N clips of each split (default: all)")
    parser.add_argument("--chunk-seconds", type=float, default=0.32, help="audio per accept_audio call")
    parser.add_argument("--decoder", default="greedy", choices=["greedy", "beam"])
    parser.add_argument("--no-default", action="store_true", help="leave out the bundled default model's row")
    parser.add_argument("--batch-size", type=int, default=16, help="offline evaluation batch size")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (2 cores is the reference)")
    parser.add_argument("--json", help="also write the JSON result to this file")
    parser.add_argument("--keep-clips", action="store_true", help="per-clip texts in the JSON (offline, streaming)")
    args = parser.parse_args()
    try:
        output = run(args)
        if args.json:
            directory = os.path.dirname(os.path.abspath(args.json))
            os.makedirs(directory, exist_ok=True)
            with open(args.json, "w", encoding="utf-8") as handle:
                json.dump(output, handle, indent=1)
    except (ValueError, OSError, RuntimeError) as error:  # ManifestError, AudioError, CheckpointError, ...
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    print(f"model: {output['model']} ({output['mode']} mode), decoder {output['decoder']}, "
          f"chunks of {output['chunk_seconds']} s")
    print(table(output["splits"], not args.no_default))
    print(json.dumps(output))


if __name__ == "__main__":
    main()
