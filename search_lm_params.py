"""Search the beam search's LM weight (alpha) and word bonus (beta) on saved model outputs:
python search_lm_params.py --outputs outputs.pt --lm lm/lm.bin --lexicon lm/lm.lexicon.txt --results lm_search.json

outputs.pt comes from `python test.py ... save_outputs=outputs.pt`; trials run in parallel processes.
"""
import argparse
import logging

from deepspeech_pytorch.cli import reports_user_errors, setup_logging
from deepspeech_pytorch.lm_tuning import DecoderSettings, describe_best, search, write_results


@reports_user_errors
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outputs", required=True, help="saved outputs (.pt) from test.py save_outputs=...")
    parser.add_argument("--lm", default=None, help="KenLM model (word LM with --lexicon, or a character LM)")
    parser.add_argument("--lexicon", default=None, help="lexicon for lexicon-constrained search")
    parser.add_argument("--results", default="lm_search.json", help="JSON results (default: %(default)s)")
    parser.add_argument("--alpha", type=float, nargs=3, default=[0.0, 2.0, 9], metavar=("LOW", "HIGH", "STEPS"))
    parser.add_argument("--beta", type=float, nargs=3, default=[0.0, 3.0, 7], metavar=("LOW", "HIGH", "STEPS"))
    parser.add_argument("--method", choices=["grid", "optuna"], default="grid")
    parser.add_argument("--trials", type=int, default=60, help="optuna: number of trials")
    parser.add_argument("--beam-size", type=int, default=100)
    parser.add_argument("--beam-threshold", type=float, default=25.0)
    parser.add_argument("--tokens-per-frame", type=int, default=29)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    setup_logging(logging.WARNING)
    settings = DecoderSettings(args.lm, args.lexicon, args.beam_size, args.beam_threshold, args.tokens_per_frame)
    results = search(args.outputs, settings, args.method, (args.alpha[0], args.alpha[1], int(args.alpha[2])),
                     (args.beta[0], args.beta[1], int(args.beta[2])), args.trials, args.workers, args.seed,
                     progress=True)
    write_results(args.results, results)
    print(describe_best(results))
    print(f"results: {args.results}")


if __name__ == "__main__":
    main()
