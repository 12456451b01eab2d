"""Print the best alpha/beta of a search_lm_params.py run and plot WER over the grid:
python select_lm_params.py --results lm_search.json --plot lm_search.png
"""
import argparse

from deepspeech_pytorch.cli import ArgumentParser, file_name, reports_user_errors
from deepspeech_pytorch.lm_tuning import describe_best, plot_wer, read_results


@reports_user_errors
def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=file_name, default="lm_search.json",
                        help="from search_lm_params.py (default: %(default)s)")
    parser.add_argument("--plot", type=file_name, default=None, help="heat-map PNG (default: the results path with .png)")
    args = parser.parse_args()
    results = read_results(args.results)
    plot = args.plot or (args.results.rsplit(".", 1)[0] + ".png")
    plot_wer(results, plot)
    print(describe_best(results))
    print(f"plot: {plot}")


if __name__ == "__main__":
    main()
