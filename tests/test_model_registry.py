"""Adding an architecture: the README's example, registered here, trains, checkpoints, loads and transcribes
through the same code as DeepSpeech2, which nothing outside deepspeech_pytorch/models/ names."""

import os
import subprocess
from dataclasses import dataclass

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from deepspeech_pytorch.checkpoint import load_checkpoint
from deepspeech_pytorch.configs import TrainConfig
from deepspeech_pytorch.inference import Transcriber, load_model
from deepspeech_pytorch.models import ARCHITECTURES, Architecture, StreamingNotSupported, model_config, register
from deepspeech_pytorch.models.base import AcousticModel, AcousticModelConfig
from deepspeech_pytorch.training import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class MyCTCConfig(AcousticModelConfig):
    architecture: str = "my_ctc"
    hidden_size: int = 256


class MyCTC(AcousticModel):
    def __init__(self, config, num_features, num_classes):
        super().__init__()
        self.config, self.num_features, self.num_classes = config, num_features, num_classes
        self.net = nn.Sequential(nn.Linear(num_features, config.hidden_size), nn.ReLU(),
                                 nn.Linear(config.hidden_size, num_classes))

    time_stride = 1

    def output_lengths(self, lengths):
        return lengths

    def forward(self, features, lengths):
        return self.net(features.transpose(1, 2)), lengths


@pytest.fixture(scope="module", autouse=True)
def my_ctc():
    register(Architecture("my_ctc", MyCTCConfig, MyCTC))
    yield
    del ARCHITECTURES["my_ctc"]


def test_a_registered_architecture_trains_saves_loads_and_transcribes(speech_corpus, tmp_path):
    config = OmegaConf.structured(TrainConfig)
    config.model = {"architecture": "my_ctc", "hidden_size": 64}
    config.data.train_manifest = speech_corpus
    config.data.batch_size = 3
    config.data.num_workers = 0
    config.epochs = 2
    config.log_dir = None
    config.validate_every_epoch = False
    config.checkpoint.directory = str(tmp_path / "ck")
    result = train(config)
    assert result.steps == 4 and all(torch.isfinite(torch.tensor(result.losses)))
    state = load_checkpoint(str(tmp_path / "ck" / "last.pt"))
    assert state["format_version"] == 2 and state["model_config"] == {"architecture": "my_ctc", "hidden_size": 64}
    loaded = load_model(str(tmp_path / "ck" / "last.pt"))
    assert isinstance(loaded.model, MyCTC) and loaded.info["architecture"] == "my_ctc"
    assert Transcriber(loaded, vad=False).transcribe(torch.zeros(16000).numpy()).duration == pytest.approx(1.0)
    with pytest.raises(StreamingNotSupported):
        loaded.model.initial_state()
    with pytest.raises(ValueError, match="model.hidden_sz is not a my_ctc setting"):
        model_config({"architecture": "my_ctc", "hidden_sz": 3})


def test_nothing_outside_models_names_deepspeech2_in_code():
    """Only models/ (and the converter of the original port's DeepSpeech2 checkpoints) may name the class."""
    listing = subprocess.run(["git", "grep", "-n", "-w", "DeepSpeech2", "--", "deepspeech_pytorch/*.py",
                              "deepspeech_pytorch/**/*.py"], cwd=ROOT, capture_output=True, text=True).stdout
    offenders = [line for line in listing.splitlines()
                 if not line.startswith(("deepspeech_pytorch/models/", "deepspeech_pytorch/conversion.py"))
                 and "import" in line or "DeepSpeech2(" in line and not line.startswith("deepspeech_pytorch/models/")]
    assert offenders == []
