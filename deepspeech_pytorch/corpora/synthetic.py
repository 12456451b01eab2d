"""The offline synthetic speech corpus: English sentences spoken by offline synthesizers, split by voice.

build_corpus() plans every utterance from the seed alone (voice, sentence, rate, pitch, trimming,
level), so the same arguments always give the same corpus; renders the plan over worker processes;
and skips files a previous, interrupted build already finished. Validation and test voices never
speak in training, and their sentences never appear in training text. A whole engine can be held
out too ("leave one synthesizer out"): its voices speak only in the engine_test split, on test
sentences. The voices in tts.RESERVED_VOICES are never used at all: they are kept for
out-of-distribution evaluation.
"""

from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import json
import logging
import math
import multiprocessing
import os
import random
import time
from dataclasses import asdict, dataclass
from typing import Deque, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import soundfile as sf
from tqdm import tqdm

from deepspeech_pytorch.audio import SAMPLE_RATE
from deepspeech_pytorch.datasets import ManifestEntry, write_manifest
from deepspeech_pytorch.labels import Alphabet
from deepspeech_pytorch.corpora.sentences import Sentence, TextSource, gather_sentences, interleave, vocabulary
from deepspeech_pytorch.corpora.tts import (ENGINES, RenderJob, SynthesisError, Voice, is_reserved, list_voices,
                                    random_prosody, render)

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
HOLDOUT_SPLIT = "engine_test"  # the held-out engines' voices speaking test sentences
# Share of utterances. flite has one voice left (its others are CMU ARCTIC voices); Kokoro is the
# only neural engine, and the slowest (about 3 s of audio per CPU second against 20-230 for the rest).
DEFAULT_ENGINE_WEIGHTS = {"espeak-ng": 0.3, "kokoro": 0.25, "mbrola": 0.1, "festival": 0.1, "pico": 0.1,
                          "rhvoice": 0.1, "flite": 0.05}
# Held-out speakers are drawn from engines with at least this many voices, so the few real-speaker
# diphone voices (flite, festival) all stay in training; with no such engine, from every voice.
MIN_VOICES_TO_HOLD_OUT = 10
TRAINING_TEXT = "train_text.txt"  # the training sentence pool, for language models
PLAN_VERSION = 1  # part of every file name: bump it when rendering changes so old audio is not reused
FILES_PER_FOLDER = 1000
KEEP_SILENCE = (0.1, 0.2)  # seconds of leading/trailing silence kept, drawn per utterance
PEAK_LEVEL = (0.3, 0.95)  # peak amplitude, drawn per utterance


class SyntheticCorpusError(RuntimeError):
    """The corpus cannot be built as asked (too few voices or sentences, synthesis failing)."""


@dataclass(frozen=True)
class PlannedUtterance:
    id: str
    split: str
    index: int
    sentence: Sentence
    job: RenderJob


def split_voices(voices: Sequence[Voice], val_fraction: float, test_fraction: float, seed: int,
                 holdout_engines: Sequence[str] = ()) -> Dict[str, List[Voice]]:
    """Voices per split, disjoint by speaker: held-out speakers come from engines with many voices.

    A voice that borrows from other speakers (Voice.related: a Kokoro mix) is used only when all its
    speakers fall in one split. With `holdout_engines`, those engines' voices form HOLDOUT_SPLIT
    alone, and voices of other engines sharing one of their speakers are not used at all (festival's
    kal_diphone and flite's kal16 are one man), so the held-out split is unheard in every other one.
    """
    held_engines = set(holdout_engines)
    held_out: List[Voice] = []
    if held_engines:
        engines = {voice.engine for voice in voices}
        if held_engines - engines:
            raise SyntheticCorpusError(f"cannot hold out {sorted(held_engines - engines)}: not among the engines "
                                       f"used ({sorted(engines)})")
        if held_engines >= engines:
            raise SyntheticCorpusError(f"holding out {sorted(held_engines)} leaves no engine to train on")
        held_out = [v for v in voices if v.engine in held_engines]
        held_speakers = {speaker for v in held_out for speaker in v.speakers}
        voices = [v for v in voices if v.engine not in held_engines and not held_speakers & set(v.speakers)]
        emptied = sorted(engines - held_engines - {v.engine for v in voices})
        if emptied:
            raise SyntheticCorpusError(f"{', '.join(emptied)}: every voice shares a speaker with held-out "
                                       f"{', '.join(sorted(held_engines))}; leave {', '.join(emptied)} out of the engines")
    by_engine = collections.Counter(voice.engine for voice in voices)
    candidates = sorted({v.speaker for v in voices if by_engine[v.engine] >= MIN_VOICES_TO_HOLD_OUT}) \
        or sorted({v.speaker for v in voices})
    random.Random(f"{seed}/voices").shuffle(candidates)
    held = {split: (max(1, round(fraction * len(candidates))) if fraction > 0 else 0)
            for split, fraction in (("test", test_fraction), ("val", val_fraction))}
    if held["test"] + held["val"] >= len(candidates):
        raise SyntheticCorpusError(f"{len(candidates)} speakers are too few to hold out {held['val']} for validation "
                          f"and {held['test']} for test and still train on one; add synthesizers or voices")
    where = {speaker: "test" for speaker in candidates[: held["test"]]}
    where.update({speaker: "val" for speaker in candidates[held["test"]: held["test"] + held["val"]]})
    result = {split: [v for v in voices if {where.get(s, "train") for s in v.speakers} == {split}] for split in SPLITS}
    if held_engines:
        result[HOLDOUT_SPLIT] = held_out
    return result


def split_text(pool: Sequence[Sentence], val_fraction: float, test_fraction: float) -> Dict[str, List[Sentence]]:
    """Disjoint sentence pools: test takes the first share of the (shuffled) pool, val the next."""
    n_test = math.ceil(test_fraction * len(pool)) if test_fraction > 0 else 0
    n_val = math.ceil(val_fraction * len(pool)) if val_fraction > 0 else 0
    if len(pool) - n_test - n_val < 1:
        raise SyntheticCorpusError(f"{len(pool)} sentences are too few to split into train, val and test")
    return {"test": list(pool[:n_test]), "val": list(pool[n_test: n_test + n_val]),
            "train": list(pool[n_test + n_val:])}


class _Planner:
    """Utterance `index` of a split, computed from the seed alone, so it is the same in every run."""

    def __init__(self, output_dir: str, voices: Dict[str, List[Voice]], text: Dict[str, List[Sentence]],
                 engine_weights: Mapping[str, float], seed: int):
        self.output_dir, self.text, self.seed = output_dir, text, seed
        self.voices: Dict[str, Dict[str, List[Voice]]] = {}
        for split, split_voices_ in voices.items():
            grouped: Dict[str, List[Voice]] = collections.defaultdict(list)
            for voice in split_voices_:
                if engine_weights.get(voice.engine, 0) > 0:
                    grouped[voice.engine].append(voice)
            self.voices[split] = dict(sorted(grouped.items()))
        self.weights = engine_weights
        self._orders: Dict[Tuple[str, int], List[Sentence]] = {}
        self._warned = set()

    def _sentence(self, split: str, index: int) -> Sentence:
        pool = self.text[split]
        cycle, position = divmod(index, len(pool))
        if cycle > 0 and split not in self._warned:
            self._warned.add(split)
            logger.warning("%s: more utterances than its %d sentences; sentences repeat with other voices",
                           split, len(pool))
        if (split, cycle) not in self._orders:
            order = list(pool)
            if cycle:
                random.Random(f"{self.seed}/{split}/cycle{cycle}").shuffle(order)
            self._orders = {(split, cycle): order}  # only the current cycle is needed
        return self._orders[(split, cycle)][position]

    def __call__(self, split: str, index: int) -> PlannedUtterance:
        rng = random.Random(f"{self.seed}/{split}/{index}")
        engines = list(self.voices[split])
        engine = rng.choices(engines, weights=[self.weights[e] for e in engines])[0]
        voice = rng.choice(self.voices[split][engine])
        sentence = self._sentence(split, index)
        prosody = random_prosody(voice, rng)
        keep, peak = round(rng.uniform(*KEEP_SILENCE), 3), round(rng.uniform(*PEAK_LEVEL), 3)
        key = json.dumps([PLAN_VERSION, voice.id, sentence.spoken, asdict(prosody), keep, peak])
        uid = f"{split}-{index:06d}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"
        path = os.path.join(self.output_dir, "audio", split, f"{index // FILES_PER_FOLDER:03d}", f"{uid}.wav")
        job = RenderJob(sentence.spoken, voice, prosody, path, keep, peak)
        return PlannedUtterance(uid, split, index, sentence, job)


def finished_duration(path: str) -> Optional[float]:
    """Duration of an already rendered 16 kHz mono file, or None when it is missing or unusable."""
    if not os.path.isfile(path):
        return None
    try:
        info = sf.info(path)
    except (sf.LibsndfileError, RuntimeError):
        logger.warning("%s: unreadable, rendering it again", path)
        return None
    if info.samplerate != SAMPLE_RATE or info.channels != 1 or info.frames == 0:
        logger.warning("%s: not 16 kHz mono audio, rendering it again", path)
        return None
    return info.frames / info.samplerate


def _remove_partials(audio_dir: str) -> int:
    removed = 0
    for folder, _, names in os.walk(audio_dir):
        for name in names:
            if name.endswith(".partial.wav"):
                os.unlink(os.path.join(folder, name))
                removed += 1
    return removed


class _InlineExecutor:
    """Runs jobs in this process, for workers=1 (and easier debugging)."""

    def submit(self, function, *args) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        try:
            future.set_result(function(*args))
        except Exception as error:  # handed to the caller through the future, like a pool would
            future.set_exception(error)
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


def _executor(workers: int):
    if workers <= 1:
        return _InlineExecutor()
    # forkserver: workers start from a clean process importing only the light tts module, which is
    # safe even when the caller has torch's thread pools running (fork is not).
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload(["deepspeech_pytorch.corpora.tts"])
    return concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context)


@dataclass
class _Tally:
    synthesized: int = 0
    synthesized_seconds: float = 0.0
    reused: int = 0
    failed: int = 0


def _render_split(split: str, plan: _Planner, executor, workers: int, count: Optional[int],
                  seconds: Optional[float], bar: tqdm, tally: _Tally) -> List[Tuple[PlannedUtterance, float]]:
    """Utterances 0, 1, 2... of a split, in order, until `count` utterances or `seconds` of audio.

    Jobs run ahead in a window, but results are taken in plan order, so where the split stops does
    not depend on which worker finished first. Jobs past the stop may finish; their files stay on
    disk and are reused if a later build asks for more.
    """
    results: List[Tuple[PlannedUtterance, float]] = []
    pending: Deque[Tuple[PlannedUtterance, Optional[concurrent.futures.Future], Optional[float]]] = collections.deque()
    total, index, window, last_error = 0.0, 0, max(4, 8 * workers), ""

    def done() -> bool:
        return (count is not None and len(results) >= count) or (seconds is not None and total >= seconds)

    while not done():
        while len(pending) < window and (count is None or len(results) + len(pending) < count):
            planned = plan(split, index)
            index += 1
            duration = finished_duration(planned.job.path)
            future = executor.submit(render, planned.job) if duration is None else None
            pending.append((planned, future, duration))
        planned, future, duration = pending.popleft()
        if future is None:
            tally.reused += 1
        else:
            try:
                duration = future.result()
            except SynthesisError as error:
                tally.failed += 1
                last_error = str(error)
                logger.warning("%s: skipped: %s", planned.id, error)
                if tally.failed > 10 and tally.failed > 0.1 * (tally.synthesized + tally.failed):
                    raise SyntheticCorpusError(
                        f"synthesis keeps failing ({tally.failed} utterances); last: {last_error}") from None
                continue
            tally.synthesized += 1
            tally.synthesized_seconds += duration
        results.append((planned, duration))
        total += duration
        bar.update(round(duration, 2) if seconds is not None else 1)
    for _, future, _ in pending:
        if future is not None:
            future.cancel()
    return results


def write_training_text(sentences: Sequence[Sentence], path: str) -> int:
    """The whole training sentence pool, one sentence a line: text for a language model that has
    never seen a validation or test sentence (far more text than the synthesized utterances use)."""
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        for sentence in sentences:
            handle.write(sentence.text + "\n")
    os.replace(path + ".tmp", path)
    return len(sentences)


def _split_targets(hours: Optional[float], utterances: Optional[int], val_fraction: float,
                   test_fraction: float, holdout: bool = False) -> Dict[str, Tuple[Optional[int], Optional[float]]]:
    """(utterances, seconds) per split, one of them None; HOLDOUT_SPLIT, when asked, is as big as test, on top."""
    targets = _main_split_targets(hours, utterances, val_fraction, test_fraction)
    if holdout:
        if test_fraction <= 0:
            raise ValueError("holding out an engine needs test sentences: test_fraction must be positive")
        targets[HOLDOUT_SPLIT] = targets["test"]
    return targets


def _main_split_targets(hours: Optional[float], utterances: Optional[int], val_fraction: float,
                        test_fraction: float) -> Dict[str, Tuple[Optional[int], Optional[float]]]:
    if (hours is None) == (utterances is None):
        raise ValueError("give exactly one of hours or utterances")
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError("val_fraction and test_fraction must be in [0, 1) and sum to less than 1")
    fractions = {"val": val_fraction, "test": test_fraction}
    if utterances is not None:
        counts = {s: (max(1, round(utterances * f)) if f > 0 else 0) for s, f in fractions.items()}
        counts["train"] = utterances - counts["val"] - counts["test"]
        if counts["train"] < 1:
            raise ValueError(f"{utterances} utterances leave none for training")
        return {split: (counts[split], None) for split in SPLITS}
    if hours <= 0:
        raise ValueError("hours must be positive")
    seconds = {s: hours * 3600 * f for s, f in fractions.items()}
    seconds["train"] = hours * 3600 - seconds["val"] - seconds["test"]
    return {split: (None, seconds[split]) for split in SPLITS}


def build_corpus(output_dir: str, hours: Optional[float] = None, utterances: Optional[int] = None,
                 text_source: Union[str, Sequence[Union[str, TextSource]]] = "debian",
                 engines: Sequence[str] = ENGINES, seed: int = 0, workers: int = os.cpu_count() or 1,
                 val_fraction: float = 0.05, test_fraction: float = 0.05, progress: bool = True,
                 engine_weights: Optional[Mapping[str, float]] = None,
                 alphabet: Optional[Alphabet] = None, holdout_engines: Sequence[str] = ()) -> dict:
    """Synthesize a corpus into output_dir: audio/, {train,val,test}.jsonl, metadata.jsonl, voices.json, summary.json.

    Give `hours` (of audio, all splits together) or `utterances`. `text_source` is "debian" (fortunes,
    WordNet examples, the King James Bible and GCIDE quotations), "grid" (a small command grammar),
    a source name, or a text file with one sentence per line. `holdout_engines` (among `engines`)
    speak only in an extra engine_test.jsonl, as large as the test split, on test sentences.
    Returns the summary dict, which also lists the manifest paths under "manifests".
    """
    started = time.monotonic()
    engines = list(dict.fromkeys(engines))
    holdout_engines = list(dict.fromkeys(holdout_engines))
    unknown = [engine for engine in engines + holdout_engines if engine not in ENGINES]
    if unknown:
        raise ValueError(f"unknown synthesizers {unknown}; choose from {list(ENGINES)}")
    engines += [engine for engine in holdout_engines if engine not in engines]
    targets = _split_targets(hours, utterances, val_fraction, test_fraction, holdout=bool(holdout_engines))
    weights = dict(engine_weights or DEFAULT_ENGINE_WEIGHTS)
    for engine in engines:
        weights.setdefault(engine, 1.0)
        if weights[engine] <= 0:
            raise ValueError(f"engine weight for {engine} must be positive")
    weights = {engine: weights[engine] for engine in engines}

    voices = list_voices(engines)  # raises SynthesizerMissing naming the apt packages
    assert not any(is_reserved(v.id) for v in voices), "a reserved voice reached the voice list"
    by_split = split_voices(voices, val_fraction, test_fraction, seed, holdout_engines)
    splits_used = tuple(by_split)  # SPLITS, then HOLDOUT_SPLIT when an engine is held out
    per_source = gather_sentences(text_source, alphabet or Alphabet(oov_policy="error"))
    text = split_text(interleave(per_source, seed), val_fraction, test_fraction)
    if holdout_engines:
        text[HOLDOUT_SPLIT] = text["test"]

    output_dir = os.path.abspath(output_dir)
    audio_dir = os.path.join(output_dir, "audio")
    os.makedirs(audio_dir, exist_ok=True)
    write_training_text(text["train"], os.path.join(output_dir, TRAINING_TEXT))
    removed = _remove_partials(audio_dir)
    if removed:
        logger.info("removed %d half-written files left by an interrupted build", removed)
    planner = _Planner(output_dir, by_split, text, weights, seed)
    active = [split for split in splits_used if (targets[split][0] or targets[split][1] or 0) > 0]
    logger.info("building %s: %s, %d voices, %d sentences, %d workers", output_dir,
                f"{hours} h" if hours is not None else f"{utterances} utterances", len(voices),
                sum(len(pool) for pool in text.values()), workers)

    for split in active:
        if not planner.voices[split]:
            raise SyntheticCorpusError(f"no {split} voices: its speakers all belong to engines weighted 0 ({weights})")
    tally = _Tally()
    rendering = time.monotonic()
    rendered: Dict[str, List[Tuple[PlannedUtterance, float]]] = {}
    total = sum((targets[s][0] if utterances is not None else targets[s][1]) for s in active)
    executor = _executor(workers)
    try:
        with tqdm(total=round(total, 2), unit="utt" if utterances is not None else "s", desc="synthesizing",
                  disable=not progress, dynamic_ncols=True) as bar:
            for split in active:
                count, seconds = targets[split]
                rendered[split] = _render_split(split, planner, executor, workers, count, seconds, bar, tally)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
    rendering = time.monotonic() - rendering

    manifests, splits = {}, {}
    metadata_path = os.path.join(output_dir, "metadata.jsonl")
    with open(metadata_path + ".tmp", "w", encoding="utf-8") as metadata:
        for split in active:
            items = rendered[split]
            for planned, _ in items:
                assert not is_reserved(planned.job.voice.id), f"reserved voice {planned.job.voice.id} in the corpus"
            manifests[split] = os.path.join(output_dir, f"{split}.jsonl")
            write_manifest(manifests[split], [ManifestEntry(p.job.path, p.sentence.text, d, p.id) for p, d in items])
            for planned, duration in items:
                job = planned.job
                metadata.write(json.dumps({
                    "id": planned.id, "split": split, "audio_filepath": os.path.relpath(job.path, output_dir),
                    "text": planned.sentence.text, "spoken": job.text, "source": planned.sentence.source,
                    "duration": round(duration, 4), "engine": job.voice.engine, "voice": job.voice.id,
                    "speaker": job.voice.speaker, **asdict(job.prosody), "keep": job.keep, "peak": job.peak,
                }) + "\n")
            splits[split] = {
                "utterances": len(items),
                "hours": round(sum(d for _, d in items) / 3600, 4),
                "voices": len({p.job.voice.id for p, _ in items}),
                "speakers": len({p.job.voice.speaker for p, _ in items}),
                "engines": dict(sorted(collections.Counter(p.job.voice.engine for p, _ in items).items())),
                "sentences": len({p.sentence.text for p, _ in items}),
                "vocabulary": len(vocabulary(p.sentence.text for p, _ in items)),
            }
    os.replace(metadata_path + ".tmp", metadata_path)
    voices_path = os.path.join(output_dir, "voices.json")  # which voices each split may use
    with open(voices_path + ".tmp", "w", encoding="utf-8") as handle:
        json.dump({split: [v.id for v in by_split[split]] for split in splits_used}, handle, indent=1)
    os.replace(voices_path + ".tmp", voices_path)

    elapsed = time.monotonic() - started
    everything = [planned for split in active for planned, _ in rendered[split]]
    summary = {
        "output_dir": output_dir,
        "manifests": manifests,
        "metadata": metadata_path,
        "voices": voices_path,
        "text_source": text_source if isinstance(text_source, str) else [getattr(s, "name", s) for s in text_source],
        "engines": engines,
        "holdout_engines": holdout_engines,
        "seed": seed,
        "utterances": len(everything),
        "hours": round(sum(s["hours"] for s in splits.values()), 4),
        "vocabulary": len(vocabulary(p.sentence.text for p in everything)),
        "splits": splits,
        "by_engine": _by_engine(rendered),
        "synthesized": tally.synthesized,
        "reused": tally.reused,
        "failed": tally.failed,
        "seconds": round(elapsed, 2),
        "render_seconds": round(rendering, 2),
        # audio seconds rendered per wall-clock second of the rendering loop (all workers together)
        "synthesis_speed": round(tally.synthesized_seconds / rendering, 2) if tally.synthesized else 0.0,
    }
    with open(os.path.join(output_dir, "summary.json.tmp"), "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2)
    os.replace(os.path.join(output_dir, "summary.json.tmp"), os.path.join(output_dir, "summary.json"))
    logger.info("corpus %s: %.2f h in %d utterances (%d new, %d reused) in %.0f s",
                output_dir, summary["hours"], summary["utterances"], tally.synthesized, tally.reused, elapsed)
    return summary


def _by_engine(rendered: Mapping[str, Sequence[Tuple[PlannedUtterance, float]]]) -> Dict[str, Dict[str, dict]]:
    """engine -> split -> utterances, hours, voices and speakers: what each synthesizer contributed where."""
    table: Dict[str, Dict[str, dict]] = {}
    for split, items in rendered.items():
        for engine in sorted({p.job.voice.engine for p, _ in items}):
            mine = [(p, d) for p, d in items if p.job.voice.engine == engine]
            table.setdefault(engine, {})[split] = {
                "utterances": len(mine),
                "hours": round(sum(d for _, d in mine) / 3600, 4),
                "voices": len({p.job.voice.id for p, _ in mine}),
                "speakers": len({p.job.voice.speaker for p, _ in mine}),
            }
    return dict(sorted(table.items()))


def format_summary(summary: dict) -> str:
    """A few human-readable lines for the CLI."""
    lines = [f"corpus {summary['output_dir']}: {summary['hours']:.3f} h, {summary['utterances']} utterances, "
             f"vocabulary {summary['vocabulary']} words, built in {summary['seconds']:.0f} s "
             f"({summary['synthesized']} synthesized at {summary['synthesis_speed']:.1f} audio s/s, "
             f"{summary['reused']} reused, {summary['failed']} failed)"]
    width = max((len(split) for split in summary["splits"]), default=5)
    for split, stats in summary["splits"].items():
        engines = ", ".join(f"{engine} {n}" for engine, n in stats["engines"].items())
        lines.append(f"  {split:{width}s} {stats['hours']:8.3f} h {stats['utterances']:7d} utterances "
                     f"{stats['voices']:4d} voices {stats['vocabulary']:6d} words  ({engines})"
                     f"  -> {summary['manifests'][split]}")
    if summary.get("holdout_engines"):
        lines.append(f"  held out of train/val/test: {', '.join(summary['holdout_engines'])} (only in {HOLDOUT_SPLIT})")
    for engine, per_split in summary.get("by_engine", {}).items():
        parts = ", ".join(f"{split} {stats['hours']:.3f} h / {stats['voices']} voices" for split, stats in per_split.items())
        lines.append(f"  {engine:10s} {parts}")
    return "\n".join(lines)
