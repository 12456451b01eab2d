"""Download TED-LIUM (release 2 or 3), cut the talks into utterances along the STM timings, write manifests."""

import sys
from typing import List, Optional

from deepspeech_pytorch.cli import ArgumentParser
from deepspeech_pytorch.corpora import cli, ted


def main(argv: Optional[List[str]] = None) -> int:
    parser = ArgumentParser(description=__doc__)
    cli.add_common_arguments(parser, target_dir="datasets/ted")
    parser.add_argument("--release", choices=sorted(ted.RELEASES), default="3")
    parser.add_argument("--splits", nargs="+", choices=ted.SPLITS, default=list(ted.SPLITS))
    parser.add_argument("--base-url", default=None, help="where the release's archive lives (default: its OpenSLR page)")
    parser.add_argument("--checksum", type=cli.checksum_argument, default=None,
                        help="md5:<hex> or sha256:<hex> to verify the archive against instead of the known digest")
    parser.add_argument("--no-verify", action="store_true", help="do not verify the archive's checksum")
    args = parser.parse_args(argv)
    return cli.run(lambda: ted.prepare(args.target_dir, args.release, args.splits, args.base_url, args.checksum,
                                       verify=not args.no_verify, limits=cli.limits(args), workers=args.workers,
                                       alphabet=cli.alphabet(args), progress=not args.quiet), args)


if __name__ == "__main__":
    sys.exit(main())
