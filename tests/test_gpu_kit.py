"""tools/gpu_kit.py: speech packed as Opus shards comes back clip by clip, in place; the kit fits its budget;
manifests mix with repeats; checkpoints split into parts that join again. (The whole kit on the CPU is
`bash tools/gpu_kit.sh smoke`, about three minutes: docs/gpu_kit.md.)"""

import importlib.util
import json
import os

import numpy as np
import pytest

from deepspeech_pytorch.audio import load_audio, write_audio
from deepspeech_pytorch.datasets import read_manifest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_kit():
    spec = importlib.util.spec_from_file_location("gpu_kit", os.path.join(ROOT, "tools", "gpu_kit.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


kit = _load_kit()


def _frame_energy(samples: np.ndarray, frame: int = 160) -> np.ndarray:
    count = len(samples) // frame
    return np.sqrt(np.mean(np.square(samples[: count * frame].reshape(count, frame)), axis=1))


def _corpus(folder, name, texts, seed=0):
    """Clips of bursts of tone and noise at places that differ per clip (so a clip cut from the wrong
    place of a shard does not line up), 16 kHz WAV, and a manifest with a speaker field."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    lines = []
    for number, text in enumerate(texts):
        seconds = 0.6 + 0.25 * number
        samples = np.zeros(int(seconds * 16000), dtype=np.float32)
        for _ in range(3):
            start = int(rng.integers(0, len(samples) - 2400))
            t = np.arange(2400) / 16000
            samples[start:start + 2400] += 0.3 * np.sin(2 * np.pi * rng.uniform(200, 1500) * t) + 0.05 * rng.standard_normal(2400)
        path = os.path.join(folder, f"{name}{number}.wav")
        write_audio(path, samples)
        lines.append({"audio_filepath": os.path.basename(path), "text": text, "duration": seconds, "speaker": f"s{number}"})
    manifest = os.path.join(folder, f"{name}_train.jsonl")
    with open(manifest, "w") as handle:
        handle.writelines(json.dumps(line) + "\n" for line in lines)
    return manifest


def _pack(tmp_path, *extra):
    manifest = _corpus(str(tmp_path / "queen"), "queen", ["one two", "three four five", "six", "seven eight"])
    out = str(tmp_path / "carry")
    code = kit.main(["pack", "--output", out, "--speech", manifest, "--codec", "soundfile:0.99", "--max-mib", "64",
                     "--workers", "1", *extra])
    return code, manifest, out


def test_pack_unpack_gives_every_clip_back_in_place(tmp_path):
    code, manifest, out = _pack(tmp_path)
    assert code == 0
    packed = json.load(open(os.path.join(out, "kit.json")))
    assert packed["train"]["queen_train"]["clips"] == 4 and packed["codec"] == "soundfile:0.99"
    work = str(tmp_path / "work")
    assert kit.main(["unpack", "--kit", out, "--work", work, "--workers", "1"]) == 0
    unpacked = json.load(open(os.path.join(work, "unpacked.json")))
    entries = {e.text: e for e in read_manifest(unpacked["train"]["queen_train"])}
    originals = {e.text: e for e in read_manifest(manifest)}
    assert set(entries) == set(originals)
    for text, entry in entries.items():
        assert os.path.isabs(entry.audio_path) and entry.labels["speaker"] == originals[text].labels["speaker"]
        decoded, original = load_audio(entry.audio_path), load_audio(originals[text].audio_path)
        assert abs(len(decoded) - len(original)) <= 2  # 16 kHz -> 12 kHz -> 16 kHz
        assert abs(entry.duration - originals[text].duration) < 1e-3
        a, b = _frame_energy(decoded), _frame_energy(original)
        n = min(len(a), len(b))
        assert np.corrcoef(a[:n], b[:n])[0, 1] > 0.9, text  # the clip's own bursts, where they were


def test_fit_drops_whole_shards_and_the_index_follows(tmp_path):
    code, _, out = _pack(tmp_path, "--shard-seconds", "1.0")
    assert code == 0
    full = json.load(open(os.path.join(out, "kit.json")))
    shards = sorted(os.listdir(os.path.join(out, "train")))
    opus = [name for name in shards if name.endswith(".opus")]
    assert len(opus) == full["train"]["queen_train"]["shards"] >= 3
    budget = (full["bytes"] - os.path.getsize(os.path.join(out, "train", opus[-1])) + 100) / 2**20
    code = kit.main(["pack", "--output", out, "--force", "--fit", "--max-mib", f"{budget:.6f}", "--workers", "1",
                     "--codec", "soundfile:0.99", "--shard-seconds", "1.0",
                     "--speech", str(tmp_path / "queen" / "queen_train.jsonl")])
    assert code == 0
    fitted = json.load(open(os.path.join(out, "kit.json")))
    assert fitted["dropped_shards"] == [opus[-1]] and fitted["bytes"] <= budget * 2**20
    index = kit.read_index(os.path.join(out, "train", "queen_train" + kit.INDEX_SUFFIX))
    assert {r["shard"] for r in index} == set(opus[:-1]) and len(index) == fitted["train"]["queen_train"]["clips"] < 4


@pytest.mark.parametrize("fit, message", [((), "over the budget"), (("--fit",), "more than 25% of the training speech")])
def test_a_kit_over_its_budget_is_refused_in_one_line(tmp_path, capsys, fit, message):
    """Without --fit; and with it when fitting would drop more than a quarter of the speech (another
    helper's 47 MB export left in the tree once made --fit drop every shard but one)."""
    manifest = _corpus(str(tmp_path / "sky"), "sky", ["hello there", "and more", "and some more"])
    code = kit.main(["pack", "--output", str(tmp_path / "carry"), "--speech", manifest, "--codec", "soundfile:0.99",
                     "--max-mib", "0.001", "--workers", "1", "--shard-seconds", "1.0", *fit])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.startswith("error: ") and message in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("codec", ["opus:6", "soundfile:2", "ffmpeg:x", "soundfile"])
def test_bad_codecs_are_named(codec):
    with pytest.raises(kit.KitError, match="codec"):
        kit.parse_codec(codec)


def test_mix_repeats_manifests_with_absolute_paths(tmp_path):
    a = _corpus(str(tmp_path / "a"), "a", ["one", "two"])
    b = _corpus(str(tmp_path / "b"), "b", ["three"])
    out = str(tmp_path / "mixed" / "train.jsonl")
    assert kit.main(["mix", "--output", out, f"{a}:3", b]) == 0
    entries = read_manifest(out)
    assert [e.text for e in entries] == ["one", "two"] * 3 + ["three"]
    assert all(os.path.isabs(json.loads(line)["audio_filepath"]) for line in open(out))


def test_split_file_parts_join_to_the_same_bytes(tmp_path):
    data = np.random.default_rng(0).bytes(2_500_000)
    (tmp_path / "model.pt").write_bytes(data)
    names = kit.split_file(str(tmp_path / "model.pt"), str(tmp_path), 1.0)
    assert names == ["model.pt.00", "model.pt.01", "model.pt.02"]
    assert all(os.path.getsize(tmp_path / n) <= 2**20 for n in names)
    assert b"".join((tmp_path / n).read_bytes() for n in names) == data


def test_init_weights_travel_in_the_kit_and_anything_else_is_refused(tmp_path, capsys):
    """--init / --stream-init carry weights that the run continues from (checkpoint.finetune_from), so
    training adds up across GPU loans; a file that is not a checkpoint is refused here, in one line."""
    from deepspeech_pytorch.checkpoint import model_state, save_checkpoint
    from deepspeech_pytorch.configs import FeatureConfig
    from deepspeech_pytorch.labels import Alphabet
    from deepspeech_pytorch.models import build_model, preset

    weights = str(tmp_path / "model.pt")
    save_checkpoint(weights, model_state(build_model(preset("ds2_tiny"), FeatureConfig().num_features, 29),
                                         preset("ds2_tiny"), FeatureConfig(), Alphabet()))
    code, _, out = _pack(tmp_path, "--init", weights)
    assert code == 0
    packed = json.load(open(os.path.join(out, "kit.json")))
    assert packed["init"]["init.pt"]["bytes"] == os.path.getsize(weights)
    assert open(os.path.join(out, "init.pt"), "rb").read() == open(weights, "rb").read()
    assert packed["bytes"] >= os.path.getsize(weights)  # counted in the budget
    not_weights = tmp_path / "notes.pt"
    not_weights.write_text("not a checkpoint")
    capsys.readouterr()
    code, _, _ = _pack(tmp_path, "--force", "--stream-init", str(not_weights))
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.startswith("error: ") and "notes.pt" in err and len(err.splitlines()) == 1


def test_finish_scores_best_last_and_the_average_and_brings_back_loadable_parts(tmp_path, speech_corpus):
    import torch

    from deepspeech_pytorch.checkpoint import model_state, save_checkpoint
    from deepspeech_pytorch.configs import FeatureConfig
    from deepspeech_pytorch.inference import load_model
    from deepspeech_pytorch.labels import Alphabet
    from deepspeech_pytorch.models import build_model, preset

    folder = tmp_path / "ckpt"
    folder.mkdir()
    for step, name in enumerate(["epoch_001.pt", "epoch_002.pt", "best.pt", "last.pt"], start=1):
        torch.manual_seed(step)
        model = build_model(preset("ds2_tiny"), FeatureConfig().num_features, 29)
        save_checkpoint(str(folder / name), {**model_state(model, preset("ds2_tiny"), FeatureConfig(), Alphabet()),
                                             "epoch": min(step, 2), "step": step * 10})
    out = tmp_path / "out"
    # a second validation manifest of the same file name, 2 of the clips: each keeps its own scores
    other = tmp_path / "other" / "manifest.jsonl"
    other.parent.mkdir()
    corpus = os.path.dirname(speech_corpus)
    other.write_text("".join(json.dumps({**e, "audio_filepath": os.path.join(corpus, e["audio_filepath"])}) + "\n"
                             for e in map(json.loads, open(speech_corpus).readlines()[:2])))
    assert kit.main(["finish", "--checkpoints", str(folder), "--val", speech_corpus, "--val", str(other),
                     "--out", str(out), "--device", "cpu", "--workers", "0", "--part-mib", "0.5", "--with-last"]) == 0
    results = json.load(open(out / "results.json"))
    assert set(results["candidates"]) == {"best", "last", "average2"}
    first = os.path.join(os.path.basename(corpus), "manifest.jsonl")
    assert all(set(c["scores"]) == {first, "other/manifest.jsonl"} for c in results["candidates"].values())
    assert all(c["scores"]["other/manifest.jsonl"]["utterances"] == 2 for c in results["candidates"].values())
    scores = {name: c["scores"][first] for name, c in results["candidates"].items()}
    assert all(s["utterances"] == 6 and s["wer"] >= 0 for s in scores.values())
    # chosen by CER, WER breaking ties (a short run's WERs all sit near 100% on real speech)
    assert (scores[results["chosen"]]["cer"], scores[results["chosen"]]["wer"]) == min((s["cer"], s["wer"]) for s in scores.values())
    model_parts = sorted(n for n in results["files"] if n.startswith("model-fp16.pt."))
    assert len(model_parts) >= 2 and all(os.path.getsize(out / n) <= 0.5 * 2**20 for n in results["files"])
    (tmp_path / "joined.pt").write_bytes(b"".join((out / n).read_bytes() for n in model_parts))
    loaded = load_model(str(tmp_path / "joined.pt"))
    assert next(loaded.model.parameters()).dtype == torch.float32  # stored fp16, loaded for inference


def test_finish_refuses_one_validation_manifest_given_twice_before_any_work(tmp_path, capsys, speech_corpus):
    out = tmp_path / "out"
    code = kit.main(["finish", "--checkpoints", str(tmp_path / "none"), "--val", speech_corpus, "--val", speech_corpus,
                     "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.startswith("error: --val ") and "given twice" in err and len(err.splitlines()) == 1
    assert not out.exists()
