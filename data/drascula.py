"""Convert the English speech of the Debian game Drascula (real voice actors) to 16 kHz WAV; write val/test manifests.

Needs the packages `drascula` (the clips) and `scummvm-data` (drascula.dat, the subtitles); nothing is
downloaded. The set is for evaluation only: it is split by character into val and test, never trained on.
"""

import argparse
import sys
from typing import List, Optional

from deepspeech_pytorch.cli import ArgumentParser
from deepspeech_pytorch.corpora import cli, drascula


def main(argv: Optional[List[str]] = None) -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_common_arguments(parser, target_dir="datasets/drascula")
    parser.add_argument("--game-dir", default=drascula.GAME_DIR,
                        help="the game's folder, holding en/*.ALS (default: %(default)s)")
    parser.add_argument("--dat", default=drascula.DAT_PATH, help="ScummVM's drascula.dat (default: %(default)s)")
    parser.add_argument("--max-chars-per-second", type=cli.number(float, above=0), default=drascula.MAX_CHARS_PER_SECOND,
                        help="drop clips whose subtitle is faster than this: it says more than the clip "
                             "(default: %(default)s)")
    args = parser.parse_args(argv)
    return cli.run(lambda: drascula.prepare(args.target_dir, args.game_dir, args.dat, cli.limits(args), args.workers,
                                            cli.alphabet(args), max_chars_per_second=args.max_chars_per_second,
                                            progress=not args.quiet), args)


if __name__ == "__main__":
    sys.exit(main())
