"""tools/gpu_kit.sh hold / release: the large tracked files leave git's index and the folder before a device
call (the call carries at most 64 MiB of tree) and come back staged as they were, in a scratch repository."""

import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LARGE = ["deepspeech_pytorch/pretrained/default.pt", "deepspeech_pytorch/pretrained/default.int8.onnx",
         "deepspeech_pytorch/pretrained/default.lm.bin"]


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def repo(tmp_path):
    repo = tmp_path / "repo"
    (repo / "tools").mkdir(parents=True)
    shutil.copy(os.path.join(ROOT, "tools", "gpu_kit.sh"), repo / "tools" / "gpu_kit.sh")
    for number, path in enumerate(LARGE + ["README.md"]):
        os.makedirs(repo / os.path.dirname(path), exist_ok=True)
        (repo / path).write_bytes(os.urandom(1000 + number))
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "start")
    return repo


def kit(repo, mode, held):
    return subprocess.run(["bash", "tools/gpu_kit.sh", mode], cwd=repo, capture_output=True, text=True,
                          env={**os.environ, "HELD": str(held)})


def test_hold_takes_them_out_of_index_and_folder_and_release_brings_them_back(repo, tmp_path):
    before = {path: (repo / path).read_bytes() for path in LARGE}
    held = tmp_path / "held"
    result = kit(repo, "hold", held)
    assert result.returncode == 0, result.stderr
    tracked = git(repo, "ls-files").split()
    assert tracked == ["README.md", "tools/gpu_kit.sh"] and not any((repo / path).exists() for path in LARGE)
    assert all((held / path).read_bytes() == before[path] for path in LARGE)
    again = kit(repo, "hold", held)  # a second hold would mix two sets of files: refused
    assert again.returncode == 1 and again.stderr.startswith("error: ") and "not empty" in again.stderr
    result = kit(repo, "release", held)
    assert result.returncode == 0, result.stderr
    assert git(repo, "status", "--porcelain") == "" and not held.exists()
    assert all((repo / path).read_bytes() == before[path] for path in LARGE)


def test_hold_refuses_when_a_file_is_missing_and_moves_nothing(repo, tmp_path):
    git(repo, "rm", "-q", LARGE[-1])
    result = kit(repo, "hold", tmp_path / "held")
    assert result.returncode == 1 and f"error: {LARGE[-1]} is not a tracked file here" in result.stderr
    assert all((repo / path).exists() for path in LARGE[:-1]) and not (tmp_path / "held").exists()
