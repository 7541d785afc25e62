"""The pipeline's timestamped chunks become ordered, gap-free segments a subtitle writer can use."""

import numpy as np
import pytest

from tuned_whisper.engine.segments import MAX_WORD_GAP_S, segments_from_chunks, segments_from_words
from tuned_whisper.engine.windows import cut_windows, split_windows


def test_segments_keep_whisper_timestamps_and_fill_a_missing_final_end() -> None:
    chunks = [
        {"timestamp": (0.0, 4.2), "text": " Press 1 for sales."},
        {"timestamp": (4.2, None), "text": " Press 2 for support."},
    ]
    segments = segments_from_chunks(chunks, duration=9.5)
    assert [(s.start, s.end) for s in segments] == [(0.0, 4.2), (4.2, 9.5)]
    assert [s.id for s in segments] == [0, 1]


def test_empty_chunks_are_dropped_and_times_never_exceed_the_audio() -> None:
    chunks = [
        {"timestamp": (0.0, 1.0), "text": " "},
        {"timestamp": (1.0, 12.0), "text": " Hello."},
    ]
    segments = segments_from_chunks(chunks, duration=10.0)
    assert len(segments) == 1
    assert segments[0].end == 10.0
    assert segments[0].id == 0


def test_words_group_into_sentences_and_split_at_long_pauses() -> None:
    words = [
        (" Hello", 0.0, 0.4),
        (" there.", 0.4, 0.8),
        (" Press", 1.0, 1.3),
        (" one", 1.3, 1.6),
        (" now", 1.6 + MAX_WORD_GAP_S + 0.5, 2.0 + MAX_WORD_GAP_S + 0.5),
    ]
    chunks = [{"text": text, "timestamp": (start, end)} for text, start, end in words]
    segments = segments_from_words(chunks, duration=5.0)
    assert [s.text for s in segments] == [" Hello there.", " Press one", " now"]
    assert [len(s.words) for s in segments] == [2, 2, 1]
    assert segments[1].start == 1.0 and segments[1].end == 1.6


def test_long_audio_is_cut_into_thirty_second_windows_that_overlap_by_five_seconds() -> None:
    rate = 16000
    assert [len(split_windows(np.zeros(s * rate), 30.0, 5.0)) for s in (10, 30, 31, 106)] == [1, 1, 2, 5]
    windows = split_windows(np.arange(106 * rate, dtype=np.float32), 30.0, 5.0)
    assert windows[0].stride == (30 * rate, 0, 5 * rate)
    assert windows[1].samples[0] == 20 * rate  # each window starts 20 s after the previous one
    assert windows[-1].stride == (26 * rate, 5 * rate, 0)
    assert windows[-1].samples[-1] == 106 * rate - 1


def test_long_audio_can_be_cut_at_its_pauses_into_windows_that_do_not_overlap() -> None:
    rate = 16000
    audio = np.random.default_rng(0).uniform(-0.5, 0.5, 70 * rate).astype(np.float32)
    for pause_s in (27.0, 53.5):  # a reader's short pauses, each in the last 5 s of a window
        audio[round(pause_s * rate) : round((pause_s + 0.2) * rate)] *= 0.01
    windows = cut_windows(audio, 30.0)
    assert len(windows) == 3
    ends = [(w.offset + len(w.samples)) / rate for w in windows]
    assert ends[0] == pytest.approx(27.1, abs=0.06) and ends[1] == pytest.approx(53.6, abs=0.06)
    assert all(w.stride == (len(w.samples), 0, 0) for w in windows)
    assert [w.offset for w in windows[1:]] == [w.offset + len(w.samples) for w in windows[:-1]]
    assert np.array_equal(np.concatenate([w.samples for w in windows]), audio)
    assert len(cut_windows(audio[: 30 * rate], 30.0)) == 1
