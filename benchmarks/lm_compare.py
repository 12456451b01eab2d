"""Compare word LMs for beam search on the same saved model outputs: alpha/beta tuned on each split's val
outputs only, then WER on val and test; plus each LM's size, its lexicon's out-of-vocabulary rate and its
perplexity on the test references (model-independent figures).

    python test.py test_manifest=drascula/val.jsonl save_outputs=out/drascula_val.pt     # once per split
    python benchmarks/lm_compare.py \
        --split drascula=out/drascula_val.pt,out/drascula_test.pt --split engines=out/ue_val.pt,out/ue_test.pt \
        --lm today=deepspeech_pytorch/pretrained/default.lm.json --lm broad=lm_candidate/lm.json \
        --alpha 0.4 1.2 3 --beta -2 1 3 --beam-size 500 --results lm_compare.json

An --lm is NAME=lm.json (the bundle's format: path, lexicon_path, alpha, beta; its own alpha/beta are scored
too, as "fixed") or NAME=LM.bin,LEXICON. Prints one markdown table.
"""

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from deepspeech_pytorch.cli import ArgumentParser, number  # noqa: E402
from deepspeech_pytorch.decoders import GreedyDecoder  # noqa: E402
from deepspeech_pytorch.lm import perplexity  # noqa: E402
from deepspeech_pytorch.lm_tuning import (DecoderSettings, Trial, best_trial, grid_points,  # noqa: E402
                                          grid_search, load_outputs, score)


@dataclass
class LMSpec:
    name: str
    path: str
    lexicon: str
    alpha: Optional[float] = None  # the pair it ships with, scored as given
    beta: Optional[float] = None

    @property
    def megabytes(self) -> float:
        return (os.path.getsize(self.path) + os.path.getsize(self.lexicon)) / 1e6

    def words(self) -> set:
        with open(self.lexicon, encoding="utf-8") as handle:
            return {line.split("\t", 1)[0] for line in handle if line.strip()}


def parse_lm(text: str) -> LMSpec:
    name, _, value = text.partition("=")
    if not name or not value:
        raise argparse.ArgumentTypeError(f"expected NAME=lm.json or NAME=LM,LEXICON, not {text!r}")
    if value.endswith(".json"):
        with open(value, encoding="utf-8") as handle:
            data = json.load(handle)
        folder = os.path.dirname(os.path.abspath(value))
        spec = LMSpec(name, os.path.join(folder, data["path"]), os.path.join(folder, data["lexicon_path"]),
                      data.get("alpha"), data.get("beta"))
    else:
        path, _, lexicon = value.partition(",")
        spec = LMSpec(name, path, lexicon)
    for path in (spec.path, spec.lexicon):
        if not os.path.isfile(path):
            raise argparse.ArgumentTypeError(f"--lm {name}: file not found: {path}")
    return spec


def parse_split(text: str) -> Tuple[str, str, str]:
    name, _, value = text.partition("=")
    val, _, test = value.partition(",")
    if not name or not val or not test:
        raise argparse.ArgumentTypeError(f"expected NAME=VAL_OUTPUTS.pt,TEST_OUTPUTS.pt, not {text!r}")
    for path in (val, test):
        if not os.path.isfile(path):
            raise argparse.ArgumentTypeError(f"--split {name}: saved outputs not found: {path}")
    return name, val, test


def score_pair(outputs_path: str, settings: DecoderSettings, alpha: float, beta: float, workers: int) -> Trial:
    return grid_search(outputs_path, settings, [alpha], [beta], workers)[0]


def compare(splits: Sequence[Tuple[str, str, str]], lms: Sequence[LMSpec], alphas: Sequence[float],
            betas: Sequence[float], beam_size: int, workers: int) -> List[Dict]:
    rows = []
    for split, val_path, test_path in splits:
        val, test = load_outputs(val_path), load_outputs(test_path)
        greedy = [score(GreedyDecoder(o.alphabet, o.seconds_per_frame), o) for o in (val, test)]
        rows.append({"split": split, "lm": "greedy", "val_wer": greedy[0].wer, "test_wer": greedy[1].wer,
                     "test_cer": greedy[1].cer})
        test_words = [word for reference in test.references for word in reference.split()]
        for spec in lms:
            settings = DecoderSettings(spec.path, spec.lexicon, beam_size)
            lexicon = spec.words()
            row = {"split": split, "lm": spec.name, "megabytes": round(spec.megabytes, 2),
                   "lexicon_words": len(lexicon),
                   "test_oov": sum(word not in lexicon for word in test_words) / max(1, len(test_words)),
                   "test_perplexity": perplexity(spec.path, test.references)}
            trials = grid_search(val_path, settings, alphas, betas, workers, progress=True)
            best = best_trial(trials)
            tested = score_pair(test_path, settings, best.alpha, best.beta, workers)
            row.update(alpha=best.alpha, beta=best.beta, val_wer=best.wer, test_wer=tested.wer, test_cer=tested.cer,
                       grid=[asdict(trial) for trial in trials])
            if spec.alpha is not None and spec.beta is not None:
                fixed = [score_pair(path, settings, spec.alpha, spec.beta, workers) for path in (val_path, test_path)]
                row.update(fixed_alpha=spec.alpha, fixed_beta=spec.beta, fixed_val_wer=fixed[0].wer,
                           fixed_test_wer=fixed[1].wer)
            rows.append(row)
    return rows


def table(rows: Sequence[Dict]) -> str:
    lines = ["| split | LM | LM+lexicon MB | lexicon words | test OOV | test perplexity | tuned alpha, beta "
             "| val WER | test WER (CER) | its own alpha, beta: val / test WER |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if row["lm"] == "greedy":
            lines.append(f"| {row['split']} | greedy | | | | | | {100 * row['val_wer']:.1f}% "
                         f"| {100 * row['test_wer']:.1f}% ({100 * row['test_cer']:.1f}%) | |")
            continue
        fixed = (f"{row['fixed_alpha']:g}, {row['fixed_beta']:g}: {100 * row['fixed_val_wer']:.1f}% / "
                 f"{100 * row['fixed_test_wer']:.1f}%" if "fixed_alpha" in row else "")
        lines.append(f"| {row['split']} | {row['lm']} | {row['megabytes']:.1f} | {row['lexicon_words']:,} "
                     f"| {100 * row['test_oov']:.1f}% | {row['test_perplexity']:.0f} | {row['alpha']:g}, {row['beta']:g} "
                     f"| {100 * row['val_wer']:.1f}% | {100 * row['test_wer']:.1f}% ({100 * row['test_cer']:.1f}%) "
                     f"| {fixed} |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", type=parse_split, action="append", required=True,
                        help="NAME=VAL_OUTPUTS.pt,TEST_OUTPUTS.pt (test.py save_outputs=...); repeat per split")
    parser.add_argument("--lm", type=parse_lm, action="append", required=True,
                        help="NAME=lm.json or NAME=LM.bin,LEXICON; repeat per LM")
    parser.add_argument("--alpha", type=number(), nargs=3, default=[0.4, 1.2, 3], metavar=("LOW", "HIGH", "STEPS"))
    parser.add_argument("--beta", type=number(), nargs=3, default=[-2.0, 1.0, 3], metavar=("LOW", "HIGH", "STEPS"))
    parser.add_argument("--beam-size", type=number(int, low=1), default=500)
    parser.add_argument("--workers", type=number(int, low=1), default=os.cpu_count() or 1)
    parser.add_argument("--results", default=None, help="also write every figure and grid point as JSON")
    args = parser.parse_args(argv)
    alphas = grid_points(args.alpha[0], args.alpha[1], int(args.alpha[2]))
    betas = grid_points(args.beta[0], args.beta[1], int(args.beta[2]))
    try:
        rows = compare(args.split, args.lm, alphas, betas, args.beam_size, args.workers)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.results:
        with open(args.results, "w", encoding="utf-8") as handle:
            json.dump({"beam_size": args.beam_size, "alphas": alphas, "betas": betas, "rows": rows}, handle, indent=2)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
