"""HTTP downloads that resume, verify and never leave a half-written file under the final name.

Only the standard library is used (urllib): a download goes to `<file>.part`, continues with a Range
request when that file exists (after an interruption, or on a rerun), and is renamed to its final name
only once complete and verified. A final file that already exists and verifies is not fetched again.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Dict, Optional

from tqdm import tqdm

from deepspeech_pytorch.corpora import CorpusError

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20  # 1 MiB per read: large enough for throughput, small enough for a live progress bar
USER_AGENT = "deepspeech-pytorch-corpora/1"
_RETRY_STATUS = {408, 429, 500, 502, 503, 504}  # transient server answers worth another try
_DIGEST_LENGTHS = {32: "md5", 64: "sha256"}  # hex digest length -> algorithm, for bare digests
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+|\*)(?:-(\d+))?/(\d+|\*)")


class DownloadError(CorpusError):
    """A URL that could not be fetched completely."""


class ChecksumError(CorpusError):
    """A file whose digest differs from the published one."""


@dataclass(frozen=True)
class Checksum:
    """A published digest of a file; `algorithm` is any hashlib name ("md5", "sha256")."""

    algorithm: str
    digest: str

    def __post_init__(self) -> None:
        if self.algorithm not in hashlib.algorithms_available:
            raise ValueError(f"unknown checksum algorithm {self.algorithm!r}")
        if not re.fullmatch(r"[0-9a-fA-F]+", self.digest):
            raise ValueError(f"checksum digest must be hexadecimal, not {self.digest!r}")
        object.__setattr__(self, "digest", self.digest.lower())

    @classmethod
    def parse(cls, text: str) -> "Checksum":
        """Read `md5:<hex>`, `sha256:<hex>` or a bare hex digest (its length says md5 or sha256)."""
        text = text.strip()
        if ":" in text:
            algorithm, digest = text.split(":", 1)
            return cls(algorithm.strip().lower(), digest.strip())
        if len(text) not in _DIGEST_LENGTHS:
            raise ValueError(f"cannot tell the algorithm of checksum {text!r}: write it as md5:<hex> or sha256:<hex>")
        return cls(_DIGEST_LENGTHS[len(text)], text)

    def compute(self, path: str) -> str:
        digest = hashlib.new(self.algorithm)
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(CHUNK_BYTES), b""):
                digest.update(block)
        return digest.hexdigest()

    def verify(self, path: str, name: Optional[str] = None) -> None:
        """Raise ChecksumError naming `name` (default: the path) when the file's digest differs."""
        logger.info("verifying the %s checksum of %s", self.algorithm, path)
        actual = self.compute(path)
        if actual != self.digest:
            raise ChecksumError(f"{name or path}: {self.algorithm} checksum mismatch "
                                f"(expected {self.digest}, got {actual})")

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.digest}"


def parse_checksum_listing(text: str, source: str = "checksum listing") -> Dict[str, Checksum]:
    """File name -> Checksum from `md5sum`/`sha256sum` output (`<hex>  <name>` or `<hex> *<name>` per line)."""
    checksums = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split(None, 1)
        if len(fields) != 2:
            raise CorpusError(f"{source} line {number}: expected '<digest>  <file name>', got {line.strip()!r}")
        try:
            checksum = Checksum.parse(fields[0])
        except ValueError as error:
            raise CorpusError(f"{source} line {number}: {error}") from None
        name = os.path.basename(fields[1].strip().lstrip("*"))
        checksums[name] = checksum
    return checksums


def read_checksum_listing(source: str) -> Dict[str, Checksum]:
    """Checksums from an md5sum-style listing given as a local path or an http(s) URL."""
    if is_url(source):
        text = fetch_text(source)
    else:
        if not os.path.isfile(source):
            raise CorpusError(f"checksum listing not found: {source}")
        with open(source, encoding="utf-8") as handle:
            text = handle.read()
    return parse_checksum_listing(text, source)


def is_url(text: str) -> bool:
    return urllib.parse.urlsplit(text).scheme in ("http", "https", "ftp", "file")


def url_filename(url: str) -> str:
    """The file name a URL's path ends with (query strings of signed URLs dropped)."""
    name = os.path.basename(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
    if not name:
        raise DownloadError(f"{url}: the URL does not end with a file name")
    return name


def _open(url: str, timeout: float, offset: int = 0):
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def fetch_text(url: str, timeout: float = 60.0) -> str:
    """The body of a small page (a directory index, a checksum listing) as text."""
    try:
        with _open(url, timeout) as response:
            charset = response.headers.get_content_charset() or "utf-8"
            return response.read().decode(charset, errors="replace")
    except urllib.error.HTTPError as error:
        raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        raise DownloadError(f"{url}: cannot fetch ({_reason(error)})") from None


def _reason(error: BaseException) -> str:
    return str(getattr(error, "reason", None) or error) or type(error).__name__


def _size(path: str) -> int:
    return os.path.getsize(path) if os.path.exists(path) else 0


class _Interrupted(Exception):
    """The connection ended before the announced length: resume from what the .part file holds."""


def _transfer(url: str, part: str, timeout: float, progress: bool) -> None:
    """Fetch `url` into `part`, continuing from its current size when the server honours Range."""
    offset = _size(part)
    try:
        response = _open(url, timeout, offset)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            # Nothing past our offset: complete if the server's total is what we hold, else start over.
            match = _CONTENT_RANGE.match(error.headers.get("Content-Range", ""))
            if match and match.group(3) != "*" and int(match.group(3)) == offset:
                return
            logger.warning("%s: the server refused to resume at byte %d; downloading from the start", url, offset)
            os.remove(part)
            return _transfer(url, part, timeout, progress)
        raise
    with response:
        mode = "wb"
        if offset:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if response.status == 206 and match and match.group(1) != "*" and int(match.group(1)) == offset:
                mode = "ab"
                logger.info("%s: resuming at byte %d", url, offset)
            else:
                logger.info("%s: the server ignored the range request; downloading from the start", url)
                offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        with open(part, mode) as out, tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                                           desc=os.path.basename(part)[: -len(".part")], disable=not progress,
                                           leave=False) as bar:
            while True:
                chunk = response.read(CHUNK_BYTES)
                if not chunk:
                    break
                out.write(chunk)
                bar.update(len(chunk))
    size = os.path.getsize(part)
    if total is not None and size < total:
        raise _Interrupted(f"connection closed after {size} of {total} bytes")


def download(url: str, destination: str, checksum: Optional[Checksum] = None, *, retries: int = 3,
             retry_wait: float = 2.0, timeout: float = 60.0, progress: bool = True) -> str:
    """Download `url` to `destination` (resuming `<destination>.part`), verify it and return the path.

    An existing destination that verifies (or that has no checksum to verify) is kept as is; one that
    fails its checksum is fetched again. Transient failures are retried `retries` times, each continuing
    where the last stopped. A completed download that fails its checksum is deleted and raises
    ChecksumError naming the file: resuming a corrupt file could never repair it.
    """
    if os.path.isfile(destination):
        if checksum is None:
            logger.info("%s already downloaded", destination)
            return destination
        try:
            checksum.verify(destination)
            logger.info("%s already downloaded and verified", destination)
            return destination
        except ChecksumError as error:
            logger.warning("%s; downloading it again", error)
            os.remove(destination)
    os.makedirs(os.path.dirname(os.path.abspath(destination)), exist_ok=True)
    part = f"{destination}.part"
    logger.info("downloading %s to %s", url, destination)
    attempt = 0
    while True:
        held = _size(part)
        try:
            _transfer(url, part, timeout, progress)
            break
        except urllib.error.HTTPError as error:
            if error.code not in _RETRY_STATUS:
                raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from None
            reason = f"HTTP {error.code}"
        except (_Interrupted, urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as error:
            reason = _reason(error)
        attempt = 1 if _size(part) > held else attempt + 1  # tries that make progress do not use up retries
        if attempt > retries:
            raise DownloadError(f"{url}: download failed ({reason}); {_size(part)} bytes kept in {part}, "
                                "run again to resume")
        logger.warning("%s: %s; retrying (%d of %d)", url, reason, attempt, retries)
        time.sleep(retry_wait * attempt)
    if checksum is not None:
        try:
            checksum.verify(part, name=destination)
        except ChecksumError as error:
            os.remove(part)
            raise ChecksumError(f"{error}; the download from {url} was deleted") from None
    os.replace(part, destination)
    return destination
