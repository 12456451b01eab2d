"""Merge several manifests (any supported format) into one JSON-lines manifest, pruned by duration."""

import logging
import sys
from typing import List, Optional

from deepspeech_pytorch.cli import ArgumentParser
from deepspeech_pytorch.corpora.cli import number
from deepspeech_pytorch.datasets import ManifestError, filter_by_duration, merge_manifests, summarize, write_manifest


def main(argv: Optional[List[str]] = None) -> int:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("manifests", nargs="+", help="manifests to merge; an audio file listed twice is kept once")
    parser.add_argument("--output", required=True, help="JSON-lines manifest to write (atomically)")
    parser.add_argument("--min-duration", type=number(float, low=0), default=0.0, help="drop utterances shorter than this (seconds)")
    parser.add_argument("--max-duration", type=number(float, above=0), default=None, help="drop utterances longer than this (seconds)")
    parser.add_argument("--absolute", action="store_true", help="write absolute audio paths (default: relative to the output)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        entries = filter_by_duration(merge_manifests(args.manifests), args.min_duration, args.max_duration)
    except ManifestError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if not entries:
        print("error: no utterances left after the duration limits; nothing written", file=sys.stderr)
        return 1
    write_manifest(args.output, entries, relative=not args.absolute)
    stats = summarize(entries)
    print(f"{args.output}: {stats['utterances']} utterances, {stats['hours']} hours")
    return 0


if __name__ == "__main__":
    sys.exit(main())
