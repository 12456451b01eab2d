"""VoxForge: volunteer-read English prompts, one small archive per speaker session.

The archives are listed on a directory index page (`<a href="anonymous-20080504-qvg.tgz">`). Each unpacks
to `<session>/wav/*.wav` (or `<session>/flac/*.flac`) with `<session>/etc/PROMPTS` lines
`<session>/mfc/<utterance> WORDS IN CAPITALS`. VoxForge publishes no checksums and has no official
split, so everything goes to one manifest, `voxforge_all.jsonl`.
"""

from __future__ import annotations

import logging
import os
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from typing import Dict, List, Optional, Tuple

from tqdm import tqdm

from deepspeech_pytorch.corpora import CorpusError
from deepspeech_pytorch.corpora.archive import ArchiveError, UnsafeArchiveError, fetch_and_extract
from deepspeech_pytorch.corpora.convert import (DurationLimits, Layout, Utterance, convert_utterances,
                                                normalize_transcript, write_corpus_manifest)
from deepspeech_pytorch.corpora.download import DownloadError, fetch_text
from deepspeech_pytorch.labels import Alphabet

logger = logging.getLogger(__name__)

BASE_URL = "http://www.repository.voxforge1.org/downloads/SpeechCorpus/Trunk/Audio/Main/16kHz_16bit/"
ARCHIVE_SUFFIXES = (".tgz", ".tar.gz")
AUDIO_FOLDERS = (("wav", ".wav"), ("flac", ".flac"))
PROMPT_FILES = ("PROMPTS", "prompts", "prompts-original")


class _LinkCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: List[str] = []

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag.lower() == "a":
            href = dict(attrs).get("href")
            if href:
                self.links.append(href)


def list_archives(index_url: str) -> List[str]:
    """Absolute URLs of the .tgz archives linked from a directory index page, in page order, without repeats."""
    parser = _LinkCollector()
    parser.feed(fetch_text(index_url))
    base = index_url if index_url.endswith("/") else f"{index_url}/"
    urls, seen = [], set()
    for href in parser.links:
        path = urllib.parse.urlsplit(href).path
        if path.lower().endswith(ARCHIVE_SUFFIXES):
            url = urllib.parse.urljoin(base, href)
            if url not in seen:
                seen.add(url)
                urls.append(url)
    if not urls:
        raise CorpusError(f"{index_url}: the page links no .tgz archives")
    return urls


def read_session(session_dir: str) -> List[Tuple[str, str, str]]:
    """(utterance id, audio path, prompt) for each prompt of a session whose audio file exists."""
    prompts = next((os.path.join(session_dir, "etc", name) for name in PROMPT_FILES
                    if os.path.isfile(os.path.join(session_dir, "etc", name))), None)
    if prompts is None:
        raise CorpusError(f"{session_dir}: no etc/PROMPTS file")
    session = os.path.basename(os.path.normpath(session_dir))
    items = []
    with open(prompts, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            fields = line.strip().split(None, 1)
            if len(fields) != 2:
                continue
            name = os.path.basename(fields[0])
            audio = next((os.path.join(session_dir, folder, name + suffix) for folder, suffix in AUDIO_FOLDERS
                          if os.path.isfile(os.path.join(session_dir, folder, name + suffix))), None)
            if audio is None:
                logger.debug("%s: no audio for prompt %s", prompts, name)
                continue
            items.append((f"{session}-{name}", audio, fields[1]))
    return items


def _session_dir(raw_dir: str, archive_name: str) -> str:
    """The folder an archive unpacked to: VoxForge names it like the archive."""
    stem = archive_name
    for suffix in ARCHIVE_SUFFIXES:
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    folder = os.path.join(raw_dir, stem)
    if not os.path.isdir(folder):
        raise CorpusError(f"{archive_name}: expected it to unpack to {folder}/")
    return folder


def prepare(target_dir: str, base_url: str = BASE_URL, max_archives: Optional[int] = None,
            skip_bad_archives: bool = False, limits: DurationLimits = DurationLimits(), workers: int = 1,
            alphabet: Optional[Alphabet] = None, progress: bool = True) -> Dict[str, str]:
    """Download every archive linked from `base_url` (or the first `max_archives`), convert, write one manifest.

    A failed download or corrupt archive stops the run naming it, unless `skip_bad_archives`, which
    logs it and goes on (VoxForge has some broken uploads). Returns {"all": manifest path}.
    """
    alphabet = alphabet or Alphabet()
    layout = Layout(target_dir, "voxforge")
    urls = list_archives(base_url)[: max_archives]
    logger.info("%s lists %d archives", base_url, len(urls))

    def fetch(url: str) -> Tuple[str, Optional[str]]:
        try:
            return os.path.basename(fetch_and_extract(url, layout.downloads, layout.raw, None, progress=False)), None
        except (DownloadError, ArchiveError) as error:
            if not skip_bad_archives or isinstance(error, UnsafeArchiveError):
                raise
            return url, str(error)

    fetched, bad = [], []
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        with tqdm(total=len(urls), desc="voxforge archives", unit=" archives", disable=not progress) as bar:
            for future in [pool.submit(fetch, url) for url in urls]:
                name, failure = future.result()
                (bad if failure else fetched).append(failure or name)
                if failure:
                    logger.warning("skipping %s", failure)
                bar.update(1)
    finally:
        pool.shutdown(cancel_futures=True)  # on a failure, do not wait for the remaining downloads
    if bad:
        logger.warning("%d of %d archives could not be used", len(bad), len(urls))
    utterances = []
    for name in fetched:
        try:
            items = read_session(_session_dir(layout.raw, name))
        except CorpusError as error:
            if not skip_bad_archives:
                raise
            logger.warning("skipping %s", error)
            continue
        for utterance_id, audio, raw_text in items:
            text = normalize_transcript(alphabet, raw_text, utterance_id)
            if text:
                utterances.append(Utterance(audio, layout.wav("all", utterance_id), text, utterance_id))
    entries = convert_utterances(utterances, limits, workers, "voxforge", progress)
    return {"all": write_corpus_manifest(layout.manifest("all"), entries, limits)}
