"""Evaluation: WER/CER of a model over a manifest, per-utterance results and saved output probabilities."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from deepspeech_pytorch.datasets import BucketingBatchSampler, SpeechDataset, collate, read_manifest
from deepspeech_pytorch.inference import Transcriber
from deepspeech_pytorch.metrics import ErrorCounts, utterance_errors

logger = logging.getLogger(__name__)


@dataclass
class EvaluationResult:
    counts: ErrorCounts
    utterances: List[Dict[str, Any]] = field(default_factory=list)  # in manifest order
    outputs: List[Dict[str, Any]] = field(default_factory=list)  # log-probabilities when kept

    @property
    def wer(self) -> float:
        return self.counts.wer

    @property
    def cer(self) -> float:
        return self.counts.cer


def make_loader(dataset: SpeechDataset, batch_size: int, num_workers: int) -> DataLoader:
    """Batches of similar length in a fixed order, for evaluation."""
    sampler = BucketingBatchSampler(dataset.durations(), batch_size, shuffle=False)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, collate_fn=collate)


def evaluate(transcriber: Transcriber, loader: DataLoader, keep_outputs: bool = False,
             progress: bool = False) -> EvaluationResult:
    """Decode every batch of `loader` (a SpeechDataset loader) and score against its transcripts."""
    dataset: SpeechDataset = loader.dataset
    alphabet = transcriber.loaded.alphabet
    by_index: Dict[int, Dict[str, Any]] = {}
    outputs: Dict[int, Dict[str, Any]] = {}
    for batch in tqdm(loader, desc="evaluating", disable=not progress, leave=False):
        log_probs, lengths = transcriber.log_probs(batch.features, batch.feature_lengths)
        for row, hypothesis in enumerate(transcriber.decode(log_probs, lengths)):
            index = int(batch.indices[row])
            reference = alphabet.decode(dataset.targets[index])
            errors = utterance_errors(reference, hypothesis.text)
            by_index[index] = {
                "audio_filepath": dataset.entries[index].audio_path,
                "reference": reference,
                "hypothesis": hypothesis.text,
                "word_errors": errors.word_edits,
                "reference_words": errors.reference_words,
                "char_errors": errors.char_edits,
                "reference_chars": errors.reference_chars,
            }
            if keep_outputs:
                outputs[index] = {"log_probs": log_probs[row, : int(lengths[row])].cpu().clone(),
                                  "reference": reference, "audio_filepath": dataset.entries[index].audio_path}
    counts = ErrorCounts()
    for item in by_index.values():
        counts = counts + ErrorCounts(item["word_errors"], item["reference_words"], item["char_errors"], item["reference_chars"])
    order = sorted(by_index)
    return EvaluationResult(counts, [by_index[i] for i in order], [outputs[i] for i in order] if keep_outputs else [])


def save_outputs(path: str, result: EvaluationResult, labels: Sequence[str], seconds_per_frame: float) -> None:
    """Write model outputs for LM tuning: one .pt with log-probabilities (time, classes) per utterance."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save({"labels": list(labels), "seconds_per_frame": seconds_per_frame, "utterances": result.outputs}, path)


def write_report(path: str, result: EvaluationResult) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for item in result.utterances:
            handle.write(json.dumps(item, ensure_ascii=False) + "\n")


def evaluate_manifest(transcriber: Transcriber, manifest: str, batch_size: int = 16, num_workers: int = 0,
                      report_path: Optional[str] = None, outputs_path: Optional[str] = None,
                      progress: bool = True) -> EvaluationResult:
    """Score a model on a manifest; optionally write per-utterance results and output probabilities."""
    loaded = transcriber.loaded
    dataset = SpeechDataset(read_manifest(manifest), loaded.alphabet, loaded.features)
    result = evaluate(transcriber, make_loader(dataset, batch_size, num_workers),
                      keep_outputs=outputs_path is not None, progress=progress)
    if report_path:
        write_report(report_path, result)
    if outputs_path:
        save_outputs(outputs_path, result, loaded.alphabet.labels, transcriber.decoder.seconds_per_frame)
    return result
