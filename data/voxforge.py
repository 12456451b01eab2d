"""Download the VoxForge per-speaker archives listed on an index page, convert to 16 kHz WAV, write one manifest."""

import sys
from typing import List, Optional

from deepspeech_pytorch.cli import ArgumentParser
from deepspeech_pytorch.corpora import cli, voxforge


def main(argv: Optional[List[str]] = None) -> int:
    parser = ArgumentParser(description=__doc__)
    cli.add_common_arguments(parser, target_dir="datasets/voxforge")
    parser.add_argument("--base-url", default=voxforge.BASE_URL,
                        help="directory index listing the .tgz archives (default: %(default)s)")
    parser.add_argument("--max-archives", type=cli.number(int, low=1), default=None, help="take only the first N archives (for a trial run)")
    parser.add_argument("--skip-bad-archives", action="store_true",
                        help="log and skip archives that fail to download or unpack instead of stopping")
    args = parser.parse_args(argv)
    return cli.run(lambda: voxforge.prepare(args.target_dir, args.base_url, args.max_archives, args.skip_bad_archives,
                                            cli.limits(args), args.workers, cli.alphabet(args),
                                            progress=not args.quiet), args)


if __name__ == "__main__":
    sys.exit(main())
