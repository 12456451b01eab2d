"""Beneath a Steel Sky reader: RNC method 1 unpacking, the text code, and data/sky.py end to end on a
small game-data fixture written in the real sky.dnr/sky.dsk layout (the Debian package is not needed)."""

import json
import os
import struct

import numpy as np
import pytest
import soundfile as sf

from deepspeech_pytorch.corpora import CorpusError
from deepspeech_pytorch.corpora import sky
from deepspeech_pytorch.corpora.rnc import RNCError, crc16, unpack
from conftest import load_script

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))



# ---------------------------------------------------------------- a small RNC method 1 packer for the tests

class BitWriter:
    """The writer's side of RNC's stream: bits fill 16-bit little-endian words first bit lowest, a new word
    is opened where the data ends when the current one is full, and literal bytes go where the data ends."""

    def __init__(self):
        self.out = bytearray()
        self.word = None  # byte offset of the word being filled
        self.used = 16

    def bits(self, value, n):
        for k in range(n):
            if self.used == 16:
                self.word = len(self.out)
                self.out += b"\0\0"
                self.used = 0
            if (value >> k) & 1:
                self.out[self.word + self.used // 8] |= 1 << (self.used % 8)
            self.used += 1

    def literals(self, data):
        self.out += data


def write_value(writer, value):
    """A number through a table where all 16 symbols have 4-bit codes (symbol s is code s, first bit highest)."""
    symbol = value if value < 2 else value.bit_length()
    for k in range(3, -1, -1):
        writer.bits((symbol >> k) & 1, 1)
    if symbol >= 2:
        writer.bits(value - (1 << (symbol - 1)), symbol - 1)


def tokens(data, start, end):
    """Greedy LZ77 over data[start:end] (matches may reach back before `start`): [(literals, (distance, length))],
    the last pair's match None."""
    result, literals, i, seen = [], bytearray(), start, {}
    for j in range(max(0, start - 4096), start):
        seen.setdefault(bytes(data[j:j + 3]), []).append(j)
    while i < end:
        best = (0, 0)
        for j in reversed(seen.get(bytes(data[i:i + 3]), [])[-32:]):
            if i - j > 4096:
                break
            length = 0
            while i + length < end and length < 200 and data[j + length] == data[i + length]:
                length += 1
            if length > best[1]:
                best = (i - j, length)
        if best[1] >= 3:
            result.append((bytes(literals), best))
            literals = bytearray()
            for k in range(i, i + best[1]):
                seen.setdefault(bytes(data[k:k + 3]), []).append(k)
            i += best[1]
        else:
            seen.setdefault(bytes(data[i:i + 3]), []).append(i)
            literals.append(data[i])
            i += 1
    result.append((bytes(literals), None))
    return result


def rnc_pack(data, chunk_size=4096):
    """An RNC method 1 block (header included) for `data`, in chunks of `chunk_size` unpacked bytes."""
    writer = BitWriter()
    writer.bits(0, 2)  # lock and key flags
    chunks = 0
    for start in range(0, len(data), chunk_size):
        chunks += 1
        steps = tokens(data, start, min(len(data), start + chunk_size))
        for _ in range(3):  # literal-run, distance and match-length tables: 16 symbols of 4 bits
            writer.bits(16, 5)
            for _ in range(16):
                writer.bits(4, 4)
        writer.bits(len(steps), 16)
        for literals, match in steps:
            write_value(writer, len(literals))
            writer.literals(literals)
            if match is not None:
                write_value(writer, match[0] - 1)
                write_value(writer, match[1] - 2)
    packed = bytes(writer.out)
    return b"RNC\x01" + struct.pack(">IIHHBB", len(data), len(packed), crc16(data), crc16(packed), 0, chunks) + packed


# ---------------------------------------------------------------- RNC

# "hello" as one literal run, bit by bit (stream order, each number first bit lowest): flags 00; literal-run
# table: 5-bit count 4, lengths 0 0 0 1 (symbol 3 gets the only code, "0"); distance and length tables: count
# 0; steps: 16-bit 1; symbol 3 ("0") and its two extra bits 01 = 4 + 1 = 5 literals. 52 bits = four words
# 0x0010 0x0008 0x0002 0x0004, then the 5 literal bytes. CRCs: 0x34d2 of "hello", 0x649a of the 13 packed bytes.
HELLO_BLOCK = bytes.fromhex("524e4301000000050000000d34d2649a0001" "1000080002000400" "68656c6c6f")


def test_rnc_crc_is_crc16_arc():
    assert crc16(b"123456789") == 0xBB3D  # the published check value of CRC-16/ARC
    assert crc16(b"") == 0


def test_rnc_unpacks_a_hand_built_literal_block():
    assert unpack(HELLO_BLOCK) == b"hello"


def test_rnc_rejects_damaged_blocks():
    with pytest.raises(RNCError, match="CRC of the packed data"):
        unpack(HELLO_BLOCK[:-1] + b"x", "fixture")
    with pytest.raises(RNCError, match="no RNC signature"):
        unpack(b"XYZ" + HELLO_BLOCK[3:])
    with pytest.raises(RNCError, match="method 2"):
        unpack(HELLO_BLOCK[:3] + b"\x02" + HELLO_BLOCK[4:])
    with pytest.raises(RNCError, match="only 12 present"):
        unpack(HELLO_BLOCK[:-1])
    wrong_size = HELLO_BLOCK[:4] + struct.pack(">I", 6) + HELLO_BLOCK[8:]  # header claims 6 bytes
    with pytest.raises(RNCError, match="fixture"):
        unpack(wrong_size, "fixture")
    # unchecked CRC: the decoder itself must notice a literal run past the end of the data
    truncated = HELLO_BLOCK[:8] + struct.pack(">I", 11) + HELLO_BLOCK[12:-2]
    with pytest.raises(RNCError, match="past the end"):
        unpack(truncated, check_crc=False)


def test_rnc_round_trip_with_matches_and_several_chunks():
    rng = np.random.default_rng(0)
    data = (bytes(rng.integers(0, 256, 300, dtype=np.uint8)) + b"abcabcabcabcabcabcabcabcx" * 40
            + b"\x80" * 3000 + bytes(rng.integers(0, 256, 2000, dtype=np.uint8)) + b"tail")
    block = rnc_pack(data, chunk_size=2048)
    assert block[17] == 4 and len(block) < len(data)  # four chunks, and matches made it smaller
    assert unpack(block) == data
    assert unpack(rnc_pack(b"")) == b""


# ---------------------------------------------------------------- text

def test_text_code_decodes_hand_assembled_bits():
    # "Hey!" in the v0.0372 code: H 1110001, e 0010, y 1101101, ! 1101100, end 100000 = 31 bits, 16 units
    bits = 0b11100010_01011011_01110110_01000000
    section = struct.pack("<HHB", 4, 5, 16) + bits.to_bytes(4, "big")
    assert sky.decode_text_section(section, "hand") == ["Hey!"]
    assert len(sky.HUFFMAN_CODE) == 123 and sum(2.0 ** -len(code) for code in sky.HUFFMAN_CODE.values()) == 1.0


def encode_section(texts):
    """A text section file in the real layout: block sums, skip table, 2-bit-aligned Huffman texts."""
    pieces, skips = [], []
    for text in texts:
        bits = "".join(sky.HUFFMAN_CODE[byte] for byte in text.encode("latin-1")) + sky.HUFFMAN_CODE[0]
        long_form = len(bits) > 2 * 127
        bits += "0" * (-len(bits) % (16 if long_form else 2))
        units = len(bits) // 2
        skips.append(0x80 | units >> 3 if long_form else units)
        pieces.append((bits, units))
    sums = [sum(units for _, units in pieces[block:block + 32]) for block in range(0, len(texts) - 32, 32)]
    skip_table = 4 + 2 * len(sums)
    header = struct.pack(f"<HH{len(sums)}H", skip_table, skip_table + len(texts), *sums)
    bits = "".join(bits for bits, _ in pieces)
    bits += "0" * (-len(bits) % 8)
    return header + bytes(skips) + int(bits, 2).to_bytes(len(bits) // 8, "big")


def test_text_section_round_trip_and_length_check():
    texts = [f"Line number {'ABCDEFGHIJKLMNOPQRSTUVWXYZ'[i % 26]}." for i in range(70)] + ["x" * 80]
    section = encode_section(texts)
    assert sky.decode_text_section(section, "fixture") == texts
    damaged = bytearray(section)
    skip_table = struct.unpack_from("<H", section)[0]
    damaged[skip_table + 40] -= 1  # text 40 now ends after its recorded length
    with pytest.raises(CorpusError, match="fixture: text 40 does not end"):
        sky.decode_text_section(bytes(damaged), "fixture")


def test_transcript_cleaning():
    alphabet = sky.Alphabet()
    assert sky.clean_text("It's titled `PUSSIES ON PARADE'!", alphabet) == "it's titled pussies on parade"
    assert sky.clean_text("No. Never 'eard of 'im - doin' nothin'...", alphabet) == "no never eard of im doin nothin"
    assert sky.clean_text("WD40! This stuff is ALWAYS useful!", alphabet) == ""  # digits: spoken form unknown
    assert sky.clean_text("...", alphabet) == ""


def test_speech_file_numbers():
    assert sky.text_number_of_speech(50007) == (0, 7)
    assert sky.text_number_of_speech(50600) == (1, 0)
    assert sky.text_number_of_speech(55272) == (7, 42)
    assert sky.text_number_of_speech(59500) is None  # CD introduction
    assert sky.text_number_of_speech(49999) is None


# ---------------------------------------------------------------- end to end

def tone(frequency, seconds, amplitude=64):
    """8-bit unsigned samples at 11,025 Hz."""
    t = np.arange(int(round(seconds * sky.SPEECH_RATE))) / sky.SPEECH_RATE
    return (128 + np.round(amplitude * np.sin(2 * np.pi * frequency * t))).astype(np.uint8).tobytes()


def packed_file(samples):
    """A speech file as the game stores most: header flagged as packed, then an RNC block of the samples."""
    total = sky.FILE_HEADER_SIZE + len(samples)
    header = struct.pack("<11H", 0x0081 | (total >> 16) << 8, *([0x8080] * 5), total & 0xFFFF, *([0x8080] * 4))
    return header + rnc_pack(samples, chunk_size=4096)


def stored_file(samples):
    total = sky.FILE_HEADER_SIZE + len(samples)
    return struct.pack("<11H", 0, 0, 0, 0, 0, 0, total & 0xFFFF, 0, 0, 0, 0) + samples


def write_game(folder, files):
    """sky.dnr and sky.dsk for {number: (data, stored_as_is, offset_in_16_byte_units)}."""
    folder.mkdir(parents=True, exist_ok=True)
    disk, directory = bytearray(), [struct.pack("<I", len(files))]
    for number, (data, stored_as_is, in_units) in files.items():
        if in_units:
            disk += b"\0" * (-len(disk) % 16)
        offset = (len(disk) >> 4) | 0x800000 if in_units else len(disk)
        size = len(data) | (0x800000 if stored_as_is else 0)
        directory.append(struct.pack("<H", number) + offset.to_bytes(3, "little") + size.to_bytes(3, "little"))
        disk += data
    (folder / "sky.dnr").write_bytes(b"".join(directory))
    (folder / "sky.dsk").write_bytes(bytes(disk))


LONG_LINE = ("Doin' the ROUNDS, are you? Well, don't let me stop you - the LINC has eyes EVERYWHERE, "
             "you know, and nothing escapes it.")


@pytest.fixture()
def game(tmp_path):
    texts = ["\x8e\x8f", "Hello there, `Foster'.", "I'm just PRACTISING...", "Foster", "Hobbins", "WD40! Useful stuff."]
    texts += [f"Object {i}" for i in range(6, 33)] + [LONG_LINE] + [f"Thing {i}" for i in range(34, 40)]
    files = {
        60150: (b"a font, not speech" * 4, True, False),
        sky.TEXT_FILE_BASE: (encode_section(texts), True, True),
        50001: (packed_file(tone(440, 0.6)), False, True),
        50002: (stored_file(tone(300, 0.4)), True, False),
        50005: (packed_file(tone(200, 0.5)), False, False),  # digits in its text: left out
        50033: (packed_file(tone(500, 1.0)), False, True),
        50045: (packed_file(tone(250, 0.3)), False, False),  # section 0 has only 40 texts
        59500: (stored_file(b"\x10" * 800), True, False),  # CD introduction: no text number
    }
    write_game(tmp_path / "game", files)
    return tmp_path / "game"


def dominant_frequency(samples, rate=16000):
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return np.argmax(spectrum) * rate / len(samples)


def test_prepare_end_to_end_and_resume(tmp_path, game, caplog):
    target = tmp_path / "out"
    main = load_script("sky")
    with caplog.at_level("INFO", logger="deepspeech_pytorch.corpora"):
        assert main(["--target-dir", str(target), "--data-dir", str(game), "--quiet", "--workers", "2"]) == 0
    records = [json.loads(line) for line in open(target / "sky_train.jsonl")]
    assert [r["text"] for r in records] == [
        "hello there foster", "i'm just practising",
        "doin the rounds are you well don't let me stop you the linc has eyes everywhere "
        "you know and nothing escapes it"]
    assert [r["text_id"] for r in records] == ["0-1", "0-2", "0-33"]
    assert all(r["source"] == "sky" for r in records)
    assert "3 lines" in caplog.text and "1 no text number (CD introduction files)" in caplog.text
    assert "1 no text with that number" in caplog.text and "1 unusable text" in caplog.text
    for record, seconds, frequency in zip(records, (0.6, 0.4, 1.0), (440, 300, 500)):
        samples, rate = sf.read(str(target / record["audio_filepath"]))
        info = sf.info(str(target / record["audio_filepath"]))
        assert (rate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert record["duration"] == pytest.approx(seconds, abs=1e-3)  # the 22-byte header is not audio
        assert len(samples) / 16000 == pytest.approx(record["duration"], abs=1e-3)
        assert dominant_frequency(samples) == pytest.approx(frequency, abs=3)
        # unsigned 8-bit around 128: a 64-step sine is amplitude 0.5 (signed reading would make it ~1)
        assert np.sqrt(np.mean(samples[200:-200] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.03)
    # a second run reuses the WAVs and applies new duration limits
    first_wav = target / records[0]["audio_filepath"]
    stamp = os.path.getmtime(first_wav)
    assert main(["--target-dir", str(target), "--data-dir", str(game), "--quiet", "--min-duration", "0.5"]) == 0
    again = [json.loads(line) for line in open(target / "sky_train.jsonl")]
    assert [r["text_id"] for r in again] == ["0-1", "0-33"]
    assert os.path.getmtime(first_wav) == stamp


def test_missing_package_is_one_clear_line(tmp_path, capsys):
    status = load_script("sky")(["--target-dir", str(tmp_path / "out"), "--data-dir", str(tmp_path / "none")])
    error = capsys.readouterr().err.strip()
    assert status == 1 and "\n" not in error
    assert error.startswith("error: ") and "sky.dnr not found" in error and "beneath-a-steel-sky" in error


def test_damaged_speech_file_is_named(tmp_path):
    samples = tone(440, 0.3)
    damaged = bytearray(packed_file(samples))
    damaged[-5] ^= 0xFF
    write_game(tmp_path / "game", {sky.TEXT_FILE_BASE: (encode_section(["?", "Hey!"]), True, False),
                                   50001: (bytes(damaged), False, False)})
    with pytest.raises(CorpusError, match=r"sky\.dsk file 50001: CRC"):
        sky.prepare(str(tmp_path / "out"), str(tmp_path / "game"), progress=False)
