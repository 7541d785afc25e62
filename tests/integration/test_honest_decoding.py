"""What comes back is what the decoder found: no words for silence or noise, real quality signals,
and short clips packed into shared windows read the same as clips decoded alone."""

from __future__ import annotations

import numpy as np
import pytest

from tests.clips import JFK
from tests.conftest import IVR_DEV
from tuned_whisper.audio import SAMPLE_RATE, decode_audio
from tuned_whisper.config import Settings
from tuned_whisper.datasets import load_utterances
from tuned_whisper.evaluation import score
from tuned_whisper.types import TranscribeOptions

pytestmark = pytest.mark.slow


def engine_for(settings: Settings, **engine: object) -> object:
    from tuned_whisper.engine import load_transcriber

    return load_transcriber(settings.model_copy(update={"engine": settings.engine.model_copy(update=engine)}))


@pytest.fixture(scope="module", params=["ctranslate2", "transformers"])
def engine(request: pytest.FixtureRequest, settings: Settings) -> object:
    return engine_for(settings, backend=request.param)


NOT_SPEECH = {
    "30 s of digital silence": np.zeros(30 * SAMPLE_RATE, dtype=np.float32),
    "20 s of white noise": np.random.default_rng(7).normal(0, 0.1, 20 * SAMPLE_RATE).astype(np.float32),
    "a 0.1 s clip": decode_audio(JFK.path)[2 * SAMPLE_RATE : 2 * SAMPLE_RATE + SAMPLE_RATE // 10],
}


@pytest.mark.parametrize("name", NOT_SPEECH)
def test_silence_noise_and_a_tenth_of_a_second_give_no_text(engine: object, name: str) -> None:
    for options in (TranscribeOptions(), TranscribeOptions(language="en")):
        transcript = engine.transcribe(NOT_SPEECH[name], options)  # type: ignore[attr-defined]
        assert transcript.text == "" and transcript.segments == (), name
        assert transcript.duration == pytest.approx(len(NOT_SPEECH[name]) / SAMPLE_RATE)


def test_segments_carry_the_decoders_own_signals(engine: object) -> None:
    transcript = engine.transcribe(decode_audio(JFK.path), TranscribeOptions())  # type: ignore[attr-defined]
    assert transcript.segments
    for segment in transcript.segments:
        assert -1.0 < segment.avg_logprob < 0.0  # clear speech: likely tokens, but not certain ones
        assert 0.0 < segment.no_speech_prob < 0.6
        assert 1.0 < segment.compression_ratio < 2.4
        assert segment.temperature == 0.0
        assert engine.decoder.tokenizer.decode(segment.tokens).strip() == segment.text.strip()  # type: ignore[attr-defined]


def test_speech_after_a_long_silence_keeps_its_words_and_its_real_times(engine: object) -> None:
    audio = decode_audio(JFK.path)
    padded = np.concatenate(
        [np.zeros(12 * SAMPLE_RATE, np.float32), audio, np.zeros(5 * SAMPLE_RATE, np.float32)]
    )
    transcript = engine.transcribe(padded, TranscribeOptions(language="en"))  # type: ignore[attr-defined]
    assert JFK.missing_phrases(transcript.text) == []
    assert 11.0 <= transcript.segments[0].start <= 13.0  # mapped back past the silence the VAD skipped
    assert transcript.segments[-1].end <= 12.0 + JFK.duration + 1.0
    assert transcript.duration == pytest.approx(len(padded) / SAMPLE_RATE)


def test_packed_short_clips_read_as_well_as_clips_decoded_alone(settings: Settings) -> None:
    """Telephone prompts of one caller: packed three or more to a window, the words stay the same."""
    utterances = load_utterances(IVR_DEV)[:18]
    requests = [(decode_audio(u.audio_path), TranscribeOptions(language="en")) for u in utterances]
    references = [u.text for u in utterances]
    results = {}
    for packed in (True, False):
        engine = engine_for(settings, backend="ctranslate2", pack_short_audio=packed, batch_size=8)
        calls: list[int] = []
        decode = engine.decoder.decode  # type: ignore[attr-defined]

        def counting(windows, *args, decode=decode, calls=calls):  # type: ignore[no-untyped-def]
            calls.append(len(windows))
            return decode(windows, *args)

        engine.decoder.decode = counting  # type: ignore[attr-defined]
        hypotheses = [t.text for t in engine.transcribe_many(requests)]  # type: ignore[attr-defined]
        results[packed] = (score(references, hypotheses), sum(calls))
    (packed_rates, packed_windows), (alone_rates, alone_windows) = results[True], results[False]
    assert alone_windows >= len(requests) and packed_windows <= alone_windows / 2
    assert packed_rates.wer_normalized <= alone_rates.wer_normalized + 0.02


def test_a_window_decoded_again_at_the_next_temperature_is_not_encoded_again(settings: Settings) -> None:
    """The fallback redoes the decoder, not the encoder (most of a window's cost): six temperatures, one
    encoding, and the same text as a decode that encodes afresh."""
    from tuned_whisper.engine import load_decoder
    from tuned_whisper.engine.quality import DecodingRules, decode_with_fallback

    engine = settings.engine.model_copy(update={"backend": "ctranslate2"})
    decoder = load_decoder(settings.model_copy(update={"engine": engine}))
    window = decode_audio(JFK.path)
    options = TranscribeOptions(language="en")
    tried: list[float] = []
    real_decode = decoder.decode

    def counted(windows: object, languages: object, options: object, temperature: float) -> object:
        tried.append(temperature)
        return real_decode(windows, languages, options, temperature)

    decoder.decode = counted
    never_good_enough = DecodingRules(log_prob_threshold=0.0)  # every decode is "too unlikely"
    runs = decoder.encoder_runs
    (best,) = decode_with_fallback(decoder, [window], ["en"], options, never_good_enough)
    assert tried == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert decoder.encoder_runs - runs == 1
    assert best.temperature in tried
    assert JFK.missing_phrases(decoder.tokenizer.decode(best.tokens, skip_special_tokens=True)) == []
    # what was kept is what the encoder gives: a greedy decode from it reads as one encoded afresh
    (kept,) = real_decode([window], ["en"], options, 0.0)
    assert decoder.encoder_runs - runs == 1
    (fresh,) = real_decode([window.copy()], ["en"], options, 0.0)  # an equal array, not the same one
    assert decoder.encoder_runs - runs == 2
    assert kept.tokens.tolist() == fresh.tokens.tolist()
