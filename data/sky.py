"""Convert the spoken lines of Beneath a Steel Sky (Debian package beneath-a-steel-sky) to 16 kHz WAV + manifest."""

import sys
from typing import List, Optional

from deepspeech_pytorch.cli import ArgumentParser
from deepspeech_pytorch.corpora import cli, sky


def main(argv: Optional[List[str]] = None) -> int:
    parser = ArgumentParser(description=__doc__)
    cli.add_common_arguments(parser, target_dir="datasets/sky")
    parser.add_argument("--data-dir", default=sky.DEFAULT_DATA_DIR,
                        help="folder holding sky.dnr and sky.dsk (default: %(default)s)")
    args = parser.parse_args(argv)
    return cli.run(lambda: sky.prepare(args.target_dir, args.data_dir, cli.limits(args), args.workers,
                                       cli.alphabet(args), progress=not args.quiet), args)


if __name__ == "__main__":
    sys.exit(main())
