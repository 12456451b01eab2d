"""The README's main job: build a small espeak-ng corpus, train for a few minutes, evaluate, transcribe.

python demo.py [--output-dir demo_output] [--minutes 7]
"""
import argparse

from deepspeech_pytorch.cli import ArgumentParser, file_name, number, reports_user_errors, setup_logging
from deepspeech_pytorch.demo import print_report, run_demo


@reports_user_errors
def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", type=file_name, default="demo_output")
    parser.add_argument("--utterances", type=number(int, low=3), default=1500, help="at least 3: train, val, test")
    parser.add_argument("--epochs", type=number(int, low=1), default=4)
    parser.add_argument("--minutes", type=number(above=0), default=7.0, help="training time budget")
    args = parser.parse_args()
    setup_logging()
    print_report(run_demo(args.output_dir, args.utterances, args.epochs, args.minutes))


if __name__ == "__main__":
    main()
