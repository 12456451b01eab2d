"""Check manifests before training: files exist and decode, durations match, transcripts fit the alphabet.

Prints each problem and a summary per manifest; exits with status 1 when any problem is found.
"""

import logging
import sys
from typing import List, Optional

from deepspeech_pytorch.cli import ArgumentParser
from deepspeech_pytorch.corpora.cli import DEFAULT_WORKERS, number
from deepspeech_pytorch.corpora.verify import DURATION_TOLERANCE, verify_manifest
from deepspeech_pytorch.labels import Alphabet


def main(argv: Optional[List[str]] = None) -> int:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("manifests", nargs="+")
    parser.add_argument("--labels", default=None, help="JSON list of labels (blank first); default: English a-z ' space")
    parser.add_argument("--tolerance", type=number(float, low=0), default=DURATION_TOLERANCE,
                        help="allowed duration difference in seconds (default: %(default)s)")
    parser.add_argument("--no-decode", action="store_true", help="check headers only, without decoding the audio")
    parser.add_argument("--workers", type=number(int, low=1), default=DEFAULT_WORKERS)
    parser.add_argument("--max-problems", type=number(int, low=0), default=50, help="problems printed per manifest (all are counted)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        alphabet = Alphabet.from_json(args.labels) if args.labels else Alphabet()
    except ValueError as error:
        print(f"error: --labels: {error}", file=sys.stderr)
        return 2
    failed = False
    for path in args.manifests:
        try:
            report = verify_manifest(path, alphabet, args.tolerance, decode=not args.no_decode, workers=args.workers,
                                     progress=not args.quiet)
        except (ValueError, OSError) as error:  # not a manifest at all (an audio file, another encoding, missing)
            print(f"error: {error}", file=sys.stderr)
            failed = True
            continue
        for problem in report.problems[: args.max_problems]:
            print(problem)
        if len(report.problems) > args.max_problems:
            print(f"... and {len(report.problems) - args.max_problems} more problems")
        print(report.summary())
        failed = failed or bool(report.problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
