"""A root script's config for a plain command line, composed without Hydra: the same DictConfig Hydra's
`@hydra.main` hands the script, built in a few milliseconds instead of the 0.2 s of CPU (and 8 MB) Hydra
takes to import itself, register every script's configs and compose this one twice (benchmarks/startup.py:
transcribe.py with ONNX Runtime, greedy, 0.56 s -> 0.35 s on 2 CPUs).

"Plain" is what people type to transcribe: settings `key=value` (the files given as arguments are such a
setting once cli.prepare_arguments has read the command line). For that, Hydra's result is the script's
schema with each override applied by `OmegaConf.update(config, key, value, merge=True)` in struct mode, and
that is what `compose` builds, reading values by Hydra's override grammar (quoted strings with their
escapes, numbers, booleans, null, `[...]` lists).

Anything else is Hydra's to read, and `compose` answers None for it, so the script runs Hydra as before
and the user sees exactly what Hydra does: an option (`--help`, `--cfg job`, `-m`, `--config-name`),
`+key=`/`~key`, a `hydra.*` setting, a group or a whole section (`decoder={...}`), a sweep (`a,b`), an
interpolation (`${...}`), whitespace or escapes outside quotes, a value the schema refuses (Hydra's error
then names it), a `<name>.yaml` in the script's config folder, or installed Hydra plugins (they may add
config search paths). tests/test_quick_config.py composes many command lines both ways and compares.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import traceback
import types
from typing import Any, Callable, List, Optional, Sequence, Tuple

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from deepspeech_pytorch.configs import settings_of

# Hydra's override grammar (hydra/grammar/OverrideLexer.g4), for values that are one token
_UNSIGNED = r"(?:0|[1-9](?:_?[0-9])*)"
_DIGITS = r"[0-9](?:_?[0-9])*"
_POINT = rf"(?:{_UNSIGNED}\.|{_UNSIGNED}?\.{_DIGITS})"
_INT = re.compile(rf"[+-]?{_UNSIGNED}")
_FLOAT = re.compile(rf"[+-]?(?:{_POINT}|(?:{_UNSIGNED}|{_POINT})[eE][+-]?{_DIGITS}|[Ii][Nn][Ff]|[Nn][Aa][Nn])")
_BOOL = re.compile(r"[Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]")
_NULL = re.compile(r"[Nn][Uu][Ll][Ll]")
# characters an unquoted value may hold here: letters, digits, `_` and the grammar's UNQUOTED_CHAR and `:`
# except `$` (interpolations) and `\` (escapes); any sequence of them reads back as itself
_UNQUOTED = re.compile(r"[A-Za-z0-9_/\-+.%*@?|:]+")
_QUOTES = "'\""


# The scripts whose config `compose` builds: their primary config is the schema alone (train.py's also picks a
# `model` group), and tests/test_quick_config.py checks the result against Hydra's for them.
QUICK_CONFIGS = ("transcribe",)


class NotPlain(Exception):
    """A command line (or value) that Hydra must read itself."""


def _closing_quote(text: str, start: int) -> int:
    """The index of the quote that closes the one at `start`: the first same quote after it with an even
    number of backslashes (none included) right before it."""
    quote = text[start]
    index = start + 1
    while True:
        index = text.find(quote, index)
        if index < 0:
            raise NotPlain(text)
        backslashes = len(text[start + 1:index]) - len(text[start + 1:index].rstrip("\\"))
        if backslashes % 2 == 0:
            return index
        index += 1


def _unescape(body: str, quote: str) -> str:
    """A quoted value's text as Hydra reads it: a run of n backslashes before a quote (or the end) stands for
    n // 2 backslashes; backslashes elsewhere are themselves."""
    return re.sub(r"(\\+)(?=" + re.escape(quote) + r"|\Z)", lambda match: match.group(1)[: len(match.group(1)) // 2],
                  body)


def _primitive(text: str) -> Any:
    """One unquoted value: int, float, bool, None or the text itself, as Hydra's grammar types it."""
    if not _UNQUOTED.fullmatch(text):
        raise NotPlain(text)
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    if _BOOL.fullmatch(text):
        return text.lower() == "true"
    if _NULL.fullmatch(text):
        return None
    return text


def _element(text: str, start: int, stops: str) -> Tuple[Any, int]:
    """The value that starts at `start` and ends before one of `stops` (or the end); and where it ends."""
    if start < len(text) and text[start] in _QUOTES:
        end = _closing_quote(text, start)
        if end + 1 < len(text) and text[end + 1] not in stops:
            raise NotPlain(text)
        return _unescape(text[start + 1:end], text[start]), end + 1
    end = start
    while end < len(text) and text[end] not in stops:
        end += 1
    return _primitive(text[start:end]), end


def parse_value(text: str) -> Any:
    """A value after `key=` as Hydra's override parser reads it (quoted strings as plain strings), for the forms
    `compose` takes; NotPlain for any other."""
    if "${" in text:
        raise NotPlain(text)
    if text.startswith("[") and text.endswith("]"):
        items: List[Any] = []
        index = 1
        while index < len(text) - 1:
            item, index = _element(text, index, ",]")
            items.append(item)
            if text[index] == ",":
                index += 1
                if index == len(text) - 1:  # a trailing comma
                    raise NotPlain(text)
        return items
    value, end = _element(text, 0, "")
    if end != len(text):
        raise NotPlain(text)
    return value


def compose(schema: type, arguments: Sequence[str], config_name: str,
            config_dir: Optional[str] = None) -> Optional[DictConfig]:
    """The config Hydra would hand the script for `arguments` (after cli.prepare_arguments), or None when Hydra
    must compose it (see the module docstring). `config_dir`: the script's Hydra config folder, if any."""
    if config_name not in QUICK_CONFIGS:
        return None
    if config_dir is not None and (not os.path.isdir(config_dir)
                                   or any(os.path.exists(os.path.join(config_dir, config_name + suffix))
                                          for suffix in (".yaml", ".yml"))):
        return None
    if importlib.util.find_spec("hydra_plugins") is not None:
        return None
    settings = settings_of(schema)
    config = OmegaConf.structured(schema)
    OmegaConf.set_struct(config, True)
    try:
        for argument in arguments:
            key, equals, text = argument.partition("=")
            if not equals or key not in settings:
                return None
            OmegaConf.update(config, key, parse_value(text), merge=True)
    except (NotPlain, OmegaConfBaseException, ValueError):
        return None
    return config


def _report_crash(error: Exception) -> None:
    """A failure inside the script, printed as Hydra prints one: the traceback from the script's function on, up
    to the first frame inside OmegaConf, then Hydra's hint; exit status 1. With HYDRA_FULL_ERROR=1 or under a
    debugger it is raised as it is."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1" or sys.gettrace() is not None:
        raise error
    frames = []
    entry = error.__traceback__.tb_next if error.__traceback__ is not None else None  # from the runner on
    while entry is not None and not str(entry.tb_frame.f_globals.get("__name__", "")).startswith("omegaconf."):
        frames.append(entry)
        entry = entry.tb_next
    trimmed = None
    for entry in reversed(frames):
        trimmed = types.TracebackType(trimmed, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
    traceback.print_exception(type(error), error, trimmed)
    sys.stderr.write("\nSet the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.\n")
    sys.exit(1)


def run(runner: Callable[[DictConfig], Any], schema: type, config_name: str,
        config_dir: Optional[str] = None, arguments: Optional[Sequence[str]] = None) -> bool:
    """Run `runner` with the config of `arguments` (default: sys.argv[1:], prepared) when `compose` can build it
    and return True; False (nothing run) when Hydra must."""
    arguments = list(sys.argv[1:] if arguments is None else arguments)
    config = compose(schema, arguments, config_name, config_dir)
    if config is None:
        return False
    try:
        runner(config)
    except Exception as error:  # noqa: BLE001  a crash is shown as under @hydra.main
        sys.stderr.write(f"Error executing job with overrides: {arguments}{os.linesep}")
        _report_crash(error)
    return True
