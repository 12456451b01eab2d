"""What the root scripts run: config in, one library call, results out; user mistakes become one-line errors.

A root script is Hydra's `main` inside `command_line(...)`, which first makes the command line safe
for Hydra (file names taken literally, transcribe.py's plain file arguments) and turns Hydra's own
errors (an unknown or mistyped setting) into one line; each `run_*` then validates every setting
(configs.validate) before loading a model or data.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import math
import os
import re
import sys
import time
from typing import Any, Callable, Dict, Iterator, List, NoReturn, Optional, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from deepspeech_pytorch.configs import (CHUNK_SECONDS, RULE, SCHEMAS, BenchmarkConfig, ConfigError, EvalConfig,
                                        ExportConfig, NoiseInjectConfig, Paths, ServerConfig, Text, TrainConfig,
                                        TranscribeConfig, first_line, model_presets, settings_of, unknown_setting,
                                        validate)
from deepspeech_pytorch.extras import MissingExtraError, ensure, missing_message, missing_module

logger = logging.getLogger("deepspeech_pytorch")

# Mistakes a user can make, reported as one line without a traceback unless DEEPSPEECH_DEBUG=1: a bad
# setting (ConfigError), file (AudioError), manifest (ManifestError), checkpoint (CheckpointError) or
# transcript (TranscriptError), all ValueErrors, and missing files. The library (torch) is imported
# only once the settings passed, so a mistyped setting is answered at once.
USER_ERRORS = (ValueError, FileNotFoundError)


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")


def _fail(message: Any) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


# ---- the command line, before Hydra --------------------------------------------------------------------

_HYDRA_QUOTED = re.compile(r"""('.*'|".*")""", re.S)


def hydra_quote(text: str) -> str:
    """`text` as a Hydra quoted value that reads back as exactly `text`: quotes and the backslashes
    before them escaped, and `${` escaped so OmegaConf does not take it for an interpolation."""
    text = re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", text)
    text = re.sub(r"(\\*)('|$)", lambda m: m.group(1) * 2 + ("\\'" if m.group(2) else ""), text)
    return f"'{text}'"


def _parse_value(value: str) -> Any:
    """A value as Hydra's override grammar reads it; ValueError when it cannot."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return OverridesParser.create().parse_override(f"key={value}").value()
    except HydraException as error:
        raise ValueError(str(error)) from None


def _literal(value: str) -> str:
    """One command-line value for a name setting, taken literally; one the user already quoted for
    Hydra ('...' or "...") is read as Hydra reads it first. null stays null (unset)."""
    if value == "null":
        return value
    if _HYDRA_QUOTED.fullmatch(value) and not os.path.exists(value):
        with contextlib.suppress(ValueError):
            parsed = _parse_value(value)
            if isinstance(parsed, str):
                value = parsed
    return hydra_quote(value)


def _literal_list(value: str) -> Optional[str]:
    """A `[a.wav,b.wav]` list of names with each item quoted; None when `value` is not a list."""
    if not (value.startswith("[") and value.endswith("]")) or os.path.exists(value):
        return None
    try:
        items = _parse_value(value)
    except ValueError:
        items = None
    if not isinstance(items, list):  # names Hydra cannot read unquoted: split at the commas
        items = [item.strip() for item in value[1:-1].split(",")] if value[1:-1].strip() else []
        items = [_parse_value(item) if _HYDRA_QUOTED.fullmatch(item) else item for item in items]
    return "[" + ",".join(hydra_quote(str(item)) for item in items) + "]"


def _hydra_options() -> Dict[str, argparse.Action]:
    from hydra._internal.utils import get_args_parser

    return {option: action for action in get_args_parser()._actions for option in action.option_strings}


def _known(key: str, settings: Sequence[str]) -> bool:
    return key in settings or key.startswith("hydra") or any(name.startswith(key + ".") for name in settings)


def prepare_arguments(arguments: Sequence[str], schema: type, positional: Optional[str] = None,
                      script: str = "the script") -> List[str]:
    """The command line as Hydra should read it.

    - name settings (paths, `Text` rules in configs.py) are quoted, so any file name works as typed:
      `audio_path=Belladonna's Red Snare.wav`, `model_path=(take 2).pt`, `report_path=dollar${x}.jsonl`;
      a list `[a.wav,b.wav]` has each item quoted;
    - with `positional` (transcribe.py: "audio_path"), arguments that are not settings are its value:
      `transcribe.py a.wav "b c.wav"` (also a file named `x=y.wav`);
    - without it, such an argument is a ConfigError saying settings are key=value.
    Hydra's own options (--cfg job, --config-name an4, -m, ...) pass through unchanged.
    """
    settings = settings_of(schema)
    # Hydra's options, read from Hydra only when an argument may be one (a plain command line never imports Hydra)
    options = _hydra_options() if any(argument.startswith("-") for argument in arguments) else {}
    flags: List[str] = []  # Hydra's options, then the overrides: argparse reads overrides only when together
    prepared: List[str] = []
    loose: List[str] = []
    loose_at = 0
    given_positional = False
    chosen_model: Optional[str] = None  # the first model=/preset= argument
    index, options_done = 0, False
    while index < len(arguments):
        argument = arguments[index]
        index += 1
        if not options_done and argument == "--":
            options_done = True
            continue
        option = options.get(argument.split("=", 1)[0]) if argument.startswith("-") and not options_done else None
        if option is None and argument.startswith("-") and not options_done and not os.path.exists(argument):
            raise ConfigError(f"unknown option {argument!r} ({_run(script)} --help lists the settings)")
        if option is not None:
            flags.append(argument)
            takes_value = option.nargs is None or (option.nargs == "?" and index < len(arguments)
                                                   and arguments[index] in (option.choices or ()))
            if takes_value and "=" not in argument and index < len(arguments):
                flags.append(arguments[index])
                index += 1
            continue
        key, equals, value = argument.partition("=")
        bare_key = key.lstrip("+~")
        if schema is TrainConfig and equals and bare_key in ("preset", "model"):  # the `model` group (was `preset`)
            names = sorted(model_presets())
            if value not in names:
                raise ConfigError(f"model={value!r}: choose from {', '.join(names)}")
            if chosen_model is not None and chosen_model != argument:
                raise ConfigError(f"{chosen_model} and {argument} both choose the model: give one")
            chosen_model = argument
            key = bare_key = "model"
            argument = f"model={value}"
        if not equals and (not argument.startswith("~") or positional and os.path.exists(argument)) \
                or (equals and not _known(bare_key, settings) and positional and os.path.exists(argument)):
            if positional is None:
                raise ConfigError(f"{argument!r} is not a setting: settings are key=value "
                                  f"({_run(script)} --help lists them)")
            if not loose:
                loose_at = len(prepared)
            loose.append(argument)
            continue
        rule = settings[bare_key].metadata.get(RULE) if bare_key in settings else None
        if equals and isinstance(rule, Text):
            given_positional = given_positional or bare_key == positional
            listed = _literal_list(value) if isinstance(rule, Paths) else None
            argument = f"{key}={listed if listed is not None else _literal(value)}"
        prepared.append(argument)
    if loose:
        if given_positional:
            raise ConfigError(f"give the files either as arguments ({loose[0]!r}) or as {positional}=..., not both")
        items = [hydra_quote(item) for item in loose]
        prepared.insert(loose_at, f"{positional}={items[0] if len(items) == 1 else '[' + ','.join(items) + ']'}")
    return flags + prepared


def _run(script: str) -> str:
    """How the user runs `script`: `python train.py`, or a console script by its name."""
    return f"python {script}" if script.endswith(".py") else script


def describe_hydra_error(error: BaseException, schema: type, script: str) -> str:
    """One line for an error Hydra raises while composing the config (before the script runs)."""
    from hydra.errors import MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    helps = f"({_run(script)} --help lists the settings)"
    cause = error.__cause__ if isinstance(error.__cause__, OmegaConfBaseException) else None
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and cause.full_key:
        return f"{unknown_setting(cause.full_key, schema)} {helps}"
    group = re.match(r"Could not override '([^']+)'\. No match in the defaults list", str(error))
    if group:  # a config group of another script (model=, preset=): Hydra's hint (+model=) leads nowhere here
        return f"{unknown_setting(group.group(1), schema)} {helps}"
    if cause is not None and cause.full_key and "is not a ListConfig, list or tuple" in str(cause):
        given = [a.split("=", 1)[1] for a in sys.argv[1:] if a.split("=", 1)[0].lstrip("+") == cause.full_key]
        value = given[-1] if given else "..."
        return f"{cause.full_key}={value} is one value where a list goes: write {cause.full_key}=[{value}]"
    if cause is not None and cause.full_key:
        return f"{cause.full_key}: {first_line(cause)}"
    if isinstance(error, MissingConfigException):  # its later lines list Hydra's search path
        return str(error).splitlines()[0]
    if isinstance(error, OverrideParseException):
        return (f"cannot read {error.override!r}: {first_line(error)}; quote the value: key='value' "
                "(and write \\' for a quote inside it)")
    return first_line(error)


_composing = False  # inside command_line, before the task starts
_we_set_full_error = False


@contextlib.contextmanager
def command_line(config_name: str, positional: Optional[str] = None) -> Iterator[None]:
    """Around a root script's Hydra `main()`: prepares sys.argv (prepare_arguments) and reports a
    mistake in the command line as one line `error: ...` with exit status 1. DEEPSPEECH_DEBUG=1 or
    HYDRA_FULL_ERROR=1 show Hydra's own report instead."""
    global _composing, _we_set_full_error
    schema = SCHEMAS[config_name]
    script = os.path.basename(sys.argv[0])
    debug = bool(os.environ.get("DEEPSPEECH_DEBUG") or os.environ.get("HYDRA_FULL_ERROR"))
    try:
        sys.argv[1:] = prepare_arguments(sys.argv[1:], schema, positional, script)
    except ConfigError as error:
        _fail(error)
    if not debug:  # Hydra then raises its errors instead of printing them over several lines
        os.environ["HYDRA_FULL_ERROR"] = "1"
        _we_set_full_error = True
    _composing = True
    try:
        yield
    except Exception as error:  # Hydra's errors, OmegaConf's, and ValueError: Hydra's option checks
        if not (_is_hydra_error(error) or isinstance(error, (OmegaConfBaseException, ValueError))) \
                or not _composing or debug:
            raise
        _fail(describe_hydra_error(error, schema, script))
    finally:
        _composing = False


def _is_hydra_error(error: BaseException) -> bool:
    """Whether `error` is one of Hydra's; never, when Hydra was not imported (quick_config composed the config)."""
    errors = sys.modules.get("hydra.errors")
    return errors is not None and isinstance(error, errors.HydraException)


def _task_started() -> None:
    """Hydra composed the config: from here errors are the task's (see command_line)."""
    global _composing, _we_set_full_error
    _composing = False
    if _we_set_full_error:
        os.environ.pop("HYDRA_FULL_ERROR", None)
        _we_set_full_error = False


def _script() -> str:
    """The command being run, as the user typed it: train.py, deepspeech-train, ..."""
    return os.path.basename(sys.argv[0])


def _needs(*modules: str) -> None:
    """The optional modules (extras.OPTIONAL_MODULES) a command needs, checked before it starts: MissingExtraError
    `<script> needs PyTorch, which is not installed here: pip install ...` for the first one missing. Imports
    nothing: a mistyped setting is still answered before torch loads."""
    for module in modules:
        ensure(module, _script())


def reports_user_errors(function: Callable) -> Callable:
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        _task_started()
        try:
            return function(*args, **kwargs)
        except USER_ERRORS as error:
            if os.environ.get("DEEPSPEECH_DEBUG"):
                raise
            _fail(error)
        except MissingExtraError as error:  # an extra this install lacks (torch, server, lm): what needs it, and pip
            if os.environ.get("DEEPSPEECH_DEBUG"):
                raise
            _fail(error)
        except ModuleNotFoundError as error:  # backstop: an optional module a code path imported without require()
            module = missing_module(error)
            if module is None or os.environ.get("DEEPSPEECH_DEBUG"):
                raise
            _fail(missing_message(module, _script()))

    return wrapper


# ---- argparse scripts -----------------------------------------------------------------------------

class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line: `error: argument --beam-size: 0 is not at least 1`."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {message} (python {self.prog} --help lists the options)", file=sys.stderr)
        sys.exit(2)


def number(kind: type = float, low: Optional[float] = None, above: Optional[float] = None,
           high: Optional[float] = None, below: Optional[float] = None) -> Callable[[str], Any]:
    """An argparse type: a finite `kind` (int or float) >= low, > above, <= high, < below."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text} is not a finite number")
        if low is not None and value < low:
            raise argparse.ArgumentTypeError(f"{text} is not at least {low:g}")
        if above is not None and not value > above:
            raise argparse.ArgumentTypeError(f"{text} is not more than {above:g}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{text} is more than {high:g}")
        if below is not None and not value < below:
            raise argparse.ArgumentTypeError(f"{text} is not less than {below:g}")
        return value

    return parse


def file_name(text: str) -> str:
    """An argparse type for a file name: not empty."""
    if not text.strip():
        raise argparse.ArgumentTypeError("give a file name")
    return text


@reports_user_errors
def run_train(config: DictConfig) -> Any:
    _needs("torch")
    validate(config, TrainConfig)
    from deepspeech_pytorch.training import model_config_for, train

    model_config_for(config)  # the model section's own checks, before any data is read
    setup_logging()
    result = train(config)
    summary = {"epochs": result.epochs_completed, "steps": result.steps, "best_wer": result.best_wer,
               "wer": result.last_wer, "cer": result.last_cer, "checkpoint_dir": result.checkpoint_dir,
               "skipped_losses": result.skipped_losses, "skipped_gradients": result.skipped_gradients,
               "skipped_too_short": len(result.skipped_too_short),
               "skipped_unreadable": len(result.skipped_unreadable)}
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one summary
        print(json.dumps(summary))
    return result


def _transcriber(config: DictConfig, batch_size: int = 8):
    from deepspeech_pytorch.inference import Transcriber, load_model

    # backend=onnxruntime (auto: for a .onnx file) runs the exported model without importing torch
    loaded = load_model(config.model_path, device=config.device, backend=config.get("backend", "auto"))
    chunk_seconds = config.get("chunk_seconds", CHUNK_SECONDS)
    decoder = OmegaConf.to_object(config.decoder) if OmegaConf.is_config(config.decoder) else config.decoder
    return Transcriber(loaded, decoder=decoder, chunk_seconds=chunk_seconds, batch_size=batch_size,
                       vad=config.get("vad", True))


def _outputs_apart(config: DictConfig, outputs: Sequence[str], inputs: Sequence[str]) -> None:
    """Refuse an output path that is an input of the run, a folder, or another output: nothing is lost."""
    given = {name: os.path.realpath(str(config[name])) for name in inputs if config.get(name)}
    written = {}
    for name in outputs:
        if not config.get(name):
            continue
        path = os.path.realpath(str(config[name]))
        if os.path.isdir(path):
            raise ConfigError(f"{name}={config[name]} is a folder: give a file name")
        for other, other_path in {**given, **written}.items():
            if path == other_path:
                raise ConfigError(f"{name}={config[name]} would overwrite {other}: give another file name")
        written[name] = path


@reports_user_errors
def run_eval(config: DictConfig) -> Any:
    _needs("torch")  # the manifest's dataset and loader run on torch, whatever the backend
    validate(config, EvalConfig)
    _outputs_apart(config, outputs=("report_path", "save_outputs"), inputs=("model_path", "test_manifest"))
    from deepspeech_pytorch.evaluation import evaluate_manifest

    setup_logging(logging.INFO if config.verbose else logging.WARNING)
    transcriber = _transcriber(config)
    result = evaluate_manifest(transcriber, config.test_manifest, config.batch_size, config.num_workers,
                               report_path=config.report_path, outputs_path=config.save_outputs,
                               skip_unreadable=config.skip_unreadable)
    if config.verbose:
        for item in result.utterances:
            print(f"REF: {item['reference']}\nHYP: {item['hypothesis']}\n", file=sys.stderr)
    counts = result.counts
    skipped = f", {len(result.skipped)} unreadable left out" if result.skipped else ""
    print(f"WER {100 * counts.wer:.2f}%  CER {100 * counts.cer:.2f}%  ({len(result.utterances)} utterances{skipped})",
          file=sys.stderr)
    groups = {}
    if config.breakdown:
        for group, group_counts in result.breakdown(config.breakdown).items():
            utterances = sum(1 for item in result.utterances if item["labels"].get(config.breakdown, "(none)") == group)
            groups[group] = {"wer": group_counts.wer, "cer": group_counts.cer, "utterances": utterances}
            print(f"  {config.breakdown}={group}: WER {100 * group_counts.wer:.2f}%  CER {100 * group_counts.cer:.2f}%"
                  f"  ({utterances} utterances)", file=sys.stderr)
    print(json.dumps({"wer": counts.wer, "cer": counts.cer, "utterances": len(result.utterances),
                      **({"breakdown": {config.breakdown: groups}} if groups else {}),
                      "skipped": len(result.skipped),
                      "word_edits": counts.word_edits, "reference_words": counts.reference_words,
                      "char_edits": counts.char_edits, "reference_chars": counts.reference_chars,
                      "model": transcriber.loaded.info}))
    return result


SKIPPED_SHOWN = 20  # skipped folder entries named one per line; beyond that, a count


def audio_paths(value: Any) -> List[str]:
    """One path or a list of them; a folder stands for the audio files directly inside it. What a
    folder listing leaves out is named on stderr, one warning line per entry, so nothing is skipped
    without a word; a folder with no audio at all is an error naming what it holds."""
    from deepspeech_pytorch.audio import scan_audio_folder

    paths = [str(v) for v in value] if isinstance(value, (list, tuple, ListConfig)) else [str(value)]
    expanded: List[str] = []
    for path in paths:
        if not os.path.isdir(path):
            expanded.append(path)
            continue
        found, skipped = scan_audio_folder(path)
        if not found:
            held = "; ".join(f"{os.path.basename(entry.path)}: {entry.reason}" for entry in skipped[:3])
            more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
            raise FileNotFoundError(f"no audio files in the folder {path}" + (f" ({held}{more})" if held else ""))
        for entry in skipped[:SKIPPED_SHOWN]:
            print(f"warning: skipped {entry.path}: {entry.reason}", file=sys.stderr)
        if len(skipped) > SKIPPED_SHOWN:
            print(f"warning: skipped {len(skipped) - SKIPPED_SHOWN} more entries of {path}", file=sys.stderr)
        expanded.extend(found)
    return expanded


def _transcript_outputs(paths: List[str], output_format: str, output_dir: Optional[str]) -> Dict[str, str]:
    """Each input's output file under output_dir (checked before the model loads); {} for stdout."""
    from deepspeech_pytorch.subtitles import output_paths

    if output_dir:
        return dict(zip(paths, output_paths(paths, output_format, output_dir)))
    if output_format != "json" and len(paths) > 1:
        raise ConfigError(f"output_format={output_format} prints one file's {output_format} on stdout, and "
                          f"{len(paths)} inputs were given: add output_dir=FOLDER to write <name>.{output_format} "
                          "for each")
    return {}


def _write_transcript(record: Dict[str, Any], result: Any, output_format: str, path: Optional[str]) -> None:
    """The JSON record, or the transcript's text or subtitles, on stdout or to `path`."""
    from deepspeech_pytorch.subtitles import format_segments, segments_of, write_output

    if output_format == "json":
        text = json.dumps(record) + "\n"
    else:
        text = format_segments(segments_of(result.text, result.words, result.duration), output_format)
    if path is None:
        print(text, end="", flush=True)
    else:
        write_output(path, text)
        print(f"wrote {path}", file=sys.stderr)


@reports_user_errors
def run_transcribe(config: DictConfig) -> int:
    """Print one JSON line per file (output_format=json), or its text or subtitles (txt, srt, vtt; one
    input, or output_dir= for <output_dir>/<name>.<format> per file), and a timing summary on stderr; a
    bad file is reported and the others still transcribed."""
    validate(config, TranscribeConfig)
    from deepspeech_pytorch.audio import AudioError

    setup_logging(logging.WARNING)
    paths = audio_paths(config.audio_path)  # a bad folder fails before the model loads
    outputs = _transcript_outputs(paths, config.output_format, config.get("output_dir"))  # and a clash of outputs
    started = time.perf_counter()
    transcriber = _transcriber(config, config.batch_size)
    load_seconds = time.perf_counter() - started
    info = transcriber.loaded.info
    decoder = type(transcriber.decoder).__name__
    failures, audio_seconds, compute_seconds = 0, 0.0, 0.0
    for path in paths:
        began = time.perf_counter()
        try:
            # subtitles are cut at the pauses between words: they need the word times
            result = transcriber.transcribe(path, word_timings=config.word_timings or config.output_format != "json")
        except AudioError as error:
            failures += 1
            print(f"error: {error}", file=sys.stderr)
            continue
        seconds = time.perf_counter() - began
        audio_seconds += result.duration
        compute_seconds += seconds
        record = {"audio_path": path, "transcript": result.text, "duration": round(result.duration, 3),
                  "seconds": round(seconds, 3), "rtf": round(seconds / max(result.duration, 1e-9), 4),
                  "words": [{"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3)} for w in result.words],
                  "model": info}
        _write_transcript(record, result, config.output_format, outputs.get(path))
    if audio_seconds > 0:
        print(f"{info['name']} ({info['architecture']}, {decoder}): {audio_seconds:.1f} s of audio in "
              f"{compute_seconds:.2f} s (RTF {compute_seconds / audio_seconds:.3f}); model loaded in "
              f"{load_seconds:.2f} s", file=sys.stderr)
    if failures:
        sys.exit(1)
    return 0


@reports_user_errors
def run_benchmark(config: DictConfig) -> Any:
    """speed: one JSON object; throughput: a table on stdout, then its rows as JSON."""
    _needs("torch")
    c = validate(config, BenchmarkConfig)
    _needs_checkpoint(c.model_path, "benchmark.py")
    from deepspeech_pytorch.benchmarking import benchmark, format_table, throughput

    if c.mode == "profile":
        from deepspeech_pytorch.audio import load_audio
        from deepspeech_pytorch.inference import PRETRAINED_DIR, load_model, resolve_device
        from deepspeech_pytorch.profiling import format_profile, profile

        loaded = load_model(c.model_path, resolve_device(c.device))
        clips = [load_audio(path, loaded.features.sample_rate)
                 for path in (audio_paths(c.profile_audio) if c.profile_audio else bundled_samples(PRETRAINED_DIR))]
        result = profile(loaded, clips, c.seconds, list(c.profile_batch_sizes), c.warmup, c.repeats)
        print(format_profile(result), flush=True)
        print(json.dumps(result))
        return result
    if c.mode == "throughput":
        rows = throughput(c.preset, list(c.batch_sizes), c.seconds, list(c.precisions), c.device, c.warmup, c.repeats,
                          c.find_largest_batch)
        if rows:
            print(format_table(rows), flush=True)
            print(json.dumps(rows))
        return rows
    figures = benchmark(c.preset, c.batch_size, c.seconds, c.device, c.warmup, c.repeats, model_path=c.model_path,
                        bundled=c.bundled)
    print(json.dumps(figures))
    return figures


@reports_user_errors
def run_noise_inject(config: DictConfig) -> float:
    c = validate(config, NoiseInjectConfig)
    _outputs_apart(config, outputs=("output_path",), inputs=("input_path", "noise_path"))
    from deepspeech_pytorch.augment import inject_noise_file

    snr = inject_noise_file(c.input_path, c.noise_path, c.output_path, c.snr_db, c.seed)
    print(f"wrote {c.output_path} (SNR {snr:.1f} dB)")
    return snr


@reports_user_errors
def run_serve(config: DictConfig) -> None:
    """Check the settings, load the model (a bad model path stops here, before the port opens), then serve
    until interrupted."""
    validate(config, ServerConfig)
    _needs("fastapi", "uvicorn")
    from deepspeech_pytorch.inference import load_model
    from deepspeech_pytorch.serving.app import LOG_LEVELS, run_server, server_settings
    from deepspeech_pytorch.serving.service import check_settings

    settings = server_settings(config)
    if settings.log_level.lower() not in LOG_LEVELS:
        raise ValueError(f"log_level={settings.log_level!r}; choose from {', '.join(LOG_LEVELS)}")
    setup_logging(getattr(logging, settings.log_level.upper(), logging.INFO))
    check_settings(settings)
    model = load_model(settings.model_path, device=settings.device, backend=settings.backend)
    stream_model = None
    if settings.streaming.model_path is not None:
        from deepspeech_pytorch.serving.streaming import check_stream_model_path

        check_stream_model_path(settings.streaming.model_path)
        try:
            stream_model = load_model(settings.streaming.model_path, device=settings.device)
        except ValueError as error:  # CheckpointError, ModelFileError: the file, and what is wrong with it
            raise ValueError(f"streaming.model_path={settings.streaming.model_path}: {error}") from None
    run_server(settings, model, stream_model)


@reports_user_errors
def bundled_samples(pretrained_dir: str) -> List[str]:
    """The bundled samples' audio files (the folder also holds their samples.jsonl references)."""
    folder = os.path.join(pretrained_dir, "samples")
    return sorted(os.path.join(folder, name) for name in os.listdir(folder) if name.endswith(".wav"))


def _needs_checkpoint(model_path: Optional[str], script: str) -> None:
    """export.py and benchmark.py work on a checkpoint: an exported model is refused in one line."""
    if model_path and str(model_path).endswith(".onnx"):
        raise ConfigError(f"model_path={model_path} is an exported ONNX model; {script} takes the checkpoint (.pt) "
                          f"it was exported from (benchmarks/backends.py times exported models)")


@reports_user_errors
def run_export(config: DictConfig) -> Any:
    """Export the model in each format, check each against the model on the check audio, print a JSON summary."""
    _needs("torch")
    validate(config, ExportConfig)
    from deepspeech_pytorch.export import export_all
    from deepspeech_pytorch.inference import PRETRAINED_DIR, load_model

    setup_logging()
    _needs_checkpoint(config.model_path, "export.py")
    check = audio_paths(config.check_audio) if config.check_audio else bundled_samples(PRETRAINED_DIR)
    calibration = audio_paths(config.calibration_audio) if config.calibration_audio else None
    results = export_all(load_model(config.model_path), config.output_dir, check, list(config.formats), calibration,
                         config.static_conv, config.int8_max_cer)
    print(json.dumps(results))
    return results


# ---- console scripts (pip install puts them on PATH; the root scripts stay for a source checkout) ----------

_ENTRY_POINTS = {"train": (run_train, None), "eval": (run_eval, None), "transcribe": (run_transcribe, "audio_path"),
                 "server": (run_serve, None), "benchmark": (run_benchmark, None), "export": (run_export, None)}


def _console(config_name: str) -> None:
    """Run one entry point as its root script does, with the configs Hydra finds in ./configs (experiment
    files such as an4.yaml) when that folder exists, else the built-in ones only. A plain command line of
    deepspeech-transcribe is composed without importing Hydra (quick_config), as transcribe.py's is."""
    from deepspeech_pytorch import quick_config

    runner, positional = _ENTRY_POINTS[config_name]
    config_dir = os.path.abspath("configs") if os.path.isdir("configs") else None

    def main(config) -> None:
        runner(config)

    with command_line(config_name, positional=positional):
        if quick_config.run(main, SCHEMAS[config_name], config_name, config_dir):
            return
        import hydra

        from deepspeech_pytorch.configs import register_configs

        register_configs()
        hydra.main(version_base="1.3", config_path=config_dir, config_name=config_name)(main)()


def train_main() -> None:
    _console("train")


def test_main() -> None:
    _console("eval")


def transcribe_main() -> None:
    _console("transcribe")


def server_main() -> None:
    _console("server")


def benchmark_main() -> None:
    _console("benchmark")


def export_main() -> None:
    _console("export")
