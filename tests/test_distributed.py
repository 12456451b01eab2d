"""DistributedDataParallel on CPU (gloo) under torchrun, and an elastic restart after a killed worker."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from omegaconf import OmegaConf

from deepspeech_pytorch.configs import TrainConfig
from deepspeech_pytorch.training import Trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def doubled_corpus(speech_corpus, tmp_path_factory):
    """Every utterance twice (a copy of the file), so that each rank's half of a global batch holds the
    same utterances as the other's: BatchNorm statistics then match single-process training exactly."""
    folder = tmp_path_factory.mktemp("doubled")
    source = os.path.dirname(speech_corpus)
    with open(speech_corpus) as lines, open(folder / "manifest.jsonl", "w") as out:
        for line in lines:
            record = json.loads(line)
            for copy in ("a", "b"):
                name = f"{copy}_{record['audio_filepath']}"
                shutil.copy(os.path.join(source, record["audio_filepath"]), folder / name)
                out.write(json.dumps({"audio_filepath": name, "text": record["text"]}) + "\n")
    return str(folder / "manifest.jsonl")


def overrides(manifest, directory, batch_size, **extra):
    values = {"model": "ds2_tiny", "data.train_manifest": manifest, "data.batch_size": batch_size,
              "data.num_workers": 0, "optim.learning_rate": 3e-3, "log_dir": None,
              "checkpoint.directory": str(directory), "validate_every_epoch": False, "seed": 7}
    values.update(extra)
    return values


def torchrun(*args, timeout=300, **popen):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def dotlist(values):
    return [f"{key}={'null' if value is None else value}" for key, value in values.items()]


def test_two_processes_match_single_process_training(doubled_corpus, tmp_path):
    steps = 4
    sgd = {"optim.optimizer": "sgd", "optim.learning_rate": 0.02}  # updates linear in the gradient
    process = torchrun(os.path.join(ROOT, "tests", "ddp_worker.py"), str(tmp_path / "params"),
                       *dotlist(overrides(doubled_corpus, tmp_path / "ddp", 2, epochs=2, max_steps=steps, **sgd)))
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    rank0 = torch.load(tmp_path / "params.rank0", weights_only=True)
    rank1 = torch.load(tmp_path / "params.rank1", weights_only=True)
    for name, value in rank0["state"].items():
        torch.testing.assert_close(rank1["state"][name], value, rtol=0, atol=0)  # ranks stay identical

    config = OmegaConf.merge(OmegaConf.structured(TrainConfig),
                             OmegaConf.from_dotlist(dotlist(overrides(doubled_corpus, tmp_path / "one", 4, epochs=2,
                                                                      max_steps=steps, **sgd))))
    single = Trainer(config)
    initial = {k: v.clone() for k, v in single.model.state_dict().items()}
    result = single.fit()
    assert rank0["losses"] == pytest.approx(result.losses, rel=1e-4)
    moved = 0
    parameters = {name for name, _ in single.model.named_parameters()}
    for name, value in single.model.state_dict().items():
        moved += int(not torch.equal(value, initial[name]))
        if name in parameters:
            # Batches of 4 and of 2 round differently, element by element, and four SGD steps carry that
            # into the weights (up to 0.1% of an update, measured); so compare each tensor's update as a
            # whole. A wrong reduction (a sum instead of a mean, a missing all-reduce) is off by 50% or more.
            update = (value - initial[name]).norm()
            assert (rank0["state"][name] - value).norm() <= 1e-2 * update + 1e-6, name
        else:
            # BatchNorm running variances differ by the unbiased n/(n-1) factor (n per process vs global).
            torch.testing.assert_close(rank0["state"][name], value, rtol=1e-2, atol=1e-5)
    assert moved > 10  # training really changed the weights being compared


def read_log(prefix):
    records = []
    for rank in (0, 1):
        path = f"{prefix}.rank{rank}"
        if os.path.exists(path):
            records += [json.loads(line) for line in open(path)]
    return records


def test_killed_worker_restarts_and_resumes_without_losing_or_repeating_batches(doubled_corpus, tmp_path):
    log = str(tmp_path / "samples")
    epochs = 3
    values = overrides(doubled_corpus, tmp_path / "ckpt", 1, epochs=epochs, sample_log=log,
                       **{"checkpoint.every_steps": 1})
    process = torchrun("--max-restarts=1", os.path.join(ROOT, "train.py"), *dotlist(values))
    victim = None
    deadline = time.time() + 240
    while victim is None and time.time() < deadline and process.poll() is None:
        for record in read_log(log):
            if record["rank"] == 1 and record["epoch"] == 1 and record["batch"] >= 2:
                victim = record["pid"]
                break
        time.sleep(0.05)
    assert victim is not None, "training did not reach the middle of epoch 2"
    os.kill(victim, signal.SIGKILL)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output

    records = read_log(log)
    assert len({r["pid"] for r in records}) == 4, "both workers should have been restarted once"
    # The effective history: for each (rank, step) the last time it was trained (a step replayed
    # after the restart replaces the one whose checkpoint was never written).
    latest = {}
    for record in records:
        latest[(record["rank"], record["step"])] = record
    for epoch in range(epochs):
        served = [i for r in latest.values() if r["epoch"] == epoch for i in r["indices"]]
        assert sorted(served) == list(range(12)), f"epoch {epoch}: {sorted(served)}"
    resumed = [r for r in records if r["pid"] not in {records[0]["pid"]} and r["rank"] == 0]
    first_resumed = min(resumed, key=lambda r: r["step"]) if resumed else None
    assert first_resumed is not None and first_resumed["epoch"] == 1 and first_resumed["batch"] >= 1
    state = torch.load(tmp_path / "ckpt" / "last.pt", weights_only=True)
    assert state["epoch"] == epochs and state["step"] == epochs * 6
