"""Turn the ASR pipeline's timestamped chunks into `Segment`s (pure functions, no torch)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tuned_whisper.types import Segment, Word

_SENTENCE_END = (".", "?", "!", "。", "？", "！")
MAX_WORD_GAP_S = 1.0
MAX_SEGMENT_S = 15.0


def _span(chunk: dict[str, Any], previous_end: float, duration: float) -> tuple[float, float]:
    """A chunk's (start, end), filling the gaps the pipeline leaves: a missing end is the audio's end."""
    start, end = chunk.get("timestamp") or (None, None)
    start = previous_end if start is None else min(float(start), duration)
    end = duration if end is None else min(float(end), duration)
    return start, max(start, end)


def segments_from_chunks(chunks: Sequence[dict[str, Any]], duration: float) -> tuple[Segment, ...]:
    """Segments from `return_timestamps=True` output: one per Whisper timestamp pair, empty text dropped."""
    segments: list[Segment] = []
    previous_end = 0.0
    for chunk in chunks:
        start, end = _span(chunk, previous_end, duration)
        previous_end = end
        if chunk["text"].strip():
            segments.append(Segment(id=len(segments), start=start, end=end, text=chunk["text"]))
    return tuple(segments)


def _close(words: list[Word], segments: list[Segment]) -> None:
    if words:
        text = "".join(w.word for w in words)
        segments.append(
            Segment(id=len(segments), start=words[0].start, end=words[-1].end, text=text, words=tuple(words))
        )


def segments_from_words(chunks: Sequence[dict[str, Any]], duration: float) -> tuple[Segment, ...]:
    """Segments from `return_timestamps="word"` output, which has words only.

    Words are grouped at sentence ends, at pauses over `MAX_WORD_GAP_S` and at `MAX_SEGMENT_S`.
    """
    segments: list[Segment] = []
    current: list[Word] = []
    previous_end = 0.0
    for chunk in chunks:
        start, end = _span(chunk, previous_end, duration)
        previous_end = end
        if current and (start - current[-1].end > MAX_WORD_GAP_S or end - current[0].start > MAX_SEGMENT_S):
            _close(current, segments)
            current = []
        current.append(Word(start=start, end=end, word=chunk["text"]))
        if chunk["text"].rstrip().endswith(_SENTENCE_END):
            _close(current, segments)
            current = []
    _close(current, segments)
    return tuple(segments)
