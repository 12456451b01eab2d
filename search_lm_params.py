"""Search the beam search's LM weight (alpha) and word bonus (beta) on saved model outputs:
python search_lm_params.py --outputs outputs.pt --lm lm/lm.bin --lexicon lm/lm.lexicon.txt --results lm_search.json

outputs.pt comes from `python test.py ... save_outputs=outputs.pt`; trials run in parallel processes.
"""
import argparse
import logging

from deepspeech_pytorch.cli import ArgumentParser, file_name, number, reports_user_errors, setup_logging
from deepspeech_pytorch.lm_tuning import DecoderSettings, describe_best, search, write_results


@reports_user_errors
def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outputs", type=file_name, required=True, help="saved outputs (.pt) from test.py save_outputs=...")
    parser.add_argument("--lm", type=file_name, default=None, help="KenLM model (word LM with --lexicon, or a character LM)")
    parser.add_argument("--lexicon", type=file_name, default=None, help="lexicon for lexicon-constrained search")
    parser.add_argument("--results", type=file_name, default="lm_search.json", help="JSON results (default: %(default)s)")
    parser.add_argument("--alpha", type=number(), nargs=3, default=[0.0, 2.0, 9], metavar=("LOW", "HIGH", "STEPS"))
    parser.add_argument("--beta", type=number(), nargs=3, default=[0.0, 3.0, 7], metavar=("LOW", "HIGH", "STEPS"))
    parser.add_argument("--method", choices=["grid", "optuna"], default="grid")
    parser.add_argument("--trials", type=number(int, low=1), default=60, help="optuna: number of trials")
    parser.add_argument("--beam-size", type=number(int, low=1), default=100)
    parser.add_argument("--beam-threshold", type=number(above=0), default=25.0)
    parser.add_argument("--tokens-per-frame", type=number(int, low=1), default=29)
    parser.add_argument("--workers", type=number(int, low=1), default=None, help="processes (default: all cores)")
    parser.add_argument("--seed", type=number(int, low=0), default=0)
    args = parser.parse_args()
    for option, (low, high, steps) in (("--alpha", args.alpha), ("--beta", args.beta)):
        if low > high or steps < 1 or not float(steps).is_integer():
            parser.error(f"argument {option}: LOW HIGH STEPS with LOW <= HIGH and STEPS a whole number >= 1, "
                         f"not {low:g} {high:g} {steps:g}")
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
