"""Shared last steps of every corpus: convert recordings to 16 kHz mono 16-bit WAV, then write a manifest.

Corpora list their utterances as `Utterance`s (a source recording, optionally a time span in it, and a
transcript); `convert_utterances` decodes each recording once, cuts and writes the WAV files in
parallel, and `write_corpus_manifest` prunes by duration and writes the JSON-lines manifest atomically.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from deepspeech_pytorch.audio import SAMPLE_RATE, AudioError, audio_duration, load_audio, write_audio
from deepspeech_pytorch.corpora import CorpusError
from deepspeech_pytorch.datasets import ManifestEntry, filter_by_duration, summarize, write_manifest
from deepspeech_pytorch.labels import Alphabet

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Layout:
    """Where a corpus's files go under its target folder: archives, unpacked originals, WAVs, manifests."""

    root: str
    corpus: str  # short name used in manifest file names, e.g. "librispeech"

    @property
    def downloads(self) -> str:
        return os.path.join(self.root, "downloads")

    @property
    def raw(self) -> str:
        return os.path.join(self.root, "raw")

    def wav(self, split: str, utterance_id: str) -> str:
        return os.path.join(self.root, "wav", split, f"{utterance_id}.wav")

    def manifest(self, split: str) -> str:
        return os.path.join(self.root, f"{self.corpus}_{split}.jsonl")


@dataclass(frozen=True)
class Utterance:
    """One training example to cut out of `source` and write to `target` (a .wav path)."""

    source: str  # the corpus's recording (FLAC, SPHERE, MP3, WAV...)
    target: str  # the 16 kHz WAV to write
    text: str  # transcript, already normalised
    utterance_id: str
    start: float = 0.0  # seconds into the recording
    end: Optional[float] = None  # seconds; None: to the end of the recording


@dataclass(frozen=True)
class DurationLimits:
    """Utterances shorter than `minimum` or longer than `maximum` seconds are not converted or listed."""

    minimum: float = 0.0
    maximum: Optional[float] = None

    def __post_init__(self) -> None:
        if self.minimum < 0 or (self.maximum is not None and self.maximum < self.minimum):
            raise ValueError(f"invalid duration limits: min {self.minimum} s, max {self.maximum} s")

    def admits(self, duration: float) -> bool:
        return duration >= self.minimum and (self.maximum is None or duration <= self.maximum)


def normalize_transcript(alphabet: Alphabet, text: str, utterance_id: str) -> str:
    """The transcript in the alphabet's form; empty (with a warning) when nothing usable remains."""
    normalized = alphabet.normalize(text, utterance=utterance_id)
    if not normalized:
        logger.warning("%s: transcript %r is empty after normalisation; utterance skipped", utterance_id, text)
    return normalized


def _write_wav(target: str, samples: np.ndarray) -> None:
    """Write through a temporary name so an interrupted run never leaves a truncated WAV behind."""
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    temporary = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.partial.wav")
    write_audio(temporary, samples, SAMPLE_RATE)
    os.replace(temporary, target)


def _span(utterance: Utterance, recording_duration: Optional[float]) -> Optional[float]:
    if utterance.end is not None:
        return utterance.end - utterance.start
    if recording_duration is not None:
        return recording_duration - utterance.start
    return None


def _convert_recording(source: str, utterances: Sequence[Utterance],
                       limits: DurationLimits) -> Tuple[List[ManifestEntry], Optional[str]]:
    """Entries for the utterances of one recording, and an error message when it cannot be decoded."""
    entries: List[ManifestEntry] = []
    pending = []
    for utterance in utterances:
        if os.path.isfile(utterance.target):  # converted by an earlier run (writes are atomic)
            try:
                duration = audio_duration(utterance.target)
            except AudioError:
                pending.append(utterance)
                continue
            if limits.admits(duration):
                entries.append(ManifestEntry(utterance.target, utterance.text, duration, utterance.utterance_id))
            continue
        pending.append(utterance)
    if not pending:
        return entries, None
    try:
        header_duration = audio_duration(source) if any(u.end is None for u in pending) else None
    except AudioError as error:
        return entries, str(error)
    pending = [u for u in pending if limits.admits(_span(u, header_duration))]  # skip decoding what is pruned
    if not pending:
        return entries, None
    try:
        samples = load_audio(source, SAMPLE_RATE)
    except AudioError as error:
        return entries, str(error)
    for utterance in pending:
        first = int(round(utterance.start * SAMPLE_RATE))
        last = len(samples) if utterance.end is None else min(len(samples), int(round(utterance.end * SAMPLE_RATE)))
        if last <= first:
            logger.warning("%s: utterance %s (%.2f-%s s) lies beyond the end of the recording; skipped",
                           source, utterance.utterance_id, utterance.start, utterance.end)
            continue
        piece = samples[first:last]
        duration = len(piece) / SAMPLE_RATE
        if not limits.admits(duration):
            continue
        _write_wav(utterance.target, piece)
        entries.append(ManifestEntry(utterance.target, utterance.text, duration, utterance.utterance_id))
    return entries, None


def convert_utterances(utterances: Sequence[Utterance], limits: DurationLimits = DurationLimits(),
                       workers: int = 1, description: str = "converting", progress: bool = True) -> List[ManifestEntry]:
    """Convert every utterance to a 16 kHz mono WAV (each recording decoded once); entries in input order.

    Recordings that cannot be decoded are skipped with a warning naming them; when none can be decoded
    the corpus is unusable (e.g. a libsndfile without MP3) and CorpusError names the first failure.
    Utterances outside `limits` are neither converted nor returned.
    """
    by_source: "OrderedDict[str, List[Utterance]]" = OrderedDict()
    for utterance in utterances:
        by_source.setdefault(utterance.source, []).append(utterance)
    results: Dict[str, List[ManifestEntry]] = {}
    failures: List[str] = []
    pool = ThreadPoolExecutor(max_workers=max(1, workers))  # threads: libsndfile calls (cffi) run without the GIL
    try:
        with tqdm(total=len(by_source), desc=description, unit=" files", disable=not progress) as bar:
            futures = {source: pool.submit(_convert_recording, source, group, limits)
                       for source, group in by_source.items()}
            for source, future in futures.items():
                entries, failure = future.result()
                results[source] = entries
                if failure:
                    logger.warning("skipping undecodable recording: %s", failure)
                    failures.append(failure)
                bar.update(1)
    finally:
        pool.shutdown(cancel_futures=True)  # on an error or Ctrl-C, stop instead of converting the rest
    if failures and len(failures) == len(by_source):
        raise CorpusError(f"no recording could be decoded; the first: {failures[0]}")
    if failures:
        logger.warning("%d of %d recordings could not be decoded and were skipped", len(failures), len(by_source))
    order = {utterance.target: index for index, utterance in enumerate(utterances)}
    return sorted((entry for entries in results.values() for entry in entries), key=lambda e: order[e.audio_path])


def write_corpus_manifest(path: str, entries: Sequence[ManifestEntry],
                          limits: DurationLimits = DurationLimits()) -> str:
    """Prune by duration and write the JSON-lines manifest atomically; refuse to write an empty one."""
    kept = filter_by_duration(entries, limits.minimum, limits.maximum)
    if not kept:
        raise CorpusError(f"{path}: no utterances to write: all were outside the duration limits "
                          f"[{limits.minimum}, {limits.maximum}] s or could not be used")
    write_manifest(path, kept)
    stats = summarize(kept)
    logger.info("wrote %s: %d utterances, %.3f hours", path, stats["utterances"], stats["hours"])
    return path


def convert_splits(listed: Dict[str, Sequence[Tuple[str, str, str]]], layout: Layout, alphabet: Alphabet,
                   limits: DurationLimits, workers: int, label: str, progress: bool) -> Dict[str, str]:
    """Normalise, convert and write a manifest for each split of (utterance_id, audio, raw text) items.

    Every split is listed before any is converted, so a bad transcript list stops the run before
    anything is written. Returns split -> manifest path.
    """
    manifests = {}
    for split, items in listed.items():
        utterances = []
        for utterance_id, audio, raw_text in items:
            text = normalize_transcript(alphabet, raw_text, utterance_id)
            if text:
                utterances.append(Utterance(audio, layout.wav(split, utterance_id), text, utterance_id))
        entries = convert_utterances(utterances, limits, workers, f"{label} {split}", progress)
        manifests[split] = write_corpus_manifest(layout.manifest(split), entries, limits)
    return manifests
