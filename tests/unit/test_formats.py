"""Output writers: subtitles that real parsers accept, OpenAI-shaped JSON, exact timestamps."""

from __future__ import annotations

import csv
import html
import io
import itertools
import json
import random
import re
from datetime import timedelta
from pathlib import Path

import pytest
import srt
import webvtt
from openai.types.audio import TranscriptionVerbose

from tuned_whisper.formats import (
    EXTENSIONS,
    FORMATS,
    MEDIA_TYPES,
    format_timestamp,
    render,
    subtitle_cues,
    to_milliseconds,
    write_transcript,
)
from tuned_whisper.languages import LANGUAGE_NAMES, language_code, language_name
from tuned_whisper.types import Segment, Transcript, Word

LOREM = (
    "Whisper was trained on six hundred eighty thousand hours of multilingual and multitask "
    "supervised data collected from the web, and it approaches human level robustness and accuracy "
    "on English speech recognition while also translating many languages into English with ease."
)
assert len(LOREM) > 250

# Words that stress wrapping and escaping: overlong runs, unspaced CJK, arrows, markup.
VOCAB = ("a", "tiny", "word", "extraordinarily", "Ünïcødé", "—", "语音识别", "x" * 50)
VOCAB += ("-->", "--->", "-", "&", "<v>")


# --- building transcripts by hand --------------------------------------------------------------


def _transcript(*segments: Segment, language: str | None = "en", task: str = "transcribe") -> Transcript:
    duration = max((s.end for s in segments), default=0.0)
    text = "".join(s.text for s in segments)
    return Transcript(text, language, duration, tuple(segments), task)  # type: ignore[arg-type]


def _timed_words(text: str, start: float, end: float) -> tuple[Word, ...]:
    """Words spread evenly over [start, end], each with Whisper's leading space."""
    tokens = text.split()
    step = (end - start) / len(tokens)
    return tuple(
        Word(round(start + i * step, 3), round(start + (i + 0.8) * step, 3), f" {t}")
        for i, t in enumerate(tokens)
    )


def _long_segment(with_words: bool) -> Segment:
    words = _timed_words(LOREM, 10.0, 40.0) if with_words else ()
    return Segment(0, 10.0, 40.0, f" {LOREM}", words)


# --- reading the output back with real parsers -------------------------------------------------

Parsed = list[tuple[int, int, list[str]]]


def _ms(delta: timedelta) -> int:
    return delta // timedelta(milliseconds=1)


def _parse_srt(text: str) -> Parsed:
    subs = list(srt.parse(text))  # raises on anything malformed
    assert [s.index for s in subs] == list(range(1, len(subs) + 1))
    return [(_ms(s.start), _ms(s.end), s.content.split("\n")) for s in subs]


def _parse_vtt(text: str) -> Parsed:
    vtt = webvtt.from_string(text, strict=True)
    return [
        (c.start_time.in_milliseconds(), c.end_time.in_milliseconds(), [html.unescape(x) for x in c.lines])
        for c in vtt.captions
    ]


PARSERS = {"srt": _parse_srt, "vtt": _parse_vtt}


def _no_space(text: str) -> str:
    return "".join(text.split())


def _assert_well_formed(cues: Parsed, transcript: Transcript, width: int, max_lines: int) -> None:
    """What every subtitle file must satisfy, whatever the transcript."""
    for start, end, lines in cues:
        assert end > start
        assert 1 <= len(lines) <= max_lines
        assert all(line and line == line.strip() and len(line) <= width for line in lines)
        assert not any("-->" in line for line in lines)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(cues)), "cues overlap or are out of order"
    shown = "".join(_no_space(line) for _, _, lines in cues for line in lines)
    # Arrows are defused ("-->" becomes "->"); everything else must be shown, in order.
    assert re.sub(r"-+>", ">", shown) == re.sub(r"-+>", ">", _no_space(transcript.text))


def _lines(cues: Parsed) -> list[str]:
    return [line for _, _, lines in cues for line in lines]


# --- timestamps --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "expected_ms"),
    [
        (0.0, 0),
        (0.0005, 1),  # a half rounds up; round(0.0005 * 1000) gives 0
        (1.0025, 1003),  # 1.0025 * 1000 == 1002.5 in binary, which round() takes to 1002
        (2.34, 2340),
        (3599.9996, 3_600_000),
        (3599.9994, 3_599_999),
        (-0.25, 0),
    ],
)
def test_seconds_round_to_the_nearest_millisecond_as_written(seconds: float, expected_ms: int) -> None:
    assert to_milliseconds(seconds) == expected_ms


def test_non_finite_times_are_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        to_milliseconds(float("nan"))


@pytest.mark.parametrize("ms", [0, 999, 61_001, 3_600_000, 3_599_999, 100 * 3_600_000 + 7])
def test_timestamps_read_back_as_the_same_milliseconds(ms: int) -> None:
    stamp = format_timestamp(ms)
    hours, minutes, rest = stamp.split(":")
    seconds, millis = rest.split(",")
    assert len(hours) >= 2 and len(minutes) == len(seconds) == 2 and len(millis) == 3
    assert ((int(hours) * 60 + int(minutes)) * 60 + int(seconds)) * 1000 + int(millis) == ms
    assert format_timestamp(ms, ".") == stamp.replace(",", ".")


# --- the registry ------------------------------------------------------------------------------


def test_every_format_has_a_writer_a_media_type_and_an_extension() -> None:
    transcript = _transcript(Segment(0, 0.0, 1.0, " Hello."))
    assert set(MEDIA_TYPES) == set(EXTENSIONS) == set(FORMATS)
    assert len(set(EXTENSIONS.values())) == len(FORMATS), "two formats would overwrite each other's file"
    for fmt in FORMATS:
        assert "Hello." in render(transcript, fmt)


def test_an_unknown_format_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="docx") as caught:
        render(_transcript(), "docx")
    assert all(fmt in str(caught.value) for fmt in FORMATS)


@pytest.mark.parametrize("fmt", FORMATS)
def test_line_limits_below_one_are_refused(fmt: str) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        render(_transcript(Segment(0, 0.0, 1.0, " Hi")), fmt, max_line_width=0)
    with pytest.raises(ValueError, match="at least 1"):
        subtitle_cues(_transcript(), max_lines=0)


# --- subtitles: srt and vtt --------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_cue_times_are_the_segments_in_milliseconds_past_one_hour(fmt: str) -> None:
    segments = (
        Segment(0, 0.0005, 1.0025, " First."),
        Segment(1, 3599.9996, 3661.5, " Past the hour."),
        Segment(2, 36000.0, 36002.25, " Ten hours in."),
    )
    transcript = _transcript(*segments)
    cues = PARSERS[fmt](render(transcript, fmt))
    _assert_well_formed(cues, transcript, 42, 2)
    assert [(start, end) for start, end, _ in cues] == [
        (to_milliseconds(s.start), to_milliseconds(s.end)) for s in segments
    ]
    assert cues[1][0] == 3_600_000 and cues[0][0] == 1
    assert [" ".join(lines) for _, _, lines in cues] == [s.text.strip() for s in segments]


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
@pytest.mark.parametrize(("width", "max_lines"), [(42, 2), (20, 1), (32, 3)])
def test_a_long_segment_without_words_is_split_by_characters(fmt: str, width: int, max_lines: int) -> None:
    segment = _long_segment(with_words=False)
    transcript = _transcript(segment)
    cues = PARSERS[fmt](render(transcript, fmt, max_line_width=width, max_lines=max_lines))
    _assert_well_formed(cues, transcript, width, max_lines)
    assert len(cues) > 1
    assert " ".join(_lines(cues)) == LOREM
    assert cues[0][0] == 10_000 and cues[-1][1] == 40_000
    assert all(a[1] == b[0] for a, b in itertools.pairwise(cues)), "the span is shared without gaps"
    total_chars = sum(len(line) for line in _lines(cues))
    for start, end, lines in cues:
        share = sum(len(line) for line in lines) / total_chars
        assert abs((end - start) - share * 30_000) <= 2


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_a_long_segment_with_words_is_cut_where_each_cue_first_word_starts(fmt: str) -> None:
    segment = _long_segment(with_words=True)
    transcript = _transcript(segment)
    cues = PARSERS[fmt](render(transcript, fmt))
    _assert_well_formed(cues, transcript, 42, 2)
    assert len(cues) > 1
    assert " ".join(_lines(cues)) == LOREM
    assert cues[0][0] == 10_000 and cues[-1][1] == 40_000
    first_word = 0
    for start, _, lines in cues:
        if first_word:
            assert start == to_milliseconds(segment.words[first_word].start)
        assert " ".join(lines).split()[0] == segment.words[first_word].word.strip()
        first_word += len(" ".join(lines).split())
    assert first_word == len(segment.words)


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_word_times_outside_their_segment_are_kept_inside_it(fmt: str) -> None:
    drifted = Segment(0, 10.0, 12.0, f" {LOREM}", _timed_words(LOREM, 5.0, 40.0))
    transcript = _transcript(drifted, Segment(1, 12.0, 13.0, " After."))
    cues = PARSERS[fmt](render(transcript, fmt))
    _assert_well_formed(cues, transcript, 42, 2)
    assert cues[0][0] == 10_000 and cues[-2][1] == 12_000 and cues[-1][:2] == (12_000, 13_000)


def test_words_that_do_not_spell_the_text_leave_the_text_in_charge() -> None:
    words = (Word(0.0, 0.5, " Something"), Word(0.5, 1.0, " else"))
    transcript = _transcript(Segment(0, 0.0, 1.0, " The real text.", words))
    assert _lines(_parse_srt(render(transcript, "srt"))) == ["The real text."]


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_unicode_and_unspaced_text_fit_the_width(fmt: str) -> None:
    chinese = "语音识别是一项把人类的语音转换成文字的技术，" * 6
    cjk_words = tuple(Word(20 + i * 0.1, 20 + i * 0.1 + 0.08, ch) for i, ch in enumerate(chinese))
    segments = (
        Segment(0, 0.0, 4.0, " Grüße aus Köln — naïve café, 😀 ½ Ελληνικά ﬁne."),
        Segment(1, 5.0, 15.0, chinese),
        Segment(2, 20.0, 20 + len(chinese) * 0.1, chinese, cjk_words),
    )
    transcript = _transcript(*segments, language="zh")
    cues = PARSERS[fmt](render(transcript, fmt, max_line_width=16))
    _assert_well_formed(cues, transcript, 16, 2)
    assert " ".join(cues[0][2]).startswith("Grüße aus Köln")


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_empty_segments_are_skipped_and_cues_stay_numbered(fmt: str) -> None:
    segments = (
        Segment(0, 0.0, 1.0, " One."),
        Segment(1, 1.0, 2.0, ""),
        Segment(2, 2.0, 3.0, "   \n "),
        Segment(3, 3.0, 4.0, " Two."),
    )
    cues = PARSERS[fmt](render(_transcript(*segments), fmt))
    assert [lines for _, _, lines in cues] == [["One."], ["Two."]]
    assert [c[0] for c in cues] == [0, 3000]


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_zero_length_and_overlapping_segments_still_give_ordered_cues(fmt: str) -> None:
    segments = (
        Segment(0, 5.0, 5.0, " Instant."),
        Segment(1, 6.0, 5.5, " Backwards."),
        Segment(2, 5.8, 7.0, " Overlaps the one before."),
        Segment(3, 8.0, 8.0, f" {LOREM}"),
    )
    transcript = _transcript(*segments)
    cues = PARSERS[fmt](render(transcript, fmt))
    _assert_well_formed(cues, transcript, 42, 2)
    assert cues[0][0] == 5000


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_markup_arrows_and_line_breaks_in_text_cannot_break_the_file(fmt: str) -> None:
    text = " a --> b\n\nc\td <b>bold</b> & AT&T 1 < 2 > 0 --->"
    transcript = _transcript(Segment(0, 1.0, 2.0, text), Segment(1, 2.0, 3.0, " next"))
    body = render(transcript, fmt)
    cues = PARSERS[fmt](body)
    _assert_well_formed(cues, transcript, 42, 2)
    assert " ".join(cues[0][2]) == "a -> b c d <b>bold</b> & AT&T 1 < 2 > 0 ->"
    assert cues[1][2] == ["next"]


def test_vtt_has_its_header_and_escapes_markup() -> None:
    body = render(_transcript(Segment(0, 0.0, 1.0, " <i>x</i> & y")), "vtt")
    assert body.startswith("WEBVTT\n\n")
    assert "&lt;i&gt;x&lt;/i&gt; &amp; y" in body


@pytest.mark.parametrize("seed", range(40))
def test_random_transcripts_always_make_valid_subtitles(seed: int) -> None:
    rng = random.Random(seed)
    segments, t = [], rng.uniform(0, 5000)
    for i in range(rng.randint(0, 8)):
        text = "".join(f" {rng.choice(VOCAB)}" for _ in range(rng.randint(0, 40)))
        start, t = t, t + rng.choice([0.0, rng.uniform(-1, 1), rng.uniform(0, 30)])
        words = _timed_words(text, start, max(t, start)) if text and rng.random() < 0.5 else ()
        segments.append(Segment(i, start, t, text, words))
    width, max_lines = rng.randint(5, 60), rng.randint(1, 3)
    transcript = _transcript(*segments)
    for fmt, parse in PARSERS.items():
        cues = parse(render(transcript, fmt, max_line_width=width, max_lines=max_lines))
        _assert_well_formed(cues, transcript, width, max_lines)
    assert len(subtitle_cues(transcript, max_line_width=width, max_lines=max_lines)) == len(cues)


# --- txt, json, verbose_json, tsv --------------------------------------------------------------


def test_txt_is_the_text_on_a_terminated_line() -> None:
    transcript = _transcript(Segment(0, 0.0, 1.0, " Hello"), Segment(1, 1.0, 2.0, " world."))
    assert render(transcript, "txt") == "Hello world.\n"
    assert render(_transcript(), "txt") == ""


def test_json_is_openai_text_only_shape() -> None:
    transcript = _transcript(Segment(0, 0.0, 1.0, " Grüße, 世界"))
    assert json.loads(render(transcript, "json")) == {"text": transcript.text}


def test_verbose_json_parses_as_openai_transcription_verbose() -> None:
    plain = Segment(0, 0.0, 2.5, " No words here.")
    worded = Segment(1, 2.5, 5.0, " Twenty words here.", _timed_words("Twenty words here.", 2.5, 5.0))
    transcript = _transcript(plain, worded, language="fr")
    raw = json.loads(render(transcript, "verbose_json"))
    parsed = TranscriptionVerbose.model_validate(raw)
    assert raw["task"] == "transcribe"
    assert parsed.language == "french" and parsed.text == transcript.text
    assert parsed.duration == transcript.duration
    assert [(s.id, s.start, s.end, s.text) for s in parsed.segments or []] == [
        (s.id, s.start, s.end, s.text) for s in transcript.segments
    ]
    assert [s.seek for s in parsed.segments or []] == [0, 250]
    assert [(w.word, w.start, w.end) for w in parsed.words or []] == [
        (w.word.strip(), w.start, w.end) for w in worded.words
    ]


def test_verbose_json_leaves_words_out_when_no_segment_has_them() -> None:
    raw = json.loads(render(_transcript(Segment(0, 0.0, 1.0, " Hi.")), "verbose_json"))
    assert "words" not in raw
    TranscriptionVerbose.model_validate(raw)


@pytest.mark.parametrize(
    ("language", "task", "expected"),
    [("en", "transcribe", "english"), ("German", "transcribe", "german"), ("de", "translate", "english")],
)
def test_verbose_json_names_the_language_as_openai_does(language: str, task: str, expected: str) -> None:
    transcript = _transcript(Segment(0, 0.0, 1.0, " Hallo."), language=language, task=task)
    assert json.loads(render(transcript, "verbose_json"))["language"] == expected


def test_verbose_json_with_unknown_language_still_parses() -> None:
    transcript = _transcript(Segment(0, 0.0, 1.0, " ..."), language=None)
    TranscriptionVerbose.model_validate_json(render(transcript, "verbose_json"))


def test_tsv_rows_are_integer_milliseconds_and_one_line_of_text() -> None:
    segments = (
        Segment(0, 0.0005, 1.0025, " tab\there"),
        Segment(1, 2.0, 3.0, ""),
        Segment(2, 3599.9996, 3600.5, " new\nline"),
    )
    rows = list(csv.reader(io.StringIO(render(_transcript(*segments), "tsv")), delimiter="\t"))
    assert rows[0] == ["start", "end", "text"]
    kept = [s for s in segments if s.text]
    assert rows[1:] == [
        [str(to_milliseconds(s.start)), str(to_milliseconds(s.end)), " ".join(s.text.split())] for s in kept
    ]


# --- files -------------------------------------------------------------------------------------


def test_write_transcript_writes_every_format_side_by_side(tmp_path: Path) -> None:
    transcript = _transcript(Segment(0, 0.0, 1.0, " Grüße, 世界 😀"))
    out = tmp_path / "new" / "dir"
    paths = [write_transcript(transcript, fmt, out, "talk") for fmt in FORMATS]
    assert len(set(paths)) == len(FORMATS)
    for fmt, path in zip(FORMATS, paths, strict=True):
        assert path.parent == out and path.name == f"talk{EXTENSIONS[fmt]}"
        assert path.read_bytes() == render(transcript, fmt).encode("utf-8")


def test_write_transcript_refuses_a_stem_with_folders(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="stem"):
        write_transcript(_transcript(), "txt", tmp_path, "../escape")


# --- language names ----------------------------------------------------------------------------


def test_every_language_token_of_the_packaged_model_has_a_distinct_name() -> None:
    from tuned_whisper.checkpoint import DEFAULT_SOURCE, SOURCES

    files = SOURCES[DEFAULT_SOURCE].files_path()
    lang_ids = json.loads((files / "config.json").read_text(encoding="utf-8"))["lang_ids"]
    added = json.loads((files / "tokenizer.json").read_text(encoding="utf-8"))["added_tokens"]
    tokens = {token["id"]: token["content"] for token in added}
    # In the token order: a language's position in the table is its token's offset past <|en|>.
    assert [f"<|{code}|>" for code in LANGUAGE_NAMES][: len(lang_ids)] == [tokens[i] for i in lang_ids]
    assert len(set(LANGUAGE_NAMES.values())) == len(LANGUAGE_NAMES)
    for code, name in LANGUAGE_NAMES.items():
        assert language_code(code) == language_code(name) == language_code(name.title()) == code
        assert language_name(code) == language_name(name.upper()) == name


@pytest.mark.parametrize(
    ("given", "code"), [("en", "en"), ("English", "en"), ("Haitian  Creole", "ht"), ("Mandarin", "zh")]
)
def test_language_code_accepts_codes_names_and_aliases(given: str, code: str) -> None:
    assert language_code(given) == code


def test_an_unknown_language_says_what_is_accepted() -> None:
    with pytest.raises(ValueError, match="english"):
        language_code("klingon")
