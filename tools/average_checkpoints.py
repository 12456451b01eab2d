"""Average the weights of several checkpoints of one training run into one inference checkpoint.

python tools/average_checkpoints.py checkpoints/run/step-*.pt --output checkpoints/run/averaged.pt

Checkpoints from the annealed end of a run (copies of last.pt taken as it trains, or the per-epoch
files of checkpoint.keep_every_epoch=true) average best; the result loads like any checkpoint
(test.py model_path=..., tools/bundle_model.py --checkpoint ...).
"""

import sys
from typing import List, Optional

from deepspeech_pytorch.cli import ArgumentParser
from deepspeech_pytorch.checkpoint import CheckpointError, average_checkpoints, save_checkpoint


def main(argv: Optional[List[str]] = None) -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", help="checkpoints of one model, oldest first")
    parser.add_argument("--output", required=True, help="where to write the averaged checkpoint")
    args = parser.parse_args(argv)
    try:
        state = average_checkpoints(args.checkpoints)
        save_checkpoint(args.output, state)
    except (CheckpointError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"averaged {len(args.checkpoints)} checkpoints -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
