"""TED-LIUM releases 2 and 3: English TED talks, one NIST SPHERE recording per talk with STM segment timings.

Release 3 (`TEDLIUM_release-3.tgz`) keeps its 452 h training talks in `data/{sph,stm}` and the
release-2 dev/test sets in `legacy/{dev,test}/{sph,stm}`; release 2 (`TEDLIUM_release2.tar.gz`) has
`{train,dev,test}/{sph,stm}`. STM lines read `talk channel speaker start end <label> words`, with times in
seconds; utterances are cut out of the long recordings along them.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from deepspeech_pytorch.corpora import CorpusError
from deepspeech_pytorch.corpora.archive import fetch_and_extract
from deepspeech_pytorch.corpora.convert import (DurationLimits, Layout, Utterance, convert_utterances,
                                                normalize_transcript, write_corpus_manifest)
from deepspeech_pytorch.corpora.download import Checksum
from deepspeech_pytorch.labels import Alphabet

logger = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
IGNORED_TRANSCRIPT = "ignore_time_segment_in_scoring"  # STM marker for spans not to be scored or trained on
IGNORED_SPEAKER = "inter_segment_gap"


@dataclass(frozen=True)
class Release:
    base_url: str
    archive: str
    folder: str  # top folder of the unpacked archive
    checksum: Optional[Checksum]


# OpenSLR publishes no digests for these archives; the SHA-256 values are the ones torchaudio's TEDLIUM
# dataset pins for the same files.
RELEASES: Dict[str, Release] = {
    "2": Release("https://www.openslr.org/resources/19", "TEDLIUM_release2.tar.gz", "TEDLIUM_release2",
                 Checksum("sha256", "93281b5fcaaae5c88671c9d000b443cb3c7ea3499ad12010b3934ca41a7b9c58")),
    "3": Release("https://www.openslr.org/resources/51", "TEDLIUM_release-3.tgz", "TEDLIUM_release-3",
                 Checksum("sha256", "ad1e454d14d1ad550bc2564c462d87c7a7ec83d4dc2b9210f22ab4973b9eccdb")),
}

_NON_SPEECH = re.compile(r"^(\{.*\}|<.*>|\[.*\])$")  # {NOISE}, {SMACK}, <unk>, <sil>, [laughter]
_VARIANT = re.compile(r"\(\d+\)$")  # pronunciation variant suffix: word(2)
_CLITIC = re.compile(r"(\S) '(\w)")  # tokenised clitics: "it 's" -> "it's"


@dataclass(frozen=True)
class Segment:
    talk: str
    start: float  # seconds
    end: float  # seconds
    text: str  # cleaned words


def clean_transcript(text: str) -> str:
    """Drop noise and unknown-word tokens, variant suffixes, and rejoin split clitics (` 's` -> `'s`)."""
    words = [_VARIANT.sub("", token) for token in text.split() if not _NON_SPEECH.match(token)]
    return _CLITIC.sub(r"\1'\2", " ".join(word for word in words if word))


def read_stm(path: str) -> List[Segment]:
    """The scored segments of one STM file (ignored spans and inter-segment gaps left out)."""
    segments = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip() or line.startswith(";;"):
                continue
            fields = line.split()
            if len(fields) < 5:
                raise CorpusError(f"{path} line {number}: expected 'talk channel speaker start end [<label>] words'")
            talk, _, speaker = fields[:3]
            try:
                start, end = float(fields[3]), float(fields[4])
            except ValueError:
                raise CorpusError(f"{path} line {number}: start and end must be seconds, "
                                  f"got {fields[3]!r} {fields[4]!r}") from None
            words = fields[5:]
            if words and words[0].startswith("<") and words[0].endswith(">") and "," in words[0]:
                words = words[1:]  # the <o,f0,male> condition label
            text = " ".join(words)
            if speaker == IGNORED_SPEAKER or text.strip() == IGNORED_TRANSCRIPT:
                continue
            if end <= start:
                logger.warning("%s line %d: segment ends before it starts; skipped", path, number)
                continue
            segments.append(Segment(talk, start, end, clean_transcript(text)))
    return segments


def split_dir(release_dir: str, split: str) -> str:
    """The folder holding `sph/` and `stm/` for a split, in either release's layout."""
    candidates = ([os.path.join(release_dir, "data")] if split == "train" else []) + [
        os.path.join(release_dir, split), os.path.join(release_dir, "legacy", split)]
    for candidate in candidates:
        if os.path.isdir(os.path.join(candidate, "sph")) and os.path.isdir(os.path.join(candidate, "stm")):
            return candidate
    raise CorpusError(f"{release_dir}: no sph/ and stm/ folders for split {split!r} "
                      f"(looked in {', '.join(candidates)})")


def read_split(release_dir: str, split: str) -> List[Segment]:
    folder = split_dir(release_dir, split)
    stm_dir = os.path.join(folder, "stm")
    segments = []
    for name in sorted(os.listdir(stm_dir)):
        if name.endswith(".stm"):
            segments.extend(read_stm(os.path.join(stm_dir, name)))
    if not segments:
        raise CorpusError(f"{stm_dir}: no segments in any .stm file")
    return segments


def prepare(target_dir: str, release: str = "3", splits: Sequence[str] = SPLITS, base_url: Optional[str] = None,
            checksum: Optional[Checksum] = None, verify: bool = True, limits: DurationLimits = DurationLimits(),
            workers: int = 1, alphabet: Optional[Alphabet] = None, progress: bool = True) -> Dict[str, str]:
    """Download and unpack a TED-LIUM release, cut its talks into utterance WAVs, write one manifest per split.

    `checksum` replaces the release's known digest; `verify=False` skips verification. Manifests are
    named `tedlium<release>_<split>.jsonl`. Returns split -> manifest path.
    """
    if release not in RELEASES:
        raise CorpusError(f"unknown TED-LIUM release {release!r}; choose from {list(RELEASES)}")
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise CorpusError(f"unknown TED-LIUM splits {unknown}; choose from {list(SPLITS)}")
    info = RELEASES[release]
    alphabet = alphabet or Alphabet()
    layout = Layout(target_dir, f"tedlium{release}")
    url = f"{(base_url or info.base_url).rstrip('/')}/{info.archive}"
    fetch_and_extract(url, layout.downloads, layout.raw, (checksum or info.checksum) if verify else None, progress)
    release_dir = os.path.join(layout.raw, info.folder)
    listed = {split: read_split(release_dir, split) for split in splits}
    manifests = {}
    for split, segments in listed.items():
        sph_dir = os.path.join(split_dir(release_dir, split), "sph")
        utterances = []
        for segment in segments:
            utterance_id = f"{segment.talk}-{int(round(segment.start * 100)):07d}-{int(round(segment.end * 100)):07d}"
            text = normalize_transcript(alphabet, segment.text, utterance_id)
            if text:
                source = os.path.join(sph_dir, f"{segment.talk}.sph")
                utterances.append(Utterance(source, layout.wav(split, utterance_id), text, utterance_id,
                                            segment.start, segment.end))
        entries = convert_utterances(utterances, limits, workers, f"ted-lium {release} {split}", progress)
        manifests[split] = write_corpus_manifest(layout.manifest(split), entries, limits)
    return manifests
