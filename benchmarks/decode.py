"""Decoding speed and WER: this project's beam search (flashlight-text) against pyctcdecode, on the same
saved model outputs, the same KenLM model and the same beam size and LM weights.

    python test.py model_path=best.pt test_manifest=test.jsonl save_outputs=outputs.pt
    python benchmarks/decode.py --outputs outputs.pt --lm lm/lm.bin --lexicon lm/lm.lexicon.txt \
        [--char-lm lm/chars.bin] --alpha 1 --beta 4 --beam-size 100

pyctcdecode is only needed here, not by the project. Its wheel caps numpy below 2 as a packaging
precaution, so install it without dependencies: pip install --no-deps pyctcdecode pygtrie
(it also needs the kenlm module from tools/build_kenlm.sh). Speed is audio seconds decoded per
second of one CPU core, the best of --repeats runs; the LM is loaded before timing starts.
"""

import argparse
import os
import sys
import time
from typing import Callable, List, Optional

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from deepspeech_pytorch.decoders import BeamSearchDecoder, GreedyDecoder  # noqa: E402
from deepspeech_pytorch.lm_tuning import SavedOutputs, load_outputs  # noqa: E402
from deepspeech_pytorch.metrics import error_counts  # noqa: E402


def timed(decode_one: Callable[[torch.Tensor], str], outputs: SavedOutputs, repeats: int):
    """(transcripts, best seconds) of decoding every utterance, after one untimed warm-up utterance."""
    decode_one(outputs.log_probs[0])
    best, texts = float("inf"), []
    for _ in range(repeats):
        started = time.perf_counter()
        texts = [decode_one(log_probs) for log_probs in outputs.log_probs]
        best = min(best, time.perf_counter() - started)
    return texts, best


def pyctcdecode_decoder(outputs: SavedOutputs, lm_path: str, lexicon_path: Optional[str], alpha: float,
                        beta: float, beam_size: int) -> Callable[[torch.Tensor], str]:
    try:
        from pyctcdecode import build_ctcdecoder
    except ImportError:
        raise SystemExit("pyctcdecode is not installed: pip install --no-deps pyctcdecode pygtrie") from None
    labels = ["" if i == 0 else (" " if label == " " else label) for i, label in enumerate(outputs.labels)]
    unigrams = [line.split("\t")[0] for line in open(lexicon_path, encoding="utf-8")] if lexicon_path else None
    decoder = build_ctcdecoder(labels, kenlm_model_path=lm_path, unigrams=unigrams, alpha=alpha, beta=beta)
    return lambda log_probs: decoder.decode(log_probs.numpy(), beam_width=beam_size)


def pick(value: Optional[float], default: float) -> float:
    return default if value is None else value


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outputs", required=True, help="saved outputs (.pt) from test.py save_outputs=...")
    parser.add_argument("--lm", required=True, help="word KenLM model (ARPA or binary)")
    parser.add_argument("--lexicon", required=True, help="its lexicon (data/build_lm.py writes one)")
    parser.add_argument("--char-lm", default=None, help="a character LM: adds a lexicon-free row")
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--beta", type=float, default=1.0)
    parser.add_argument("--char-alpha", type=float, default=None, help="for --char-lm (default: --alpha)")
    parser.add_argument("--char-beta", type=float, default=None, help="for --char-lm (default: --beta)")
    parser.add_argument("--pyctcdecode-alpha", type=float, default=None, help="default: --alpha")
    parser.add_argument("--pyctcdecode-beta", type=float, default=None, help="default: --beta")
    parser.add_argument("--beam-size", type=int, default=100)
    parser.add_argument("--tokens-per-frame", type=int, nargs="+", default=[29],
                        help="one flashlight row per value (labels tried per frame)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-pyctcdecode", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    outputs = load_outputs(args.outputs)
    alphabet, frame = outputs.alphabet, outputs.seconds_per_frame

    def ours(decoder):
        return lambda log_probs: decoder.decode_one(log_probs)[0].text

    greedy = GreedyDecoder(alphabet, frame)
    rows = [("greedy", "best path", "-", lambda lp: greedy.decode(lp[None], torch.tensor([lp.shape[0]]))[0].text)]
    for tokens in args.tokens_per_frame:
        rows.append((f"flashlight/{tokens}", "lexicon", "word", ours(BeamSearchDecoder(
            alphabet, frame, args.lm, args.lexicon, args.alpha, args.beta, args.beam_size, tokens_per_frame=tokens))))
    if args.char_lm:
        for tokens in args.tokens_per_frame:
            rows.append((f"flashlight/{tokens}", "lexicon-free", "char", ours(BeamSearchDecoder(
                alphabet, frame, args.char_lm, None, pick(args.char_alpha, args.alpha), pick(args.char_beta, args.beta),
                args.beam_size, tokens_per_frame=tokens))))
    pcd_alpha, pcd_beta = pick(args.pyctcdecode_alpha, args.alpha), pick(args.pyctcdecode_beta, args.beta)
    if not args.skip_pyctcdecode:
        rows.append(("pyctcdecode", "unigrams", "word", pyctcdecode_decoder(
            outputs, args.lm, args.lexicon, pcd_alpha, pcd_beta, args.beam_size)))

    audio = outputs.audio_seconds
    print(f"{len(outputs.log_probs)} utterances, {audio:.1f} s of audio; beam {args.beam_size}; word LM {args.lm}")
    char_weights = f"{pick(args.char_alpha, args.alpha):g}/{pick(args.char_beta, args.beta):g}"
    print(f"alpha/beta: flashlight word LM {args.alpha:g}/{args.beta:g}, character LM {char_weights}, "
          f"pyctcdecode {pcd_alpha:g}/{pcd_beta:g}; flashlight/N: N labels tried per frame")
    results = []
    for name, search, lm, decode_one in rows:
        texts, seconds = timed(decode_one, outputs, args.repeats)
        counts = error_counts(outputs.references, texts)
        results.append((name, search, lm, counts.wer, counts.cer, audio / seconds))
    reference = next((speed for name, *_, speed in results if name == "pyctcdecode"), None)
    widths = (14, 12, 4, 6, 6, 9, 20)

    def line(cells):
        return "| " + " | ".join(f"{cell:<{w}}" if i < 3 else f"{cell:>{w}}" for i, (cell, w) in
                                 enumerate(zip(cells, widths))) + " |"

    print(line(("decoder", "search", "LM", "WER %", "CER %", "audio s/s", "speed vs pyctcdecode")))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for name, search, lm, wer, cer, speed in results:
        ratio = f"{speed / reference:.1f}x" if reference else "-"
        print(line((name, search, lm, f"{100 * wer:.2f}", f"{100 * cer:.2f}", f"{speed:.1f}", ratio)))


if __name__ == "__main__":
    main()
