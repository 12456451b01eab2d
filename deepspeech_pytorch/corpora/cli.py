"""What the preparation scripts in `data/` share: common flags, logging set-up and one-line errors."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Callable, Dict

from tqdm.contrib.logging import logging_redirect_tqdm

from deepspeech_pytorch.cli import number
from deepspeech_pytorch.corpora import CorpusError
from deepspeech_pytorch.corpora.convert import DurationLimits
from deepspeech_pytorch.corpora.download import Checksum
from deepspeech_pytorch.datasets import ManifestError
from deepspeech_pytorch.labels import Alphabet, TranscriptError

logger = logging.getLogger("deepspeech_pytorch.corpora")

DEFAULT_WORKERS = min(4, os.cpu_count() or 1)


def add_common_arguments(parser: argparse.ArgumentParser, target_dir: str) -> None:
    """--target-dir, duration limits, --workers, --labels and --quiet."""
    parser.add_argument("--target-dir", default=target_dir,
                        help="folder for downloads, unpacked files, WAVs and manifests (default: %(default)s)")
    parser.add_argument("--min-duration", type=number(float, low=0), default=0.0,
                        help="drop utterances shorter than this (seconds)")
    parser.add_argument("--max-duration", type=number(float, above=0), default=None,
                        help="drop utterances longer than this (seconds)")
    parser.add_argument("--workers", type=number(int, low=1), default=DEFAULT_WORKERS,
                        help="parallel conversions (and downloads, where there are several) (default: %(default)s)")
    parser.add_argument("--labels", default=None,
                        help="JSON list of labels (blank first) to normalise transcripts with "
                             "(default: English a-z, apostrophe and space)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, warnings and errors only")


def checksum_argument(text: str) -> Checksum:
    """argparse type for --checksum: `md5:<hex>`, `sha256:<hex>` or a bare digest."""
    try:
        return Checksum.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def limits(args: argparse.Namespace) -> DurationLimits:
    return DurationLimits(args.min_duration, args.max_duration)


def alphabet(args: argparse.Namespace) -> Alphabet:
    return Alphabet.from_json(args.labels) if args.labels else Alphabet()


def run(prepare: Callable[[], Dict[str, str]], args: argparse.Namespace) -> int:
    """Call `prepare` with logging set up; print the manifests it wrote, or one error line. Exit status."""
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(message)s")
    try:
        with logging_redirect_tqdm():
            manifests = prepare()
    except (CorpusError, ManifestError, TranscriptError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return 130
    for split, path in manifests.items():
        print(f"{split}: {path}")
    return 0
