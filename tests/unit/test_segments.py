"""The pipeline's timestamped chunks become ordered, gap-free segments a subtitle writer can use."""

from tuned_whisper.engine.segments import MAX_WORD_GAP_S, segments_from_chunks, segments_from_words
from tuned_whisper.engine.transformers_engine import count_windows


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


def test_window_count_matches_thirty_second_windows_with_five_second_strides() -> None:
    rate = 16000
    assert count_windows(10 * rate, 30.0, 5.0) == 1
    assert count_windows(30 * rate, 30.0, 5.0) == 1
    assert count_windows(31 * rate, 30.0, 5.0) == 2
    assert count_windows(106 * rate, 30.0, 5.0) == 5
