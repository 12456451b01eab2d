"""Manifest checks before a long training run: every file decodes, durations agree, transcripts fit the alphabet.

Unlike `read_manifest`, which stops at the first bad line, this collects every problem so one pass tells
the whole story.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from tqdm import tqdm

from deepspeech_pytorch.audio import SAMPLE_RATE, AudioError, audio_duration, load_audio
from deepspeech_pytorch.datasets import ManifestError, parse_json_line, read_manifest, read_text
from deepspeech_pytorch.labels import Alphabet, TranscriptError

logger = logging.getLogger(__name__)

_LINE = re.compile(r" line (\d+): ")
DURATION_TOLERANCE = 0.02  # seconds; manifests round durations to 0.1 ms, headers count whole samples


@dataclass
class ManifestReport:
    path: str
    utterances: int = 0
    seconds: float = 0.0
    problems: List[str] = field(default_factory=list)

    @property
    def hours(self) -> float:
        return self.seconds / 3600

    def summary(self) -> str:
        return (f"{self.path}: {self.utterances} utterances, {self.hours:.3f} hours, "
                f"{len(self.problems)} problem{'s' if len(self.problems) != 1 else ''}")


@dataclass(frozen=True)
class _Record:
    where: str
    audio_path: str
    text: str
    duration: Optional[float]


def _records(path: str, problems: List[str]) -> List[_Record]:
    """Entries of a JSON-lines manifest read leniently (problems collected), other formats via read_manifest."""
    content = read_text(path, "manifest")  # another encoding (or an audio file) is named with its line
    document = None
    if content.lstrip().startswith("{") and not path.endswith(".jsonl"):
        try:
            document = json.loads(content)
        except json.JSONDecodeError:
            document = None  # several objects: JSON lines
    if path.endswith(".csv") or (isinstance(document, dict) and "samples" in document):
        try:
            return [_Record(path, e.audio_path, e.text, e.duration) for e in read_manifest(path)]
        except ManifestError as error:
            problems.append(str(error))
            return []
    lines = content.splitlines()
    base = os.path.dirname(os.path.abspath(path))
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            audio_path, text, duration, _ = parse_json_line(line, base, where)
        except ManifestError as error:
            problems.append(str(error))
            continue
        records.append(_Record(where, audio_path, text, duration))
    return records


def _check(record: _Record, alphabet: Alphabet, tolerance: float, decode: bool) -> Tuple[float, List[str]]:
    """(seconds, problems) for one entry."""
    problems = []
    try:
        alphabet.normalize(record.text)
    except TranscriptError as error:
        problems.append(f"{record.where}: {error}")
    if not record.text.strip():
        problems.append(f"{record.where}: empty transcript")
    if not os.path.isfile(record.audio_path):
        return 0.0, problems + [f"{record.where}: audio file not found: {record.audio_path}"]
    try:
        header = audio_duration(record.audio_path)
        decoded = len(load_audio(record.audio_path, SAMPLE_RATE)) / SAMPLE_RATE if decode else header
    except AudioError as error:
        return 0.0, problems + [f"{record.where}: {error}"]
    if abs(decoded - header) > tolerance:
        problems.append(f"{record.where}: {record.audio_path} decodes to {decoded:.3f} s but its header says "
                        f"{header:.3f} s (truncated?)")
    if record.duration is not None and abs(record.duration - header) > tolerance:
        problems.append(f"{record.where}: manifest duration {record.duration:.3f} s differs from the file's "
                        f"{header:.3f} s ({record.audio_path})")
    return header, problems


def _line_number(problem: str) -> int:
    """Sort key putting problems in manifest order (those without a line first)."""
    match = _LINE.search(problem)
    return int(match.group(1)) if match else 0


def verify_manifest(path: str, alphabet: Optional[Alphabet] = None, tolerance: float = DURATION_TOLERANCE,
                    decode: bool = True, workers: int = 1, progress: bool = True) -> ManifestReport:
    """Check every entry of a manifest; the report lists each problem with its line."""
    report = ManifestReport(path)
    if not os.path.isfile(path):
        report.problems.append(f"manifest not found: {path}")
        return report
    strict = dataclasses.replace(alphabet or Alphabet(), oov_policy="error")
    records = _records(path, report.problems)
    seen = {}
    for record in records:
        if record.audio_path in seen:
            report.problems.append(f"{record.where}: {record.audio_path} is listed again "
                                   f"(first at {seen[record.audio_path]})")
        seen.setdefault(record.audio_path, record.where)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = pool.map(lambda r: _check(r, strict, tolerance, decode), records)
        for seconds, problems in tqdm(results, total=len(records), desc=f"checking {os.path.basename(path)}",
                                      unit=" files", disable=not progress):
            report.seconds += seconds
            report.problems.extend(problems)
    report.utterances = len(records)
    report.problems.sort(key=_line_number)
    if not records and not report.problems:
        report.problems.append(f"{path}: manifest has no entries")
    return report
