"""tuned_whisper.vad with the real Silero model (faster-whisper's bundled ONNX) on real and made-up audio."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tests.clips import JFK
from tests.conftest import IVR_DEV
from tuned_whisper.audio import SAMPLE_RATE, decode_audio
from tuned_whisper.vad import (
    BLOCK_SAMPLES,
    FRAME_SAMPLES,
    SpeechOnly,
    SpeechSpan,
    VadSettings,
    _model,
    keep_speech,
    speech_probabilities,
    speech_spans,
)


def seconds(samples: int) -> float:
    return samples / SAMPLE_RATE


def total_s(spans: list[SpeechSpan] | tuple[SpeechSpan, ...]) -> float:
    return seconds(sum(span.samples for span in spans))


@pytest.fixture(scope="module")
def jfk() -> np.ndarray:
    return decode_audio(JFK.path)


def test_digital_silence_has_no_speech() -> None:
    silence = np.zeros(30 * SAMPLE_RATE, dtype=np.float32)
    assert speech_spans(silence) == []
    kept = keep_speech(silence)
    assert kept.spans == ()
    assert len(kept.audio) == 0
    assert kept.audio[:].dtype == np.float32


def test_white_noise_has_no_speech() -> None:
    # Silero scores this noise at most ~0.12 per frame (threshold 0.5), so not even a short span is expected.
    noise = (np.random.default_rng(0).standard_normal(20 * SAMPLE_RATE) * 0.1).astype(np.float32)
    assert speech_spans(noise) == []


def test_clips_too_short_for_speech(jfk: np.ndarray) -> None:
    # 0.1 s from the middle of a word: Silero scores it as speech, but that is under min_speech_ms.
    word = jfk[2 * SAMPLE_RATE : 2 * SAMPLE_RATE + SAMPLE_RATE // 10]
    assert speech_spans(word, VadSettings(min_speech_ms=0)), "expected speech in jfk.flac at 2.0-2.1 s"
    assert speech_spans(word) == []
    assert speech_spans(np.zeros(0, dtype=np.float32)) == []
    assert len(keep_speech(np.zeros(0, dtype=np.float32)).audio) == 0


def test_speech_is_kept(jfk: np.ndarray) -> None:
    spans = speech_spans(jfk)
    assert spans, "no speech found in jfk.flac"
    assert total_s(spans) > 0.9 * JFK.duration
    assert all(0 <= span.start < span.end <= jfk.size for span in spans)


def test_silence_around_speech_is_dropped_and_times_map_back(jfk: np.ndarray) -> None:
    pad = np.zeros(10 * SAMPLE_RATE, dtype=np.float32)
    padded = np.concatenate([pad, jfk, pad])
    kept = keep_speech(padded)
    assert kept.spans
    assert len(kept.audio) == sum(span.samples for span in kept.spans)
    assert 9.5 < seconds(kept.spans[0].start) < 10.5
    assert 20.5 < seconds(kept.spans[-1].end) < 21.5
    assert 0.9 * JFK.duration < seconds(len(kept.audio)) < JFK.duration + 1.0
    assert kept.original_time(0.0) == pytest.approx(10.0, abs=0.5)
    assert kept.original_time(seconds(len(kept.audio)), is_end=True) == pytest.approx(21.0, abs=0.5)
    first = kept.spans[0]
    np.testing.assert_array_equal(kept.audio[: first.samples], padded[first.start : first.end])
    whole = np.concatenate([padded[span.start : span.end] for span in kept.spans])
    np.testing.assert_array_equal(kept.audio[:], whole)
    np.testing.assert_array_equal(
        kept.audio[first.samples - 100 : first.samples + 100],
        whole[first.samples - 100 : first.samples + 100],
    )


def test_speech_over_a_block_edge_is_one_span_and_hours_are_read_by_block(
    jfk: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    # JFK placed across the edge of the first block, and again in the second block.
    audio = np.zeros(BLOCK_SAMPLES + 60 * SAMPLE_RATE, dtype=np.float32)
    across = BLOCK_SAMPLES - 5 * SAMPLE_RATE
    audio[across : across + jfk.size] = jfk
    later = BLOCK_SAMPLES + 30 * SAMPLE_RATE
    audio[later : later + jfk.size] = jfk
    reads: list[int] = []

    class Counted:
        def __len__(self) -> int:
            return audio.size

        def __getitem__(self, span: slice) -> np.ndarray:
            piece = audio[span]
            reads.append(piece.size)
            return piece

    spans = speech_spans(Counted())

    assert max(reads) <= BLOCK_SAMPLES
    assert len(spans) == 2, spans
    assert spans[0].start < BLOCK_SAMPLES < spans[0].end  # one span, not two cut at the edge
    assert seconds(spans[0].samples) > 0.9 * JFK.duration
    assert abs(seconds(spans[1].start - later)) < 1.0


def test_original_time_by_hand() -> None:
    # Speech at 1-2 s and 4-5 s of the original: 2 s of speech-only audio, joined at 1 s.
    spans = (SpeechSpan(1 * SAMPLE_RATE, 2 * SAMPLE_RATE), SpeechSpan(4 * SAMPLE_RATE, 5 * SAMPLE_RATE))
    kept = SpeechOnly(np.zeros(2 * SAMPLE_RATE, dtype=np.float32), spans)
    assert kept.original_time(0.0) == pytest.approx(1.0)
    assert kept.original_time(0.25) == pytest.approx(1.25)
    assert kept.original_time(1.0) == pytest.approx(4.0)  # the join: where the next span starts
    assert kept.original_time(1.0, is_end=True) == pytest.approx(2.0)  # ... or where the last one ended
    assert kept.original_time(1.5) == pytest.approx(4.5)
    assert kept.original_time(2.0, is_end=True) == pytest.approx(5.0)
    assert kept.original_time(7.0) == pytest.approx(5.0)  # past the end: clamped
    assert kept.original_time(-1.0) == pytest.approx(1.0)
    assert SpeechOnly(np.zeros(0, dtype=np.float32), ()).original_time(3.0) == 3.0


def test_speech_probabilities(jfk: np.ndarray) -> None:
    silence = speech_probabilities(np.zeros(10 * SAMPLE_RATE, dtype=np.float32))
    assert silence.shape == (10 * SAMPLE_RATE // FRAME_SAMPLES + 1,)
    assert silence.max() < 0.1
    speech = speech_probabilities(jfk)
    assert speech.shape == (-(-jfk.size // FRAME_SAMPLES),)
    assert np.mean(speech > 0.5) > 0.5
    assert speech_probabilities(np.zeros(0, dtype=np.float32)).shape == (0,)


def test_short_telephone_prompts_keep_their_speech() -> None:
    for name in ("f.flac", "8.flac", "0.flac"):  # the shortest single words, 8 kHz originals
        audio = decode_audio(IVR_DEV / name)
        assert total_s(speech_spans(audio)) > 0.8 * seconds(audio.size), name


def test_settings_reach_silero(jfk: np.ndarray) -> None:
    assert speech_spans(jfk, VadSettings(threshold=0.999)) == []
    # JFK pauses for well under 2 s; with a 100 ms silence limit its phrases come apart.
    assert len(speech_spans(jfk, VadSettings(min_silence_ms=100, speech_pad_ms=30))) > 1


def test_model_is_loaded_once_on_one_thread() -> None:
    assert _model() is _model()
    options = _model().session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.inter_op_num_threads == 1


def test_stereo_is_refused() -> None:
    with pytest.raises(ValueError, match="mono"):
        speech_spans(np.zeros((2, SAMPLE_RATE), dtype=np.float32))


def test_import_is_cheap() -> None:
    # The onnxruntime and faster-whisper imports wait until the model is first needed.
    heavy = "{'faster_whisper', 'onnxruntime'}"
    code = f"import sys, tuned_whisper.vad; print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"
