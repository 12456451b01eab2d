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

from deepspeech_pytorch.audio import AudioError
from deepspeech_pytorch.datasets import Batch, BucketingBatchSampler, SpeechDataset, collate, read_manifest
from deepspeech_pytorch.inference import Transcriber
from deepspeech_pytorch.metrics import ErrorCounts, utterance_errors

logger = logging.getLogger(__name__)


@dataclass
class EvaluationResult:
    counts: ErrorCounts
    utterances: List[Dict[str, Any]] = field(default_factory=list)  # in manifest order
    outputs: List[Dict[str, Any]] = field(default_factory=list)  # log-probabilities when kept
    skipped: List[Dict[str, str]] = field(default_factory=list)  # unreadable utterances: audio_filepath, error

    @property
    def wer(self) -> float:
        return self.counts.wer

    @property
    def cer(self) -> float:
        return self.counts.cer

    def breakdown(self, key: str) -> Dict[str, ErrorCounts]:
        """Error counts per value of a manifest field (source, engine, voice, speaker, ...), in order of value;
        utterances without the field count under "(none)"."""
        groups: Dict[str, ErrorCounts] = {}
        for item in self.utterances:
            group = item.get("labels", {}).get(key, "(none)")
            groups[group] = groups.get(group, ErrorCounts()) + ErrorCounts(
                item["word_errors"], item["reference_words"], item["char_errors"], item["reference_chars"])
        return dict(sorted(groups.items()))


def make_loader(dataset: SpeechDataset, batch_size: int, num_workers: int) -> DataLoader:
    """Batches of similar length in a fixed order, for evaluation."""
    sampler = BucketingBatchSampler(dataset.durations(), batch_size, shuffle=False)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, collate_fn=collate)


def unreadable_rows(batch: Batch, skip_unreadable: bool) -> List[Dict[str, str]]:
    """The batch's utterances that could not be loaded, as {audio_filepath, error}; raises AudioError (one line,
    naming the file) for the first one unless `skip_unreadable` and it is the utterance's own audio that is bad."""
    for failure in batch.failures:
        if not (skip_unreadable and failure.unreadable):
            raise AudioError(failure.message)
    return [{"audio_filepath": f.audio_path, "error": f.message} for f in batch.failures]


def evaluate(transcriber: Transcriber, loader: DataLoader, keep_outputs: bool = False,
             progress: bool = False, skip_unreadable: bool = False) -> EvaluationResult:
    """Decode every batch of `loader` (a SpeechDataset loader) and score against its transcripts.

    An utterance whose audio cannot be read stops the evaluation with an AudioError naming it, or, with
    `skip_unreadable`, is left out of the scores and listed in `skipped` (with a warning).
    """
    dataset: SpeechDataset = loader.dataset
    alphabet = transcriber.loaded.alphabet
    by_index: Dict[int, Dict[str, Any]] = {}
    outputs: Dict[int, Dict[str, Any]] = {}
    skipped: List[Dict[str, str]] = []
    # without a terminal (disable=None) no bar; `with` clears it before an error is printed
    with tqdm(loader, desc="evaluating", disable=None if progress else True, leave=False) as bar:
        for batch in bar:
            for item in unreadable_rows(batch, skip_unreadable):
                logger.warning("skipped unreadable utterance %s", item["error"])
                skipped.append(item)
            if len(batch) == 0:
                continue
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
                    "labels": dict(dataset.entries[index].labels),
                }
                if keep_outputs:
                    outputs[index] = {"log_probs": log_probs[row, : int(lengths[row])].cpu().clone(),
                                      "reference": reference, "audio_filepath": dataset.entries[index].audio_path}
    if skipped:
        logger.warning("skipped %d unreadable utterance(s) of %d", len(skipped), len(dataset))
    counts = ErrorCounts()
    for item in by_index.values():
        counts = counts + ErrorCounts(item["word_errors"], item["reference_words"], item["char_errors"], item["reference_chars"])
    order = sorted(by_index)
    return EvaluationResult(counts, [by_index[i] for i in order], [outputs[i] for i in order] if keep_outputs else [],
                            skipped)


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
                      progress: bool = True, skip_unreadable: bool = False) -> EvaluationResult:
    """Score a model on a manifest; optionally write per-utterance results and output probabilities.

    An unreadable audio file stops it with one AudioError naming the file (whatever `num_workers`), or
    with `skip_unreadable` is left out and listed in the result's `skipped`.
    """
    loaded = transcriber.loaded
    unreadable: Optional[Dict[str, str]] = {} if skip_unreadable else None  # missing or unreadable at reading
    dataset = SpeechDataset(read_manifest(manifest, unreadable), loaded.alphabet, loaded.features)
    result = evaluate(transcriber, make_loader(dataset, batch_size, num_workers),
                      keep_outputs=outputs_path is not None, progress=progress, skip_unreadable=skip_unreadable)
    if unreadable:
        for path, message in unreadable.items():
            logger.warning("skipped unreadable utterance %s", message)
        result.skipped[:0] = [{"audio_filepath": path, "error": message} for path, message in unreadable.items()]
    if report_path:
        write_report(report_path, result)
    if outputs_path:
        save_outputs(outputs_path, result, loaded.alphabet.labels, transcriber.decoder.seconds_per_frame)
    return result
