"""Fraction of each batch that is padding, with length-bucketed batches and with random batches.

python benchmarks/padding.py MANIFEST [--batch-sizes 8 16 32]
"""
import argparse
import json
import random

from deepspeech_pytorch.datasets import BucketingBatchSampler, padding_fraction, read_manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    durations = [entry.duration for entry in read_manifest(args.manifest)]
    rows = []
    for batch_size in args.batch_sizes:
        bucketed = BucketingBatchSampler(durations, batch_size, seed=args.seed)
        bucketed.set_epoch(1)
        order = list(range(len(durations)))
        random.Random(args.seed).shuffle(order)
        unsorted = [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
        rows.append({"batch_size": batch_size, "utterances": len(durations),
                     "padding_bucketed": round(padding_fraction(list(bucketed), durations), 4),
                     "padding_random": round(padding_fraction(unsorted, durations), 4)})
    print(f"{'batch':>5} | {'bucketed':>8} | {'random':>8}")
    for row in rows:
        print(f"{row['batch_size']:>5} | {100 * row['padding_bucketed']:>7.2f}% | {100 * row['padding_random']:>7.2f}%")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
