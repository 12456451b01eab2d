"""Unpacking of tar(.gz/.tgz) and zip archives, refusing any member that would land outside the target.

Corpora come from third-party servers and mirrors, so every member name and link target is checked
(absolute paths, `..`, links pointing out of the folder) before anything is written; device files and
FIFOs are skipped. A completed extraction leaves a marker file so reruns skip it.
"""

from __future__ import annotations

import logging
import os
import re
import tarfile
import zipfile
import zlib
from typing import Optional

from tqdm import tqdm

from deepspeech_pytorch.corpora import CorpusError
from deepspeech_pytorch.corpora.download import Checksum, download, url_filename

logger = logging.getLogger(__name__)

_DRIVE = re.compile(r"^[A-Za-z]:")  # a Windows drive prefix makes a member name absolute there
_TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


class ArchiveError(CorpusError):
    """An archive that is corrupt, truncated or of an unknown type."""


class UnsafeArchiveError(ArchiveError):
    """An archive with a member that would be written outside the target folder."""


def _inside(root: str, path: str) -> bool:
    return os.path.commonpath([root, path]) == root


def _check_member(archive: str, root: str, name: str, link: Optional[str] = None) -> None:
    """Raise ArchiveError when member `name` (or the target of its link) resolves outside `root`."""
    if not name or os.path.isabs(name) or name.startswith(("/", "\\")) or _DRIVE.match(name):
        raise UnsafeArchiveError(f"{archive}: refusing member with an absolute path: {name!r}")
    destination = os.path.realpath(os.path.join(root, name))
    if not _inside(root, destination):
        raise UnsafeArchiveError(f"{archive}: refusing member that would be written outside {root}: {name!r}")
    if link is not None:
        target = os.path.realpath(os.path.join(os.path.dirname(destination), link))
        if os.path.isabs(link) or not _inside(root, target):
            raise UnsafeArchiveError(f"{archive}: refusing link {name!r} that points outside {root}: {link!r}")


def _extract_tar(archive: str, root: str, progress: bool) -> None:
    with tarfile.open(archive, "r:*") as tar, tqdm(desc=f"unpacking {os.path.basename(archive)}", unit=" files",
                                                   disable=not progress, leave=False) as bar:
        for member in tar:  # one pass over the (compressed) stream, member by member
            if member.isdev() or member.isfifo():
                logger.warning("%s: skipping special file %s", archive, member.name)
                continue
            link = member.linkname if member.issym() else None
            if member.islnk():  # hard link targets are named from the archive root, not the member's folder
                here = os.path.dirname(os.path.join(root, member.name))
                link = os.path.relpath(os.path.join(root, member.linkname), here)
            _check_member(archive, root, member.name, link)
            tar.extract(member, root, filter="data")
            bar.update(1)


def _extract_zip(archive: str, root: str, progress: bool) -> None:
    with zipfile.ZipFile(archive) as bundle:
        members = bundle.infolist()
        for info in members:
            _check_member(archive, root, info.filename)
        for info in tqdm(members, desc=f"unpacking {os.path.basename(archive)}", unit=" files",
                         disable=not progress, leave=False):
            bundle.extract(info, root)


def extract(archive: str, target_dir: str, progress: bool = True) -> None:
    """Unpack `archive` (tar, tar.gz, tgz, tar.bz2, tar.xz or zip) into `target_dir`.

    Raises ArchiveError naming the archive when it is corrupt, truncated, of an unknown type or has a
    member that would escape `target_dir`.
    """
    if not os.path.isfile(archive):
        raise ArchiveError(f"archive not found: {archive}")
    os.makedirs(target_dir, exist_ok=True)
    root = os.path.realpath(target_dir)
    lower = archive.lower()
    logger.info("unpacking %s into %s", archive, target_dir)
    try:
        if lower.endswith(".zip"):
            _extract_zip(archive, root, progress)
        elif lower.endswith(_TAR_SUFFIXES) or tarfile.is_tarfile(archive):
            _extract_tar(archive, root, progress)
        else:
            raise ArchiveError(f"{archive}: not a tar or zip archive")
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
        if isinstance(error, tarfile.FilterError):
            raise UnsafeArchiveError(f"{archive}: refusing unsafe member ({error})") from None
        raise ArchiveError(f"{archive}: corrupt or truncated archive ({error})") from None


def _marker(target_dir: str, archive_name: str) -> str:
    return os.path.join(target_dir, f".{archive_name}.extracted")


def is_extracted(target_dir: str, archive_name: str) -> bool:
    return os.path.isfile(_marker(target_dir, archive_name))


def extract_once(archive: str, target_dir: str, progress: bool = True) -> None:
    """`extract`, skipped when a previous run already unpacked this archive completely."""
    name = os.path.basename(archive)
    if is_extracted(target_dir, name):
        logger.info("%s already unpacked in %s", name, target_dir)
        return
    extract(archive, target_dir, progress)
    with open(_marker(target_dir, name), "w", encoding="utf-8") as handle:
        handle.write(f"{archive}\n")


def fetch_and_extract(url: str, downloads_dir: str, target_dir: str, checksum: Optional[Checksum] = None,
                      progress: bool = True) -> str:
    """Download (resuming, verifying) and unpack `url`; return the archive's path.

    Skipped entirely when an earlier run unpacked the same archive. A downloaded archive that turns out
    corrupt is deleted, so the next run fetches it afresh instead of failing on the same bytes.
    """
    name = url_filename(url)
    archive = os.path.join(downloads_dir, name)
    if is_extracted(target_dir, name):
        logger.info("%s already downloaded and unpacked in %s", name, target_dir)
        return archive
    download(url, archive, checksum, progress=progress)
    try:
        extract_once(archive, target_dir, progress)
    except UnsafeArchiveError:
        raise
    except ArchiveError as error:
        if os.path.isfile(archive):
            os.remove(archive)
            raise ArchiveError(f"{error}; it was deleted, run again to download it afresh") from None
        raise
    return archive
