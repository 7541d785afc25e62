"""A fine-tune goes live by name on the running service: dropped into the adapter registry, listed by
`/v1/models`, chosen per request with the `openai` client beside the base model, then withdrawn."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest

from tests.conftest import API_KEY, HOUSE_STYLE, TRAIN, train_references
from tuned_whisper.evaluation import score

pytestmark = pytest.mark.slow
NAME = "ivr-house-style"


def test_an_adapter_dropped_into_the_registry_is_served_by_name_without_a_restart(
    served_app: str, adapters_dir: Path, overfit_run: dict
) -> None:
    client = openai.OpenAI(base_url=f"{served_app}/v1", api_key=API_KEY)
    base = client.models.list().data[0].id
    assert NAME not in [m.id for m in client.models.list().data]
    (adapters_dir / NAME).symlink_to(overfit_run["adapter"], target_is_directory=True)
    listed = {m.id: m for m in client.models.list().data}
    assert NAME in listed and listed[NAME].model_extra["parent"] == base
    assert listed[NAME].model_extra["adapter"]["after"]["wer"] == overfit_run["best"]["wer"]

    def transcribe(job: tuple[str, str]) -> str:
        clip, model = job
        with (TRAIN / clip).open("rb") as audio:
            return client.audio.transcriptions.create(model=model, file=audio, language="en").text

    jobs = [(clip, model) for clip in HOUSE_STYLE for model in (NAME, "whisper-1")]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:  # both models in flight at once
        texts = list(pool.map(transcribe, jobs))
    references = [train_references()[clip] for clip in HOUSE_STYLE]
    fine, plain = score(references, texts[0::2]).wer, score(references, texts[1::2]).wer
    assert fine < overfit_run["before"]["wer"] / 2 and plain > fine

    (adapters_dir / NAME).unlink()
    assert NAME not in [m.id for m in client.models.list().data]
    with pytest.raises(openai.NotFoundError) as gone:
        transcribe((HOUSE_STYLE[0], NAME))
    assert gone.value.code == "model_not_found"


def test_an_adapter_uploaded_as_an_archive_is_served_by_name_and_deleted(
    served_app: str, adapters_dir: Path, overfit_run: dict, tmp_path: Path
) -> None:
    """`POST /v1/models` with the fine-tune's folder zipped, as a team hands a new model to the service."""
    import shutil

    import httpx

    archive = shutil.make_archive(str(tmp_path / "run"), "zip", overfit_run["adapter"])
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with open(archive, "rb") as handle:
        made = httpx.post(
            f"{served_app}/v1/models",
            files={"file": ("run.zip", handle, "application/zip")},
            data={"id": "uploaded-house-style"},
            headers=headers,
            timeout=120,
        )
    assert made.status_code == 200, made.text
    assert made.json()["adapter"]["after"]["wer"] == overfit_run["best"]["wer"]
    client = openai.OpenAI(base_url=f"{served_app}/v1", api_key=API_KEY)
    texts = []
    for clip in HOUSE_STYLE:
        with (TRAIN / clip).open("rb") as audio:
            made_text = client.audio.transcriptions.create(
                model="uploaded-house-style", file=audio, language="en"
            )
            texts.append(made_text.text)
    references = [train_references()[clip] for clip in HOUSE_STYLE]
    assert score(references, texts).wer < overfit_run["before"]["wer"] / 2  # the house style, learned
    live = live_turns(served_app, "uploaded-house-style", [TRAIN / clip for clip in HOUSE_STYLE])
    assert score(references, live).wer < overfit_run["before"]["wer"] / 2  # a live session by name too
    client.models.delete("uploaded-house-style")
    assert "uploaded-house-style" not in [m.id for m in client.models.list().data]
    assert not (adapters_dir / "uploaded-house-style").exists()


def live_turns(served_app: str, model: str, clips: list[Path]) -> list[str]:
    """Each clip as one committed turn of a realtime session that names `model`; an unknown model first,
    which the session refuses with an `error` event and survives."""
    import base64

    from tuned_whisper.audio import decode_audio
    from tuned_whisper.audio_formats import encode_pcm16

    ws = served_app.replace("http://", "ws://")
    client = openai.OpenAI(base_url=f"{served_app}/v1", websocket_base_url=f"{ws}/v1", api_key=API_KEY)
    with client.realtime.connect(model="whisper-1", extra_query={"intent": "transcription"}) as connection:

        def transcription(name: str) -> dict:
            inputs = {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": {"model": name, "language": "en"},
                "turn_detection": None,
            }
            return {"type": "transcription", "audio": {"input": inputs}}

        connection.session.update(session=transcription("no-such-model"))  # type: ignore[arg-type]
        connection.session.update(session=transcription(model))  # type: ignore[arg-type]
        for clip in clips:
            pcm = encode_pcm16(decode_audio(clip), 24000)
            connection.input_audio_buffer.append(audio=base64.b64encode(pcm).decode())
            connection.input_audio_buffer.commit()
        errors, texts = [], []
        for event in connection:
            if event.type == "error":
                errors.append(event.error.code)
            if event.type == "conversation.item.input_audio_transcription.completed":
                texts.append(event.transcript)
                if len(texts) == len(clips):
                    break
    assert errors == ["model_not_found"]
    return texts
