"""What the root scripts run: config in, one library call, results out; user mistakes become one-line errors."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time
from typing import Any, Callable, List

from omegaconf import DictConfig, ListConfig, OmegaConf

from deepspeech_pytorch.audio import AUDIO_EXTENSIONS, AudioError, audio_files_in
from deepspeech_pytorch.checkpoint import CheckpointError
from deepspeech_pytorch.datasets import ManifestError
from deepspeech_pytorch.labels import TranscriptError

logger = logging.getLogger("deepspeech_pytorch")

# Mistakes a user can make (bad files, bad manifests, a mismatched checkpoint, a bad setting):
# reported as one line, without a traceback, unless DEEPSPEECH_DEBUG=1.
USER_ERRORS = (AudioError, CheckpointError, ManifestError, TranscriptError, FileNotFoundError, ValueError)


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")


def reports_user_errors(function: Callable) -> Callable:
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except USER_ERRORS as error:
            if os.environ.get("DEEPSPEECH_DEBUG"):
                raise
            print(f"error: {error}", file=sys.stderr)
            sys.exit(1)

    return wrapper


@reports_user_errors
def run_train(config: DictConfig) -> Any:
    from deepspeech_pytorch.training import train

    setup_logging()
    result = train(config)
    summary = {"epochs": result.epochs_completed, "steps": result.steps, "best_wer": result.best_wer,
               "wer": result.last_wer, "cer": result.last_cer, "checkpoint_dir": result.checkpoint_dir,
               "skipped_losses": result.skipped_losses, "skipped_gradients": result.skipped_gradients}
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one summary
        print(json.dumps(summary))
    return result


def _transcriber(config: DictConfig, batch_size: int = 8):
    from deepspeech_pytorch.inference import Transcriber, load_model, resolve_device

    loaded = load_model(config.model_path, device=resolve_device(config.device))
    chunk_seconds = config.get("chunk_seconds", 30.0)
    decoder = OmegaConf.to_object(config.decoder) if OmegaConf.is_config(config.decoder) else config.decoder
    return Transcriber(loaded, decoder=decoder, chunk_seconds=chunk_seconds, batch_size=batch_size)


@reports_user_errors
def run_eval(config: DictConfig) -> Any:
    from deepspeech_pytorch.evaluation import evaluate_manifest

    setup_logging(logging.INFO if config.verbose else logging.WARNING)
    transcriber = _transcriber(config)
    result = evaluate_manifest(transcriber, config.test_manifest, config.batch_size, config.num_workers,
                               report_path=config.report_path, outputs_path=config.save_outputs)
    if config.verbose:
        for item in result.utterances:
            print(f"REF: {item['reference']}\nHYP: {item['hypothesis']}\n", file=sys.stderr)
    counts = result.counts
    print(f"WER {100 * counts.wer:.2f}%  CER {100 * counts.cer:.2f}%  ({len(result.utterances)} utterances)", file=sys.stderr)
    print(json.dumps({"wer": counts.wer, "cer": counts.cer, "utterances": len(result.utterances),
                      "word_edits": counts.word_edits, "reference_words": counts.reference_words,
                      "char_edits": counts.char_edits, "reference_chars": counts.reference_chars,
                      "model": transcriber.loaded.info}))
    return result


def audio_paths(value: Any) -> List[str]:
    """One path or a list of them; a folder stands for the audio files directly inside it."""
    paths = [str(v) for v in value] if isinstance(value, (list, tuple, ListConfig)) else [str(value)]
    expanded: List[str] = []
    for path in paths:
        if os.path.isdir(path):
            found = audio_files_in(path)
            if not found:
                raise FileNotFoundError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) in the folder {path}")
            expanded.extend(found)
        else:
            expanded.append(path)
    return expanded


@reports_user_errors
def run_transcribe(config: DictConfig) -> int:
    """Print one JSON line per file, and a timing summary on stderr; a bad file is reported and the
    others still transcribed."""
    setup_logging(logging.WARNING)
    paths = audio_paths(config.audio_path)  # a bad folder fails before the model loads
    started = time.perf_counter()
    transcriber = _transcriber(config, config.batch_size)
    load_seconds = time.perf_counter() - started
    info = transcriber.loaded.info
    decoder = type(transcriber.decoder).__name__
    failures, audio_seconds, compute_seconds = 0, 0.0, 0.0
    for path in paths:
        began = time.perf_counter()
        try:
            result = transcriber.transcribe(path, word_timings=config.word_timings)
        except AudioError as error:
            failures += 1
            print(f"error: {error}", file=sys.stderr)
            continue
        seconds = time.perf_counter() - began
        audio_seconds += result.duration
        compute_seconds += seconds
        record = {"audio_path": path, "transcript": result.text, "duration": round(result.duration, 3),
                  "seconds": round(seconds, 3), "rtf": round(seconds / max(result.duration, 1e-9), 4),
                  "words": [{"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3)} for w in result.words],
                  "model": info}
        print(json.dumps(record), flush=True)
    if audio_seconds > 0:
        print(f"{info['name']} ({info['architecture']}, {decoder}): {audio_seconds:.1f} s of audio in "
              f"{compute_seconds:.2f} s (RTF {compute_seconds / audio_seconds:.3f}); model loaded in "
              f"{load_seconds:.2f} s", file=sys.stderr)
    if failures:
        sys.exit(1)
    return 0
