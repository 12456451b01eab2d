"""CMU AN4 (the "census" database): about an hour of spoken letters, digits and words, NIST SPHERE at 16 kHz.

The archive `an4_sphere.tar.gz` unpacks to `an4/wav/an4_clstk/<speaker>/<id>.sph` (train) and
`an4/wav/an4test_clstk/<speaker>/<id>.sph` (test). `an4/etc/an4_<split>.fileids` lists the recordings
(`an4_clstk/fash/an251-fash-b`) and `an4/etc/an4_<split>.transcription` their words
(`<s> YES </s> (an251-fash-b)`). CMU publishes no checksum for the archive.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

from deepspeech_pytorch.corpora import CorpusError
from deepspeech_pytorch.corpora.archive import fetch_and_extract
from deepspeech_pytorch.corpora.convert import DurationLimits, Layout, convert_splits
from deepspeech_pytorch.corpora.download import Checksum
from deepspeech_pytorch.labels import Alphabet

logger = logging.getLogger(__name__)

BASE_URL = "http://www.speech.cs.cmu.edu/databases/an4"
ARCHIVE = "an4_sphere.tar.gz"
SPLITS = ("train", "test")

_LINE = re.compile(r"^(?P<text>.*)\((?P<id>[^()\s]+)\)\s*$")
_MARKUP = re.compile(r"<[^>]*>")  # <s>, </s>, <sil>


def _key(utterance_id: str) -> Tuple[str, ...]:
    """Order-free key of an id, so `an251-fash-b` (file name) and `fash-an251-b` (speaker first) match."""
    return tuple(sorted(utterance_id.split("-")))


def read_transcription(path: str) -> Dict[Tuple[str, ...], str]:
    """Id key -> words, from lines `<s> WORDS </s> (id)`."""
    if not os.path.isfile(path):
        raise CorpusError(f"AN4 transcription file not found: {path}")
    transcripts = {}
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            match = _LINE.match(line.strip())
            if not match:
                raise CorpusError(f"{path} line {number}: expected '<s> WORDS </s> (utterance-id)', "
                                  f"got {line.strip()!r}")
            transcripts[_key(match.group("id"))] = _MARKUP.sub(" ", match.group("text")).strip()
    return transcripts


def read_split(an4_dir: str, split: str) -> List[Tuple[str, str, str]]:
    """(utterance id, SPHERE path, words) for every recording listed in `etc/an4_<split>.fileids`."""
    fileids = os.path.join(an4_dir, "etc", f"an4_{split}.fileids")
    transcription = os.path.join(an4_dir, "etc", f"an4_{split}.transcription")
    transcripts = read_transcription(transcription)
    if not os.path.isfile(fileids):
        raise CorpusError(f"AN4 file list not found: {fileids}")
    items = []
    with open(fileids, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            file_id = line.strip()
            if not file_id:
                continue
            utterance_id = os.path.basename(file_id)
            text = transcripts.get(_key(utterance_id))
            if text is None:
                raise CorpusError(f"{fileids} line {number}: {utterance_id} has no line in {transcription}")
            audio = os.path.join(an4_dir, "wav", f"{file_id}.sph")
            if not os.path.isfile(audio):
                raise CorpusError(f"{fileids} line {number}: audio file not found: {audio}")
            items.append((utterance_id, audio, text))
    if not items:
        raise CorpusError(f"{fileids}: lists no recordings")
    return items


def prepare(target_dir: str, splits: Sequence[str] = SPLITS, base_url: str = BASE_URL,
            checksum: Optional[Checksum] = None, limits: DurationLimits = DurationLimits(), workers: int = 1,
            alphabet: Optional[Alphabet] = None, progress: bool = True) -> Dict[str, str]:
    """Download and unpack AN4, convert it to WAV and write `an4_train.jsonl` / `an4_test.jsonl`.

    `checksum` is verified when given (CMU publishes none). Returns split -> manifest path.
    """
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise CorpusError(f"unknown AN4 splits {unknown}; choose from {list(SPLITS)}")
    alphabet = alphabet or Alphabet()
    layout = Layout(target_dir, "an4")
    fetch_and_extract(f"{base_url.rstrip('/')}/{ARCHIVE}", layout.downloads, layout.raw, checksum, progress)
    listed = {split: read_split(os.path.join(layout.raw, "an4"), split) for split in splits}  # all checked first
    return convert_splits(listed, layout, alphabet, limits, workers, "an4", progress)
