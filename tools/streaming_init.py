"""Start a streaming model from a bidirectional checkpoint: its forward direction, causal features.

python tools/streaming_init.py --manifest train.jsonl --output stream_init.pt   # from the bundled model

The conv front end, the forward RNNs, BatchNorms and CTC head are copied (`unidirectional_from`), a lookahead
row convolution is added (identity at first) and the features switch to running normalisation, with per-bin
statistics measured on `--utterances` utterances of the manifest. The result transcribes nothing yet: fine-tune
it with the train.py overrides this prints (the bundled model's streaming twin was made this way on 2 CPU cores).
"""

import dataclasses
import os
import sys
from typing import List, Optional

from deepspeech_pytorch.audio import AudioError
from deepspeech_pytorch.checkpoint import (CheckpointError, build_model, check_output_folder, load_checkpoint,
                                           model_state, save_checkpoint)
from deepspeech_pytorch.cli import ArgumentParser
from deepspeech_pytorch.datasets import ManifestError, read_manifest
from deepspeech_pytorch.inference import resolve_model_path
from deepspeech_pytorch.models.deepspeech2 import DeepSpeech2, unidirectional_from
from deepspeech_pytorch.training import with_measured_statistics


def main(argv: Optional[List[str]] = None) -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="default",
                        help="a bidirectional DeepSpeech2 checkpoint or a bundled model's name (default: %(default)s)")
    parser.add_argument("--manifest", required=True, help="training utterances to measure feature statistics on")
    parser.add_argument("--utterances", type=int, default=300,
                        help="how many of them (a seeded random choice; default: %(default)s)")
    parser.add_argument("--lookahead-context", type=int, default=6,
                        help="output frames (20 ms each) of future context (default: %(default)s)")
    parser.add_argument("--output", required=True, help="the checkpoint to write (fine-tune from it)")
    parser.add_argument("--seed", type=int, default=0, help="picks the utterances (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        if args.utterances < 1:
            raise ValueError(f"--utterances={args.utterances} must be at least 1")
        if os.path.isdir(args.output):
            raise ValueError(f"--output={args.output} is a folder; give the checkpoint's file name")
        check_output_folder(os.path.dirname(os.path.abspath(args.output)), "--output")
        args.checkpoint = resolve_model_path(args.checkpoint, "torch")
        state = load_checkpoint(args.checkpoint)
        model, alphabet, features = build_model(state, args.checkpoint)
        if not isinstance(model, DeepSpeech2):
            raise ValueError(f"{args.checkpoint}: a {type(model).__name__} model; this starts DeepSpeech2 models only")
        try:
            streaming = unidirectional_from(model, args.lookahead_context)
        except ValueError as error:
            raise ValueError(f"{args.checkpoint}: {error}") from None
        features, measured = with_measured_statistics(dataclasses.replace(features, normalization="running"),
                                                      read_manifest(args.manifest), args.utterances, args.seed)
        save_checkpoint(args.output, model_state(streaming, streaming.config, features, alphabet))
    except (CheckpointError, ManifestError, AudioError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    config = streaming.config
    print(f"wrote {args.output}: DeepSpeech2 {config.hidden_layers} x uni-{config.rnn_type} {config.hidden_size}, "
          f"lookahead {config.lookahead_context}, running normalisation (statistics of {measured} utterances)")
    print("fine-tune it with train.py overrides: "
          f"model.rnn_type={config.rnn_type} model.hidden_size={config.hidden_size} "
          f"model.hidden_layers={config.hidden_layers} model.conv_channels={config.conv_channels} "
          f"model.bidirectional=false model.lookahead_context={config.lookahead_context} "
          f"features.kind={features.kind} features.n_mels={features.n_mels} features.normalization=running "
          f"checkpoint.finetune_from={args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
