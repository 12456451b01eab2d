"""A base install without the torch / server extras (issue 20): every command that needs one says so in one line.

Each case runs a real subprocess in which a sitecustomize.py on PYTHONPATH blocks the optional modules
(`sys.modules['torch'] = None` makes `import torch` raise ModuleNotFoundError, as on a torch-free install),
then runs the root scripts, the console entry points and the Python API.
"""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = os.path.join(ROOT, "deepspeech_pytorch", "pretrained", "samples")
SAMPLE = os.path.join(SAMPLES, "sample1.wav")
CHECKPOINT = os.path.join(ROOT, "deepspeech_pytorch", "pretrained", "default.pt")
TORCH_HINT = "pip install 'deepspeech-pytorch[torch]'"
SERVER_HINT = "pip install 'deepspeech-pytorch[server]'"


def _blocker(folder, modules):
    """A folder holding a sitecustomize.py that makes `modules` unimportable in any Python started with it."""
    folder.mkdir(exist_ok=True)
    lines = ["import sys"] + [f"sys.modules[{name!r}] = None" for name in modules]
    (folder / "sitecustomize.py").write_text("\n".join(lines) + "\n")
    return str(folder)


@pytest.fixture(scope="module")
def no_torch(tmp_path_factory):
    return _blocker(tmp_path_factory.mktemp("no_torch"), ["torch", "torchaudio"])


@pytest.fixture(scope="module")
def no_server(tmp_path_factory):
    return _blocker(tmp_path_factory.mktemp("no_server"), ["fastapi", "uvicorn"])


def run(blocker, *args, script=None, entry=None, cwd=ROOT):
    """A root script (`script`), a console entry point (`entry`: cli's function, run as pip's wrapper runs it, under
    its own name) or `python -c` code (args[0]), with the blocker's sitecustomize first on the path."""
    env = {key: value for key, value in os.environ.items() if key not in ("DEEPSPEECH_DEBUG", "HYDRA_FULL_ERROR")}
    env["PYTHONPATH"] = os.pathsep.join([blocker, ROOT])
    if script is not None:
        command = [sys.executable, os.path.join(ROOT, script), *args]
    elif entry is not None:
        name, function = entry
        code = f"import sys; sys.argv[0] = {name!r}; from deepspeech_pytorch.cli import {function}; {function}()"
        command = [sys.executable, "-c", code, *args]
    else:
        command = [sys.executable, "-c", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def one_line_error(result) -> str:
    """The single `error: ...` line a failed command printed (no traceback, exit status 1)."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_the_block_works(no_torch, no_server):
    assert "ModuleNotFoundError" in run(no_torch, "import torch").stderr
    assert "ModuleNotFoundError" in run(no_server, "import fastapi").stderr


@pytest.mark.parametrize("args, named", [
    ([SAMPLE, "backend=torch"], "backend=torch"),
    ([SAMPLE, f"model_path={CHECKPOINT}"], f"model_path={CHECKPOINT}"),
    ([SAMPLE, f"model_path={CHECKPOINT}", "device=cuda"], f"model_path={CHECKPOINT}"),
    ([SAMPLE, "backend=torch", "device=cpu"], "backend=torch"),
])
def test_transcribe_with_a_checkpoint_needs_torch(no_torch, args, named):
    line = one_line_error(run(no_torch, *args, script="transcribe.py"))
    assert named in line and "needs PyTorch" in line and TORCH_HINT in line, line


def test_a_file_that_is_not_onnx_needs_torch(no_torch, tmp_path):
    other = tmp_path / "notes.txt"
    other.write_text("not a model\n")
    line = one_line_error(run(no_torch, SAMPLE, f"model_path={other}", script="transcribe.py"))
    assert f"model_path={other}" in line and TORCH_HINT in line, line


def test_a_missing_model_says_missing_before_torch(no_torch, tmp_path):
    line = one_line_error(run(no_torch, SAMPLE, f"model_path={tmp_path / 'gone.pt'}", script="transcribe.py"))
    assert "gone.pt" in line and "not found" in line and "PyTorch" not in line, line


def test_a_folder_as_model_says_folder_before_torch(no_torch, tmp_path):
    (tmp_path / "best.pt").write_bytes(b"x")
    (tmp_path / "best.ts.pt").write_bytes(b"x")  # a TorchScript export: load_model does not take it
    line = one_line_error(run(no_torch, SAMPLE, f"model_path={tmp_path}", script="transcribe.py"))
    assert "is a folder" in line and "best.pt" in line and "ts.pt" not in line and "PyTorch" not in line, line


def test_onnxruntime_still_transcribes_without_torch(no_torch):
    reference = "the one lamb thou shalt offer in the morning and the other lamb thou shalt offer at even".split()
    for extra in ([], ["backend=onnxruntime", "device=cpu"]):
        result = run(no_torch, SAMPLE, *extra, script="transcribe.py")
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        record = json.loads(result.stdout.splitlines()[0])
        assert record["model"]["backend"] == "onnxruntime"
        words = record["transcript"].split()
        assert sum(a == b for a, b in zip(words, reference)) >= 0.7 * len(reference), record["transcript"]


def test_cuda_with_onnxruntime_is_not_a_torch_error(no_torch):
    """device=cuda is checked by ONNX Runtime's providers, not by importing torch."""
    result = run(no_torch, SAMPLE, "backend=onnxruntime", "device=cuda", script="transcribe.py")
    assert "Traceback" not in result.stderr and "torch" not in result.stderr.replace("deepspeech_pytorch", ""), \
        result.stderr
    if result.returncode != 0:  # no CUDA provider here: one line saying so
        assert "CUDA" in one_line_error(result)


@pytest.mark.parametrize("script, args", [
    ("train.py", []),
    ("test.py", ["test_manifest=manifest.jsonl"]),
    ("export.py", []),
    ("benchmark.py", ["mode=profile"]),
    ("benchmark.py", []),
])
def test_torch_commands_name_themselves(no_torch, script, args):
    line = one_line_error(run(no_torch, *args, script=script))
    assert line == f"error: {script} needs PyTorch, which is not installed here: {TORCH_HINT}", line


def test_a_mistyped_setting_is_still_named_first(no_torch):
    line = one_line_error(run(no_torch, "batch_sise=3", script="test.py"))
    assert "batch_sise" in line and "PyTorch" not in line, line


@pytest.mark.parametrize("name, function, args", [
    ("deepspeech-train", "train_main", []),
    ("deepspeech-test", "test_main", ["test_manifest=manifest.jsonl"]),
    ("deepspeech-export", "export_main", []),
    ("deepspeech-benchmark", "benchmark_main", ["mode=profile"]),
])
def test_console_entry_points_name_themselves(no_torch, tmp_path, name, function, args):
    line = one_line_error(run(no_torch, *args, entry=(name, function), cwd=str(tmp_path)))
    assert line.startswith(f"error: {name} needs PyTorch") and TORCH_HINT in line, line


def test_console_transcribe_with_backend_torch(no_torch, tmp_path):
    line = one_line_error(run(no_torch, SAMPLE, "backend=torch", entry=("deepspeech-transcribe", "transcribe_main"),
                              cwd=str(tmp_path)))
    assert "backend=torch" in line and TORCH_HINT in line, line


@pytest.mark.parametrize("how", ["script", "entry"])
def test_server_without_the_server_extra(no_server, tmp_path, how):
    if how == "script":
        result = run(no_server, "port=1", script="server.py")
        name = "server.py"
    else:
        result = run(no_server, "port=1", entry=("deepspeech-server", "server_main"), cwd=str(tmp_path))
        name = "deepspeech-server"
    line = one_line_error(result)
    assert line.startswith(f"error: {name} needs FastAPI") and SERVER_HINT in line, line


def test_server_with_a_checkpoint_without_torch(no_torch):
    line = one_line_error(run(no_torch, f"model_path={CHECKPOINT}", "port=1", script="server.py"))
    assert f"model_path={CHECKPOINT}" in line and TORCH_HINT in line, line


PYTHON_API = """
import deepspeech_pytorch
from deepspeech_pytorch.extras import MissingExtraError
from deepspeech_pytorch.onnx_backend import ModelFileError
try:
    deepspeech_pytorch.load_model(backend="torch")
except MissingExtraError as error:
    assert isinstance(error, ImportError) and error.name == "torch"
    print("torch:", error)
try:
    deepspeech_pytorch.load_model("gone.pt")
except ModelFileError as error:
    print("missing:", error)
"""


def test_python_api_raises_an_import_error_that_says_what_to_install(no_torch, tmp_path):
    result = run(no_torch, PYTHON_API, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("torch: backend=torch needs PyTorch") and TORCH_HINT in lines[0], lines
    assert lines[1] == "missing: gone.pt: checkpoint not found", lines


def test_serving_package_without_fastapi(no_server, tmp_path):
    code = ("from deepspeech_pytorch.extras import MissingExtraError\n"
            "try:\n    import deepspeech_pytorch.serving\n"
            "except MissingExtraError as error:\n    print(error)\n")
    result = run(no_server, code, cwd=str(tmp_path))
    assert result.returncode == 0 and SERVER_HINT in result.stdout, result.stdout + result.stderr


def test_a_broken_torch_is_not_reported_as_missing(tmp_path):
    """An ImportError from inside an installed torch is a real fault: its traceback shows, not an install hint."""
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("import a_module_torch_lost_xyz\n")
    result = run(str(tmp_path), SAMPLE, "backend=torch", script="transcribe.py")
    assert result.returncode != 0 and "a_module_torch_lost_xyz" in result.stderr, result.stderr
    assert "deepspeech-pytorch[torch]" not in result.stderr, result.stderr


def test_backstop_names_the_script_when_a_module_imports_torch_unchecked(no_torch, tmp_path):
    """noise_inject.py has no check of its own: its augment module imports torch, and the CLI boundary turns that
    ModuleNotFoundError (of a known optional module) into the same one line."""
    out = tmp_path / "noisy.wav"
    line = one_line_error(run(no_torch, f"input_path={SAMPLE}", f"noise_path={os.path.join(SAMPLES, 'sample2.wav')}",
                              f"output_path={out}", script="noise_inject.py"))
    assert line == f"error: noise_inject.py needs PyTorch, which is not installed here: {TORCH_HINT}", line
    assert not out.exists()
