"""The quick demo: synthesize a small command corpus with espeak-ng, train a small model on the CPU
for a few minutes, evaluate it on voices it never heard, and transcribe one file.

A GRID-style grammar ("place blue at f two now") keeps the vocabulary small enough that a model
learns it in minutes; the test voices are held out, so the WER measures unseen speakers.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Dict

from omegaconf import OmegaConf

from deepspeech_pytorch.configs import TrainConfig
from deepspeech_pytorch.evaluation import evaluate_manifest
from deepspeech_pytorch.inference import Transcriber, load_model
from deepspeech_pytorch.corpora.synthetic import build_corpus
from deepspeech_pytorch.training import train

logger = logging.getLogger(__name__)


def demo_train_config(corpus: Dict[str, Any], output_dir: str, epochs: int, max_minutes: float, seed: int) -> TrainConfig:
    config = OmegaConf.structured(TrainConfig)
    config.model = "ds2_tiny"
    config.data.train_manifest = corpus["manifests"]["train"]
    config.data.val_manifest = corpus["manifests"]["val"]
    config.data.batch_size = 16
    config.data.num_workers = 1
    config.optim.learning_rate = 3e-3
    config.epochs = epochs
    config.max_minutes = max_minutes
    config.seed = seed
    config.checkpoint.directory = os.path.join(output_dir, "checkpoints")
    config.checkpoint.resume = False
    config.log_dir = os.path.join(output_dir, "runs")
    return config


def run_demo(output_dir: str = "demo_output", utterances: int = 1500, epochs: int = 4, max_minutes: float = 7.0,
             seed: int = 0) -> Dict[str, Any]:
    """Build, train, evaluate, transcribe; returns the figures it prints."""
    started = time.time()
    corpus = build_corpus(os.path.join(output_dir, "corpus"), utterances=utterances, text_source="grid",
                          engines=("espeak-ng",), seed=seed, val_fraction=0.05, test_fraction=0.1)
    result = train(demo_train_config(corpus, output_dir, epochs, max_minutes, seed))
    model_path = os.path.join(result.checkpoint_dir, "best.pt")
    if not os.path.isfile(model_path):
        model_path = os.path.join(result.checkpoint_dir, "last.pt")
    transcriber = Transcriber(load_model(model_path))
    test = evaluate_manifest(transcriber, corpus["manifests"]["test"], batch_size=16, progress=False)
    sample = test.utterances[0]
    transcription = transcriber.transcribe(sample["audio_filepath"])
    return {
        "corpus_hours": corpus.get("hours"),
        "epochs": result.epochs_completed,
        "test_utterances": len(test.utterances),
        "test_wer": round(test.wer, 4),
        "test_cer": round(test.cer, 4),
        "sample": {"audio_path": sample["audio_filepath"], "reference": sample["reference"],
                   "transcript": transcription.text,
                   "words": [{"word": w.word, "start": round(w.start, 2), "end": round(w.end, 2)} for w in transcription.words]},
        "model_path": model_path,
        "minutes": round((time.time() - started) / 60, 1),
    }


def print_report(report: Dict[str, Any]) -> None:
    print(f"\ntest set (unseen voices): WER {100 * report['test_wer']:.1f}%  CER {100 * report['test_cer']:.1f}%"
          f"  over {report['test_utterances']} utterances")
    print(f"reference:  {report['sample']['reference']}")
    print(f"transcript: {report['sample']['transcript']}")
    print(json.dumps(report, indent=2))
