"""Synthesize the offline English speech corpus, e.g. `python data/synthetic.py --output-dir corpus --hours 5`.

An interrupted build resumes: run the same command again and finished files are kept.
`--holdout-engine pico` keeps one synthesizer out of train/val/test: it speaks only in engine_test.jsonl.
"""

import argparse
import logging
import os
import sys
from typing import Dict, List, Optional

from tqdm.contrib.logging import logging_redirect_tqdm

from deepspeech_pytorch.cli import ArgumentParser
from deepspeech_pytorch.corpora.cli import number
from deepspeech_pytorch.corpora.sentences import TextSourceError
from deepspeech_pytorch.corpora.synthetic import (DEFAULT_ENGINE_WEIGHTS, SyntheticCorpusError, build_corpus,
                                                  format_summary)
from deepspeech_pytorch.corpora.tts import ENGINES, SynthesisError, SynthesizerMissing


def _names(value: str) -> List[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


def _weights(value: str) -> Dict[str, float]:
    """"espeak-ng=0.5,kokoro=0.2" -> {"espeak-ng": 0.5, "kokoro": 0.2}."""
    weights = {}
    for item in _names(value):
        engine, _, weight = item.partition("=")
        try:
            weights[engine.strip()] = float(weight)
        except ValueError:
            raise argparse.ArgumentTypeError(f"engine weight {item!r} is not ENGINE=NUMBER") from None
    return weights


def main(argv: Optional[List[str]] = None) -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", required=True, help="folder for audio/, the manifests and summary.json")
    amount = parser.add_mutually_exclusive_group(required=True)
    amount.add_argument("--hours", type=number(float, above=0), help="hours of audio, all splits together")
    amount.add_argument("--utterances", type=number(int, low=1), help="number of utterances, all splits together")
    parser.add_argument("--text-source", default="debian",
                        help="debian, grid, or fortunes/wordnet/bible/gcide (comma separated), or a text file "
                             "with one sentence per line (default: %(default)s)")
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma separated (default: %(default)s)")
    parser.add_argument("--engine-weights", type=_weights, default=None, metavar="ENGINE=W,...",
                        help="share of utterances per engine, replacing these defaults: " +
                             ",".join(f"{e}={w:g}" for e, w in DEFAULT_ENGINE_WEIGHTS.items()))
    parser.add_argument("--holdout-engine", default="", metavar="ENGINE[,ENGINE]",
                        help="engines heard only in engine_test.jsonl (as large as test, on test sentences), "
                             "never in train, val or test: evaluation on an unseen synthesizer")
    parser.add_argument("--seed", type=number(int, low=0), default=0)
    parser.add_argument("--workers", type=number(int, low=1), default=os.cpu_count() or 1)
    parser.add_argument("--val-fraction", type=number(float, low=0, below=1), default=0.05, help="share of audio, speakers and sentences")
    parser.add_argument("--test-fraction", type=number(float, low=0, below=1), default=0.05, help="share of audio, speakers and sentences")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, warnings and errors only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(message)s")
    try:
        with logging_redirect_tqdm():
            summary = build_corpus(args.output_dir, hours=args.hours, utterances=args.utterances,
                                   text_source=args.text_source,
                                   engines=_names(args.engines), holdout_engines=_names(args.holdout_engine),
                                   engine_weights={**DEFAULT_ENGINE_WEIGHTS, **(args.engine_weights or {})},
                                   seed=args.seed, workers=args.workers,
                                   val_fraction=args.val_fraction, test_fraction=args.test_fraction,
                                   progress=not args.quiet)
    except (SynthesizerMissing, SynthesisError, SyntheticCorpusError, TextSourceError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return 130
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
