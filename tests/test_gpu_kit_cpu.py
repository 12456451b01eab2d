"""tools/gpu_kit.sh cpu: the lineage continued on this machine's CPU — data made here, the kit's training
settings, the choice on validation — on a tiny slice (ds2_tiny, a few synthesized clips, one short epoch)."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _noise_manifest(folder, sine_wave):
    from deepspeech_pytorch.audio import write_audio

    folder.mkdir(parents=True)
    write_audio(str(folder / "hum.wav"), sine_wave(2.0))
    (folder / "noise.jsonl").write_text(json.dumps({"audio_filepath": "hum.wav", "text": "hum", "duration": 2.0}) + "\n")


def _env(tmp_path, **extra):
    return {**os.environ, "PYTHON": sys.executable, "CPU_WORK": str(tmp_path / "work"), "SCRATCH": str(tmp_path / "scratch"),
            "MODEL": "ds2_tiny", "EPOCHS": "1", "BATCH": "4", "EVERY_STEPS": "5", "CPU_MINUTES": "2", "ROOMS_HERE": "2",
            "ESPEAK_HOURS": "0.01", "PICO_MBROLA_HOURS": "0.01", **extra}


@pytest.mark.skipif(not all(os.path.exists(p) for p in ("/usr/bin/pico2wave", "/usr/bin/mbrola")),
                    reason="needs pico2wave and mbrola (setup.sh installs them)")
def test_cpu_mode_continues_the_given_weights_on_the_kit_data_and_chooses_on_val(tmp_path, speech_corpus, sine):
    import torch

    from deepspeech_pytorch.checkpoint import model_state, save_checkpoint
    from deepspeech_pytorch.configs import FeatureConfig
    from deepspeech_pytorch.labels import Alphabet
    from deepspeech_pytorch.models import build_model, preset

    features = FeatureConfig(kind="mel", n_mels=64)  # configs/bundled.yaml's features
    torch.manual_seed(0)
    model = build_model(preset("ds2_tiny"), features.num_features, 29)
    init = tmp_path / "lineage.pt"
    save_checkpoint(str(init), model_state(model, preset("ds2_tiny"), features, Alphabet()))
    scratch = tmp_path / "scratch"
    _noise_manifest(scratch / "noise", sine)
    _noise_manifest(scratch / "music", sine)
    (scratch / "train_text.txt").write_text("the lamp is on the table\nopen the window now\nwe walked home in the rain\n" * 5)

    done = subprocess.run(["bash", "tools/gpu_kit.sh", "cpu"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=_env(tmp_path, INIT=str(init), QUEEN=speech_corpus, SKY=speech_corpus,
                                   DRASCULA_VAL=speech_corpus))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    work = tmp_path / "work"
    assert f"fine-tuning from the weights in {init}" in done.stdout + done.stderr
    # the game speech twice, the espeak-ng and Pico/MBROLA clips made here once
    lines = [json.loads(line) for line in open(work / "train.jsonl")]
    synthesized = [line for line in lines if str(work) in line["audio_filepath"]]
    assert len(lines) - len(synthesized) == 2 * 2 * 6
    def engines(corpus):
        return {json.loads(line)["engine"] for line in open(work / corpus / "metadata.jsonl")}

    assert engines("pico_mbrola") <= {"pico", "mbrola"} and engines("pico_mbrola") and engines("espeak") == {"espeak-ng"}
    saved = torch.load(work / "ckpt" / "last.pt", weights_only=True, map_location="cpu")
    assert saved["config"]["precision"] == "bf16" and saved["config"]["data"]["batch_size"] == 4
    results = json.load(open(work / "out" / "results.json"))
    chosen = results["candidates"][results["chosen"]]
    assert chosen["scores"]["manifest.jsonl"]["utterances"] == 6 and results["files"]
    # run again, the weights it started from gone: it resumes its own checkpoint instead
    init.unlink()
    again = subprocess.run(["bash", "tools/gpu_kit.sh", "cpu"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                           env=_env(tmp_path, INIT=str(init), QUEEN=speech_corpus, SKY=speech_corpus,
                                    DRASCULA_VAL=speech_corpus))
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"resumed from {work / 'ckpt' / 'last.pt'}" in again.stdout + again.stderr


def test_cpu_mode_without_weights_to_continue_says_so_in_one_line(tmp_path):
    done = subprocess.run(["bash", "tools/gpu_kit.sh", "cpu"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env=_env(tmp_path, INIT=str(tmp_path / "missing.pt")))
    assert done.returncode == 1
    assert done.stderr.strip().startswith("error: INIT=") and "missing.pt" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "work").exists()
