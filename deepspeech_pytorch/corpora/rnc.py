"""Rob Northen Compression (RNC ProPack) method 1: the LZ77 + Huffman packer of many 1990s games.

Written from the public format description (MultimediaWiki "RNC ProPack") and checked on the packed
files of Beneath a Steel Sky. A packed block is an 18-byte big-endian header followed by the data:

    0  "RNC" and the method byte (1)       8  packed length (bytes after the header)
    4  unpacked length                     12 CRC-16 of the unpacked data, 14 CRC-16 of the packed data
    16 leeway (for in-place unpacking)     17 number of chunks

The data is a bit stream read least-significant bit first from little-endian 16-bit words, with
literal bytes stored whole between the words. It opens with two flag bits (lock, key), then one or
more chunks, each: three Huffman tables (literal run lengths, match distances, match lengths; each a
5-bit symbol count and a 4-bit code length per symbol, canonical codes), a 16-bit count of steps,
and that many steps of "a run of literal bytes, then (except after the last) a match". A table's
symbol `s` stands for the number `s` when `s < 2`, else `2**(s-1)` plus `s-1` further bits;
distances are that number + 1 and match lengths that number + 2.

The reader keeps one 16-bit word of look-ahead: literal bytes start where that look-ahead word
starts, and after them the look-ahead is reloaded from the byte after the last literal.
"""

from __future__ import annotations

import struct
from typing import Dict, List, Tuple

SIGNATURE = b"RNC"
HEADER_SIZE = 18  # bytes
_HEADER = struct.Struct(">3sBIIHHBB")


class RNCError(ValueError):
    """A block that is not RNC method 1 or does not decode (bad header, code, CRC or length)."""


def _crc_table() -> List[int]:
    table = []
    for byte in range(256):
        value = byte
        for _ in range(8):
            value = (value >> 1) ^ 0xA001 if value & 1 else value >> 1
        table.append(value)
    return table


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """CRC-16 as RNC computes it (reflected polynomial 0xA001, initial value 0; a.k.a. CRC-16/ARC)."""
    table, value = _CRC_TABLE, 0
    for byte in data:
        value = (value >> 8) ^ table[(value ^ byte) & 0xFF]
    return value


class RNCHeader:
    """The fields of an RNC block header."""

    __slots__ = ("method", "unpacked_size", "packed_size", "unpacked_crc", "packed_crc", "leeway", "chunks")

    def __init__(self, data: bytes, where: str = "RNC block") -> None:
        if len(data) < HEADER_SIZE:
            raise RNCError(f"{where}: {len(data)} bytes is shorter than the {HEADER_SIZE}-byte RNC header")
        (signature, self.method, self.unpacked_size, self.packed_size, self.unpacked_crc, self.packed_crc,
         self.leeway, self.chunks) = _HEADER.unpack_from(data)
        if signature != SIGNATURE:
            raise RNCError(f"{where}: no RNC signature (starts {bytes(data[:4])!r})")


def is_rnc(data: bytes) -> bool:
    """True when `data` starts with an RNC method 1 header."""
    return len(data) >= HEADER_SIZE and data[:3] == SIGNATURE and data[3] == 1


class _BitReader:
    """LSB-first bits from little-endian 16-bit words, with literal bytes read in between.

    `buffer` holds `count` bits (always 16 to 31 between calls): the unread rest of earlier words
    below one whole look-ahead word, which was loaded from `data[position - 2:position]`.
    """

    def __init__(self, data: bytes, start: int) -> None:
        self.data = bytes(data) + b"\0\0\0\0"  # the look-ahead may run a word past the end
        self.end = len(data)
        self.buffer = self._word(start)
        self.count = 16
        self.position = start + 2

    def _word(self, at: int) -> int:
        return self.data[at] | (self.data[at + 1] << 8) if at + 1 < len(self.data) else 0

    def bits(self, n: int) -> int:
        """The next `n` bits (n <= 16) as an integer, first bit lowest."""
        value = self.buffer & ((1 << n) - 1)
        self.buffer >>= n
        self.count -= n
        if self.count < 16:
            self.buffer |= self._word(self.position) << self.count
            self.position += 2
            self.count += 16
        return value

    def literal_bytes(self, n: int) -> bytes:
        """`n` bytes stored whole, starting where the look-ahead word starts; reloads the look-ahead."""
        start = self.position - 2
        if start + n > self.end:
            raise RNCError(f"literal run of {n} bytes at byte {start} runs past the end of the packed data")
        self.count -= 16
        self.buffer &= (1 << self.count) - 1
        self.position = start + n
        self.buffer |= self._word(self.position) << self.count
        self.position += 2
        self.count += 16
        return self.data[start:start + n]


class _Table:
    """A canonical Huffman code over symbols 0..n-1, read bit by bit (first bit most significant)."""

    def __init__(self, reader: _BitReader) -> None:
        count = reader.bits(5)
        lengths = [reader.bits(4) for _ in range(count)]
        self.codes: Dict[Tuple[int, int], int] = {}
        code = 0
        for length in range(1, 17):
            for symbol, symbol_length in enumerate(lengths):
                if symbol_length == length:
                    self.codes[(length, code)] = symbol
                    code += 1
            code <<= 1
        self.longest = max(lengths, default=0)

    def value(self, reader: _BitReader) -> int:
        """Decode one symbol and its extra bits: the number it stands for."""
        code = 0
        for length in range(1, self.longest + 1):
            code = (code << 1) | reader.bits(1)
            symbol = self.codes.get((length, code))
            if symbol is not None:
                if symbol < 2:
                    return symbol
                return (1 << (symbol - 1)) | reader.bits(symbol - 1)
        raise RNCError("invalid Huffman code in the packed data")


def unpack(data: bytes, where: str = "RNC block", check_crc: bool = True) -> bytes:
    """Decompress one RNC method 1 block (header included); `where` names it in errors.

    Checks the packed length against the data, the unpacked length against the header and, when
    `check_crc`, both CRCs. Raises RNCError naming `where` and what is wrong.
    """
    header = RNCHeader(data, where)
    if header.method != 1:
        raise RNCError(f"{where}: RNC method {header.method} is not supported (only method 1)")
    packed = bytes(data[HEADER_SIZE:HEADER_SIZE + header.packed_size])
    if len(packed) != header.packed_size:
        raise RNCError(f"{where}: header says {header.packed_size} packed bytes, only {len(packed)} present")
    if check_crc and crc16(packed) != header.packed_crc:
        raise RNCError(f"{where}: CRC of the packed data is {crc16(packed):#06x}, header says {header.packed_crc:#06x}")
    output = bytearray()
    reader = _BitReader(packed, 0)
    try:
        reader.bits(2)  # lock and key flags; encrypted blocks are not used by the games we read
        while len(output) < header.unpacked_size:
            literal_lengths, distances, match_lengths = _Table(reader), _Table(reader), _Table(reader)
            steps = reader.bits(16)
            for step in range(steps):
                run = literal_lengths.value(reader)
                if run:
                    output += reader.literal_bytes(run)
                if step == steps - 1:
                    break
                distance = distances.value(reader) + 1
                length = match_lengths.value(reader) + 2
                if distance > len(output):
                    raise RNCError(f"match {distance} bytes back, before the start of the output")
                start = len(output) - distance
                if distance >= length:
                    output += output[start:start + length]
                else:  # overlapping copy: repeats the last `distance` bytes
                    pattern = output[start:]
                    output += (pattern * (length // distance + 1))[:length]
            if steps == 0 and len(output) < header.unpacked_size:
                raise RNCError("a chunk with no steps before the end of the output")
    except RNCError as error:
        raise RNCError(f"{where}: {error} (after {len(output)} of {header.unpacked_size} bytes)") from None
    if len(output) != header.unpacked_size:
        raise RNCError(f"{where}: unpacked {len(output)} bytes, header says {header.unpacked_size}")
    if check_crc and crc16(output) != header.unpacked_crc:
        raise RNCError(f"{where}: CRC of the unpacked data is {crc16(output):#06x}, "
                       f"header says {header.unpacked_crc:#06x}")
    return bytes(output)
