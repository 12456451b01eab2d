import json
import random

import numpy as np
import pytest
import soundfile as sf
import torch

from deepspeech_pytorch.configs import FeatureConfig
from deepspeech_pytorch.datasets import (BucketingBatchSampler, ManifestEntry, ManifestError, SpeechDataset, collate,
                                         ctc_frames_needed, filter_by_duration, merge_manifests, padding_fraction,
                                         read_manifest, write_manifest)
from deepspeech_pytorch.labels import Alphabet, TranscriptError


@pytest.fixture
def clips(tmp_path):
    """Three WAVs of 0.5, 1.0, 1.5 s with transcripts in .txt files."""
    for number, seconds in enumerate((0.5, 1.0, 1.5)):
        sf.write(tmp_path / f"c{number}.wav", np.zeros(int(seconds * 16000), dtype=np.float32), 16000)
        (tmp_path / f"c{number}.txt").write_text(f"Clip number {'one two three'.split()[number]}\n")
    return tmp_path


def test_csv_manifest_of_the_original_project(clips):
    (clips / "m.csv").write_text("".join(f"c{i}.wav,{clips}/c{i}.txt\n" for i in range(3)))
    entries = read_manifest(str(clips / "m.csv"))
    assert [e.text for e in entries] == ["Clip number one", "Clip number two", "Clip number three"]
    assert [e.duration for e in entries] == pytest.approx([0.5, 1.0, 1.5])
    assert entries[0].audio_path == str(clips / "c0.wav")


def test_v3_json_manifest(clips):
    document = {"root_path": str(clips), "samples": [{"wav_path": f"c{i}.wav", "transcript_path": f"c{i}.txt"} for i in range(3)]}
    (clips / "m.json").write_text(json.dumps(document))
    entries = read_manifest(str(clips / "m.json"))
    assert len(entries) == 3 and entries[2].duration == pytest.approx(1.5)


def test_json_lines_round_trip(clips, tmp_path):
    entries = [ManifestEntry(str(clips / f"c{i}.wav"), f"text {i}", 0.5 * (i + 1)) for i in range(3)]
    write_manifest(str(tmp_path / "sub" / "m.jsonl"), entries)
    first = json.loads((tmp_path / "sub" / "m.jsonl").read_text().splitlines()[0])
    assert first == {"audio_filepath": "../c0.wav", "text": "text 0", "duration": 0.5}
    again = read_manifest(str(tmp_path / "sub" / "m.jsonl"))
    assert [(e.audio_path, e.text, e.duration) for e in again] == [(e.audio_path, e.text, e.duration) for e in entries]


@pytest.mark.parametrize("name,content,message", [
    ("bad.csv", "c0.wav,c0.txt\nonly_one_field\n", "bad.csv line 2: expected 'wav_path,txt_path'"),
    ("missing.csv", "c0.wav,c0.txt\n\nnope.wav,c1.txt\n", "missing.csv line 3: audio file not found"),
    ("notxt.csv", "c0.wav,none.txt\n", "notxt.csv line 1: transcript file not found"),
    ("bad.jsonl", '{"audio_filepath": "c0.wav", "text": "a"}\n{broken\n', "bad.jsonl line 2: not valid JSON"),
    ("keys.jsonl", '{"path": "c0.wav", "text": "a"}\n', "keys.jsonl line 1: expected an object"),
    ("empty.jsonl", '{"audio_filepath": "c0.wav", "text": "  "}\n', "keys.jsonl|empty.jsonl line 1: empty transcript"),
    ("dur.jsonl", '{"audio_filepath": "c0.wav", "text": "a", "duration": -1}\n', "dur.jsonl line 1: invalid duration"),
    ("blank.jsonl", "\n\n", "manifest is empty"),
])
def test_malformed_manifests_name_file_and_line(clips, name, content, message):
    (clips / name).write_text(content)
    with pytest.raises(ManifestError, match=message):
        read_manifest(str(clips / name))


def test_missing_manifest(tmp_path):
    with pytest.raises(ManifestError, match="manifest not found"):
        read_manifest(str(tmp_path / "none.jsonl"))


def test_filter_and_merge(clips):
    (clips / "a.csv").write_text("c0.wav,c0.txt\nc1.wav,c1.txt\n")
    (clips / "b.csv").write_text("c1.wav,c1.txt\nc2.wav,c2.txt\n")
    merged = merge_manifests([str(clips / "a.csv"), str(clips / "b.csv")])
    assert len(merged) == 3
    assert [e.duration for e in filter_by_duration(merged, 0.6, 1.2)] == pytest.approx([1.0])


def test_dataset_items_and_collate(clips):
    (clips / "m.csv").write_text("".join(f"c{i}.wav,c{i}.txt\n" for i in range(3)))
    dataset = SpeechDataset(read_manifest(str(clips / "m.csv")), Alphabet(), FeatureConfig())
    sample = dataset[1]
    assert sample.features.shape == (161, 101)
    assert Alphabet().decode(sample.target.tolist()) == "clip number two"
    batch = collate([dataset[0], dataset[2]])
    assert batch.features.shape == (2, 161, 151)
    assert batch.feature_lengths.tolist() == [51, 151]
    assert batch.target_lengths.tolist() == [15, 17] and batch.targets.shape == (32,)
    assert batch.indices.tolist() == [0, 2]


def test_transcript_empty_after_normalisation_is_an_error(clips):
    entry = ManifestEntry(str(clips / "c0.wav"), "123 456", 0.5)
    with pytest.raises(TranscriptError, match="c0.wav"):
        SpeechDataset([entry], Alphabet(), FeatureConfig())


def test_bucketing_sampler_covers_everything_once_and_is_seeded():
    durations = [random.Random(3).uniform(1, 15) for _ in range(103)]
    sampler = BucketingBatchSampler(durations, 8, seed=7, sorted_first_epoch=True)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert sorted(i for b in batches for i in b) == list(range(103))
        assert len(batches) == len(sampler) == 13
    sampler.set_epoch(0)
    first = list(sampler)
    assert [max(durations[i] for i in b) for b in first] == sorted(max(durations[i] for i in b) for b in first)
    sampler.set_epoch(1)
    again = BucketingBatchSampler(durations, 8, seed=7, sorted_first_epoch=True)
    again.set_epoch(1)
    assert list(sampler) == list(again)
    again.set_epoch(1, start_batch=5)
    assert list(again) == list(sampler)[5:]


def test_distributed_ranks_split_each_global_batch():
    durations = list(np.linspace(1, 10, 51))
    single = BucketingBatchSampler(durations, 8, seed=1)
    single.set_epoch(2)
    ranks = []
    for rank in range(2):
        sampler = BucketingBatchSampler(durations, 4, seed=1, num_replicas=2, rank=rank)
        sampler.set_epoch(2)
        ranks.append(list(sampler))
    assert len(ranks[0]) == len(ranks[1]) == 7  # 51 = 6 global batches of 8 + one of 3
    for global_batch, first, second in zip(single, *ranks):
        assert sorted(first + second) == sorted(global_batch)  # together: what one process trains on
        assert not set(first) & set(second)
    with pytest.raises(ValueError, match="rank"):
        BucketingBatchSampler(durations, 4, num_replicas=2, rank=2)


def test_bucketing_reduces_padding():
    durations = [random.Random(i).uniform(1, 16) for i in range(400)]
    bucketed = BucketingBatchSampler(durations, 16, seed=0)
    order = list(range(400))
    random.Random(0).shuffle(order)
    unsorted = [order[i:i + 16] for i in range(0, 400, 16)]
    assert padding_fraction(list(bucketed), durations) < 0.05 < padding_fraction(unsorted, durations)


def test_ctc_needs_a_frame_per_label_and_a_blank_between_repeats():
    alphabet = Alphabet()
    assert ctc_frames_needed(alphabet.encode("abc")) == 3
    assert ctc_frames_needed(alphabet.encode("hello")) == 6  # l-blank-l
    assert ctc_frames_needed(alphabet.encode("aaa")) == 5


def test_too_short_utterances_are_found_from_durations_with_the_models_arithmetic(tmp_path):
    from deepspeech_pytorch.models import build_model, preset

    features = FeatureConfig()
    model = build_model(preset("ds2_tiny"), features.num_features, len(Alphabet()))
    entries = [ManifestEntry(str(tmp_path / "a.wav"), "x" * 40, 0.3),  # 16 output frames for 40 labels
               ManifestEntry(str(tmp_path / "b.wav"), "ok", 0.3),
               ManifestEntry(str(tmp_path / "c.wav"), "a", 0.01),  # one output frame
               ManifestEntry(str(tmp_path / "d.wav"), "ab", 0.03)]  # 2 frames, 2 labels
    dataset = SpeechDataset(entries, Alphabet(), features)
    found = dataset.too_short(model.output_lengths)
    assert sorted(found) == [0, 2]
    assert "16 output frames, CTC needs 79" in found[0] and "1 output frame" in found[2]
    # the count agrees with what the model makes of real features of that length
    sf.write(tmp_path / "a.wav", np.zeros(int(0.3 * 16000), dtype=np.float32), 16000)
    sample = dataset[0]
    _, lengths = model.eval()(sample.features[None], torch.tensor([sample.features.shape[1]]))
    assert int(lengths[0]) == 16


def test_unreadable_audio_comes_back_as_a_failure_and_collate_sets_it_aside(clips):
    samples = np.full(8000, 0.1, dtype=np.float32)
    samples[5] = np.nan
    sf.write(clips / "nan.wav", samples, 16000, subtype="FLOAT")
    entries = [ManifestEntry(str(clips / "c0.wav"), "one", 0.5), ManifestEntry(str(clips / "nan.wav"), "two", 0.5),
               ManifestEntry(str(clips / "c1.wav"), "three", 1.0)]
    dataset = SpeechDataset(entries, Alphabet(), FeatureConfig())
    bad = dataset[1]
    assert bad.features is None and bad.failure.unreadable and bad.failure.audio_path == str(clips / "nan.wav")
    assert bad.failure.message == f"{clips / 'nan.wav'}: audio contains NaN or infinite samples"
    batch = collate([dataset[0], bad, dataset[2]])
    assert batch.indices.tolist() == [0, 2] and batch.failures == (bad.failure,)
    assert batch.feature_lengths.tolist() == [51, 101] and batch.target_lengths.tolist() == [3, 5]
    assert len(collate([bad])) == 0


def test_batch_select_equals_collating_only_those_rows(clips):
    (clips / "m.csv").write_text("".join(f"c{i}.wav,c{i}.txt\n" for i in range(3)))
    dataset = SpeechDataset(read_manifest(str(clips / "m.csv")), Alphabet(), FeatureConfig())
    full = collate([dataset[0], dataset[1], dataset[2]])
    for rows in ([0, 2], [0, 1], [1]):
        picked, expected = full.select(rows), collate([dataset[r] for r in rows])
        for name in ("features", "feature_lengths", "targets", "target_lengths", "indices"):
            assert torch.equal(getattr(picked, name), getattr(expected, name)), (rows, name)
    assert len(full.select([])) == 0


def test_manifest_in_another_encoding_is_named_with_its_line(tmp_path):
    """A manifest saved as Latin-1 was a bare 'utf-8 codec can't decode' naming no file."""
    path = tmp_path / "latin.jsonl"
    good = json.dumps({"audio_filepath": "a.wav", "text": "a"})
    path.write_bytes((good + "\n" + '{"audio_filepath": "b.wav", "text": "caf\xe9"}\n').encode("latin-1"))
    with pytest.raises(ManifestError) as caught:
        read_manifest(str(path))
    assert str(caught.value) == f"{path} line 2: manifest is not UTF-8 text (byte 0xe9); save it as UTF-8"


def test_missing_audio_is_unreadable_and_can_be_left_out(tmp_path):
    """A file that went missing stops reading with its name, or with a `skipped` mapping is left out and listed."""
    sf.write(tmp_path / "a.wav", np.zeros(1600, dtype=np.float32), 16000)
    (tmp_path / "bad.wav").write_bytes(b"RIFF not really")
    lines = [{"audio_filepath": "a.wav", "text": "one"}, {"audio_filepath": "gone.wav", "text": "two"},
             {"audio_filepath": "bad.wav", "text": "three"}]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.raises(ManifestError, match=f"line 2: audio file not found: {tmp_path / 'gone.wav'}$"):
        read_manifest(str(tmp_path / "m.jsonl"))
    skipped = {}
    entries = read_manifest(str(tmp_path / "m.jsonl"), skipped)
    assert [entry.text for entry in entries] == ["one"]
    assert sorted(skipped) == [str(tmp_path / "bad.wav"), str(tmp_path / "gone.wav")]
    assert "line 3" in skipped[str(tmp_path / "bad.wav")]
    (tmp_path / "none.jsonl").write_text(json.dumps(lines[1]) + "\n")
    with pytest.raises(ManifestError, match=r"manifest has no entries \(1 left out as unreadable\)"):
        read_manifest(str(tmp_path / "none.jsonl"), {})
