"""Tune the beam search's LM weight (alpha) and word bonus (beta) on saved model outputs.

`test.py ... save_outputs=outputs.pt` stores each utterance's log-probabilities and reference once;
every (alpha, beta) trial then only decodes, never runs the acoustic model. Trials run over a grid
or, with Optuna installed, as a TPE search, spread over worker processes (each loads the LM once).
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from tqdm import tqdm

from deepspeech_pytorch.decoders import BeamSearchDecoder, GreedyDecoder
from deepspeech_pytorch.labels import Alphabet
from deepspeech_pytorch.metrics import ErrorCounts, utterance_errors

logger = logging.getLogger(__name__)


@dataclass
class SavedOutputs:
    """Model outputs for tuning: per utterance, log-probabilities (time, classes) and the reference."""
    labels: List[str]
    seconds_per_frame: float
    log_probs: List[torch.Tensor]
    references: List[str]

    @property
    def alphabet(self) -> Alphabet:
        return Alphabet(labels=tuple(self.labels))

    @property
    def audio_seconds(self) -> float:
        return sum(item.shape[0] for item in self.log_probs) * self.seconds_per_frame


def load_outputs(path: str) -> SavedOutputs:
    """Read a file written by evaluation.save_outputs (test.py save_outputs=...)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"saved outputs not found: {path}")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        utterances = saved["utterances"]
        outputs = SavedOutputs(list(saved["labels"]), float(saved["seconds_per_frame"]),
                               [u["log_probs"].to(torch.float32).contiguous() for u in utterances],
                               [str(u["reference"]) for u in utterances])
    except (KeyError, TypeError, AttributeError, RuntimeError) as error:
        raise ValueError(f"{path}: not a saved-outputs file from test.py save_outputs=... ({error})") from None
    if not outputs.log_probs:
        raise ValueError(f"{path}: holds no utterances")
    width = len(outputs.labels)
    for number, item in enumerate(outputs.log_probs):
        if item.dim() != 2 or item.shape[1] != width:
            raise ValueError(f"{path}: utterance {number} has log-probabilities of shape {tuple(item.shape)}, "
                             f"expected (time, {width})")
    return outputs


def score(decoder: Any, outputs: SavedOutputs) -> ErrorCounts:
    """Corpus error counts of a decoder (anything with decode(log_probs, lengths)) on saved outputs."""
    total = ErrorCounts()
    for log_probs, reference in zip(outputs.log_probs, outputs.references):
        (hypothesis,) = decoder.decode(log_probs[None], torch.tensor([log_probs.shape[0]]))
        total = total + utterance_errors(reference, hypothesis.text)
    return total


@dataclass
class Trial:
    alpha: float
    beta: float
    wer: float
    cer: float
    word_edits: int
    reference_words: int
    char_edits: int
    reference_chars: int
    seconds: float  # decoding time of the whole set


@dataclass
class DecoderSettings:
    """Everything but alpha and beta: what each worker builds its decoder from."""
    lm_path: Optional[str]
    lexicon_path: Optional[str] = None
    beam_size: int = 100
    beam_threshold: float = 25.0
    tokens_per_frame: int = 29


_worker: Dict[str, Any] = {}


def _start_worker(outputs_path: str, settings: DecoderSettings) -> None:
    torch.set_num_threads(1)
    outputs = load_outputs(outputs_path)
    _worker["outputs"] = outputs
    _worker["decoder"] = BeamSearchDecoder(outputs.alphabet, outputs.seconds_per_frame, **asdict(settings))


def _run_trial(pair: Tuple[float, float]) -> Trial:
    alpha, beta = pair
    started = time.perf_counter()
    counts = score(_worker["decoder"].with_weights(alpha, beta), _worker["outputs"])
    return Trial(float(alpha), float(beta), counts.wer, counts.cer, *counts.as_list(),
                 seconds=round(time.perf_counter() - started, 3))


class TrialRunner:
    """Runs (alpha, beta) trials: in this process (workers=1) or in a pool of spawned processes."""

    def __init__(self, outputs_path: str, settings: DecoderSettings, workers: int = 1):
        self.workers = max(1, workers)
        if self.workers == 1:
            _start_worker(outputs_path, settings)
            self.pool = None
        else:
            context = multiprocessing.get_context("spawn")
            self.pool = context.Pool(self.workers, initializer=_start_worker, initargs=(outputs_path, settings))

    def run(self, pairs: Sequence[Tuple[float, float]]) -> Iterable[Trial]:
        if self.pool is None:
            return map(_run_trial, pairs)
        return self.pool.imap_unordered(_run_trial, pairs)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool.join()

    def __enter__(self) -> "TrialRunner":
        return self

    def __exit__(self, *error) -> None:
        if self.pool is not None and error[0] is not None:
            self.pool.terminate()
        self.close()


def grid_points(low: float, high: float, steps: int) -> List[float]:
    """`steps` evenly spaced values from low to high inclusive."""
    if steps < 1 or high < low:
        raise ValueError(f"need steps >= 1 and high >= low, got {low}..{high} in {steps} steps")
    return [round(float(value), 6) for value in np.linspace(low, high, steps)] if steps > 1 else [float(low)]


def grid_search(outputs_path: str, settings: DecoderSettings, alphas: Sequence[float], betas: Sequence[float],
                workers: int = 1, progress: bool = False) -> List[Trial]:
    """Every (alpha, beta) pair, sorted by alpha then beta."""
    pairs = [(alpha, beta) for alpha in alphas for beta in betas]
    with TrialRunner(outputs_path, settings, min(workers, len(pairs))) as runner:
        trials = list(tqdm(runner.run(pairs), total=len(pairs), desc="alpha/beta grid", disable=not progress))
    return sorted(trials, key=lambda trial: (trial.alpha, trial.beta))


def optuna_search(outputs_path: str, settings: DecoderSettings, alpha_range: Tuple[float, float],
                  beta_range: Tuple[float, float], trials: int, workers: int = 1, seed: int = 0,
                  progress: bool = False, study: Any = None) -> List[Trial]:
    """Optuna's TPE sampler, minimising WER; `workers` trials are asked for and run at a time."""
    if study is None:
        try:
            import optuna
        except ImportError:
            raise ValueError("--method optuna needs Optuna: pip install optuna (or use the grid)") from None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    done: List[Trial] = []
    with TrialRunner(outputs_path, settings, min(workers, trials)) as runner, \
            tqdm(total=trials, desc="alpha/beta search", disable=not progress) as bar:
        while len(done) < trials:
            asked = [study.ask() for _ in range(min(runner.workers, trials - len(done)))]
            pairs = [(round(asked_trial.suggest_float("alpha", *alpha_range), 3),
                      round(asked_trial.suggest_float("beta", *beta_range), 3)) for asked_trial in asked]
            by_pair = {(trial.alpha, trial.beta): trial for trial in runner.run(pairs)}
            for asked_trial, pair in zip(asked, pairs):
                trial = by_pair[(float(pair[0]), float(pair[1]))]
                study.tell(asked_trial, trial.wer)
                done.append(trial)
                bar.update(1)
    return done


def best_trial(trials: Sequence[Trial]) -> Trial:
    """Lowest WER; ties go to the lower CER, then to the smaller alpha and beta (the milder LM)."""
    if not trials:
        raise ValueError("no trials")
    return min(trials, key=lambda trial: (trial.wer, trial.cer, trial.alpha, trial.beta))


@dataclass
class SearchResults:
    outputs: str
    utterances: int
    audio_seconds: float
    method: str
    decoder: DecoderSettings
    trials: List[Trial]
    greedy: Dict[str, float] = field(default_factory=dict)  # WER/CER without beam search, for reference

    @property
    def best(self) -> Trial:
        return best_trial(self.trials)

    def to_dict(self) -> Dict[str, Any]:
        return {**asdict(self), "best": asdict(self.best)}


def search(outputs_path: str, settings: DecoderSettings, method: str = "grid",
           alpha_grid: Tuple[float, float, int] = (0.0, 2.0, 9), beta_grid: Tuple[float, float, int] = (0.0, 3.0, 7),
           trials: int = 60, workers: Optional[int] = None, seed: int = 0, progress: bool = False) -> SearchResults:
    """The search search_lm_params.py runs. Grids are (low, high, steps); Optuna searches within the same ranges."""
    outputs = load_outputs(outputs_path)
    BeamSearchDecoder(outputs.alphabet, outputs.seconds_per_frame, **asdict(settings))  # fail here, not in a worker
    workers = workers or os.cpu_count() or 1
    if method == "grid":
        alphas, betas = grid_points(*alpha_grid), grid_points(*beta_grid)
        found = grid_search(outputs_path, settings, alphas, betas, workers, progress)
    elif method == "optuna":
        found = optuna_search(outputs_path, settings, alpha_grid[:2], beta_grid[:2], trials, workers, seed, progress)
    else:
        raise ValueError(f"method must be grid or optuna, not {method!r}")
    greedy = score(GreedyDecoder(outputs.alphabet, outputs.seconds_per_frame), outputs)
    return SearchResults(os.path.abspath(outputs_path), len(outputs.log_probs), round(outputs.audio_seconds, 2),
                         method, settings, found, {"wer": greedy.wer, "cer": greedy.cer})


def write_results(path: str, results: SearchResults) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(results.to_dict(), handle, indent=2)


def read_results(path: str) -> SearchResults:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"search results not found: {path}")
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        return SearchResults(data["outputs"], data["utterances"], data["audio_seconds"], data["method"],
                             DecoderSettings(**data["decoder"]), [Trial(**trial) for trial in data["trials"]],
                             data.get("greedy", {}))
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a search_lm_params.py results file ({error})") from None


def describe_best(results: SearchResults) -> str:
    """The lines select_lm_params.py prints: the best pair, its errors, and the settings to use it."""
    best = results.best
    settings = results.decoder
    overrides = (f"decoder.type=beam decoder.lm.alpha={best.alpha:g} decoder.lm.beta={best.beta:g} "
                 f"decoder.beam_size={settings.beam_size}")  # alpha/beta hold for the beam they were tuned with
    if settings.lm_path:
        overrides += f" decoder.lm.path={settings.lm_path}"
    if settings.lexicon_path:
        overrides += f" decoder.lm.lexicon_path={settings.lexicon_path}"
    lines = [f"best alpha={best.alpha:g} beta={best.beta:g}: WER {100 * best.wer:.2f}%  CER {100 * best.cer:.2f}%"
             f"  ({len(results.trials)} trials, {results.utterances} utterances, {results.method})"]
    if results.greedy:
        lines.append(f"greedy decoding: WER {100 * results.greedy['wer']:.2f}%  CER {100 * results.greedy['cer']:.2f}%")
    lines.append(overrides)
    return "\n".join(lines)


def plot_wer(results: SearchResults, path: str) -> None:
    """WER over (alpha, beta): a heat-map for a grid, a scatter for an Optuna search; the best is marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trials, best = results.trials, results.best
    alphas = sorted({trial.alpha for trial in trials})
    betas = sorted({trial.beta for trial in trials})
    figure, axes = plt.subplots(figsize=(1.2 + 0.75 * max(len(alphas), 4), 1.2 + 0.6 * max(len(betas), 4))
                                if results.method == "grid" else (7, 5))
    if results.method == "grid":
        wer = np.full((len(betas), len(alphas)), math.nan)
        for trial in trials:
            wer[betas.index(trial.beta), alphas.index(trial.alpha)] = 100 * trial.wer
        image = axes.imshow(wer, origin="lower", cmap="viridis_r", aspect="auto")
        axes.set_xticks(range(len(alphas)), [f"{a:g}" for a in alphas])
        axes.set_yticks(range(len(betas)), [f"{b:g}" for b in betas])
        for row in range(len(betas)):
            for column in range(len(alphas)):
                if not math.isnan(wer[row, column]):
                    axes.text(column, row, f"{wer[row, column]:.1f}", ha="center", va="center", fontsize=7,
                              color="white" if wer[row, column] > np.nanmean(wer) else "black")
        axes.scatter([alphas.index(best.alpha)], [betas.index(best.beta)], s=260, facecolors="none",
                     edgecolors="red", linewidths=2)
    else:
        image = axes.scatter([t.alpha for t in trials], [t.beta for t in trials], c=[100 * t.wer for t in trials],
                             cmap="viridis_r", s=40)
        axes.scatter([best.alpha], [best.beta], s=200, facecolors="none", edgecolors="red", linewidths=2)
    figure.colorbar(image, ax=axes, label="WER (%)")
    axes.set_xlabel("alpha (LM weight)")
    axes.set_ylabel("beta (word bonus)")
    axes.set_title(f"WER over {results.utterances} utterances; best alpha={best.alpha:g} beta={best.beta:g}"
                   f" ({100 * best.wer:.1f}%)", fontsize=9)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
