"""Voice activity: Silero VAD (the ONNX model inside faster-whisper's wheel) finds speech in 16 kHz audio.

Files: `keep_speech` drops the non-speech before decoding and maps timestamps in what is left back to the
original. Streaming: `speech_probabilities` scores fixed frames of a buffer, for turn detection.
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

from tuned_whisper.audio import SAMPLE_RATE

if TYPE_CHECKING:
    from faster_whisper.vad import SileroVADModel

FRAME_SAMPLES = 512
"""Samples Silero scores at a time at 16 kHz (32 ms); `speech_probabilities` gives one value per frame."""

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


@dataclass(frozen=True, eq=False)
class SpeechOnly:
    """The speech spans of some audio, concatenated, with the spans they came from."""

    audio: np.ndarray
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


def speech_spans(audio: np.ndarray, settings: VadSettings = VadSettings()) -> list[SpeechSpan]:
    """Speech regions of 16 kHz mono float32 audio."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    samples = _mono(audio)
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


def keep_speech(audio: np.ndarray, settings: VadSettings = VadSettings()) -> SpeechOnly:
    """The speech of `audio` with a map back to the original times; empty audio when there is none."""
    samples = _mono(audio)
    spans = tuple(speech_spans(samples, settings))
    if not spans:
        return SpeechOnly(np.zeros(0, dtype=np.float32), ())
    return SpeechOnly(np.concatenate([samples[span.start : span.end] for span in spans]), spans)


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
