"""Mozilla Common Voice: crowd-sourced read speech in many languages, MP3 clips listed in TSV files.

The download sits behind a sign-up, so the user supplies it: a local archive, an already unpacked
folder, or the (signed) URL the site hands out. An archive unpacks to `cv-corpus-<version>/<language>/`
holding `clips/*.mp3` and `train.tsv`, `dev.tsv`, `test.tsv` (tab-separated, with a header naming at
least the `path` and `sentence` columns).
"""

from __future__ import annotations

import csv
import glob
import logging
import os
from typing import Dict, List, Optional, Sequence, Tuple

from deepspeech_pytorch.corpora import CorpusError
from deepspeech_pytorch.corpora.archive import extract_once, fetch_and_extract, is_extracted
from deepspeech_pytorch.corpora.convert import DurationLimits, Layout, convert_splits
from deepspeech_pytorch.corpora.download import Checksum, is_url, url_filename
from deepspeech_pytorch.labels import Alphabet

logger = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
OTHER_SPLITS = ("validated", "other", "invalidated")  # also shipped; not used for training by default


def _is_language_dir(path: str) -> bool:
    return os.path.isdir(os.path.join(path, "clips")) and any(
        os.path.isfile(os.path.join(path, f"{split}.tsv")) for split in SPLITS + OTHER_SPLITS)


def find_language_dir(root: str, language: Optional[str] = None) -> str:
    """The `<language>` folder (with clips/ and the TSVs) under an unpacked release in `root`."""
    if _is_language_dir(root):
        return root
    pattern = language or "*"
    found = glob.glob(os.path.join(root, "cv-corpus-*", pattern)) + glob.glob(os.path.join(root, pattern))
    candidates = sorted(path for path in found if _is_language_dir(path))
    if not candidates:
        wanted = f" for language {language!r}" if language else ""
        raise CorpusError(f"{root}: no Common Voice release found{wanted} "
                          "(expected cv-corpus-*/<language>/clips and train.tsv)")
    if len(candidates) > 1:
        raise CorpusError(f"{root}: several Common Voice folders found, choose one with a language or a narrower path: "
                          + ", ".join(candidates))
    return candidates[0]


def read_split(language_dir: str, split: str) -> List[Tuple[str, str, str]]:
    """(utterance id, clip path, sentence) for each row of `<split>.tsv` whose clip exists."""
    tsv = os.path.join(language_dir, f"{split}.tsv")
    if not os.path.isfile(tsv):
        raise CorpusError(f"Common Voice split list not found: {tsv}")
    items, missing = [], 0
    with open(tsv, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        if not reader.fieldnames or not {"path", "sentence"} <= set(reader.fieldnames):
            raise CorpusError(f"{tsv}: expected a header with 'path' and 'sentence' columns, got {reader.fieldnames}")
        for row in reader:
            clip = (row.get("path") or "").strip()
            if not clip:
                continue
            audio = os.path.join(language_dir, "clips", clip)
            if not os.path.isfile(audio):
                missing += 1
                logger.debug("%s: clip not found: %s", tsv, audio)
                continue
            items.append((os.path.splitext(clip)[0], audio, row.get("sentence") or ""))
    if missing:
        logger.warning("%s: %d listed clips are missing from %s and were skipped", tsv, missing,
                       os.path.join(language_dir, "clips"))
    if not items:
        raise CorpusError(f"{tsv}: no usable rows")
    return items


def _unpacked_root(source: str, layout: Layout, checksum: Optional[Checksum], progress: bool) -> str:
    """The folder holding the release, downloading or unpacking `source` as needed."""
    if is_url(source):
        fetch_and_extract(source, layout.downloads, layout.raw, checksum, progress)
        return layout.raw
    if os.path.isdir(source):
        return source
    if not os.path.isfile(source):
        raise CorpusError(f"Common Voice source not found: {source} (give an archive, a folder or a URL)")
    if checksum is not None and not is_extracted(layout.raw, os.path.basename(source)):
        checksum.verify(source)
    extract_once(source, layout.raw, progress)
    return layout.raw


def prepare(target_dir: str, source: str, language: Optional[str] = None, splits: Sequence[str] = SPLITS,
            checksum: Optional[Checksum] = None, limits: DurationLimits = DurationLimits(), workers: int = 1,
            alphabet: Optional[Alphabet] = None, progress: bool = True) -> Dict[str, str]:
    """Convert a Common Voice release (archive path, folder or URL) to WAV and write one manifest per split.

    Manifests are named `common_voice_<language>_<split>.jsonl`. Returns split -> manifest path.
    """
    unknown = [s for s in splits if s not in SPLITS + OTHER_SPLITS]
    if unknown:
        raise CorpusError(f"unknown Common Voice splits {unknown}; choose from {list(SPLITS + OTHER_SPLITS)}")
    if is_url(source):
        url_filename(source)  # fail early on a URL without a file name
    alphabet = alphabet or Alphabet()
    root = _unpacked_root(source, Layout(target_dir, "common_voice"), checksum, progress)
    language_dir = find_language_dir(root, language)
    language = os.path.basename(os.path.normpath(language_dir))
    layout = Layout(target_dir, f"common_voice_{language}")
    listed = {split: read_split(language_dir, split) for split in splits}  # every TSV read before any conversion
    return convert_splits(listed, layout, alphabet, limits, workers, f"common voice {language}", progress)
