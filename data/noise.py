"""Make the noise-injection clips (white, pink, brown, hum, babble, music).

Example: `python data/noise.py --output-dir noise`.
"""

import json
import logging
import sys
from typing import List, Optional

from tqdm.contrib.logging import logging_redirect_tqdm

from deepspeech_pytorch.cli import ArgumentParser
from deepspeech_pytorch.corpora.cli import number
from deepspeech_pytorch.corpora.noise_set import NOISE_KINDS, NoiseSetError, build_noise_set
from deepspeech_pytorch.corpora.sentences import TextSourceError


def main(argv: Optional[List[str]] = None) -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", required=True, help="folder for <kind>/ clips and noise.jsonl")
    parser.add_argument("--clips-per-kind", type=number(int, low=1), default=12)
    parser.add_argument("--clip-seconds", type=number(float, above=0), default=10.0)
    parser.add_argument("--kinds", default=",".join(NOISE_KINDS), help="comma separated (default: %(default)s)")
    parser.add_argument("--seed", type=number(int, low=0), default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bar, warnings and errors only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(message)s")
    try:
        with logging_redirect_tqdm():
            summary = build_noise_set(args.output_dir, args.clips_per_kind, args.clip_seconds,
                                      [k.strip() for k in args.kinds.split(",") if k.strip()], args.seed,
                                      progress=not args.quiet)
    except (NoiseSetError, TextSourceError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
