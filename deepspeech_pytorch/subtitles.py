"""Word timings -> subtitle segments -> SRT, WebVTT and plain text, for the CLI and the server alike.

`segment_words` groups a transcript's timed words into segments the way subtitle tools do:

1. Pauses: reading the words in time order, a pause of at least `max_pause` seconds between one word's
   end and the next one's start begins a new segment (default 0.5 s: longer than the gaps between the
   words of a phrase, about 0.05-0.2 s, and near the silence at which the voice-activity detector cuts
   speech into segments, `VadConfig.min_silence_seconds` = 0.4 s).
2. Length: a segment longer than `max_seconds` (default 7 s, the usual longest time a subtitle stays
   on screen) or with more than `max_chars` characters (default 84: two lines of 42, the usual subtitle
   line length) is cut between words into the fewest segments that fit, as even as they can be (the
   fullest of them as little full as possible). So 90 characters become two segments of about 45, not
   one of 84 and a lonely word. A single word is never cut.

A segment runs from its first word's start to its last word's end, in seconds from the start of the
audio; nothing is padded or shifted. `format_srt` and `format_vtt` write one cue per segment, its text
wrapped into lines of at most `max_line_chars` (two balanced lines where it fits); `format_text` writes
one segment per line. `output_paths` and `write_output` name and write the CLI's files.

Words are anything with `word`, `start` and `end` (decoders.WordTiming, the server's Word): this module
imports neither torch nor the model.
"""

from __future__ import annotations

import os
import textwrap
import uuid
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Protocol, Sequence

__all__ = ["MAX_PAUSE_SECONDS", "MAX_SEGMENT_SECONDS", "MAX_SEGMENT_CHARS", "MAX_LINE_CHARS", "FORMATS", "Segment",
           "segment_words", "segments_of", "timestamp", "wrap_lines", "format_srt", "format_vtt", "format_text",
           "format_segments", "output_paths", "write_output"]

MAX_PAUSE_SECONDS = 0.5  # a pause at least this long starts a new segment
MAX_SEGMENT_SECONDS = 7.0  # longest segment, first word's start to last word's end
MAX_SEGMENT_CHARS = 84  # longest segment text: two subtitle lines
MAX_LINE_CHARS = 42  # longest subtitle line, where words allow


class TimedWord(Protocol):
    word: str
    start: float  # seconds
    end: float  # seconds


@dataclass
class Segment:
    """A stretch of speech shown as one subtitle: its words, text, and start/end in seconds."""
    start: float
    end: float
    text: str
    words: List[TimedWord] = field(default_factory=list)


def _check_limit(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name}={value!r} must be positive")


def segment_words(words: Sequence[TimedWord], max_pause: float = MAX_PAUSE_SECONDS,
                  max_seconds: float = MAX_SEGMENT_SECONDS, max_chars: int = MAX_SEGMENT_CHARS) -> List[Segment]:
    """Group timed words into segments by the rules in the module docstring: cut at pauses, then cut
    what is still too long or too wide."""
    for name, value in (("max_pause", max_pause), ("max_seconds", max_seconds), ("max_chars", max_chars)):
        _check_limit(name, value)
    ordered = sorted((w for w in words if w.word.strip()), key=lambda w: (w.start, w.end))
    phrases: List[List[TimedWord]] = []
    heard_until = 0.0  # the latest end of a word so far
    for word in ordered:
        if phrases and word.start - heard_until < max_pause:
            phrases[-1].append(word)
        else:
            phrases.append([word])
        heard_until = max(heard_until, word.end)
    segments: List[Segment] = []
    for phrase in phrases:
        segments.extend(_segment(piece) for piece in _fit(phrase, max_seconds, max_chars))
    return segments


def _pack(words: List[TimedWord], cap: float, max_seconds: float, max_chars: int) -> List[List[TimedWord]]:
    """Greedy: each piece takes words while its fullness (the larger of chars / max_chars and seconds /
    max_seconds) stays at most `cap`; a word that alone is fuller is a piece of its own."""
    pieces: List[List[TimedWord]] = []
    current: List[TimedWord] = []
    chars, end = 0, 0.0
    for word in words:
        width = len(word.word.strip())
        if current:
            fuller = max((chars + 1 + width) / max_chars, (max(end, word.end) - current[0].start) / max_seconds)
            if fuller > cap:
                pieces.append(current)
                current = []
        if current:
            chars, end = chars + 1 + width, max(end, word.end)
        else:
            chars, end = width, word.end
        current.append(word)
    if current:
        pieces.append(current)
    return pieces


def _fit(words: List[TimedWord], max_seconds: float, max_chars: int) -> List[List[TimedWord]]:
    """`words` in the fewest pieces that fit the limits, as even as they can be: the fullest piece is as
    little full as it can be (a bisection on the greedy packing's cap)."""
    pieces = _pack(words, 1.0, max_seconds, max_chars)
    low, high = 0.0, 1.0
    for _ in range(24):  # the cap to within 1e-7 of the least that keeps the count
        middle = (low + high) / 2
        packed = _pack(words, middle, max_seconds, max_chars)
        if len(packed) <= len(pieces):
            pieces, high = packed, middle
        else:
            low = middle
    return pieces


def _segment(words: List[TimedWord]) -> Segment:
    return Segment(start=words[0].start, end=max(w.end for w in words),
                   text=" ".join(w.word.strip() for w in words), words=list(words))


def _millis(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def timestamp(seconds: float, separator: str = ",") -> str:
    """`HH:MM:SS,mmm` (SRT, separator ",") or `HH:MM:SS.mmm` (WebVTT, separator "."), rounded to the
    millisecond; negative times are clamped to zero."""
    hours, millis = divmod(_millis(seconds), 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def wrap_lines(text: str, width: int = MAX_LINE_CHARS) -> List[str]:
    """`text` as subtitle lines of at most `width` characters: one line if it fits, else two lines as
    even as the spaces allow, else as many lines as it takes (a word longer than `width` stays whole)."""
    _check_limit("width", width)
    text = " ".join(text.split())
    if len(text) <= width:
        return [text] if text else []
    spaces = [i for i, char in enumerate(text) if char == " "]
    best = min(spaces, key=lambda i: max(i, len(text) - i - 1), default=None)
    if best is not None and max(best, len(text) - best - 1) <= width:
        return [text[:best], text[best + 1:]]
    return textwrap.wrap(text, width=width, break_long_words=False, break_on_hyphens=False)


def _cue_times(segment: Segment, separator: str) -> str:
    start = _millis(segment.start)
    end = max(_millis(segment.end), start + 1)  # a cue must end after it starts: an instant shows for 1 ms
    return f"{timestamp(start / 1000, separator)} --> {timestamp(end / 1000, separator)}"


def format_srt(segments: Sequence[Segment], max_line_chars: int = MAX_LINE_CHARS) -> str:
    """SubRip: numbered cues from 1, `HH:MM:SS,mmm --> HH:MM:SS,mmm`, the text, a blank line after each."""
    cues = []
    for number, segment in enumerate(segments, start=1):
        lines = wrap_lines(segment.text, max_line_chars)
        cues.append(f"{number}\n{_cue_times(segment, ',')}\n" + "\n".join(lines) + "\n")
    return "\n".join(cues)


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def format_vtt(segments: Sequence[Segment], max_line_chars: int = MAX_LINE_CHARS) -> str:
    """WebVTT: the `WEBVTT` header, then cues `HH:MM:SS.mmm --> HH:MM:SS.mmm` with their text (`&`, `<`, `>`
    escaped as the format requires), each followed by a blank line."""
    cues = ["WEBVTT\n"]
    for segment in segments:
        lines = [_vtt_escape(line) for line in wrap_lines(segment.text, max_line_chars)]
        cues.append(f"{_cue_times(segment, '.')}\n" + "\n".join(lines) + "\n")
    return "\n".join(cues)


def format_text(segments: Sequence[Segment]) -> str:
    """Plain text, one segment per line (a pause or a full subtitle starts a new line)."""
    return "".join(segment.text + "\n" for segment in segments)


FORMATS: Dict[str, Callable[[Sequence[Segment]], str]] = {"txt": format_text, "srt": format_srt, "vtt": format_vtt}


def format_segments(segments: Sequence[Segment], output_format: str) -> str:
    """The segments as `output_format`: txt, srt or vtt."""
    try:
        writer = FORMATS[output_format]
    except KeyError:
        raise ValueError(f"output format {output_format!r} is not one of {', '.join(FORMATS)}") from None
    return writer(segments)


def segments_of(text: str, words: Sequence[TimedWord], duration: float) -> List[Segment]:
    """A transcript's segments: from its word timings, or, without them, the whole text as one segment
    spanning the audio (`duration` seconds); none for an empty transcript."""
    if words:
        return segment_words(words)
    return [Segment(0.0, duration, " ".join(text.split()))] if text.strip() else []


# ---- files ---------------------------------------------------------------------------------------

MAX_NAME_BYTES = 255  # a file name's limit on Linux file systems (NAME_MAX)


def output_paths(inputs: Sequence[str], output_format: str, output_dir: str) -> List[str]:
    """`<output_dir>/<input's name without its extension>.<output_format>` for each input, checked before
    any work: ValueError naming the clash when two inputs would write the same file, when an output
    would overwrite one of the inputs or is a folder, when output_dir is a file, or when a name
    is longer than a file name may be (255 bytes)."""
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(f"output_dir={output_dir} is a file, not a folder")
    inputs_at = {os.path.realpath(path): path for path in inputs}
    written: Dict[str, str] = {}
    paths = []
    for source in inputs:
        stem = os.path.splitext(os.path.basename(os.path.normpath(source)))[0] or os.path.basename(source)
        path = os.path.join(output_dir, f"{stem}.{output_format}")
        if len(os.fsencode(os.path.basename(path))) > MAX_NAME_BYTES:
            raise ValueError(f"output_dir={output_dir}: the {output_format} of {source} would be named "
                             f"{os.path.basename(path)[:40]}... ({len(os.fsencode(os.path.basename(path)))} bytes), "
                             f"over the file system's {MAX_NAME_BYTES}; rename the input")
        real = os.path.realpath(path)
        if real in inputs_at:
            raise ValueError(f"output_dir={output_dir}: the {output_format} of {source} would overwrite the input "
                             f"{inputs_at[real]}; choose another output_dir")
        if real in written:
            raise ValueError(f"output_dir={output_dir}: {written[real]} and {source} would both be written to {path}; "
                             "transcribe them in separate runs or rename one")
        if os.path.isdir(real):
            raise ValueError(f"output_dir={output_dir}: the output {path} for {source} is a folder")
        written[real] = source
        paths.append(path)
    return paths


def write_output(path: str, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically: a reader sees the old file or the whole new one."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # a short temporary name beside it: <path>.<pid>.tmp passed the 255-byte name limit for long valid names
    # (opened with "x", not mkstemp: the file keeps the umask's mode, as a plain open would give it)
    temporary = os.path.join(folder, f".tmp-{os.getpid()}-{uuid.uuid4().hex[:12]}.part")
    try:
        with open(temporary, "x", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
