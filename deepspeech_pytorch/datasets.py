"""Manifests (read, validate, write, merge), the speech Dataset, padding collate and bucketed batching.

Three manifest formats are read, so users of the original project can migrate:
- CSV lines `wav_path,txt_path` (the original's format; relative paths resolve from the manifest's folder);
- the original's V3 JSON `{"root_path": ..., "samples": [{"wav_path": ..., "transcript_path": ...}]}`;
- JSON lines `{"audio_filepath": ..., "text": ..., "duration": ...}` (the format this project writes).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from deepspeech_pytorch.audio import AudioError, audio_duration, load_audio
from deepspeech_pytorch.configs import FeatureConfig
from deepspeech_pytorch.features import frame_count, utterance_features
from deepspeech_pytorch.labels import Alphabet, TranscriptError

logger = logging.getLogger(__name__)

# Output frames below which an utterance cannot be trained on whatever its transcript: the BatchNorm
# layers over (time x batch) need more than one value per channel, and a batch may hold one utterance.
MIN_TRAINING_FRAMES = 2


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file and line."""


class UnreadableEntry(ManifestError):
    """A manifest line whose audio file is missing or cannot be read; `skip_unreadable` leaves it out."""

    def __init__(self, message: str, audio_path: str):
        super().__init__(message)
        self.audio_path = audio_path


def read_text(path: str, what: str = "file") -> str:
    """A UTF-8 text file's content; a file in another encoding is refused naming the file and the byte."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except UnicodeDecodeError as error:
        line = 1 + open(path, "rb").read()[:error.start].count(b"\n")
        raise ManifestError(f"{path} line {line}: {what} is not UTF-8 text (byte 0x{error.object[error.start]:02x}); "
                            f"save it as UTF-8") from None


@dataclass(frozen=True)
class ManifestEntry:
    audio_path: str
    text: str
    duration: float  # seconds
    utterance_id: str = ""
    # other string fields of a JSON-lines record (source, engine, voice, speaker, ...), for per-group scores
    labels: Mapping[str, str] = field(default_factory=dict, compare=False)


def resolve_path(path: str, base: str) -> str:
    """A manifest's path: `~` expanded, relative paths taken from `base` (the manifest's folder)."""
    path = os.path.expanduser(path)
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(base, path))


def _read_transcript(path: str, where: str) -> str:
    if not os.path.isfile(path):
        raise ManifestError(f"{where}: transcript file not found: {path}")
    return read_text(path, "transcript").strip()


def _entry(audio_path: str, text: str, duration: Optional[float], where: str) -> ManifestEntry:
    if not text.strip():
        raise ManifestError(f"{where}: empty transcript for {audio_path}")
    if not os.path.isfile(audio_path):
        raise UnreadableEntry(f"{where}: audio file not found: {audio_path}", audio_path)
    if duration is None:
        try:
            duration = audio_duration(audio_path)
        except AudioError as error:
            raise UnreadableEntry(f"{where}: {error}", audio_path) from None
    elif not isinstance(duration, (int, float)) or not math.isfinite(duration) or duration < 0:
        raise ManifestError(f"{where}: invalid duration {duration!r}")
    return ManifestEntry(audio_path, text.strip(), float(duration), os.path.splitext(os.path.basename(audio_path))[0])


def _kept(entries: List[ManifestEntry], make: Callable[[], ManifestEntry],
          skipped: Optional[Dict[str, str]]) -> None:
    """Append make()'s entry; with a `skipped` mapping, a line whose audio is unreadable goes there instead."""
    try:
        entries.append(make())
    except UnreadableEntry as error:
        if skipped is None:
            raise
        skipped[error.audio_path] = str(error)


def _read_csv(path: str, lines: List[str], skipped: Optional[Dict[str, str]] = None) -> List[ManifestEntry]:
    base = os.path.dirname(os.path.abspath(path))
    entries = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        fields = [part.strip() for part in line.rstrip("\n").split(",")]
        if len(fields) != 2 or not all(fields):
            raise ManifestError(f"{where}: expected 'wav_path,txt_path', got {line.strip()!r}")
        audio_path, transcript_path = (resolve_path(field, base) for field in fields)
        text = _read_transcript(transcript_path, where)
        _kept(entries, lambda: _entry(audio_path, text, None, where), skipped)
    return entries


def _read_v3_json(path: str, document: dict, skipped: Optional[Dict[str, str]] = None) -> List[ManifestEntry]:
    base = os.path.dirname(os.path.abspath(path))
    root = resolve_path(document.get("root_path") or ".", base)
    samples = document.get("samples")
    if not isinstance(samples, list):
        raise ManifestError(f"{path}: 'samples' must be a list")
    entries = []
    for number, sample in enumerate(samples):
        where = f"{path} sample {number}"
        if not isinstance(sample, dict) or "wav_path" not in sample or "transcript_path" not in sample:
            raise ManifestError(f"{where}: expected an object with 'wav_path' and 'transcript_path'")
        audio_path = resolve_path(sample["wav_path"], root)
        text = _read_transcript(resolve_path(sample["transcript_path"], root), where)
        _kept(entries, lambda: _entry(audio_path, text, None, where), skipped)
    return entries


def parse_json_line(line: str, base: str, where: str) -> Tuple[str, str, Optional[float], Dict[str, str]]:
    """(audio path resolved against `base`, text, duration or None, the record's other string fields) of one
    JSON-lines manifest line: the one
    parser of this format, for reading (read_manifest) and checking (corpora.verify). Raises ManifestError
    naming `where` for anything that is not such a line."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise ManifestError(f"{where}: not valid JSON ({error.msg})") from None
    if not isinstance(record, dict) or not isinstance(record.get("audio_filepath"), str) \
            or not isinstance(record.get("text"), str):
        raise ManifestError(f"{where}: expected an object with string 'audio_filepath' and 'text'")
    duration = record.get("duration")
    if duration is not None and (isinstance(duration, bool) or not isinstance(duration, (int, float))
                                 or not math.isfinite(duration) or duration < 0):
        raise ManifestError(f"{where}: invalid duration {duration!r}")
    labels = {key: value for key, value in record.items()
              if isinstance(value, str) and key not in ("audio_filepath", "text")}
    return resolve_path(record["audio_filepath"], base), record["text"], duration, labels


def _read_json_lines(path: str, lines: List[str], skipped: Optional[Dict[str, str]] = None) -> List[ManifestEntry]:
    base = os.path.dirname(os.path.abspath(path))
    entries = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        audio_path, text, duration, labels = parse_json_line(line, base, where)
        _kept(entries, lambda: dataclasses.replace(_entry(audio_path, text, duration, where), labels=labels), skipped)
    return entries


def read_manifest(path: str, skipped: Optional[Dict[str, str]] = None) -> List[ManifestEntry]:
    """Read any supported manifest, checking that every audio file exists and every transcript is non-empty.

    Raises ManifestError naming the file and line. With a `skipped` mapping (data.skip_unreadable), lines
    whose audio file is missing or unreadable are left out and recorded there (audio path -> message)
    instead; a manifest left with no entries is still an error."""
    if not os.path.isfile(path):
        raise ManifestError(f"manifest not found: {path}")
    content = read_text(path, "manifest")
    if not content.strip():
        raise ManifestError(f"{path}: manifest is empty")
    if path.endswith(".csv"):
        entries = _read_csv(path, content.splitlines(), skipped)
    else:
        stripped = content.lstrip()
        document = None
        if stripped.startswith("{") and not path.endswith(".jsonl"):
            try:
                document = json.loads(content)
            except json.JSONDecodeError:
                document = None  # more than one object: JSON lines
        if isinstance(document, dict) and "samples" in document:
            entries = _read_v3_json(path, document, skipped)
        else:
            entries = _read_json_lines(path, content.splitlines(), skipped)
    if not entries:
        unreadable = f" ({len(skipped)} left out as unreadable)" if skipped else ""
        raise ManifestError(f"{path}: manifest has no entries{unreadable}")
    return entries


def write_jsonl(path: str, records: Iterable[Mapping]) -> None:
    """One JSON object per line, written to a temporary file and renamed: a crash never leaves half a file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = f"{path}.tmp"
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_manifest(path: str, entries: Sequence[ManifestEntry], relative: bool = True) -> None:
    """Write JSON lines atomically; audio paths relative to the manifest's folder when `relative`."""
    base = os.path.dirname(os.path.abspath(path))
    write_jsonl(path, ({"audio_filepath": os.path.relpath(e.audio_path, base) if relative else os.path.abspath(e.audio_path),
                        "text": e.text, "duration": round(e.duration, 4)} for e in entries))


def filter_by_duration(entries: Sequence[ManifestEntry], min_duration: float = 0.0,
                       max_duration: Optional[float] = None) -> List[ManifestEntry]:
    if max_duration is not None and min_duration > max_duration:
        raise ValueError(f"min_duration {min_duration} is above max_duration {max_duration}")
    kept = [e for e in entries if e.duration >= min_duration and (max_duration is None or e.duration <= max_duration)]
    if len(kept) < len(entries):
        logger.info("duration filter [%s, %s] s kept %d of %d utterances", min_duration, max_duration, len(kept), len(entries))
    return kept


def merge_manifests(paths: Sequence[str]) -> List[ManifestEntry]:
    """Entries of several manifests, duplicates of the same audio file kept once."""
    seen, merged = set(), []
    for path in paths:
        for entry in read_manifest(path):
            if entry.audio_path not in seen:
                seen.add(entry.audio_path)
                merged.append(entry)
    return merged


def ctc_frames_needed(target: Sequence[int]) -> int:
    """Fewest output frames CTC can align `target` (label ids) to: one per label, plus a blank between
    each pair of equal neighbours ("hello" needs 6)."""
    return len(target) + sum(1 for a, b in zip(target, target[1:]) if a == b)


def feature_frames(duration: float, features: FeatureConfig) -> int:
    """Spectrogram frames for `duration` seconds of audio, as `features.spectrogram` counts them."""
    samples = int(round(duration * features.sample_rate))
    return int(frame_count(torch.tensor(samples), features.hop_length))


def too_short_reason(output_frames: int, ctc_frames: int, min_frames: int = MIN_TRAINING_FRAMES) -> Optional[str]:
    """Why an utterance with `output_frames` model output frames cannot be trained on (None if it can):
    CTC needs `ctc_frames` (see ctc_frames_needed) and training at least `min_frames`."""
    if output_frames < ctc_frames:
        return f"too short for its transcript: {output_frames} output frames, CTC needs {ctc_frames}"
    if output_frames < min_frames:
        return f"too short to train on: {output_frames} output frame, training needs at least {min_frames}"
    return None


def _one_line(error: Exception) -> str:
    return " ".join(str(error).splitlines()).strip() or type(error).__name__


@dataclass(frozen=True)
class LoadFailure:
    """An utterance the dataset could not turn into features (in a worker: returned, not raised, so the
    main process can report it in one line or skip it)."""
    index: int
    audio_path: str
    message: str  # one line naming the file
    unreadable: bool  # True: the utterance's own audio cannot be used; False: something else (a noise clip)


@dataclass
class Sample:
    features: Optional[Tensor]  # (freq, frames); None when `failure` is set
    target: Tensor  # (label_count,) int64
    index: int
    failure: Optional[LoadFailure] = None


class SpeechDataset(Dataset):
    """Decodes audio, applies optional waveform and feature augmentation, encodes the transcript.

    `waveform_augment(samples, rng)` and `feature_augment(features, rng)` run in the data workers;
    the generator is seeded per (seed, epoch, index) so augmentation is reproducible. An item whose
    audio cannot be used comes back as a Sample with `failure` set instead of raising: an exception in
    a DataLoader worker reaches the user as a multi-line traceback whatever it says.
    """

    def __init__(self, entries: Sequence[ManifestEntry], alphabet: Alphabet, features: FeatureConfig,
                 waveform_augment: Optional[Callable] = None, feature_augment: Optional[Callable] = None,
                 seed: int = 0):
        self.entries = list(entries)
        self.alphabet = alphabet
        self.feature_config = features
        self.waveform_augment = waveform_augment
        self.feature_augment = feature_augment
        self.seed = seed
        self.epoch = 0
        self.targets: List[List[int]] = []
        for entry in self.entries:
            text = alphabet.normalize(entry.text, utterance=entry.audio_path)
            if not text:
                raise TranscriptError(f"{entry.audio_path}: transcript is empty after normalisation")
            self.targets.append(alphabet.encode(text))
        self.ctc_frames = [ctc_frames_needed(target) for target in self.targets]

    def __len__(self) -> int:
        return len(self.entries)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def durations(self) -> List[float]:
        return [entry.duration for entry in self.entries]

    def too_short(self, output_lengths: Callable[[Tensor], Tensor],
                  min_frames: int = MIN_TRAINING_FRAMES) -> Dict[int, str]:
        """Utterances that, by their manifest duration, give fewer model output frames than training needs.

        `output_lengths` maps input frames (n,) to output frames (n,), e.g. DeepSpeech2.output_lengths.
        Returns {index: reason naming the duration}.
        """
        if not self.entries:
            return {}
        frames = output_lengths(torch.tensor([feature_frames(e.duration, self.feature_config) for e in self.entries]))
        found = {}
        for index, (entry, count) in enumerate(zip(self.entries, frames.tolist())):
            reason = too_short_reason(int(count), self.ctc_frames[index], min_frames)
            if reason is not None:
                found[index] = f"{entry.duration:.3f} s, {reason}"
        return found

    def __getitem__(self, index: int) -> Sample:
        entry = self.entries[index]
        target = torch.tensor(self.targets[index], dtype=torch.long)
        try:
            samples = load_audio(entry.audio_path, self.feature_config.sample_rate)
        except AudioError as error:
            return Sample(None, target, index, LoadFailure(index, entry.audio_path, _one_line(error), True))
        try:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            if self.waveform_augment is not None:
                samples = self.waveform_augment(samples, rng)
            features = utterance_features(torch.from_numpy(np.ascontiguousarray(samples)), self.feature_config)
            if self.feature_augment is not None:
                features = self.feature_augment(features, rng)
        except AudioError as error:  # e.g. an unusable noise clip: not this utterance's fault
            return Sample(None, target, index, LoadFailure(index, entry.audio_path, _one_line(error), False))
        return Sample(features, target, index)


@dataclass
class Batch:
    features: Tensor  # (batch, freq, frames), zero padded
    feature_lengths: Tensor  # (batch,)
    targets: Tensor  # (sum of target lengths,) concatenated, as nn.CTCLoss accepts
    target_lengths: Tensor  # (batch,)
    indices: Tensor  # (batch,) dataset indices
    failures: Tuple[LoadFailure, ...] = ()  # utterances of this batch that could not be loaded (not in the rows)

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def to(self, device: torch.device) -> "Batch":
        return Batch(self.features.to(device, non_blocking=True), self.feature_lengths.to(device),
                     self.targets.to(device), self.target_lengths.to(device), self.indices, self.failures)

    def select(self, rows: Sequence[int]) -> "Batch":
        """The batch of only these rows (positions), padding trimmed to the longest of them."""
        rows = list(rows)
        if not rows:
            return Batch(self.features[:0, :, :0], self.feature_lengths[:0], self.targets[:0],
                         self.target_lengths[:0], self.indices[:0], self.failures)
        starts = torch.cumsum(self.target_lengths, 0) - self.target_lengths
        targets = [self.targets[int(starts[r]): int(starts[r] + self.target_lengths[r])] for r in rows]
        picked = torch.tensor(rows, dtype=torch.long)
        lengths = self.feature_lengths[picked.to(self.feature_lengths.device)]
        features = self.features[picked.to(self.features.device)][:, :, : int(lengths.max())]
        return Batch(features, lengths, torch.cat(targets), self.target_lengths[picked.to(self.target_lengths.device)],
                     self.indices[picked], self.failures)


def collate(samples: Sequence[Sample]) -> Batch:
    """Pad features to the longest utterance in the batch; samples that failed to load go to `failures`."""
    failures = tuple(s.failure for s in samples if s.failure is not None)
    samples = [s for s in samples if s.failure is None]
    if not samples:
        return Batch(torch.zeros(0, 0, 0), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long),
                     torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), failures)
    lengths = torch.tensor([s.features.shape[1] for s in samples], dtype=torch.long)
    features = torch.zeros(len(samples), samples[0].features.shape[0], int(lengths.max()))
    for row, sample in enumerate(samples):
        features[row, :, : sample.features.shape[1]] = sample.features
    return Batch(features, lengths, torch.cat([s.target for s in samples]),
                 torch.tensor([len(s.target) for s in samples], dtype=torch.long),
                 torch.tensor([s.index for s in samples], dtype=torch.long), failures)


class BucketingBatchSampler(Sampler[List[int]]):
    """Batches of utterances of similar duration, so little of each batch is padding.

    Utterances are sorted by duration and cut into global batches of batch_size x num_replicas;
    the order of global batches is shuffled each epoch (seeded), except epoch 0 when
    `sorted_first_epoch` (SortaGrad) keeps the shortest first. Rank r takes items r, r + n, ... of
    each global batch, so all ranks step together on equally long inputs and, together, train on
    exactly the global batch a single process would. A last global batch too small to give every
    rank an item is dropped. `start_batch` skips batches already trained in a resumed epoch.
    """

    def __init__(self, durations: Sequence[float], batch_size: int, shuffle: bool = True, seed: int = 0,
                 sorted_first_epoch: bool = False, num_replicas: int = 1, rank: int = 0):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside 0..{num_replicas - 1}")
        order = sorted(range(len(durations)), key=lambda i: (durations[i], i))
        size = batch_size * num_replicas
        self.batches = [order[i: i + size] for i in range(0, len(order), size)]
        if self.batches and len(self.batches[-1]) < num_replicas:
            self.batches.pop()
        self.shuffle, self.seed, self.sorted_first_epoch = shuffle, seed, sorted_first_epoch
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def epoch_batches(self) -> List[List[int]]:
        """All of this rank's batches for the current epoch, before skipping."""
        batches = list(self.batches)
        if self.shuffle and not (self.sorted_first_epoch and self.epoch == 0):
            random.Random(self.seed + self.epoch).shuffle(batches)
        return [batch[self.rank:: self.num_replicas] for batch in batches]

    def __iter__(self) -> Iterator[List[int]]:
        return iter(self.epoch_batches()[self.start_batch:])

    def __len__(self) -> int:
        return max(0, len(self.batches) - self.start_batch)


def padding_fraction(batches: Sequence[Sequence[int]], durations: Sequence[float]) -> float:
    """Fraction of the padded batch area that is padding (0 when every batch is uniform)."""
    total = padded = 0.0
    for batch in batches:
        longest = max(durations[i] for i in batch)
        total += longest * len(batch)
        padded += sum(longest - durations[i] for i in batch)
    return padded / total if total else 0.0


def summarize(entries: Sequence[ManifestEntry]) -> Dict[str, float]:
    hours = sum(e.duration for e in entries) / 3600
    return {"utterances": len(entries), "hours": round(hours, 3)}
