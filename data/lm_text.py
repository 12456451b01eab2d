r"""Gather English text for the beam search's language model: Debian text packages (fortunes, WordNet
examples, the King James and World English Bibles, GCIDE quotations, the Devil's Dictionary, Endless Sky's,
Cataclysm: DDA's and FreedroidRPG's dialogue; --list-sources names them and their packages), the training
games' script lines and the synthetic training pool, one normalised sentence a line (numbers spelled out),
each once, with every sentence of the --exclude evaluation splits removed. The bundle's candidate LM:

    apt-get install fortunes fortunes-min wordnet-base bible-kjv sword-text-web libsword-utils dict-gcide \
        dict-devil endless-sky-data cataclysm-dda-data freedroidrpg-data
    python data/lm_text.py --output lm_text/corpus.txt \
        --transcripts datasets/queen/queen_train.jsonl datasets/sky/sky_train.jsonl \
        --texts datasets/synthetic10h/train_text.txt --exclude-synthetic-heldout 0 \
        --exclude datasets/drascula/val.jsonl datasets/drascula/test.jsonl datasets/unseen_engines/all.jsonl
    python data/build_lm.py --text lm_text/corpus.txt --keep-words lm_text/corpus.training_words.txt \
        --max-words 60000 --output-dir lm --order 5 --prune 0 0 0 1 1 --binary-type trie --quantize 8
"""

import argparse
import sys
from typing import List, Optional

from deepspeech_pytorch.cli import ArgumentParser, number
from deepspeech_pytorch.corpora import cli, lm_text


def main(argv: Optional[List[str]] = None) -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="lm_text/corpus.txt", help="corpus file (default: %(default)s)")
    parser.add_argument("--sources", nargs="*", default=list(lm_text.DEFAULT_SOURCES),
                        help="Debian text sources (default: %(default)s)")
    parser.add_argument("--transcripts", nargs="*", default=[], help="training manifests (.jsonl): their text")
    parser.add_argument("--texts", nargs="*", default=[], help="training sentence files, one sentence a line")
    parser.add_argument("--exclude", nargs="*", default=[],
                        help="evaluation manifests (.jsonl) or text files whose sentences never enter the corpus")
    parser.add_argument("--min-contained-words", type=number(int, low=1), default=lm_text.MIN_CONTAINED_WORDS,
                        help="an excluded line of at least this many words is also removed from inside longer "
                             "sentences (default: %(default)s)")
    parser.add_argument("--exclude-synthetic-heldout", type=number(int, low=0), default=None, metavar="SEED",
                        help="also exclude the val and test sentences of the synthetic corpus built with this seed "
                             "(they come from the same Debian text)")
    parser.add_argument("--root", default="/", help="where the Debian packages' files are (default: %(default)s)")
    parser.add_argument("--labels", default=None, help="JSON list of labels (default: English a-z, apostrophe, space)")
    parser.add_argument("--list-sources", action="store_true", help="print the sources and their packages, then stop")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, warnings and errors only")
    args = parser.parse_args(argv)
    if args.list_sources:
        for source in lm_text.SOURCES.values():
            print(f"{source.name}\t{' '.join(source.packages)}\t{source.about}")
        return 0

    def prepare():
        heldout = ([] if args.exclude_synthetic_heldout is None else
                   lm_text.synthetic_heldout_sentences(args.exclude_synthetic_heldout, alphabet=cli.alphabet(args)))
        result = lm_text.build_lm_text(args.output, args.sources, args.root, args.transcripts, args.texts,
                                       args.exclude, cli.alphabet(args), args.min_contained_words,
                                       exclude_lines=heldout, progress=not args.quiet)
        written = {"corpus": result.corpus, "summary": result.summary}
        if result.training_words:
            written["training_words"] = result.training_words
        return written

    return cli.run(prepare, args)


if __name__ == "__main__":
    sys.exit(main())
