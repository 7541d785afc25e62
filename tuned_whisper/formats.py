"""Render a Transcript as txt, json, verbose_json, srt, vtt or tsv: pure functions, standard library only."""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from tuned_whisper.languages import language_name
from tuned_whisper.types import Segment, Transcript, Word

FORMATS = ("txt", "json", "verbose_json", "srt", "vtt", "tsv")

MEDIA_TYPES: dict[str, str] = {
    "txt": "text/plain",
    "json": "application/json",
    "verbose_json": "application/json",
    "srt": "application/x-subrip",
    "vtt": "text/vtt",
    "tsv": "text/tab-separated-values",
}

# verbose_json gets its own double suffix so that it and json can sit side by side for one stem,
# while Path.suffix still says ".json" to anything that picks a reader by extension.
EXTENSIONS: dict[str, str] = {
    "txt": ".txt",
    "json": ".json",
    "verbose_json": ".verbose.json",
    "srt": ".srt",
    "vtt": ".vtt",
    "tsv": ".tsv",
}


@dataclass(frozen=True)
class Cue:
    """One subtitle: a time span in whole milliseconds and the lines shown during it."""

    start_ms: int
    end_ms: int
    lines: tuple[str, ...]


@dataclass(frozen=True)
class _Layout:
    max_line_width: int
    max_lines: int

    def __post_init__(self) -> None:
        if self.max_line_width < 1 or self.max_lines < 1:
            got = f"max_line_width={self.max_line_width}, max_lines={self.max_lines}"
            raise ValueError(f"max_line_width and max_lines must be at least 1, got {got}")


@dataclass(frozen=True)
class _Piece:
    """An unbreakable run of text; `glue` means it follows the previous piece without a space."""

    text: str
    glue: bool
    start: float | None = None
    end: float | None = None


# --- times -------------------------------------------------------------------------------------


def to_milliseconds(seconds: float) -> int:
    """Whole milliseconds, halves rounded up as the number is written (0.0005 -> 1, 1.0025 -> 1003)."""
    if not math.isfinite(seconds):
        raise ValueError(f"cannot write a timestamp for {seconds!r} seconds: times must be finite")
    # Decimal(str(x)) rounds the value as written; x * 1000 would carry binary error (1.0025 * 1000 == 1002.5)
    # and round() would then round half to even.
    ms = (Decimal(str(seconds)) * 1000).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return max(0, int(ms))


def format_timestamp(milliseconds: int, decimal_marker: str = ",") -> str:
    """HH:MM:SS,mmm (SRT) or, with decimal_marker=".", HH:MM:SS.mmm (WebVTT); hours grow past 99."""
    hours, rest = divmod(milliseconds, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{decimal_marker}{millis:03d}"


# --- splitting segment text into lines and cues ------------------------------------------------


_ARROW = re.compile(r"--+>")


def _squash(text: str) -> str:
    return " ".join(text.split())


def _pieces_from_text(text: str) -> list[_Piece]:
    return [_Piece(run, glue=False) for run in text.split()]


def _pieces_from_words(words: Sequence[Word]) -> list[_Piece]:
    return [
        _Piece(_squash(w.word), glue=not w.word[:1].isspace(), start=w.start, end=w.end)
        for w in words
        if w.word.strip()
    ]


def _segment_pieces(segment: Segment) -> list[_Piece]:
    """Word pieces when the words spell the segment's text (they carry times), else the text's own."""
    from_words = _pieces_from_words(segment.words)
    spelled = "".join(p.text for p in from_words).replace(" ", "")
    if from_words and spelled == "".join(segment.text.split()):
        return from_words
    return _pieces_from_text(segment.text)


def _split_long(piece: _Piece, width: int) -> list[_Piece]:
    """Cut a piece wider than a line (a URL, unspaced CJK text) into line-sized chunks."""
    if len(piece.text) <= width:
        return [piece]
    chunks = []
    for offset in range(0, len(piece.text), width):
        start = None
        if piece.start is not None and piece.end is not None:
            start = piece.start + (piece.end - piece.start) * offset / len(piece.text)
        glue = piece.glue if offset == 0 else True
        chunks.append(_Piece(piece.text[offset : offset + width], glue, start, piece.end))
    return chunks


def _wrap(pieces: Sequence[_Piece], width: int) -> list[list[_Piece]]:
    """Fill lines greedily, never past `width` characters."""
    lines: list[list[_Piece]] = []
    line: list[_Piece] = []
    used = 0
    for piece in (chunk for p in pieces for chunk in _split_long(p, width)):
        extra = len(piece.text) + (0 if piece.glue or not line else 1)
        if line and used + extra > width:
            lines.append(line)
            line, used, extra = [], 0, len(piece.text)
        line.append(piece)
        used += extra
    if line:
        lines.append(line)
    return lines


def _line_text(line: Sequence[_Piece]) -> str:
    text = "".join(p.text if i == 0 or p.glue else f" {p.text}" for i, p in enumerate(line))
    # "-->" inside cue text would read as a timing line; "--->" must not shrink back into one.
    return _ARROW.sub("->", text)


def _boundaries(groups: list[list[list[_Piece]]], start: int, end: int) -> list[int]:
    """Cut [start, end] at each group after the first: at its first word, else by characters spoken."""
    firsts = [group[0][0] for group in groups[1:]]
    if all(p.start is not None for p in firsts):
        inner = [to_milliseconds(p.start) for p in firsts if p.start is not None]
    else:
        sizes = [sum(len(_line_text(line)) for line in group) for group in groups]
        total = sum(sizes)
        inner = [start + (end - start) * sum(sizes[:i]) // total for i in range(1, len(groups))]
    cuts = [start]
    for i, cut in enumerate(inner, start=1):
        # Every cue keeps at least 1 ms and the cuts stay inside the segment.
        cuts.append(min(max(cut, cuts[-1] + 1), end - (len(groups) - i)))
    return [*cuts, end]


def _segment_cues(segment: Segment, layout: _Layout, not_before: int) -> list[Cue]:
    lines = _wrap(_segment_pieces(segment), layout.max_line_width)
    if not lines:
        return []
    groups = [lines[i : i + layout.max_lines] for i in range(0, len(lines), layout.max_lines)]
    # Overlapping or zero-length segments are pushed forward so cues stay ordered and last >= 1 ms.
    start = max(to_milliseconds(segment.start), not_before)
    end = max(to_milliseconds(segment.end), start + len(groups))
    cuts = _boundaries(groups, start, end)
    return [
        Cue(cuts[i], cuts[i + 1], tuple(_line_text(line) for line in group)) for i, group in enumerate(groups)
    ]


def subtitle_cues(transcript: Transcript, *, max_line_width: int = 42, max_lines: int = 2) -> list[Cue]:
    """The transcript as ordered, non-overlapping subtitle cues of at most max_lines x max_line_width."""
    layout = _Layout(max_line_width, max_lines)
    cues: list[Cue] = []
    for segment in transcript.segments:
        cues.extend(_segment_cues(segment, layout, cues[-1].end_ms if cues else 0))
    return cues


def _layout_cues(transcript: Transcript, layout: _Layout) -> list[Cue]:
    return subtitle_cues(transcript, max_line_width=layout.max_line_width, max_lines=layout.max_lines)


# --- writers -----------------------------------------------------------------------------------


def _render_txt(transcript: Transcript, layout: _Layout) -> str:
    text = transcript.text.strip()
    return f"{text}\n" if text else ""


def _render_json(transcript: Transcript, layout: _Layout) -> str:
    return json.dumps({"text": transcript.text}, ensure_ascii=False, allow_nan=False)


def _openai_language(transcript: Transcript) -> str:
    """OpenAI names the language in lower-case English, and always "english" for a translation."""
    if transcript.task == "translate":
        return "english"
    if transcript.language is None:
        return ""
    try:
        return language_name(transcript.language)
    except ValueError:
        return transcript.language.lower()


def _openai_segment(segment: Segment) -> dict[str, Any]:
    return {
        "id": segment.id,
        "seek": to_milliseconds(segment.start) // 10,  # Whisper counts seek in 10 ms mel frames
        "start": segment.start,
        "end": segment.end,
        "text": segment.text,
        "tokens": list(segment.tokens),
        "temperature": segment.temperature,
        "avg_logprob": round(segment.avg_logprob, 6),
        "compression_ratio": round(segment.compression_ratio, 6),
        "no_speech_prob": round(segment.no_speech_prob, 6),
    }


def _render_verbose_json(transcript: Transcript, layout: _Layout) -> str:
    body: dict[str, Any] = {
        "task": transcript.task,
        "language": _openai_language(transcript),
        "duration": transcript.duration,
        "text": transcript.text,
        "segments": [_openai_segment(s) for s in transcript.segments],
    }
    if transcript.words:
        body["words"] = [{"word": w.word.strip(), "start": w.start, "end": w.end} for w in transcript.words]
    return json.dumps(body, ensure_ascii=False, allow_nan=False)


def _render_srt(transcript: Transcript, layout: _Layout) -> str:
    blocks = []
    for n, cue in enumerate(_layout_cues(transcript, layout), start=1):
        timing = f"{format_timestamp(cue.start_ms)} --> {format_timestamp(cue.end_ms)}"
        blocks.append("\n".join([str(n), timing, *cue.lines]) + "\n\n")
    return "".join(blocks)


def _render_vtt(transcript: Transcript, layout: _Layout) -> str:
    blocks = ["WEBVTT\n\n"]
    for cue in _layout_cues(transcript, layout):
        timing = f"{format_timestamp(cue.start_ms, '.')} --> {format_timestamp(cue.end_ms, '.')}"
        # "<" opens a tag and "&" an entity in WebVTT cue text.
        lines = [html.escape(line, quote=False) for line in cue.lines]
        blocks.append("\n".join([timing, *lines]) + "\n\n")
    return "".join(blocks)


def _render_tsv(transcript: Transcript, layout: _Layout) -> str:
    """openai-whisper's layout: integer milliseconds, one segment a row."""
    rows = [
        f"{to_milliseconds(s.start)}\t{to_milliseconds(s.end)}\t{_squash(s.text)}\n"
        for s in transcript.segments
        if s.text.strip()
    ]
    return "start\tend\ttext\n" + "".join(rows)


_WRITERS: dict[str, Callable[[Transcript, _Layout], str]] = {
    "txt": _render_txt,
    "json": _render_json,
    "verbose_json": _render_verbose_json,
    "srt": _render_srt,
    "vtt": _render_vtt,
    "tsv": _render_tsv,
}


def render(transcript: Transcript, fmt: str, *, max_line_width: int = 42, max_lines: int = 2) -> str:
    """The transcript in one of FORMATS; the line limits shape srt and vtt cues only."""
    writer = _WRITERS.get(fmt)
    if writer is None:
        raise ValueError(f"unknown output format {fmt!r}: choose one of {', '.join(FORMATS)}")
    return writer(transcript, _Layout(max_line_width, max_lines))


def write_transcript(
    transcript: Transcript,
    fmt: str,
    output_dir: Path,
    stem: str,
    *,
    max_line_width: int = 42,
    max_lines: int = 2,
) -> Path:
    """Write `<output_dir>/<stem><extension>` as UTF-8 with \\n line ends and return its path."""
    if not stem or Path(stem).name != stem:
        raise ValueError(f"stem must be a bare file name without folders, got {stem!r}")
    body = render(transcript, fmt, max_line_width=max_line_width, max_lines=max_lines)
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / f"{stem}{EXTENSIONS[fmt]}"
    path.write_text(body, encoding="utf-8", newline="\n")
    return path
