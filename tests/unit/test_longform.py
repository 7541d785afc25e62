"""The one long-form path with a fake decoder: windows, language, fallback, silence, packing, callers."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pytest

from tuned_whisper.config import EngineSettings
from tuned_whisper.engine import packing
from tuned_whisper.engine.base import ModelInfo, Vocabulary
from tuned_whisper.engine.batching import Packing, WindowJob, decode_jobs
from tuned_whisper.engine.local import Engine
from tuned_whisper.engine.quality import DecodingRules, compression_ratio, decode_with_fallback
from tuned_whisper.engine.windows import Decoded
from tuned_whisper.types import TranscribeOptions

RATE = 16000
VOCAB = Vocabulary(eot=50257, timestamp_begin=50364)
WORD = 1000  # the fake vocabulary: token WORD + k is the word "w<k>"


class FakeTokenizer:
    """Just enough of WhisperTokenizer for the merge: text tokens are words, timestamps are specials."""

    all_special_ids: Sequence[int] = (50257,)

    def convert_tokens_to_ids(self, token: str) -> int:
        assert token == "<|0.00|>"
        return VOCAB.timestamp_begin

    def decode(self, tokens: Sequence[int], skip_special_tokens: bool = True) -> str:
        return "".join(f" w{t - WORD}" for t in tokens if WORD <= t < VOCAB.eot)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [WORD + int(w[1:]) for w in text.split()]

    def _decode_asr(self, outputs: list[dict], **_: object) -> tuple[str, dict]:
        """Every window's segments in order, shifted by the window's start (the fake ignores overlaps)."""
        chunks, offset, texts = [], 0.0, []
        for output in outputs:
            length, _left, right = output["stride"]
            tokens = list(output["tokens"][0])
            segments = packing.timed_segments(tokens, VOCAB) or []
            for s in segments:
                text = self.decode(s.text)
                chunks.append({"text": text, "timestamp": (offset + s.start, offset + s.end)})
                texts.append(text)
            offset += length - 2 * right  # the next window starts a stride before this one ends
        return "".join(texts), {"chunks": chunks}


@dataclass
class FakeDecoder:
    """Says one word per second of non-silent audio; the 'quality' of a decode is scripted per call."""

    info: ModelInfo = field(default_factory=lambda: ModelInfo("fake", "cpu", "none", True, backend="fake"))
    vocab: Vocabulary = VOCAB
    tokenizer: FakeTokenizer = field(default_factory=FakeTokenizer)
    calls: list[tuple[int, float]] = field(default_factory=list)
    logprob_at: dict[float, float] = field(default_factory=lambda: {0.0: -0.2})
    no_speech: float = 0.01

    def detect_languages(self, heads: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        return [("de", 0.9)] * len(heads)

    def decode(
        self,
        windows: Sequence[np.ndarray],
        languages: Sequence[str | None],
        options: TranscribeOptions,
        temperature: float,
    ) -> list[Decoded]:
        self.calls.append((len(windows), temperature))
        return [self._one(w, lang, temperature) for w, lang in zip(windows, languages, strict=True)]

    def _one(self, window: np.ndarray, language: str | None, temperature: float) -> Decoded:
        tokens: list[int] = []
        loud = np.flatnonzero(np.abs(window) > 0)
        for second in sorted({int(i // RATE) for i in loud}):
            tokens += [
                VOCAB.timestamp(second),
                WORD + int(abs(window[second * RATE + 1]) * 100),
                VOCAB.timestamp(second + 1),
            ]
        return Decoded(
            tokens=np.asarray(tokens, dtype=np.int64),
            avg_logprob=self.logprob_at.get(temperature, -2.0),
            no_speech_prob=self.no_speech,
            temperature=temperature,
            language=language or "de",
            compression_ratio=1.2,
        )


def speech(seconds: int, word: int) -> np.ndarray:
    """Audio the fake hears as `seconds` repetitions of word `word`."""
    return np.full(seconds * RATE, word / 100, dtype=np.float32)


def engine(decoder: FakeDecoder, **settings: object) -> Engine:
    return Engine(decoder, EngineSettings(vad_filter=False, **settings))  # type: ignore[arg-type]


def test_a_short_clip_is_one_window_with_the_signals_of_its_decode() -> None:
    transcript = engine(FakeDecoder()).transcribe(speech(3, 7), TranscribeOptions(language="en"))
    assert transcript.text == "w7 w7 w7"
    assert [(s.start, s.end) for s in transcript.segments] == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]
    assert {s.avg_logprob for s in transcript.segments} == {-0.2}
    assert transcript.segments[0].tokens == (WORD + 7,)


def test_an_unknown_language_is_found_by_the_first_window_and_kept_for_the_rest() -> None:
    decoder = FakeDecoder()
    transcript = engine(decoder).transcribe(speech(70, 3), TranscribeOptions())
    assert transcript.language == "de"
    assert decoder.calls[0] == (1, 0.0)  # the first window alone, then the others together
    assert sum(n for n, _ in decoder.calls) == 3 and len(transcript.text.split()) >= 70


def test_a_window_below_the_log_prob_threshold_is_decoded_again_hotter() -> None:
    decoder = FakeDecoder(logprob_at={0.0: -1.5, 0.2: -1.2, 0.4: -0.5})
    transcript = engine(decoder).transcribe(speech(2, 5), TranscribeOptions(language="en"))
    assert [t for _, t in decoder.calls] == [0.0, 0.2, 0.4]
    assert {s.temperature for s in transcript.segments} == {0.4}


def test_when_every_temperature_fails_the_most_likely_decode_is_kept() -> None:
    decoder = FakeDecoder(logprob_at={0.0: -1.5, 0.2: -1.1, 0.4: -3.0, 0.6: -3, 0.8: -3, 1.0: -3})
    transcript = engine(decoder).transcribe(speech(2, 5), TranscribeOptions(language="en"))
    assert len(decoder.calls) == 6 and {s.temperature for s in transcript.segments} == {0.2}


def test_a_confident_no_speech_window_gives_no_text_and_no_fallback() -> None:
    decoder = FakeDecoder(logprob_at={0.0: -1.5}, no_speech=0.9)
    transcript = engine(decoder).transcribe(speech(4, 5), TranscribeOptions(language="en"))
    assert transcript.text == "" and transcript.segments == ()
    assert len(decoder.calls) == 1
    # the same window with speech-like odds is not silence
    decoder = FakeDecoder(logprob_at={0.0: -0.5}, no_speech=0.9)
    assert engine(decoder).transcribe(speech(4, 5), TranscribeOptions(language="en")).text


def test_compression_ratio_flags_repetition() -> None:
    assert compression_ratio("the cat sat on the mat") < 2.4 < compression_ratio("thank you. " * 40)


def test_a_request_temperature_starts_the_schedule_there() -> None:
    rules = DecodingRules()
    assert rules.schedule(TranscribeOptions(temperature=0.5)) == (0.5, 0.6, 0.8, 1.0)


def test_short_clips_of_one_caller_share_a_window_and_get_their_own_words_back() -> None:
    decoder = FakeDecoder()
    jobs = [
        WindowJob(speech(2, w), TranscribeOptions(), "en", caller="a", packable=True) for w in (11, 22, 33)
    ]
    results = decode_jobs(decoder, jobs, DecodingRules(), Packing(gap_s=3.0))
    assert decoder.calls == [(1, 0.0)]  # three clips, one window
    texts = [decoder.tokenizer.decode(r.tokens) for r in results]
    assert texts == [" w11 w11", " w22 w22", " w33 w33"]
    times = [
        [(t - VOCAB.timestamp_begin) * 0.02 for t in r.tokens if t >= VOCAB.timestamp_begin] for r in results
    ]
    assert all(t == pytest.approx([0.0, 1.0, 1.0, 2.0]) for t in times)  # each timed from its own start


def test_two_callers_never_share_a_window_unless_allowed() -> None:
    decoder = FakeDecoder()
    jobs = [
        WindowJob(speech(2, w), TranscribeOptions(), "en", caller=c, packable=True)
        for w, c in ((11, "a"), (22, "b"), (33, "a"))
    ]
    report_packs: list[tuple[str, ...]] = []
    from tuned_whisper.engine.batching import BatchReport

    report = BatchReport()
    decode_jobs(decoder, jobs, DecodingRules(), Packing(), report)
    # b's clip alone, a's two in one (aligned) window
    assert report.packs == [("a", "a")] and decoder.calls == [(1, 0.0), (1, 0.0)]
    report = BatchReport()
    decode_jobs(FakeDecoder(), jobs, DecodingRules(), Packing(across_callers=True), report)
    report_packs = report.packs or []
    assert report_packs == [("a", "b", "a")]


def test_a_segment_across_two_clips_sends_both_back_to_be_decoded_alone() -> None:
    clips = [speech(2, 11), speech(2, 22)]
    pack = packing.build([0, 1], clips, gap=3 * RATE)
    # a decode that runs one segment from the first clip into the second: in doubt
    crossing = Decoded(
        tokens=np.asarray([VOCAB.timestamp(0.0), WORD, VOCAB.timestamp(6.0)]),
        avg_logprob=-0.1,
        no_speech_prob=0.0,
        temperature=0.0,
        language="en",
    )
    assert packing.unpack(pack, crossing, VOCAB, 3 * RATE) == [None, None]
    # an unfinished last segment is doubt too
    open_end = dataclasses_replace(crossing, tokens=np.asarray([VOCAB.timestamp(0.0), WORD]))
    assert packing.unpack(pack, open_end, VOCAB, 3 * RATE) == [None, None]


def test_words_heard_in_the_silence_between_clips_send_the_clip_back_to_be_decoded_alone() -> None:
    clips = [speech(2, 11), speech(2, 22)]
    pack = packing.build([0, 1], clips, gap=3 * RATE)  # clip 1 at 0-2 s, clip 2 at 5-7 s
    second = [VOCAB.timestamp(5.0), WORD, VOCAB.timestamp(7.0)]
    said_in_the_gap = [VOCAB.timestamp(2.4), WORD, VOCAB.timestamp(3.0)]
    first_clip = [VOCAB.timestamp(0.0), WORD, VOCAB.timestamp(2.0)]
    in_the_gap = Decoded(
        tokens=np.asarray([*first_clip, *said_in_the_gap, *second]),
        avg_logprob=-0.1,
        no_speech_prob=0.0,
        temperature=0.0,
        language="en",
    )
    first, after = packing.unpack(pack, in_the_gap, VOCAB, 3 * RATE)
    assert first is None and after is not None
    clean = dataclasses_replace(in_the_gap, tokens=np.asarray([*first_clip, *second]))
    assert all(share is not None for share in packing.unpack(pack, clean, VOCAB, 3 * RATE))


def aligned_pack(segments: Sequence[tuple[float, float, Sequence[float]]]) -> Decoded:
    """A packed decode with Whisper's segment times and, per word, where the alignment heard it end (as
    Whisper's alignment does, the silence between clips goes to a word beside it)."""
    tokens: list[int] = []
    times: list[float] = []
    for start, end, heard in segments:
        tokens.append(VOCAB.timestamp(start))
        times.append(start)
        for at in heard:
            tokens.append(WORD + len(times))  # every word its own
            times.append(at)
        tokens.append(VOCAB.timestamp(end))
        times.append(end)
    return Decoded(
        tokens=np.asarray(tokens),
        avg_logprob=-0.1,
        no_speech_prob=0.0,
        temperature=0.0,
        language="en",
        token_timestamps=np.asarray(times, dtype=np.float32),
    )


def test_segments_whisper_timed_back_to_back_go_to_the_clips_where_their_words_were_heard() -> None:
    """Whisper often times a packed window's segments as if no silence lay between the clips; the words'
    alignment still puts each segment in its clip, timed within it."""
    pack = packing.build([0, 1, 2], [speech(2, 11), speech(2, 22), speech(2, 33)], gap=3 * RATE)
    # clips at 0-2, 5-7 and 10-12 s; Whisper says 0-2, 2-4, 4-6
    decoded = aligned_pack([(0.0, 2.0, [0.5, 1.9]), (2.0, 4.0, [5.6, 6.3, 7.0]), (4.0, 6.0, [10.4, 11.8])])
    shares = packing.unpack(pack, decoded, VOCAB, 3 * RATE)
    assert [
        None if s is None else len([t for t in s.tokens if t < VOCAB.timestamp_begin]) for s in shares
    ] == [
        2,
        3,
        2,
    ]
    second = shares[1]
    assert second is not None and second.token_timestamps is None
    stamps = [
        round((t - VOCAB.timestamp_begin) * 0.02, 2) for t in second.tokens if t >= VOCAB.timestamp_begin
    ]
    assert 0.0 <= stamps[0] < stamps[1] <= 2.0  # from the alignment, inside the clip's own 2 s
    # without the alignment the same decode is in doubt for every clip
    timed_only = dataclasses_replace(decoded, token_timestamps=None)
    assert all(s is None for s in packing.unpack(pack, timed_only, VOCAB, 3 * RATE))


def test_a_segment_heard_across_two_clips_or_in_the_silence_sends_them_back_to_be_decoded_alone() -> None:
    pack = packing.build([0, 1, 2], [speech(2, 11), speech(2, 22), speech(2, 33)], gap=3 * RATE)
    across = aligned_pack([(0.0, 2.0, [0.5, 2.0]), (5.0, 12.0, [5.5, 6.5, 10.5, 11.5])])
    assert [s is None for s in packing.unpack(pack, across, VOCAB, 3 * RATE)] == [False, True, True]
    # "Thank you." made up in the silence after the first clip, heard and timed there
    made_up = aligned_pack(
        [(0.0, 2.0, [0.5, 2.0]), (3.0, 4.0, [3.3, 3.6]), (5.0, 7.0, [5.5, 6.8]), (10, 12, [11.0])]
    )
    assert [s is None for s in packing.unpack(pack, made_up, VOCAB, 3 * RATE)] == [True, True, False]


def dataclasses_replace(decoded: Decoded, **changes: object) -> Decoded:
    import dataclasses

    return dataclasses.replace(decoded, **changes)  # type: ignore[arg-type]


def test_a_doubtful_pack_is_decoded_clip_by_clip() -> None:
    decoder = FakeDecoder()
    jobs = [WindowJob(speech(2, w), TranscribeOptions(), "en", packable=True) for w in (11, 22)]
    decoder.logprob_at = {0.0: -0.2}
    original = decoder._one

    def fail_packed(window: np.ndarray, language: str | None, temperature: float) -> Decoded:
        decoded = original(window, language, temperature)
        return dataclasses_replace(decoded, tokens=decoded.tokens[:-1]) if len(window) > 3 * RATE else decoded

    decoder._one = fail_packed  # type: ignore[method-assign]
    results = decode_jobs(decoder, jobs, DecodingRules(), Packing())
    assert decoder.calls == [(1, 0.0), (2, 0.0)]
    assert [decoder.tokenizer.decode(r.tokens) for r in results] == [" w11 w11", " w22 w22"]


def test_packing_plans_fill_windows_in_order() -> None:
    assert packing.plan([10 * RATE, 10 * RATE, 10 * RATE, 2 * RATE], gap=3 * RATE) == [[0, 1, 3], [2]]


def test_fallback_keeps_the_first_decodes_it_is_given() -> None:
    decoder = FakeDecoder()
    given = decoder._one(speech(1, 4), "en", 0.0)
    out = decode_with_fallback(decoder, [speech(1, 4)], ["en"], TranscribeOptions(), DecodingRules(), [given])
    assert out == [given] and decoder.calls == []


def test_requests_decoded_together_share_batches_in_process() -> None:
    decoder = FakeDecoder()
    results = engine(decoder, batch_size=8, pack_short_audio=False).transcribe_many(
        [(speech(2, w), TranscribeOptions(language="en")) for w in (1, 2, 3)]
    )
    assert [r.text for r in results] == ["w1 w1", "w2 w2", "w3 w3"]
    assert decoder.calls == [(3, 0.0)]


def test_silence_is_not_decoded_when_the_vad_hears_nothing() -> None:
    decoder = FakeDecoder()
    transcript = Engine(decoder, EngineSettings()).transcribe(
        np.zeros(30 * RATE, np.float32), TranscribeOptions()
    )
    assert transcript.text == "" and decoder.calls == [] and transcript.duration == 30.0


def test_runner_errors_reach_every_request_of_the_batch() -> None:
    class Broken(FakeDecoder):
        def decode(self, *args: object, **kwargs: object) -> list[Decoded]:
            raise RuntimeError("model fell over")

    with pytest.raises(RuntimeError, match="fell over"):
        engine(Broken()).transcribe_many([(speech(1, 1), TranscribeOptions(language="en"))] * 2)


def test_a_last_window_that_stops_early_has_its_rest_decoded_and_appended() -> None:
    """Whisper may end the last window with a lone timestamp while speech follows: the rest is decoded."""
    from tuned_whisper.engine.longform import append_decoded, last_time

    decoder = FakeDecoder()
    early = Decoded(
        tokens=np.asarray([VOCAB.timestamp(0.0), WORD + 1, VOCAB.timestamp(2.0), VOCAB.timestamp(2.0)]),
        avg_logprob=-0.2,
        no_speech_prob=0.0,
        temperature=0.0,
        language="en",
    )
    assert last_time(early, decoder.tokenizer) == pytest.approx(2.0)
    rest = Decoded(np.asarray([VOCAB.timestamp(0.0), WORD + 2, VOCAB.timestamp(1.5)]), -0.2, 0.0, 0.0, "en")
    joined = append_decoded(early, rest, 2.0, decoder.tokenizer)
    assert [
        round((t - VOCAB.timestamp_begin) * 0.02, 2) for t in joined.tokens if t >= VOCAB.timestamp_begin
    ] == [
        0.0,
        2.0,
        2.0,
        2.0,
        3.5,
    ]
    assert decoder.tokenizer.decode(joined.tokens) == " w1 w2"


def test_a_busy_runner_decodes_waiting_finals_before_any_partial() -> None:
    """While a batch decodes, two partials and a final queue up: the final goes next, alone (on a CPU a
    batch costs the sum of its windows), and the partials after it."""
    import asyncio
    import time

    from tuned_whisper.engine.local import LocalRunner

    class SlowDecoder(FakeDecoder):
        def decode(self, *args: object) -> list[Decoded]:  # type: ignore[override]
            time.sleep(0.2)
            return super().decode(*args)  # type: ignore[arg-type]

    decoder = SlowDecoder()
    runner = LocalRunner(decoder, EngineSettings(batch_size=8), packing=None)
    order: list[str] = []

    async def decode(name: str, partial: bool) -> None:
        await runner.decode(WindowJob(speech(2, 11), TranscribeOptions(), "en", partial=partial))
        order.append(name)

    async def story() -> None:
        first = asyncio.create_task(decode("first", False))
        await asyncio.sleep(0.05)  # the runner is decoding it
        rest = [decode("partial-1", True), decode("partial-2", True), decode("final", False)]
        await asyncio.gather(first, *rest)

    asyncio.run(story())
    assert order == ["first", "final", "partial-1", "partial-2"]
    assert [size for size, _ in decoder.calls] == [1, 1, 2]


def test_a_busy_runner_fills_its_batch_with_short_clips_by_the_windows_they_pack_into() -> None:
    """A batch holds `batch_size` windows, not jobs: while one decodes, twelve 1 s clips of one caller and
    two long windows queue up; with a batch of 2 windows the next batch takes the first long window and all
    twelve clips (they pack into one window), and the second long window waits for the batch after."""
    import time

    from tuned_whisper.engine.batching import Packing
    from tuned_whisper.engine.local import LocalRunner

    class SlowDecoder(FakeDecoder):
        def decode(self, *args: object) -> list[Decoded]:  # type: ignore[override]
            time.sleep(0.2)
            return super().decode(*args)  # type: ignore[arg-type]

    decoder = SlowDecoder()
    batches: list[tuple[int, int]] = []  # (jobs, windows) per batch
    runner = LocalRunner(
        decoder,
        EngineSettings(batch_size=2),
        packing=Packing(gap_s=1.0),
        on_batch=lambda jobs, report: batches.append((len(jobs), report.windows)),
    )
    options = TranscribeOptions(language="en")

    async def story() -> None:
        first = asyncio.create_task(runner.decode(WindowJob(speech(30, 3), options, "en")))
        await asyncio.sleep(0.05)  # the runner is decoding it
        long_one = runner.decode(WindowJob(speech(30, 5), options, "en"))
        clips = [
            runner.decode(WindowJob(speech(1, 7), options, "en", "caller", packable=True)) for _ in range(12)
        ]
        long_two = runner.decode(WindowJob(speech(30, 9), options, "en"))
        await asyncio.gather(first, long_one, *clips, long_two)

    asyncio.run(story())
    # one window, then the long one beside the packed clips, then the other long one
    assert batches == [(1, 1), (13, 2), (1, 1)]
    assert sum(size for size, _ in decoder.calls) == 4  # no clip decoded again alone


@dataclass
class StopsEarly(FakeDecoder):
    """Like Whisper at a window's end: in a long window it stops after second 18 with a lone timestamp."""

    def _one(self, window: np.ndarray, language: str | None, temperature: float) -> Decoded:
        decoded = super()._one(window, language, temperature)
        if len(window) <= 20 * RATE:
            return decoded
        kept = [*decoded.tokens[: 3 * 18], VOCAB.timestamp(18)]  # three tokens per second
        return dataclasses.replace(decoded, tokens=np.asarray(kept, dtype=np.int64))


def test_windows_cut_at_pauses_are_read_on_where_whisper_stops_early_and_joined_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("tuned_whisper.engine.longform._has_speech", lambda audio: True)  # Silero hears no DC
    audio = np.concatenate([speech(25, 3), speech(25, 5), speech(20, 7)])
    decoder = StopsEarly()
    cut = engine(decoder, cut_at_pauses=True, pack_short_audio=False)
    transcript = cut.transcribe(audio, TranscribeOptions(language="en"))
    words = transcript.text.split()
    assert words == sorted(words)  # in spoken order
    # every second is heard (the fake also names the bits of a second a cut leaves at a window end)
    assert words.count("w3") == 25 and words.count("w5") >= 25 and words.count("w7") >= 20
    assert [s.start for s in transcript.segments] == sorted(s.start for s in transcript.segments)
    assert transcript.segments[-1].end == pytest.approx(70.0, abs=1.0)  # times shifted per window
    # three windows, and the two long ones read on from their second 18
    assert sum(n for n, _ in decoder.calls) == 5


def test_windows_an_earlier_attempt_finished_are_not_decoded_again() -> None:
    from tuned_whisper.engine.local import LocalRunner
    from tuned_whisper.engine.longform import LongForm, WindowLog

    decoder = FakeDecoder()
    settings = EngineSettings(vad_filter=False)
    options = TranscribeOptions(language="en")
    audio = np.concatenate([speech(30, 3), speech(30, 5), speech(10, 7)])

    async def transcribe(log: WindowLog) -> str:
        runner = LocalRunner(decoder, settings)
        return (await LongForm(decoder.tokenizer, settings).transcribe(audio, options, runner, log=log)).text

    recorded: dict[int, Decoded] = {}
    whole = asyncio.run(transcribe(WindowLog(record=recorded.__setitem__)))
    assert sorted(recorded) == [0, 1, 2] and sum(n for n, _ in decoder.calls) == 3
    decoder.calls.clear()
    again: dict[int, Decoded] = {}
    resumed = asyncio.run(transcribe(WindowLog({0: recorded[0], 1: recorded[1]}, again.__setitem__)))
    assert resumed == whole and sorted(again) == [2]
    assert sum(n for n, _ in decoder.calls) == 1


def overlapping(reading: Sequence[Sequence[int]], chunk_s: int = 30, stride_s: int = 5) -> list:
    """Strided windows where window i reads word `reading[i][k]` in its second k (all but the last
    window are `chunk_s` long, however few words they read)."""
    from tuned_whisper.engine.windows import Window

    step = chunk_s - 2 * stride_s
    parts = []
    for i, words in enumerate(reading):
        tokens = [
            t for k, w in enumerate(words) for t in (VOCAB.timestamp(k), WORD + w, VOCAB.timestamp(k + 1))
        ]
        last = i == len(reading) - 1
        length = (len(words) if last else chunk_s) * RATE
        stride = (length, 0 if i == 0 else stride_s * RATE, 0 if last else stride_s * RATE)
        window = Window(np.zeros(length, np.float32), stride, offset=i * step * RATE)
        parts.append((window, Decoded(np.asarray(tokens, np.int64), -0.1, 0.01, 0.0, "en")))
    return parts


def merged(parts: list) -> tuple[list[int], list[tuple[float, float]]]:
    from tuned_whisper.engine.windows import merge_windows

    _, chunks = merge_windows(FakeTokenizer(), parts, word_timestamps=False)
    return [int(c["text"].strip()[1:]) for c in chunks], [c["timestamp"] for c in chunks]


def test_words_two_overlapping_windows_both_read_are_written_once_in_time_order() -> None:
    # 0-30 s and 20-45 s: seconds 20-29 are read by both windows alike
    words, times = merged(overlapping([list(range(30)), list(range(20, 45))]))
    assert words == list(range(45))
    assert times == [(float(s), float(s + 1)) for s in range(45)]


def test_where_overlapping_windows_disagree_each_keeps_the_seconds_of_its_core() -> None:
    # the second window hears the overlap as other words (100+): the first keeps up to its core's end
    second = [100 + k for k in range(10)] + list(range(30, 45))
    words, times = merged(overlapping([list(range(30)), second]))
    assert words == [*range(25), 105, 106, 107, 108, 109, *range(30, 45)]
    assert [start for start, _ in times] == [float(s) for s in range(45)]


def test_a_window_that_stopped_early_leaves_its_unread_seconds_to_the_next() -> None:
    # the first window read only 0-14 s; the next window's reading of 20-29 s is all there is of them
    second = [200 + k for k in range(10)] + list(range(30, 45))
    words, _ = merged(overlapping([list(range(15)), second]))
    assert words == [*range(15), *range(200, 210), *range(30, 45)]


def test_long_audio_on_disk_is_read_a_window_at_a_time_and_never_whole() -> None:
    # Ten minutes the fake hears as word 4, read from a source that counts what is read of it at once.
    audio = speech(600, 4)
    reads: list[int] = []

    class OnDisk:
        def __len__(self) -> int:
            return audio.size

        def __getitem__(self, span: slice) -> np.ndarray:
            piece = audio[span].copy()
            reads.append(piece.size)
            return piece

    transcript = engine(FakeDecoder()).transcribe(OnDisk(), TranscribeOptions(language="en"))

    assert transcript.text.split() == ["w4"] * 600
    assert max(reads) <= 30 * RATE
    assert len(reads) == 30  # 30 s windows that step 20 s over 600 s
