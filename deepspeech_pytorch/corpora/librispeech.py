"""LibriSpeech (OpenSLR resource 12): about 1000 hours of read English audiobooks, FLAC at 16 kHz.

Each subset is one archive `<subset>.tar.gz` unpacking to
`LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac`, with the chapter's transcripts
in `<speaker>-<chapter>.trans.txt` as lines `<speaker>-<chapter>-<utt> TRANSCRIPT IN CAPITALS`.
"""

from __future__ import annotations

import logging
import os
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from deepspeech_pytorch.corpora import CorpusError
from deepspeech_pytorch.corpora.archive import fetch_and_extract
from deepspeech_pytorch.corpora.convert import DurationLimits, Layout, convert_splits
from deepspeech_pytorch.corpora.download import Checksum
from deepspeech_pytorch.labels import Alphabet

logger = logging.getLogger(__name__)

BASE_URL = "https://www.openslr.org/resources/12"
SUBSETS = ("train-clean-100", "train-clean-360", "train-other-500", "dev-clean", "dev-other", "test-clean",
           "test-other")

# The digests OpenSLR publishes for resource 12 in <BASE_URL>/md5sum.txt.
PUBLISHED_CHECKSUMS: Dict[str, Checksum] = {
    "dev-clean.tar.gz": Checksum("md5", "42e2234ba48799c1f50f24a7926300a1"),
    "dev-other.tar.gz": Checksum("md5", "c8d0bcc9cca99d4f8b62fcc847357931"),
    "test-clean.tar.gz": Checksum("md5", "32fa31d27d2e1cad72775fee3f4849a9"),
    "test-other.tar.gz": Checksum("md5", "fb5a50374b501bb3bac4815ee91d3135"),
    "train-clean-100.tar.gz": Checksum("md5", "2a93770f6d5c6c964bc36631d331a522"),
    "train-clean-360.tar.gz": Checksum("md5", "c0e676e450a7ff2f54aeade5171606fa"),
    "train-other-500.tar.gz": Checksum("md5", "d1a0fd59409feb2c614ce4d30c387708"),
}


def read_subset(subset_dir: str) -> List[Tuple[str, str, str]]:
    """(utterance id, FLAC path, transcript) for every line of every `*.trans.txt` under `subset_dir`."""
    if not os.path.isdir(subset_dir):
        raise CorpusError(f"LibriSpeech subset folder not found: {subset_dir}")
    items = []
    for folder, _, files in sorted(os.walk(subset_dir)):
        for name in sorted(f for f in files if f.endswith(".trans.txt")):
            path = os.path.join(folder, name)
            with open(path, encoding="utf-8") as handle:
                for number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    fields = line.strip().split(" ", 1)
                    if len(fields) != 2:
                        raise CorpusError(f"{path} line {number}: expected '<utterance id> <transcript>'")
                    utterance_id, text = fields
                    audio = os.path.join(folder, f"{utterance_id}.flac")
                    if not os.path.isfile(audio):
                        raise CorpusError(f"{path} line {number}: audio file not found: {audio}")
                    items.append((utterance_id, audio, text))
    if not items:
        raise CorpusError(f"{subset_dir}: no *.trans.txt transcripts found")
    return items


def prepare(target_dir: str, subsets: Sequence[str] = SUBSETS, base_url: str = BASE_URL,
            checksums: Optional[Mapping[str, Checksum]] = PUBLISHED_CHECKSUMS,
            limits: DurationLimits = DurationLimits(), workers: int = 1, alphabet: Optional[Alphabet] = None,
            progress: bool = True) -> Dict[str, str]:
    """Download, verify and unpack the subsets, convert them to WAV and write one manifest per subset.

    `checksums` maps archive names to digests (None: verify nothing). Every archive is fetched and
    verified before any manifest is written. Returns subset -> manifest path.
    """
    unknown = [s for s in subsets if s not in SUBSETS]
    if unknown:
        raise CorpusError(f"unknown LibriSpeech subsets {unknown}; choose from {list(SUBSETS)}")
    alphabet = alphabet or Alphabet()
    layout = Layout(target_dir, "librispeech")
    for subset in subsets:
        name = f"{subset}.tar.gz"
        checksum = checksums.get(name) if checksums is not None else None
        if checksums is not None and checksum is None:
            logger.warning("no checksum known for %s; it will not be verified", name)
        fetch_and_extract(f"{base_url.rstrip('/')}/{name}", layout.downloads, layout.raw, checksum, progress)
    listed = {subset: read_subset(os.path.join(layout.raw, "LibriSpeech", subset)) for subset in subsets}
    return convert_splits(listed, layout, alphabet, limits, workers, "librispeech", progress)
