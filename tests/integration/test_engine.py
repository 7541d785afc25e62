"""The engine on real speech with the real default checkpoint: what a user of the library sees."""

from __future__ import annotations

import pytest

from tests.clips import GERMAN, JFK, SONNETS
from tests.conftest import IVR_DEV
from tuned_whisper.audio import decode_audio
from tuned_whisper.types import TranscribeOptions

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["ctranslate2", "transformers"])
def transcriber(request: pytest.FixtureRequest, settings: object) -> object:
    """Every story below holds on both backends: the fast one and the card's Transformers pipeline."""
    from tuned_whisper.engine import load_transcriber

    engine = settings.engine.model_copy(update={"backend": request.param})  # type: ignore[attr-defined]
    loaded = load_transcriber(settings.model_copy(update={"engine": engine}))  # type: ignore[attr-defined]
    assert loaded.info.backend == request.param
    return loaded


WINDOW_PHRASES = (
    "from fairest creatures we desire increase",  # 0-30 s
    "or else this glutton",  # 40-50 s
    "when forty winters shall besiege thy brow",  # 53-60 s
    "this were to be new made when thou art old",  # 100-106 s
)


def test_jfk_clip_transcribes_with_its_key_phrases_and_detected_english(transcriber) -> None:
    transcript = transcriber.transcribe(decode_audio(JFK.path), TranscribeOptions())
    assert transcript.language == "en"
    assert JFK.missing_phrases(transcript.text) == []
    assert transcript.duration == pytest.approx(JFK.duration, abs=0.01)


def test_a_clip_over_a_minute_is_chunked_with_monotonic_timestamps(transcriber) -> None:
    progress: list[float] = []
    transcript = transcriber.transcribe(
        decode_audio(SONNETS.path), TranscribeOptions(language="en"), progress.append
    )
    assert SONNETS.duration > 60
    # A phrase from each 30 s window (20 s apart): no window was dropped.
    text = transcript.text.lower()
    for phrase in WINDOW_PHRASES:
        assert phrase in text
    starts = [s.start for s in transcript.segments]
    assert starts == sorted(starts)
    assert all(s.start <= s.end for s in transcript.segments)
    assert all(
        a.end <= b.start + 1e-6 for a, b in zip(transcript.segments, transcript.segments[1:], strict=False)
    )
    assert transcript.segments[-1].end <= SONNETS.duration + 1e-6
    assert transcript.segments[-1].end > SONNETS.duration - 10
    assert progress[-1] == 1.0 and progress == sorted(progress)


def test_a_long_clip_cut_at_its_pauses_loses_no_window_and_keeps_word_times_in_order(transcriber) -> None:
    from tuned_whisper.engine.local import Engine

    cut = Engine(transcriber.decoder, transcriber.settings.model_copy(update={"cut_at_pauses": True}))
    transcript = cut.transcribe(
        decode_audio(SONNETS.path), TranscribeOptions(language="en", word_timestamps=True)
    )
    text = transcript.text.lower()
    assert [phrase for phrase in WINDOW_PHRASES if phrase not in text] == []
    assert "warm" in text.split()[-6:]  # the last line, read after the last cut
    words = transcript.words
    assert [w.start for w in words] == sorted(w.start for w in words)
    assert transcript.duration - 5 < words[-1].end <= transcript.duration


def test_word_timestamps_fall_inside_their_segments_and_in_order(transcriber) -> None:
    transcript = transcriber.transcribe(decode_audio(JFK.path), TranscribeOptions(word_timestamps=True))
    words = transcript.words
    assert len(words) >= 20
    assert "".join(w.word for w in words).strip() == transcript.text
    assert [w.start for w in words] == sorted(w.start for w in words)
    for segment in transcript.segments:
        assert all(segment.start <= w.start <= w.end <= segment.end for w in segment.words)
    # "country" closes the clip: its last word ends in the final seconds.
    assert words[-1].end > JFK.duration - 2.5


def test_german_speech_is_detected_as_german(transcriber) -> None:
    audio = decode_audio(GERMAN.path)
    language, probability = transcriber.detect_language(audio)
    assert language == "de" and probability > 0.5
    transcript = transcriber.transcribe(audio, TranscribeOptions())
    assert transcript.language == "de"
    assert "Termin" in transcript.text


def test_translate_task_turns_german_speech_into_english(transcriber) -> None:
    transcript = transcriber.transcribe(decode_audio(GERMAN.path), TranscribeOptions(task="translate"))
    assert transcript.task == "translate"
    text = transcript.text.lower()
    assert "tomorrow" in text and ("doctor" in text or "practice" in text)
    assert "guten" not in text and "arzt" not in text


def test_initial_prompt_steers_the_house_style(transcriber) -> None:
    audio = decode_audio(IVR_DEV / "agent-pass.flac")
    plain = transcriber.transcribe(audio, TranscribeOptions(language="en")).text
    prompted = transcriber.transcribe(
        audio, TranscribeOptions(language="en", initial_prompt="Press # when done. Press * to cancel.")
    ).text
    assert "password" in plain.lower() and "password" in prompted.lower()
    assert "cancel" not in prompted.lower()  # the prompt conditions the decoder; it is not transcribed


def test_many_requests_with_different_options_come_back_in_order(transcriber) -> None:
    jfk, german = decode_audio(JFK.path), decode_audio(GERMAN.path)
    results = transcriber.transcribe_many(
        [
            (german, TranscribeOptions()),
            (jfk, TranscribeOptions()),
            (german, TranscribeOptions(task="translate")),
        ]
    )
    assert [r.language for r in results] == ["de", "en", "de"]
    assert "Termin" in results[0].text
    assert JFK.missing_phrases(results[1].text) == []
    assert {"doctor", "practice"} & set(results[2].text.lower().replace(".", " ").split())


def test_prompts_read_back_to_back_come_out_once_each_across_the_window_overlaps(transcriber) -> None:
    """2.5 minutes of telephone prompts in a row: every sentence Whisper hears in two overlapping windows
    is written once (the pipeline's merge wrote "No empty conferences currently exist. Users will join
    the conference." twice here, and the transcript scored 14 % WER instead of 10 %)."""
    import csv

    import numpy as np

    from tuned_whisper.audio import SAMPLE_RATE
    from tuned_whisper.evaluation import normalize, score

    rows = list(csv.DictReader((IVR_DEV / "metadata.csv").open(encoding="utf-8")))
    pause = np.zeros(SAMPLE_RATE // 2, dtype=np.float32)
    audio = np.concatenate([part for r in rows for part in (decode_audio(IVR_DEV / r["file_name"]), pause)])
    reference = " ".join(r["transcription"] for r in rows)
    transcript = transcriber.transcribe(audio, TranscribeOptions(language="en"))
    words = normalize(transcript.text).split()
    runs = [" ".join(words[i : i + 6]) for i in range(len(words) - 5)]
    repeated = {run for run in runs if runs.count(run) > 1 and normalize(reference).count(run) < 2}
    assert repeated == set()
    assert score([reference], [transcript.text]).wer_normalized < 0.12
