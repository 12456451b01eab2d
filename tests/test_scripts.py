"""The root scripts run as a user runs them: subprocesses, real files, JSON out, one-line errors."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(script, *args, cwd):
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def trained(speech_corpus, tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    result = run("train.py", f"data.train_manifest={speech_corpus}", f"data.val_manifest={speech_corpus}",
                 "preset=ds2_tiny", "epochs=2", "data.batch_size=3", "data.num_workers=0", "log_dir=tb",
                 "checkpoint.directory=ckpt", cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder, json.loads(result.stdout.strip().splitlines()[-1])


def test_train_writes_checkpoints_and_tensorboard(trained):
    folder, summary = trained
    assert summary["epochs"] == 2 and summary["steps"] == 4 and 0 <= summary["wer"]
    assert {"best.pt", "last.pt"} <= set(os.listdir(folder / "ckpt"))
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(folder / "tb"))
    assert not (folder / "outputs").exists() and not (folder / ".hydra").exists()


def test_test_script_reports_and_saves_outputs(trained, speech_corpus):
    folder, _ = trained
    result = run("test.py", "model_path=ckpt/best.pt", f"test_manifest={speech_corpus}", "report_path=report.jsonl",
                 "save_outputs=outputs.pt", "num_workers=0", cwd=folder)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["utterances"] == 6 and summary["reference_words"] == 27
    assert "WER" in result.stderr
    lines = [json.loads(line) for line in open(folder / "report.jsonl")]
    assert len(lines) == 6 and lines[0]["reference"] == "the cat sat on the mat"
    import torch
    saved = torch.load(folder / "outputs.pt", weights_only=True)
    assert len(saved["utterances"]) == 6 and saved["utterances"][0]["log_probs"].shape[1] == 29


def test_transcribe_prints_json_per_file(trained, speech_corpus):
    folder, _ = trained
    audio = os.path.join(os.path.dirname(speech_corpus), "utt0.wav")
    result = run("transcribe.py", "model_path=ckpt/best.pt", f"audio_path=[{audio},{audio}]", cwd=folder)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 2 and records[0]["audio_path"] == audio
    assert records[0]["duration"] > 0.5 and records[0]["model"]["parameters"] > 0
    assert isinstance(records[0]["words"], list)


def test_transcribe_bad_file_is_one_line_and_others_still_done(trained, speech_corpus, tmp_path):
    folder, _ = trained
    good = os.path.join(os.path.dirname(speech_corpus), "utt1.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    result = run("transcribe.py", "model_path=ckpt/best.pt", f"audio_path=[{tmp_path}/empty.wav,{good}]", cwd=folder)
    assert result.returncode == 1
    assert "empty.wav" in result.stderr and "Traceback" not in result.stderr
    assert json.loads(result.stdout)["audio_path"] == good


@pytest.mark.parametrize("args,message", [
    (["data.train_manifest=missing.jsonl"], "manifest not found: missing.jsonl"),
    (["data.train_manifest=x.jsonl", "data.batchsize=4"], "batchsize"),
    (["data.train_manifest=x.jsonl", "preset=ds9"], "model='ds9': choose from"),
])
def test_train_user_errors_are_one_line(tmp_path, args, message):
    (tmp_path / "x.jsonl").write_text("")
    result = run("train.py", *args, cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr


def test_checkpoint_of_another_alphabet_cannot_resume(trained, speech_corpus):
    folder, _ = trained
    result = run("train.py", f"data.train_manifest={speech_corpus}", "preset=ds2_tiny", "epochs=3",
                 "data.num_workers=0", "log_dir=null", "checkpoint.directory=ckpt",
                 "data.labels=[_,a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t,u,v,w,x,y,z,' ']", cwd=folder)
    assert result.returncode == 1
    assert "alphabet" in result.stderr and "Traceback" not in result.stderr


def test_benchmark_prints_json(tmp_path):
    result = run("benchmark.py", "preset=ds2_tiny", "batch_size=2", "seconds=1", "repeats=1", "warmup=0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["train_step_ms"] > 0 and 0 < figures["inference_rtf"] < 10


def test_benchmark_throughput_table(tmp_path):
    result = run("benchmark.py", "mode=throughput", "preset=ds2_tiny", "batch_sizes=[2,1]", "precisions=[fp32]",
                 "seconds=2", "repeats=1", "warmup=1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout.strip().splitlines()[-1])
    assert [row["batch_size"] for row in rows] == [1, 2]
    assert all(row["utterances_per_s"] > 0 and row["peak_memory_mb"] > 50 for row in rows)
    assert rows[1]["audio_seconds_per_s"] == pytest.approx(2 * rows[1]["utterances_per_s"], rel=0.05, abs=0.1)


def test_padding_benchmark(speech_corpus, tmp_path):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "padding.py"), speech_corpus,
                             "--batch-sizes", "3"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout.strip().splitlines()[-1])
    assert 0 <= row["padding_bucketed"] <= row["padding_random"] < 1


def test_console_scripts_run_the_entry_points(tmp_path):
    """pip install puts deepspeech-transcribe & co. on PATH; they run what the root scripts run."""
    import shutil

    bin_dir = os.path.dirname(sys.executable)
    script = shutil.which("deepspeech-transcribe", path=bin_dir)
    assert script is not None, f"no deepspeech-transcribe in {bin_dir}: is the package installed (pip install -e .)?"
    sample = os.path.join(ROOT, "samples", "sample1.wav")
    result = subprocess.run([script, sample, "word_timings=false"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[0])["transcript"].startswith("the one lamb")
    for name in ("deepspeech-train", "deepspeech-test", "deepspeech-server", "deepspeech-benchmark"):
        assert shutil.which(name, path=bin_dir), name
    wrong = subprocess.run([shutil.which("deepspeech-train", path=bin_dir), "model=nope"], cwd=tmp_path,
                           capture_output=True, text=True)
    assert wrong.returncode != 0 and wrong.stderr.startswith("error: model='nope'")


def nan_copy(speech_corpus, tmp_path):
    """(the fixture's manifest lines, its folder) after writing tmp_path/nan.wav: its first utterance with a NaN."""
    import numpy as np
    import soundfile as sf

    folder = os.path.dirname(speech_corpus)
    lines = [json.loads(line) for line in open(speech_corpus)]
    samples, rate = sf.read(os.path.join(folder, lines[0]["audio_filepath"]), dtype="float32")
    samples[100] = np.nan
    sf.write(tmp_path / "nan.wav", samples, rate, subtype="FLOAT")
    return lines, folder


def test_unreadable_files_can_be_left_out_from_the_command_line(speech_corpus, tmp_path):
    """data.skip_unreadable / skip_unreadable: a file with a NaN sample is counted and left out, not fatal."""
    lines, folder = nan_copy(speech_corpus, tmp_path)
    with open(tmp_path / "m.jsonl", "w") as manifest:
        for line in lines:
            manifest.write(json.dumps({**line, "audio_filepath": os.path.join(folder, line["audio_filepath"])}) + "\n")
        manifest.write(json.dumps({"audio_filepath": str(tmp_path / "nan.wav"), "text": lines[0]["text"]}) + "\n")
    stopped = run("test.py", "test_manifest=m.jsonl", "num_workers=2", cwd=tmp_path)
    assert stopped.returncode != 0 and "nan.wav: audio contains NaN" in stopped.stderr.strip().splitlines()[-1]
    # a file that went missing is unreadable too: named when it stops the run, left out with the others
    with open(tmp_path / "m.jsonl", "a") as manifest:
        manifest.write(json.dumps({"audio_filepath": str(tmp_path / "gone.wav"), "text": lines[0]["text"]}) + "\n")
    stopped = run("test.py", "test_manifest=m.jsonl", "num_workers=2", cwd=tmp_path)
    assert stopped.returncode != 0
    assert stopped.stderr.strip().splitlines()[-1].endswith(f"audio file not found: {tmp_path / 'gone.wav'}")
    tested = run("test.py", "test_manifest=m.jsonl", "num_workers=2", "skip_unreadable=true", cwd=tmp_path)
    assert tested.returncode == 0, tested.stderr
    report = json.loads(tested.stdout.strip().splitlines()[-1])
    assert report["skipped"] == 2 and report["utterances"] == len(lines)
    trained = run("train.py", "data.train_manifest=m.jsonl", "model=ds2_tiny", "epochs=1", "data.batch_size=7",
                  "data.num_workers=2", "data.skip_unreadable=true", "log_dir=null", "checkpoint.directory=ck",
                  cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    summary = json.loads(trained.stdout.strip().splitlines()[-1])
    assert summary["skipped_unreadable"] == 2 and summary["steps"] == 1
    listed = [json.loads(line) for line in open(tmp_path / "ck" / "skipped_utterances.jsonl")]
    assert sorted(os.path.basename(item["audio_filepath"]) for item in listed) == ["gone.wav", "nan.wav"]


def test_scores_per_source_from_a_manifest_field(speech_corpus, tmp_path):
    """test.py breakdown=source: WER/CER per value of a manifest field, which add up to the whole."""
    folder = os.path.dirname(speech_corpus)
    lines = [json.loads(line) for line in open(speech_corpus)]
    with open(tmp_path / "m.jsonl", "w") as manifest:
        for number, line in enumerate(lines):
            record = {**line, "audio_filepath": os.path.join(folder, line["audio_filepath"])}
            if number % 3:
                record["source"] = "espeak" if number % 3 == 1 else "other"
            manifest.write(json.dumps(record) + "\n")
    result = run("test.py", "test_manifest=m.jsonl", "num_workers=0", "breakdown=source", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    groups = report["breakdown"]["source"]
    assert set(groups) == {"(none)", "espeak", "other"}
    assert sum(group["utterances"] for group in groups.values()) == report["utterances"] == len(lines)
    assert 0 <= min(group["wer"] for group in groups.values()) <= report["wer"] <= max(g["wer"] for g in groups.values())
    assert "source=espeak: WER" in result.stderr


def test_outputs_never_overwrite_the_inputs(speech_corpus, tmp_path):
    """test.py report_path / save_outputs naming the manifest or the model, or a folder: one line, nothing written."""
    import shutil

    shutil.copy(speech_corpus, tmp_path / "m.jsonl")
    before = (tmp_path / "m.jsonl").read_bytes()
    for setting, words in (("report_path=m.jsonl", "would overwrite test_manifest"),
                           ("save_outputs=m.jsonl", "would overwrite test_manifest"),
                           (f"report_path={tmp_path}", "is a folder")):
        result = run("test.py", f"test_manifest={tmp_path / 'm.jsonl'}", setting, cwd=tmp_path)
        assert result.returncode != 0 and words in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert (tmp_path / "m.jsonl").read_bytes() == before


def test_a_file_name_starting_with_a_tilde_is_a_file(tmp_path):
    """Hydra reads `~key` as 'delete key'; an existing file of that name is transcribed."""
    import shutil

    shutil.copy(os.path.join(ROOT, "samples", "sample2.wav"), tmp_path / "~take two.wav")
    result = run("transcribe.py", "~take two.wav", "word_timings=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[0])["audio_path"] == "~take two.wav"


def test_a_failed_validation_keeps_the_trained_epoch(speech_corpus, tmp_path):
    """An unreadable validation file stops the run with one line, after last.pt of the trained epoch is saved."""
    nan_copy(speech_corpus, tmp_path)
    (tmp_path / "val.jsonl").write_text(json.dumps({"audio_filepath": str(tmp_path / "nan.wav"), "text": "a b"}) + "\n")
    result = run("train.py", f"data.train_manifest={speech_corpus}", "data.val_manifest=val.jsonl", "model=ds2_tiny",
                 "epochs=2", "data.batch_size=3", "data.num_workers=0", "log_dir=null", "checkpoint.directory=ck",
                 cwd=tmp_path)
    assert result.returncode != 0 and "nan.wav: audio contains NaN" in result.stderr.strip().splitlines()[-1]
    assert (tmp_path / "ck" / "last.pt").is_file()
