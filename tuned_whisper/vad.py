"""Voice activity: Silero VAD (the ONNX model inside faster-whisper's wheel) finds speech in 16 kHz audio.

Files: `keep_speech` drops the non-speech before decoding and maps timestamps in what is left back to the
original; it reads long audio (a `PcmFile` on disk) two minutes at a time and copies none of it.
Streaming: `speech_probabilities` scores fixed frames of a buffer, for turn detection.
Nothing is downloaded; the model is loaded once per process and runs on one onnxruntime thread.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from functools import cached_property
from itertools import accumulate
from typing import TYPE_CHECKING

import numpy as np

from tuned_whisper.audio import SAMPLE_RATE, Samples

if TYPE_CHECKING:
    from faster_whisper.vad import SileroVADModel

FRAME_SAMPLES = 512
"""Samples Silero scores at a time at 16 kHz (32 ms); `speech_probabilities` gives one value per frame."""

BLOCK_SAMPLES = 120 * SAMPLE_RATE
"""Audio is scored this much at a time; spans meeting at an edge join. Silero's activations grow with what
it scores at once: 4 h in 10-minute blocks peaked 313 MB over the model, in 2-minute blocks 76 MB."""

_model_lock = threading.Lock()


@dataclass(frozen=True)
class VadSettings:
    """Silero parameters; the defaults suit whole files decoded by Whisper.

    threshold: a frame is speech when its probability reaches this (Silero's and faster-whisper's 0.5);
        speech then lasts until the probability falls below threshold - 0.15.
    min_speech_ms: detected speech shorter than this is dropped (Silero's own 250 ms: clicks and breaths
        go, while the shortest ivr-en prompt, one word on an 8 kHz line, is detected for 0.47 s).
    min_silence_ms: a span ends only after this much silence (faster-whisper's 2000 ms for files), so
        short pauses stay inside a span and words are not cut at the joins.
    speech_pad_ms: each span is widened by this on both sides (faster-whisper's 400 ms) to keep onsets
        and trailing consonants.
    max_speech_s: spans longer than this are split (default: never; `keep_speech` joins spans anyway).
    """

    threshold: float = 0.5
    min_speech_ms: int = 250
    min_silence_ms: int = 2000
    speech_pad_ms: int = 400
    max_speech_s: float = math.inf


@dataclass(frozen=True)
class SpeechSpan:
    """One region of speech, [start, end) in samples at 16 kHz."""

    start: int
    end: int

    @property
    def samples(self) -> int:
        """Length in samples."""
        return self.end - self.start


class JoinedSpans:
    """The spans of some audio as if concatenated, read by span: nothing is copied until it is read."""

    def __init__(self, source: Samples, spans: tuple[SpeechSpan, ...]) -> None:
        self.source = source
        self.spans = spans
        self._ends = tuple(accumulate(span.samples for span in spans))

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    def __getitem__(self, span: slice, /) -> np.ndarray:
        start, stop, step = span.indices(len(self))
        if step != 1:
            raise ValueError("speech is read in contiguous spans")
        pieces = []
        index = bisect_right(self._ends, start)
        while start < stop and index < len(self.spans):
            begins = self._ends[index] - self.spans[index].samples
            upto = min(stop, self._ends[index])
            first = self.spans[index].start + start - begins
            pieces.append(np.asarray(self.source[first : first + upto - start], dtype=np.float32))
            start = upto
            index += 1
        if not pieces:
            return np.zeros(0, dtype=np.float32)
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        return np.asarray(self[:], dtype=dtype)


@dataclass(frozen=True, eq=False)
class SpeechOnly:
    """The speech spans of some audio, concatenated (`audio`, read lazily), with the spans they came from."""

    audio: Samples
    spans: tuple[SpeechSpan, ...]

    @cached_property
    def _ends(self) -> tuple[int, ...]:
        """Where each span ends in `audio`, in samples."""
        return tuple(accumulate(span.samples for span in self.spans))

    def original_time(self, t: float, *, is_end: bool = False) -> float:
        """Seconds in `audio` -> seconds in the original audio.

        At a join between two spans this is the start of the later span, or with `is_end` (for the end
        of a segment) the end of the earlier one. Times outside `audio` are clamped to it.
        """
        if not self.spans:
            return t
        ends = self._ends
        sample = min(max(round(t * SAMPLE_RATE, 6), 0.0), float(ends[-1]))
        index = min((bisect_left if is_end else bisect_right)(ends, sample), len(ends) - 1)
        before = ends[index - 1] if index else 0
        return (self.spans[index].start + sample - before) / SAMPLE_RATE


def _model() -> SileroVADModel:
    """faster-whisper's Silero model, loaded once per process (1 intra-op, 1 inter-op thread)."""
    from faster_whisper.vad import get_vad_model  # cached there; the lock keeps threads from loading twice

    with _model_lock:
        return get_vad_model()


def _mono(audio: np.ndarray) -> np.ndarray:
    samples = np.asarray(audio, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"expected mono audio (a 1-D array), got shape {samples.shape}")
    return samples


def speech_spans(audio: Samples, settings: VadSettings = VadSettings()) -> list[SpeechSpan]:
    """Speech regions of 16 kHz mono float32 audio, found `BLOCK_SAMPLES` at a time."""
    spans: list[SpeechSpan] = []
    bridge = settings.min_silence_ms * SAMPLE_RATE // 1000
    for start in range(0, len(audio), BLOCK_SAMPLES):
        for found in _spans_in(_mono(audio[start : start + BLOCK_SAMPLES]), settings):
            span = SpeechSpan(found.start + start, found.end + start)
            # Speech running over a block's edge: the block before ends in it; the next block's model
            # state starts afresh, so it may pick the speech up a few frames in.
            if spans and spans[-1].end == start and span.start - start <= bridge:
                spans[-1] = SpeechSpan(spans[-1].start, span.end)
            else:
                spans.append(span)
    return spans


def _spans_in(samples: np.ndarray, settings: VadSettings) -> list[SpeechSpan]:
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    if not samples.size:
        return []
    _model()
    options = VadOptions(
        threshold=settings.threshold,
        min_speech_duration_ms=settings.min_speech_ms,
        max_speech_duration_s=settings.max_speech_s,
        min_silence_duration_ms=settings.min_silence_ms,
        speech_pad_ms=settings.speech_pad_ms,
    )
    found = get_speech_timestamps(samples, options, sampling_rate=SAMPLE_RATE)
    return [SpeechSpan(int(chunk["start"]), int(chunk["end"])) for chunk in found]


def keep_speech(audio: Samples, settings: VadSettings = VadSettings()) -> SpeechOnly:
    """The speech of `audio` with a map back to the original times; empty audio when there is none."""
    spans = tuple(speech_spans(audio, settings))
    return SpeechOnly(JoinedSpans(audio, spans), spans)


def speech_probabilities(audio: np.ndarray) -> np.ndarray:
    """Silero's speech probability for each FRAME_SAMPLES frame of 16 kHz audio (the last one zero-padded).

    Each call starts from a fresh model state, so a realtime session runs it over its recent buffer.
    """
    samples = _mono(audio)
    frames = -(-samples.size // FRAME_SAMPLES)
    if not frames:
        return np.zeros(0, dtype=np.float32)
    # One spare frame: the model zeroes the tail of its input's last frame, as get_speech_timestamps pads.
    padded = np.zeros((frames + 1) * FRAME_SAMPLES, dtype=np.float32)
    padded[: samples.size] = samples
    return np.asarray(_model()(padded), dtype=np.float32).reshape(-1)[:frames]
