"""Convert a Common Voice release (downloaded by you after signing up) to 16 kHz WAV and write manifests."""

import sys
from typing import List, Optional

from deepspeech_pytorch.cli import ArgumentParser
from deepspeech_pytorch.corpora import cli, common_voice


def main(argv: Optional[List[str]] = None) -> int:
    parser = ArgumentParser(description=__doc__)
    cli.add_common_arguments(parser, target_dir="datasets/common_voice")
    parser.add_argument("source", help="the release: a .tar.gz you downloaded, its unpacked folder, or the download URL")
    parser.add_argument("--language", default=None,
                        help="language folder in the release, e.g. en (needed when there are several)")
    parser.add_argument("--splits", nargs="+", choices=common_voice.SPLITS + common_voice.OTHER_SPLITS,
                        default=list(common_voice.SPLITS))
    parser.add_argument("--checksum", type=cli.checksum_argument, default=None,
                        help="sha256:<hex> (or md5:<hex>) shown on the download page, to verify the archive")
    args = parser.parse_args(argv)
    return cli.run(lambda: common_voice.prepare(args.target_dir, args.source, args.language, args.splits, args.checksum,
                                                cli.limits(args), args.workers, cli.alphabet(args),
                                                progress=not args.quiet), args)


if __name__ == "__main__":
    sys.exit(main())
