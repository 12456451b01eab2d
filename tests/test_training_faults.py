"""Bad input and changed settings in training and evaluation, on real audio.

Each fault becomes either a one-line error that names the file or setting (and says how to go on), or
an utterance left out that is counted and named: never a worker traceback, a crash deep in a layer, or
a loss of 0.000 that looks like perfect training.
"""

import json
import logging

import numpy as np
import pytest
import soundfile as sf
from omegaconf import OmegaConf
from test_training import config

from deepspeech_pytorch.audio import AudioError
from deepspeech_pytorch.checkpoint import CheckpointError
from deepspeech_pytorch.datasets import ManifestError, read_manifest
from deepspeech_pytorch.evaluation import evaluate_manifest
from deepspeech_pytorch.inference import Transcriber, load_model
from deepspeech_pytorch.training import SKIPPED_LIST, Trainer, train

# 96 characters: CTC needs about 100 output frames, a 0.3 s clip gives the model 16.
LONG_TEXT = "this transcript is far too long for a clip of three tenths of a second so ctc cannot align it"


def tone(path, seconds: float) -> str:
    t = np.arange(int(round(seconds * 16000))) / 16000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    return str(path)


def nan_wav(path) -> str:
    samples = 0.3 * np.sin(np.linspace(0, 900, 16000)).astype(np.float32)
    samples[100] = np.nan
    sf.write(path, samples, 16000, subtype="FLOAT")
    return str(path)


def corrupt_wav(path) -> str:
    path.write_bytes(b"not audio at all")
    return str(path)


def corpus(speech_corpus, count: int = 6):
    return [{"audio_filepath": e.audio_path, "text": e.text} for e in read_manifest(speech_corpus)[:count]]


def manifest(path, rows) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def skipping_unreadable(cfg):
    if "skip_unreadable" not in cfg.data:  # a DataConfig without the field: an untyped copy takes it
        cfg = OmegaConf.create(OmegaConf.to_container(cfg))
    cfg.data.skip_unreadable = True
    return cfg


def assert_one_line(error, *fragments):
    text = str(error.value)
    assert "\n" not in text and "Traceback" not in text and "worker" not in text, text
    for fragment in fragments:
        assert fragment in text, text


# ---- utterances with too few output frames (CTC-infeasible transcripts, clips of one frame) ----------------

def test_transcript_longer_than_the_audio_allows_is_left_out_and_named(speech_corpus, tmp_path, caplog):
    short = tone(tmp_path / "short.wav", 0.3)
    path = manifest(tmp_path / "m.jsonl", corpus(speech_corpus) + [{"audio_filepath": short, "text": LONG_TEXT}])
    with caplog.at_level(logging.WARNING, logger="deepspeech_pytorch.training"):
        result = train(config(path, tmp_path / "ck", epochs=1))
    assert list(result.skipped_too_short) == [short]
    assert "CTC needs" in result.skipped_too_short[short]
    assert any(short in r.getMessage() and "too short" in r.getMessage() for r in caplog.records)
    listed = [json.loads(line) for line in (tmp_path / "ck" / SKIPPED_LIST).read_text().splitlines()]
    assert [(row["audio_filepath"], row["kind"]) for row in listed] == [(short, "too_short")]
    assert result.steps == 2 and all(loss > 0.5 for loss in result.losses)  # 6 utterances, batches of 3


def test_a_manifest_of_only_infeasible_utterances_is_a_one_line_error(tmp_path):
    short = tone(tmp_path / "short.wav", 0.3)
    path = manifest(tmp_path / "m.jsonl", [{"audio_filepath": short, "text": LONG_TEXT}] * 2)
    with pytest.raises(ManifestError) as error:
        Trainer(config(path, tmp_path / "ck", epochs=1))
    assert_one_line(error, "m.jsonl", "no utterance left to train on", "short.wav", "CTC needs")


def test_infeasible_rows_found_on_the_fly_are_left_out_of_the_loss(speech_corpus, tmp_path):
    """A manifest duration that overstates the audio passes the load-time check; the batch's real
    output lengths catch it, and the loss is that of the other utterances (not diluted by a zero)."""
    short = tone(tmp_path / "short.wav", 0.3)
    good = corpus(speech_corpus, 2)
    mixed = Trainer(config(manifest(tmp_path / "mixed.jsonl", good + [
        {"audio_filepath": short, "text": LONG_TEXT, "duration": 9.0}]), tmp_path / "a", epochs=1))
    clean = Trainer(config(manifest(tmp_path / "clean.jsonl", good), tmp_path / "b", epochs=1))
    mixed_batch, clean_batch = next(iter(mixed.train_loader)), next(iter(clean.train_loader))
    assert mixed_batch.indices.numel() == 3 and clean_batch.indices.numel() == 2
    assert mixed.train_step(mixed_batch) == pytest.approx(clean.train_step(clean_batch), rel=1e-5)
    assert "as loaded, too short for its transcript" in mixed.skipped_too_short[short]


def test_an_epoch_with_nothing_trainable_is_an_error_not_a_perfect_loss(tmp_path):
    short = tone(tmp_path / "short.wav", 0.3)
    path = manifest(tmp_path / "m.jsonl", [{"audio_filepath": short, "text": LONG_TEXT, "duration": 9.0}])
    with pytest.raises(ManifestError) as error:
        train(config(path, tmp_path / "ck", epochs=2))
    assert_one_line(error, "epoch 1 trained nothing", "1 audio files too short")


def test_a_clip_of_one_output_frame_in_a_batch_of_one_is_skipped_not_a_crash(speech_corpus, tmp_path):
    tiny = tone(tmp_path / "tiny10ms.wav", 0.01)
    path = manifest(tmp_path / "m.jsonl", corpus(speech_corpus, 2) + [{"audio_filepath": tiny, "text": "a"}])
    result = train(config(path, tmp_path / "ck", epochs=1, **{"data.batch_size": 1}))
    assert result.steps == 2 and result.epochs_completed == 1
    assert "1 output frame, training needs at least 2" in result.skipped_too_short[tiny]


def test_a_clip_that_speed_perturbation_shortens_to_one_frame_is_skipped_on_the_fly(speech_corpus, tmp_path):
    clip = tone(tmp_path / "clip25ms.wav", 0.025)  # 2 output frames as it is; 1 when played 1.5 times faster
    path = manifest(tmp_path / "m.jsonl", corpus(speech_corpus, 2) + [{"audio_filepath": clip, "text": "a"}])
    result = train(config(path, tmp_path / "ck", epochs=1, **{
        "data.batch_size": 1, "augment.perturb.speed_enabled": True,
        "augment.perturb.min_speed": 1.5, "augment.perturb.max_speed": 1.5}))
    assert result.steps == 2 and result.epochs_completed == 1
    assert "as loaded, too short to train on: 1 output frame" in result.skipped_too_short[clip]


# ---- unreadable audio: one line naming the file whatever num_workers is, or skipped and counted -----------

@pytest.fixture(scope="module")
def tiny_model(speech_corpus, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_model")
    train(config(speech_corpus, folder, epochs=1, max_steps=1))
    return Transcriber(load_model(str(folder / "last.pt")))


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("bad", [nan_wav, corrupt_wav], ids=["nan-samples", "undecodable"])
def test_unreadable_audio_stops_evaluation_with_one_line(speech_corpus, tiny_model, tmp_path, bad, num_workers):
    path = manifest(tmp_path / "m.jsonl", corpus(speech_corpus, 2) + [
        {"audio_filepath": bad(tmp_path / "bad.wav"), "text": "hello", "duration": 1.0}])
    with pytest.raises(AudioError) as error:
        evaluate_manifest(tiny_model, path, batch_size=2, num_workers=num_workers, progress=False)
    assert_one_line(error, str(tmp_path / "bad.wav"))


def test_evaluation_can_skip_unreadable_audio_and_counts_it(speech_corpus, tiny_model, tmp_path):
    bad = nan_wav(tmp_path / "bad.wav")
    path = manifest(tmp_path / "m.jsonl", corpus(speech_corpus, 2) + [{"audio_filepath": bad, "text": "hello"}])
    result = evaluate_manifest(tiny_model, path, batch_size=2, num_workers=2, progress=False, skip_unreadable=True)
    assert [item["audio_filepath"] for item in result.skipped] == [bad]
    assert len(result.utterances) == 2 and result.counts.reference_words == sum(
        len(row["text"].split()) for row in corpus(speech_corpus, 2))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_unreadable_audio_stops_training_with_one_line_or_is_skipped(speech_corpus, tmp_path, num_workers):
    bad = nan_wav(tmp_path / "bad.wav")
    path = manifest(tmp_path / "m.jsonl", corpus(speech_corpus, 3) + [{"audio_filepath": bad, "text": "hello"}])
    cfg = config(path, tmp_path / "a", epochs=1, **{"data.num_workers": num_workers, "data.batch_size": 2})
    with pytest.raises(AudioError) as error:
        train(cfg)
    assert_one_line(error, bad, "NaN", "data.skip_unreadable=true")
    result = train(skipping_unreadable(config(path, tmp_path / "b", epochs=1, **{
        "data.num_workers": num_workers, "data.batch_size": 2})))
    assert list(result.skipped_unreadable) == [bad] and "NaN" in result.skipped_unreadable[bad]
    assert result.epochs_completed == 1 and result.steps == 2  # the bad file's batch trains on its other utterance
    listed = [json.loads(line) for line in (tmp_path / "b" / SKIPPED_LIST).read_text().splitlines()]
    assert [(row["audio_filepath"], row["kind"]) for row in listed] == [(bad, "unreadable")]


def test_an_unusable_noise_clip_stops_training_even_when_skipping_unreadable(speech_corpus, tmp_path):
    (tmp_path / "noise").mkdir()
    nan_wav(tmp_path / "noise" / "hum.wav")
    cfg = skipping_unreadable(config(speech_corpus, tmp_path / "ck", epochs=1, **{
        "data.num_workers": 2, "augment.noise.enabled": True, "augment.noise.directory": str(tmp_path / "noise"),
        "augment.noise.probability": 1.0}))
    with pytest.raises(AudioError) as error:
        train(cfg)
    assert_one_line(error, "noise clip unusable", "hum.wav")


# ---- resuming with other settings ---------------------------------------------------------------------------

@pytest.fixture
def four(speech_corpus, tmp_path):
    """Four utterances: two batches of 2 per epoch in the tests' config below."""
    return manifest(tmp_path / "four.jsonl", corpus(speech_corpus, 4))


def small(path, directory, **overrides):
    return config(path, directory, **{"data.batch_size": 2, **overrides})


def test_extending_a_one_cycle_run_is_a_one_line_error_that_says_how_to_go_on(four, tmp_path):
    train(small(four, tmp_path / "a", epochs=1))
    with pytest.raises(CheckpointError) as error:
        Trainer(small(four, tmp_path / "a", epochs=3))
    last = str(tmp_path / "a" / "last.pt")
    assert_one_line(error, "one-cycle", "planned for 2 steps", f"checkpoint.finetune_from={last}",
                    "checkpoint.directory=")
    result = train(small(four, tmp_path / "b", epochs=2, max_steps=1, **{"checkpoint.finetune_from": last}))
    assert result.steps == 1  # the advice works


def test_one_cycle_resume_whose_new_batch_size_needs_more_steps_is_refused_before_training(four, tmp_path):
    train(small(four, tmp_path / "a", epochs=2, max_steps=1))
    with pytest.raises(CheckpointError) as error:
        Trainer(small(four, tmp_path / "a", epochs=2, **{"data.batch_size": 1}))
    assert_one_line(error, "planned for 4 steps", "checkpoint.finetune_from=")


def test_anneal_resume_follows_the_epochs_with_another_batch_size_and_rate(four, tmp_path):
    settings = {"optim.schedule": "anneal", "optim.anneal_factor": 0.5}
    train(small(four, tmp_path / "a", epochs=2, **settings))  # 2 epochs of 2 batches: step 4
    # 4 batches per epoch now: by steps, step 5 would look like epoch 2 (5 // 4 = 1); it is epoch 3.
    trainer = Trainer(small(four, tmp_path / "a", epochs=4, max_steps=5,
                            **{**settings, "data.batch_size": 1, "optim.learning_rate": 1e-3}))
    result = trainer.fit()
    assert result.steps == 5 and trainer.epoch == 2
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.5 ** 2)
    assert trainer.scheduler.get_last_lr()[0] == pytest.approx(1e-3 * 0.5 ** 2)


def test_mid_epoch_resume_with_another_batch_size_restarts_the_epoch(four, tmp_path, caplog):
    settings = {"optim.schedule": "constant"}
    train(small(four, tmp_path / "a", epochs=1, max_steps=1, **settings))
    with caplog.at_level(logging.WARNING, logger="deepspeech_pytorch.training"):
        trainer = Trainer(small(four, tmp_path / "a", epochs=1, **{**settings, "data.batch_size": 3}))
    assert (trainer.epoch, trainer.batch_in_epoch, trainer.step) == (0, 0, 1)
    assert any("data.batch_size=3 instead of 2" in r.getMessage() for r in caplog.records)
    result = trainer.fit()
    assert result.epochs_completed == 1 and result.steps == 1 + 2


def test_one_cycle_epoch_restarted_after_a_batch_size_change_runs_to_its_end(four, tmp_path):
    """The restarted epoch trains one batch again: one step past the cycle, taken at its final rate."""
    train(small(four, tmp_path / "a", epochs=1, max_steps=1))  # 2 batches of 2 planned; stopped after 1
    trainer = Trainer(small(four, tmp_path / "a", epochs=1, **{"data.batch_size": 3}))  # batches of 3 and 1
    result = trainer.fit()
    assert result.epochs_completed == 1 and result.steps == 3 and all(np.isfinite(result.losses))
    assert trainer.scheduler.last_epoch == trainer.scheduler.total_steps == 2


@pytest.mark.parametrize("change,message", [
    ({"optim.optimizer": "sgd"}, "optim.optimizer=adamw"),
    ({"optim.schedule": "onecycle"}, "optim.schedule=constant"),
])
def test_resume_with_a_state_that_cannot_carry_over_is_refused(four, tmp_path, change, message):
    train(small(four, tmp_path / "a", epochs=1, max_steps=1, **{"optim.schedule": "constant"}))
    with pytest.raises(CheckpointError) as error:
        Trainer(small(four, tmp_path / "a", epochs=2, **{"optim.schedule": "constant", **change}))
    assert_one_line(error, message, "checkpoint.finetune_from=")
