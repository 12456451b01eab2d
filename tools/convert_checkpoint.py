"""Convert a checkpoint from elsewhere into this project's format, without running code from it.

python tools/convert_checkpoint.py whole_model.pt --output model.pt
python tools/convert_checkpoint.py deepspeech_pytorch_lightning.ckpt --output model.pt
python tools/convert_checkpoint.py weights_only.pt --labels labels.json --output model.pt

Reads a whole pickled DeepSpeech2 (torch.save(model)), a plain state_dict, a checkpoint lacking its labels,
and the original deepspeech.pytorch's checkpoints (PyTorch Lightning .ckpt and the older packages); the
model's shape comes from the weights, and the result is checked by building the model before it is written.
"""

import os
import sys
from typing import List, Optional

from deepspeech_pytorch.cli import ArgumentParser
from deepspeech_pytorch.checkpoint import CheckpointError, save_checkpoint
from deepspeech_pytorch.conversion import convert_checkpoint
from deepspeech_pytorch.labels import Alphabet


def main(argv: Optional[List[str]] = None) -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="the file to convert")
    parser.add_argument("--output", required=True, help="where to write the converted checkpoint")
    parser.add_argument("--labels", help="JSON list of the model's labels, blank first (default: those stored, "
                                         "else the default alphabet for a 29-class model)")
    args = parser.parse_args(argv)
    if os.path.isdir(args.output):
        print(f"error: --output {args.output} is a folder; give the file to write, e.g. "
              f"{os.path.join(args.output, 'converted.pt')}", file=sys.stderr)
        return 1
    if os.path.exists(args.output) and os.path.samefile(args.output, args.checkpoint):
        print(f"error: --output {args.output} is the file being converted; write the result to a new file",
              file=sys.stderr)
        return 1
    try:
        labels = Alphabet.from_json(args.labels).labels if args.labels else None
        state = convert_checkpoint(args.checkpoint, labels)
        save_checkpoint(args.output, state)
    except (CheckpointError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    config = state["model_config"]
    print(f"converted {args.checkpoint} -> {args.output}: DeepSpeech2 {config['hidden_layers']} x "
          f"{'bi-' if config['bidirectional'] else 'uni-'}{config['rnn_type']} {config['hidden_size']}, "
          f"{state['feature_config']['kind']} features, {len(state['labels'])} labels")
    return 0


if __name__ == "__main__":
    sys.exit(main())
