"""Drascula preparation end to end on a small fixture in the package's real layout.

The fixture is a fake `en/` folder of headerless unsigned 8-bit 11,025 Hz clips (generated tones with
digital silence around them) and a drascula.dat written here in the real version-6 structure, with a
second language so that reading English (language 0) is checked. The Debian package is not needed.
"""

import importlib.util
import json
import os
import re
import struct
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from deepspeech_pytorch.corpora import CorpusError, drascula
from deepspeech_pytorch.datasets import read_manifest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RATE = 11025

# entries of the English text arrays (entry 0 is always empty, as in the real file)
ENGLISH = {
    "text": ["", "THAT'S THE SECOND BIGGEST DOOR I'VE SEEN", "",
             "A VAMPIRE HAS KIDNAPPED THE GIRL IN ROOM 501",  # digits: how the actor read them is unknown
             "HE WEARS A TOUP\u00c9. HE SURE IS DRASCULA!",
             "THE CHURCH IS ALL BOARDED UP, IT MUST HAVE BEEN ABANDONED"],
    "textd": [""] * 57 + ["HOW DO YOU KNOW I'M A FOREIGNER?"] + [""] * 10 + ["HI THERE FOREIGNER"],
    "textb": ["", "I'M HERE, DRINKING"],
    "texti": ["", "MASTER, THIS IS NOT WORKING"],
    "textp": ["", "HI"],
}
ENGLISH["textd"][1] = "HEY IGOR, HOW IS EVERYTHING GOING?"

# clip file -> (seconds of tone, Hz); every clip also gets 0.5 s of digital silence at each end
CLIPS = {
    "1.ALS": (1.2, 300), "2.ALS": (0.6, 300), "3.ALS": (1.5, 300), "4.ALS": (1.3, 320),
    "5.ALS": (0.4, 300),  # 58 characters in 0.4 + 0.6 s: more than the clip can say
    "P1.ALS": (0.5, 500), "B1.ALS": (1.0, 450), "B61.ALS": (1.0, 450),
    "D1.ALS": (1.6, 200), "D57.ALS": (1.3, 310), "D68.ALS": (1.1, 150), "I1.ALS": (1.0, 250),
    "S1.ALS": (0.8, 900),  # a sound effect: no text array
}


def tone_als(path, seconds, freq, silence=0.5):
    """A clip as the game stores it: unsigned 8-bit samples, 128 is silence, no header."""
    t = np.arange(int(seconds * RATE)) / RATE
    wave = np.round(128 + 100 * np.sin(2 * np.pi * freq * t)).astype(np.uint8)
    quiet = np.full(int(silence * RATE), 128, dtype=np.uint8)
    np.concatenate([quiet, wave, quiet]).tofile(path)


def _text_block(entries):
    """One language of a text array: uint16 total, 2 padding bytes, entries padded to 4 bytes."""
    body = b""
    for entry in entries:
        data = entry.encode("cp437") + b"\0"
        pad = 4 - (len(data) + 2) % 4
        body += struct.pack(">H", len(data) + pad + 2) + data + b"\0" * pad
    return struct.pack(">H", len(body) + 2) + b"\0\0" + body


def write_dat(path, english=ENGLISH, version=6):
    """A drascula.dat in the real layout: header, 13 record tables, languages, 15 text arrays."""
    out = b"DRASCULA" + bytes([version])
    for number, (_, size) in enumerate(drascula.RECORD_TABLES):
        count = number % 3 + 1  # a few records of junk the reader must skip
        out += struct.pack(">H", count) + bytes(range(count * size))
    out += struct.pack(">H", 2)  # languages: English, then a second one the reader must not use
    for array in drascula.TEXT_ARRAYS:
        entries = english.get(array, ["", "UNUSED"])
        out += struct.pack(">H", len(entries))
        out += _text_block(entries)
        out += _text_block([f"OTRA LENGUA {i}" if entry else "" for i, entry in enumerate(entries)])
    with open(path, "wb") as handle:
        handle.write(out)
    return path


@pytest.fixture
def package(tmp_path):
    """(game folder, drascula.dat) of a tiny fake install."""
    game = tmp_path / "usr" / "share" / "scummvm" / "drascula"
    (game / "en").mkdir(parents=True)
    for name, (seconds, freq) in CLIPS.items():
        tone_als(str(game / "en" / name), seconds, freq)
    (game / "en" / "1.ALD").write_bytes(b"\x01\x02")  # other game files in the folder are ignored
    dat = write_dat(str(tmp_path / "usr" / "share" / "scummvm" / "drascula.dat"))
    return str(game), dat


def run_script(argv):
    spec = importlib.util.spec_from_file_location("data_script_drascula", os.path.join(REPO, "data", "drascula.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv)


def read_jsonl(path):
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def dominant_frequency(samples, rate=16000):
    spectrum = np.abs(np.fft.rfft(samples))
    return np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)]


def test_end_to_end_manifests_wavs_and_splits(tmp_path, package):
    game, dat = package
    target = tmp_path / "out"
    assert run_script(["--target-dir", str(target), "--game-dir", game, "--dat", dat, "--quiet", "--workers", "2"]) == 0

    val, test = read_jsonl(target / "val.jsonl"), read_jsonl(target / "test.jsonl")
    assert [(r["speaker"], r["text"]) for r in val] == [
        ("john_hacker", "that's the second biggest door i've seen"),
        ("john_hacker", "he wears a toupe he sure is drascula"),  # cp437 0x90 is É, folded to e
        ("drunk", "i'm here drinking"),
        ("john_hacker", "how do you know i'm a foreigner"),  # d57: John talking to the blind man
        ("pianist", "hi"),
    ]
    assert [(r["speaker"], r["text"]) for r in test] == [
        ("drascula", "hey igor how is everything going"),
        ("blind_man", "hi there foreigner"),
        ("igor", "master this is not working"),
    ]
    assert not {r["speaker"] for r in val} & {r["speaker"] for r in test}
    assert {r["source"] for r in val + test} == {"drascula"}
    assert set(val[0]) == {"audio_filepath", "text", "duration", "speaker", "source"}
    assert val[0]["audio_filepath"] == "wav/val/john_hacker_1.wav"

    tones = {"john_hacker_1": (1.2, 300), "drascula_d1": (1.6, 200), "blind_man_d68": (1.1, 150),
             "pianist_p1": (0.5, 500)}
    for record in val + test:
        audio = target / record["audio_filepath"]
        info = sf.info(str(audio))
        assert (info.format, info.subtype, info.samplerate, info.channels) == ("WAV", "PCM_16", 16000, 1)
        assert record["duration"] == pytest.approx(info.frames / 16000, abs=1e-3)
        name = os.path.splitext(os.path.basename(record["audio_filepath"]))[0]
        if name in tones:
            seconds, freq = tones[name]
            # 0.5 s of silence each side cut to 0.3 s, minus the 32 bytes the engine never plays
            assert record["duration"] == pytest.approx(seconds + 0.6, abs=0.01)
            samples = sf.read(str(audio))[0]
            assert dominant_frequency(samples) == pytest.approx(freq, abs=3)
            assert abs(samples.mean()) < 0.01  # unsigned 8-bit centred on 128, not read as signed
            assert 0.7 < np.abs(samples).max() < 0.85  # amplitude 100/128
    # the project's own reader accepts the manifests
    assert [e.text for e in read_manifest(str(target / "test.jsonl"))] == [r["text"] for r in test]

    summary = json.loads((target / "summary.json").read_text())
    assert summary["clip_files"] == len(CLIPS) and summary["kept"] == 8
    assert summary["splits"]["val"]["characters"] == ["john_hacker", "drunk", "pianist"]
    assert summary["splits"]["test"]["clips"] == 3
    assert summary["characters"]["john_hacker"] == {"split": "val", "clips": 3, "minutes": pytest.approx(
        (1.2 + 1.3 + 1.3 + 3 * 0.6) / 60, abs=0.01)}
    assert summary["dropped"] == {
        "no subtitle (empty or missing entry)": ["2.ALS", "B61.ALS"],
        "subtitle has characters outside the alphabet": ["3.ALS"],
        "no text array (a sound effect)": ["S1.ALS"],
        "subtitle too long for the clip (over 25 characters/s)": ["5.ALS"],
    }
    assert summary["minutes"] == pytest.approx(sum(r["duration"] for r in val + test) / 60, abs=0.01)


def test_duration_limits_and_characters_moved_to_val(tmp_path, package):
    game, dat = package
    target = tmp_path / "out"
    drascula.prepare(str(target), game, dat, limits=drascula.DurationLimits(maximum=2.0),
                     val_characters=("john_hacker", "igor"), progress=False)
    val, test = read_jsonl(target / "val.jsonl"), read_jsonl(target / "test.jsonl")
    assert [r["audio_filepath"] for r in val] == ["wav/val/john_hacker_1.wav", "wav/val/john_hacker_4.wav",
                                                  "wav/val/john_hacker_d57.wav", "wav/val/igor_i1.wav"]
    assert [r["speaker"] for r in test] == ["drunk", "blind_man", "pianist"]  # Drascula's 2.2 s clip is over the limit
    assert all(r["duration"] <= 2.0 for r in val + test)
    summary = json.loads((target / "summary.json").read_text())
    assert summary["dropped"]["outside the duration limits"] == ["D1.ALS"]
    with pytest.raises(CorpusError, match=r"unknown Drascula characters \['nosferatu'\]"):
        drascula.prepare(str(target), game, dat, val_characters=("nosferatu",), progress=False)


def test_missing_package_is_one_clear_line(tmp_path, package, capsys):
    game, dat = package
    missing_game = str(tmp_path / "nowhere" / "drascula")
    assert run_script(["--target-dir", str(tmp_path / "a"), "--game-dir", missing_game, "--dat", dat, "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: {missing_game} not found: drascula is not installed (apt-get install drascula scummvm-data)"
    missing_dat = str(tmp_path / "nowhere" / "drascula.dat")
    assert run_script(["--target-dir", str(tmp_path / "b"), "--game-dir", game, "--dat", missing_dat, "--quiet"]) == 1
    assert capsys.readouterr().err.strip().startswith(f"error: {missing_dat} not found: drascula is not installed")
    for name in os.listdir(os.path.join(game, "en")):
        os.remove(os.path.join(game, "en", name))
    assert run_script(["--target-dir", str(tmp_path / "c"), "--game-dir", game, "--dat", dat, "--quiet"]) == 1
    assert re.match(r"error: .*en: no \.ALS speech clips", capsys.readouterr().err)
    assert not (tmp_path / "a").exists() and not (tmp_path / "c" / "val.jsonl").exists()


def test_damaged_dat_files_are_named(tmp_path, package, capsys):
    game, dat = package
    data = open(dat, "rb").read()
    cases = {
        "truncated": (data[:-7], r"truncated at byte \d+ while reading textd1 \(language 1\)"),
        "wrong magic": (b"SCUMMVMX" + data[8:], r"not a drascula\.dat file"),
        "other version": (data[:8] + bytes([7]) + data[9:], r"version 7; this reader knows version 6"),
        "trailing bytes": (data + b"\0\0\0", r"3 unexpected bytes after the text arrays"),
    }
    for case, (content, message) in cases.items():
        path = tmp_path / f"{case.replace(' ', '_')}.dat"
        path.write_bytes(content)
        with pytest.raises(CorpusError, match=re.escape(str(path)) + ": " + message):
            drascula.read_texts(str(path))
    bad = tmp_path / "bad.dat"
    bad.write_bytes(data[:-7])
    assert run_script(["--target-dir", str(tmp_path / "out"), "--game-dir", game, "--dat", str(bad), "--quiet"]) == 1
    assert re.fullmatch(r"error: .*bad\.dat: truncated at byte \d+ while reading .*\n", capsys.readouterr().err)


def test_reader_picks_english_and_clip_names_map_to_characters(tmp_path):
    dat = write_dat(str(tmp_path / "drascula.dat"))
    texts = drascula.read_texts(dat)
    assert set(texts) == set(drascula.TEXT_ARRAYS)
    assert texts["text"][4] == "HE WEARS A TOUP\u00c9. HE SURE IS DRASCULA!"
    assert drascula.read_texts(dat, language=1)["texti"] == ["", "OTRA LENGUA 1"]
    with pytest.raises(CorpusError, match="has 2 languages, no language 5"):
        drascula.read_texts(dat, language=5)
    assert drascula.identify("123.ALS") == ("text", 123, "john_hacker")
    assert drascula.identify("d5.als") == ("textd", 5, "drascula")
    assert drascula.identify("D56.ALS") == ("textd", 56, "john_hacker")
    assert drascula.identify("D78.ALS") == ("textd", 78, "blind_man")
    assert drascula.identify("D79.ALS") == ("textd", 79, "drascula")
    assert drascula.identify("D82.ALS") == ("textd", 82, "bartender")
    assert drascula.identify("D83.ALS") == ("textd", 83, "trunk")
    assert drascula.identify("BJ3.ALS") == ("textbj", 3, "bj")
    assert drascula.identify("VB62.ALS") == ("textvb", 62, "von_braun")
    assert drascula.identify("S10.ALS") is None and drascula.identify("1.ALD") is None


@pytest.mark.skipif(not os.path.isfile(drascula.DAT_PATH), reason="scummvm-data is not installed")
def test_the_installed_drascula_dat_reads_whole():
    texts = drascula.read_texts()
    assert [len(texts[a]) for a in ("text", "textd", "textb", "textbj", "texte", "texti", "textl", "textp", "textt",
                                    "textvb")] == [501, 84, 15, 29, 24, 33, 32, 20, 25, 63]
    assert texts["textd"][68] == "HI THERE FOREIGNER"  # the blind man's first line (d68)
    assert texts["textbj"][2].startswith("NO, MY NAME IS BILLIE JEAN")


def test_script_runs_from_the_repository_root():
    result = subprocess.run([sys.executable, "data/drascula.py", "--help"], cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "--game-dir" in result.stdout and "--dat" in result.stdout and "--target-dir" in result.stdout
