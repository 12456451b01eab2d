"""Build a KenLM language model and lexicon for beam search, e.g.
`python data/build_lm.py --text corpus.txt train.jsonl --output-dir lm --order 4`.

Text files (one or more sentences a line, .gz too) and manifests (.jsonl: their transcripts) are
normalised with the model's alphabet. --unit word (default) makes a word LM for lexicon search;
--unit char a character LM for lexicon-free search. Needs KenLM: bash tools/build_kenlm.sh
"""

import argparse
import json
import logging
import os
import sys
from typing import List, Optional

from deepspeech_pytorch.labels import Alphabet
from deepspeech_pytorch.lm import BINARY_TYPES, UNITS, KenLMMissing, LMBuildError, build_language_model


def read_words(paths: List[str]) -> List[str]:
    words: List[str] = []
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--keep-words file not found: {path}")
        with open(path, encoding="utf-8") as handle:
            words.extend(handle.read().split())
    return words


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", nargs="+", required=True, help="text files and/or .jsonl manifests")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--name", default="lm", help="file name stem (default: %(default)s)")
    parser.add_argument("--unit", choices=UNITS, default="word")
    parser.add_argument("--order", type=int, default=None, help="n-gram order, 2 to 6 (default: 4 word, 6 char)")
    parser.add_argument("--prune", type=int, nargs="*", default=[], help="count thresholds per order, e.g. 0 0 1")
    parser.add_argument("--max-words", type=int, default=None, help="keep the most frequent words only")
    parser.add_argument("--keep-words", nargs="*", default=[], metavar="FILE",
                        help="files of words (whitespace-separated) kept beyond --max-words when the text has them, "
                             "e.g. the training transcripts' words (data/lm_text.py writes them)")
    parser.add_argument("--binary-type", choices=BINARY_TYPES, default="probing")
    parser.add_argument("--quantize", type=int, default=None, metavar="BITS",
                        help="store probabilities in BITS bits, e.g. 8 (trie binary only; about half the size)")
    parser.add_argument("--no-binary", action="store_true", help="stop at the ARPA file")
    parser.add_argument("--memory", default="1G", help="lmplz sort memory, e.g. 1G or 20%% (default: %(default)s)")
    parser.add_argument("--labels", default=None, help="JSON list of labels (default: the standard English alphabet)")
    parser.add_argument("--dev-text", nargs="*", default=[], help="held-out text for a perplexity figure")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    try:
        alphabet = Alphabet.from_json(args.labels) if args.labels else Alphabet()
        keep_words = read_words(args.keep_words)
        model = build_language_model(args.text, args.output_dir, order=args.order,
                                     unit=args.unit, prune=args.prune, max_words=args.max_words,
                                     binary=not args.no_binary, binary_type=args.binary_type, alphabet=alphabet,
                                     memory=args.memory, dev_paths=args.dev_text, name=args.name,
                                     quantize_bits=args.quantize, keep_words=keep_words)
    except (KenLMMissing, LMBuildError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(model.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
