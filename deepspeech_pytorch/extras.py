"""Optional dependencies (the package's pip extras): imported where first needed, and missing ones named in one line.

The base install transcribes exported (.onnx) models with ONNX Runtime; PyTorch (`torch` extra), the server's
FastAPI and uvicorn (`server`) and beam search's flashlight-text (`lm`) are extras. `require(...)` imports one
and, when this installation lacks it, raises MissingExtraError (an ImportError) whose message names what needed
it and the pip command that adds it:

    backend=torch needs PyTorch, which is not installed here: pip install 'deepspeech-pytorch[torch]'
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import Optional

PACKAGE = "deepspeech-pytorch"  # the distribution name pip installs extras of
# Top-level module -> (its extra, what the user knows it as). The CLI turns a ModuleNotFoundError for one
# of these into the one-line error too (cli.reports_user_errors), in case a code path missed require().
OPTIONAL_MODULES = {
    "torch": ("torch", "PyTorch"),
    "torchaudio": ("torch", "torchaudio"),
    "fastapi": ("server", "FastAPI (the server extra)"),
    "uvicorn": ("server", "uvicorn (the server extra)"),
    "starlette": ("server", "Starlette (the server extra)"),
    "multipart": ("server", "python-multipart (the server extra)"),
    "python_multipart": ("server", "python-multipart (the server extra)"),
    "flashlight": ("lm", "flashlight-text (the lm extra)"),
}


class MissingExtraError(ImportError):
    """An optional dependency this installation lacks; the message says what needed it and how to install it."""


def available(module: str) -> bool:
    """Whether `module` can be imported here, found without importing it (importing torch takes seconds)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or sys.modules[module] set to None
        return False


def install_hint(module: str) -> str:
    """`pip install '<package>[<extra>]'` for an optional top-level module."""
    extra = OPTIONAL_MODULES[module.partition(".")[0]][0]
    return f"pip install '{PACKAGE}[{extra}]'"


def missing_message(module: str, purpose: str, hint: Optional[str] = None) -> str:
    """One line: `<purpose> needs <what>, which is not installed here: pip install '...[extra]'[; <hint>]`."""
    top = module.partition(".")[0]
    what = OPTIONAL_MODULES[top][1]
    return f"{purpose} needs {what}, which is not installed here: {install_hint(top)}" + (f"; {hint}" if hint else "")


def missing_module(error: BaseException) -> Optional[str]:
    """The optional top-level module (a key of OPTIONAL_MODULES) whose absence raised `error`, else None:
    a ModuleNotFoundError raised inside an installed package (a broken install) is not ours to rephrase."""
    if not isinstance(error, ModuleNotFoundError) or not error.name:
        return None
    top = error.name.partition(".")[0]
    if top not in OPTIONAL_MODULES or available(top):
        return None
    return top


def ensure(module: str, purpose: str, hint: Optional[str] = None) -> None:
    """MissingExtraError naming `purpose` when the optional `module` is not installed; nothing otherwise, and
    nothing imported (a command checks its extras first and still answers a mistyped setting at once)."""
    if not available(module):
        raise MissingExtraError(missing_message(module, purpose, hint), name=module.partition(".")[0])


def require(module: str, purpose: str, hint: Optional[str] = None) -> ModuleType:
    """Import `module` (one of OPTIONAL_MODULES, or a submodule of one) and return it; MissingExtraError naming
    `purpose` (the setting or command that needs it: "backend=torch", "train.py") when it is not installed.
    An ImportError from inside an installed package propagates unchanged."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        top = missing_module(error)
        if top is None or top != module.partition(".")[0]:
            raise
        raise MissingExtraError(missing_message(module, purpose, hint), name=top) from error
