"""Package a trained checkpoint, its LM and a few sample utterances as a model folder.

The bundled default model was written with:

python tools/bundle_model.py --checkpoint datasets/gpu/stage3/best.pt --lm lm/lm.bin \
    --lexicon lm/lm.lexicon.txt --alpha 0.8 --beta -1 --beam-size 500 --samples-manifest datasets/synthetic10h/test.jsonl \
    --model-name ds2-cpu-synthetic-en
"""

import json
import sys
from typing import List, Optional

from deepspeech_pytorch.cli import ArgumentParser
from deepspeech_pytorch.bundle import Sample, bundle_model
from deepspeech_pytorch.checkpoint import CheckpointError
from deepspeech_pytorch.datasets import ManifestError, read_manifest
from deepspeech_pytorch.decoders import DecoderError
from deepspeech_pytorch.inference import PRETRAINED_DIR


def pick_samples(manifest: str, count: int, min_seconds: float, max_seconds: float) -> List[Sample]:
    """`count` utterances spread evenly over the manifest, among those of a comfortable length."""
    if count < 1:
        raise ValueError("--samples must be at least 1")
    entries = [e for e in read_manifest(manifest) if min_seconds <= e.duration <= max_seconds]
    if len(entries) < count:
        raise ValueError(f"{manifest} has only {len(entries)} utterances of {min_seconds}-{max_seconds} s")
    step = len(entries) / count
    return [Sample(entries[int(i * step)].audio_path, entries[int(i * step)].text) for i in range(count)]


def main(argv: Optional[List[str]] = None) -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--output-dir", default=PRETRAINED_DIR)
    parser.add_argument("--name", default="default", help="file stem: default.pt is what load_model() loads")
    parser.add_argument("--model-name", help="the name the model reports (default: --name)")
    parser.add_argument("--lm", help="KenLM binary to ship")
    parser.add_argument("--lexicon", help="its lexicon")
    parser.add_argument("--alpha", type=float, help="tuned LM weight")
    parser.add_argument("--beta", type=float, help="tuned word bonus")
    parser.add_argument("--beam-size", type=int, help="the beam alpha/beta were tuned with (beam search's default)")
    parser.add_argument("--samples-manifest", help="manifest to take sample utterances from")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--sample-seconds", type=float, nargs=2, default=(2.5, 6.0), metavar=("MIN", "MAX"))
    parser.add_argument("--metadata", help="JSON file of facts to store in the checkpoint (e.g. test figures)")
    parser.add_argument("--full-precision", action="store_true", help="store fp32 weights (twice the size)")
    parser.add_argument("--int8", action="store_true",
                        help="store weight matrices as int8 with per-row scales (about half the fp16 size)")
    parser.add_argument("--lm-of", help="share this model's LM, already in the folder (a second model beside it)")
    args = parser.parse_args(argv)
    try:
        samples = (pick_samples(args.samples_manifest, args.samples, *args.sample_seconds)
                   if args.samples_manifest else [])
        metadata = None
        if args.metadata:
            with open(args.metadata, encoding="utf-8") as handle:
                metadata = json.load(handle)
        result = bundle_model(args.checkpoint, args.output_dir, args.name, args.lm, args.lexicon, args.alpha,
                              args.beta, samples, half=not args.full_precision, metadata=metadata,
                              model_name=args.model_name, beam_size=args.beam_size,
                              lm_of=args.lm_of, int8=args.int8)
    except (CheckpointError, DecoderError, ManifestError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
