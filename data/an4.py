"""Download CMU AN4 (an4_sphere.tar.gz), convert its SPHERE files to 16 kHz WAV and write train/test manifests."""

import sys
from typing import List, Optional

from deepspeech_pytorch.cli import ArgumentParser
from deepspeech_pytorch.corpora import an4, cli


def main(argv: Optional[List[str]] = None) -> int:
    parser = ArgumentParser(description=__doc__)
    cli.add_common_arguments(parser, target_dir="datasets/an4")
    parser.add_argument("--splits", nargs="+", choices=an4.SPLITS, default=list(an4.SPLITS))
    parser.add_argument("--base-url", default=an4.BASE_URL, help=f"where {an4.ARCHIVE} lives (default: %(default)s)")
    parser.add_argument("--checksum", type=cli.checksum_argument, default=None,
                        help="md5:<hex> or sha256:<hex> to verify the archive against (CMU publishes none)")
    args = parser.parse_args(argv)
    return cli.run(lambda: an4.prepare(args.target_dir, args.splits, args.base_url, args.checksum, cli.limits(args),
                                       args.workers, cli.alphabet(args), progress=not args.quiet), args)


if __name__ == "__main__":
    sys.exit(main())
