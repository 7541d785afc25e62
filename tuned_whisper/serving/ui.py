"""The browser UI: a Gradio Blocks app over any `TranscribeBackend`, mounted beside the API.

There is no module-level Blocks: `build_ui` makes one per process, because a Ray Serve replica must build
its own at start-up (a Blocks cannot be pickled). `mount_ui` puts it at `/` of a FastAPI app, after the
app's own routes, so `/v1/...` and `/healthz` keep answering. The transcribe event is also a Gradio API
endpoint (`api_name="transcribe"`), callable with `gradio_client`.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import logging
import math
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import anyio.to_thread
import gradio as gr
from fastapi import FastAPI

from tuned_whisper.audio import decode_audio_to_disk
from tuned_whisper.config import PROJECT_ROOT
from tuned_whisper.engine.base import ProgressCallback
from tuned_whisper.formats import format_timestamp, to_milliseconds, write_transcript
from tuned_whisper.languages import LANGUAGE_NAMES, language_code, language_name
from tuned_whisper.serving.admission import AudioBudget, ServerBusy
from tuned_whisper.serving.api import Models, TranscribeBackend
from tuned_whisper.serving.errors import ApiError
from tuned_whisper.serving.ui_live import live_tab
from tuned_whisper.types import Task, TranscribeOptions, Transcript

log = logging.getLogger("tuned_whisper.ui")

AUTO_DETECT = "auto"
TASKS: tuple[Task, ...] = ("transcribe", "translate")
DOWNLOAD_FORMATS = ("srt", "vtt", "txt", "verbose_json")
_CLIPS = PROJECT_ROOT / "tuned_whisper" / "assets" / "examples"  # package data: in the image too
DEFAULT_EXAMPLES = (_CLIPS / "jfk.flac", _CLIPS / "german_tts.flac")
OUTPUT_ROOT = Path(tempfile.gettempdir()) / "tuned-whisper-ui"
"""Per-request folders of download files; Gradio copies them into its own cache when it answers."""
CACHE_MAX_AGE_S = 3600
"""Uploads, Gradio's copies of the downloads and our own output folders are deleted after this long."""
SEGMENT_HEADERS = ["start", "end", "text"]

# System fonts only: the default theme pulls Google Fonts, which an offline deployment cannot reach.
THEME = gr.themes.Default(
    font=[gr.themes.Font("system-ui"), gr.themes.Font("Segoe UI"), "sans-serif"],
    font_mono=[gr.themes.Font("ui-monospace"), gr.themes.Font("Menlo"), "monospace"],
)
CSS = """
.tw-header h1 { margin-bottom: 0.1em; }
.tw-header p { margin-top: 0; opacity: 0.8; }
#tw-transcribe { min-height: 3em; }
"""

Rows = list[list[str]]


def _language_choices() -> list[tuple[str, str]]:
    named = sorted((name.title(), code) for code, name in LANGUAGE_NAMES.items())
    return [("Auto-detect", AUTO_DETECT), *named]


def _options(language: str | None, task: str, word_timestamps: bool) -> TranscribeOptions:
    """The request's options; raises ValueError (shown to the user) for a language or task we do not know."""
    code = None if language in (None, "", AUTO_DETECT) else language_code(language)
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}: choose one of {', '.join(TASKS)}")
    return TranscribeOptions(language=code, task=cast(Task, task), word_timestamps=bool(word_timestamps))


def _language_label(transcript: Transcript) -> str:
    """The detected language by name ("English"); a translation says what it was translated from."""
    if transcript.language is None:
        return "unknown"
    try:
        name = language_name(transcript.language).title()
    except ValueError:
        name = transcript.language
    return f"{name} (translated to English)" if transcript.task == "translate" else name


def _segment_rows(transcript: Transcript) -> Rows:
    def clock(seconds: float) -> str:
        return format_timestamp(to_milliseconds(seconds), ".")

    return [[clock(s.start), clock(s.end), s.text.strip()] for s in transcript.segments]


def _safe_stem(filename: str) -> str:
    """The upload's name without its extension, reduced to characters safe in any file system."""
    return re.sub(r"[^\w.-]+", "_", Path(filename).stem).strip("._") or "transcript"


def _remove_old_outputs(root: Path, max_age_s: float) -> None:
    if not root.is_dir():
        return
    cutoff = time.time() - max_age_s
    for folder in root.iterdir():
        if folder.is_dir() and folder.stat().st_mtime < cutoff:
            shutil.rmtree(folder, ignore_errors=True)


def _write_downloads(transcript: Transcript, stem: str, root: Path = OUTPUT_ROOT) -> list[str]:
    """SRT, VTT, TXT and verbose JSON files named after the upload, in a fresh folder under `root`."""
    _remove_old_outputs(root, CACHE_MAX_AGE_S)
    root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="request-", dir=root))
    return [str(write_transcript(transcript, fmt, folder, stem)) for fmt in DOWNLOAD_FORMATS]


def _threadsafe(progress: gr.Progress) -> ProgressCallback:
    """A callback the backend may call from any thread: it hands each update to this event loop.

    gr.Progress finds its event through context variables, so the update runs in this request's context.
    """
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()

    def report(fraction: float) -> None:
        update = functools.partial(progress, min(max(fraction, 0.0), 1.0), desc="Transcribing")
        loop.call_soon_threadsafe(update, context=context)

    return report


async def _run(
    backend: TranscribeBackend,
    models: Models | None,
    budget: AudioBudget,
    max_audio_s: float,
    source: str,
    options: TranscribeOptions,
    progress: gr.Progress,
) -> tuple[str, str, Rows, list[str]]:
    """Decode → transcribe → format; AudioDecodeError and other ValueErrors propagate to the caller,
    and so does ServerBusy (the server holds all the audio it may)."""
    name = Path(source).name
    if models is not None:  # the model picked in the dropdown: 404 (ApiError) when it is gone by now
        adapter = await anyio.to_thread.run_sync(models.adapter_for, options.adapter)
        options = dataclasses.replace(options, adapter=adapter)
    progress(0.0, desc="Decoding audio")
    decode = functools.partial(decode_audio_to_disk, source, max_duration_s=max_audio_s, name=name)
    audio = await budget.decode(decode)
    progress(0.0, desc="Transcribing")
    started = time.perf_counter()
    async with budget.hold(audio):
        transcript = await backend.transcribe(audio, options, _threadsafe(progress))
    took = time.perf_counter() - started
    log.info("ui %s file=%r audio_s=%.1f took_s=%.2f", options.task, name, transcript.duration, took)
    if not transcript.text.strip():
        gr.Info("No speech was found in this recording (silence or noise only).")
    files = await anyio.to_thread.run_sync(_write_downloads, transcript, _safe_stem(name))
    return transcript.text.strip(), _language_label(transcript), _segment_rows(transcript), files


def _transcribe_fn(
    backend: TranscribeBackend, models: Models | None, budget: AudioBudget, max_audio_s: float
) -> Any:
    """The transcribe event's function; Gradio reads its signature, so the parameters are the inputs."""

    async def transcribe(
        audio: str | None = None,
        media: str | None = None,
        language: str = AUTO_DETECT,
        task: str = "transcribe",
        word_timestamps: bool = False,
        model: str | None = None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio's way to ask for a progress bar)
    ) -> tuple[str, str, Rows, list[str]]:
        """Transcribe or translate a recording.

        Args:
            audio: a recording or audio file.
            media: any media file ffmpeg can read (video too); used instead of `audio` when given.
            language: a Whisper language code, or "auto" to detect it.
            task: "transcribe" or "translate" (into English).
            word_timestamps: time subtitles by words rather than by segments.
            model: the base model's id or an adapter's name (`/v1/models`); default: the base model.
        """
        source = media or audio
        if not source:
            raise gr.Error("Record or upload something first, then press Transcribe.", print_exception=False)
        try:
            options = dataclasses.replace(_options(language, task, word_timestamps), adapter=model)
            return await _run(backend, models, budget, max_audio_s, source, options, progress)
        except ValueError as exc:  # AudioDecodeError is one: its message names the file and the problem
            raise gr.Error(str(exc), print_exception=False) from exc
        except ServerBusy as exc:
            raise gr.Error(f"The server is busy: {exc.message}.", print_exception=False) from exc
        except ApiError as exc:  # the chosen model was withdrawn meanwhile
            raise gr.Error(exc.message, print_exception=False) from exc

    return transcribe


def _keep_one(value: str | None) -> Any:
    """Choosing one input clears the other, so it is always clear which one Transcribe uses."""
    return None if value else gr.skip()


def _header(backend: TranscribeBackend) -> str:
    """Title, what is served ("checkpoint · openai/whisper-base · cpu") and how to use the page."""
    card = backend.model_card()
    provenance = card.get("provenance") or {}
    served = [
        card.get("id") or "Whisper",
        provenance.get("model"),
        card.get("backend"),
        card.get("device"),
        card.get("dtype"),
    ]
    model = " · ".join(dict.fromkeys(str(part) for part in served if part))
    return (
        f"# tuned-whisper\nSpeech to text with `{model}`. Record or upload a file, pick options and press "
        "**Transcribe**; download subtitles (SRT, VTT), text or JSON."
    )


def _inputs(examples: Sequence[Path]) -> tuple[gr.Audio, gr.File]:
    with gr.Tabs():
        with gr.Tab("Microphone or audio file"):
            audio = gr.Audio(
                sources=["upload", "microphone"], type="filepath", label="Audio", elem_id="tw-audio"
            )
        with gr.Tab("Video or other media"):
            media = gr.File(
                label="Any file ffmpeg can read",
                file_types=["audio", "video"],
                type="filepath",
                elem_id="tw-media",
            )
    if examples:
        gr.Examples(
            [[str(path)] for path in examples],
            inputs=[audio],
            label="Examples (click to load)",
            example_labels=[path.name for path in examples],
        )
    audio.change(_keep_one, audio, media, queue=False, show_progress="hidden", api_visibility="private")
    media.change(_keep_one, media, audio, queue=False, show_progress="hidden", api_visibility="private")
    return audio, media


def _model_control(models: Models | None) -> gr.Dropdown:
    names = models.names() if models is not None else []
    return gr.Dropdown(
        names or ["base"],
        value=names[0] if names else None,
        label="Model",
        info="the base model or a fine-tuned adapter of the registry",
        elem_id="tw-model",
        visible=models is not None,
    )


def _model_refresh(models: Models) -> Callable[[], gr.Dropdown]:
    async def refresh() -> gr.Dropdown:
        names = await anyio.to_thread.run_sync(models.names)
        return gr.Dropdown(choices=names, value=names[0])

    return refresh


def _option_controls() -> tuple[gr.Dropdown, gr.Radio, gr.Checkbox]:
    language = gr.Dropdown(_language_choices(), value=AUTO_DETECT, label="Language")
    with gr.Row(equal_height=True):
        task = gr.Radio(
            [("Transcribe", "transcribe"), ("Translate to English", "translate")],
            value="transcribe",
            label="Task",
            scale=3,
        )
        words = gr.Checkbox(False, label="Word timestamps", scale=2)
    return language, task, words


def _outputs() -> tuple[gr.Textbox, gr.Textbox, gr.Dataframe, gr.File]:
    text = gr.Textbox(
        label="Transcript", lines=8, buttons=["copy"], interactive=False, elem_id="tw-transcript"
    )
    language = gr.Textbox(label="Detected language", interactive=False, elem_id="tw-language")
    files = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="tw-downloads")
    segments = gr.Dataframe(
        headers=SEGMENT_HEADERS,
        datatype="str",
        label="Segments",
        interactive=False,
        wrap=True,
        column_widths=["17%", "17%", "66%"],
        max_height=400,
        elem_id="tw-segments",
    )
    return text, language, segments, files


def build_ui(
    backend: TranscribeBackend,
    *,
    max_audio_s: float,
    examples: Sequence[Path] | None = None,
    concurrency_limit: int = 16,
    live_secret: Callable[[], str] = str,
    budget: AudioBudget | None = None,
    models: Models | None = None,
) -> gr.Blocks:
    """The transcription UI over `backend`; `examples` defaults to the repository's clips where present.

    The Live tab connects to `/v1/realtime` on the same server, with the key `live_secret()` mints (the
    default, "", suits a server without API keys).

    `models` fills the Model dropdown (the base model and the registry's adapters, read again on every
    page load, so a new adapter shows up without a restart); without it the base model alone is used.
    `budget` caps the decoded audio held at once (shared with the API's when mounted beside it).
    `concurrency_limit` requests run at once (Gradio's default of 1 would serialise users and starve a
    batching backend). Theme and CSS are applied by `mount_ui`: Gradio 6 takes them at mount time.
    """
    examples = [p for p in DEFAULT_EXAMPLES if p.is_file()] if examples is None else list(examples)
    with gr.Blocks(
        title="tuned-whisper", analytics_enabled=False, delete_cache=(CACHE_MAX_AGE_S, CACHE_MAX_AGE_S)
    ) as demo:
        gr.Markdown(_header(backend), elem_classes="tw-header")
        with gr.Tabs():
            with gr.Tab("File", elem_id="tw-tab-file"), gr.Row(equal_height=False):
                with gr.Column(scale=5):
                    audio, media = _inputs(examples)
                    model = _model_control(models)
                    language, task, words = _option_controls()
                    button = gr.Button("Transcribe", variant="primary", elem_id="tw-transcribe")
                with gr.Column(scale=7):
                    outputs = _outputs()
            with gr.Tab("Live", elem_id="tw-tab-live"):
                live_tab(live_secret)
        button.click(
            _transcribe_fn(backend, models, budget or AudioBudget(math.inf, concurrency_limit), max_audio_s),
            inputs=[audio, media, language, task, words, model],
            outputs=list(outputs),
            api_name="transcribe",
            concurrency_limit=concurrency_limit,
            concurrency_id="transcribe",
        )
        if models is not None:  # adapters added or withdrawn since the last page load
            demo.load(_model_refresh(models), outputs=model, api_visibility="private", queue=False)
    demo.queue(default_concurrency_limit=concurrency_limit)
    return demo


def mount_ui(
    app: FastAPI,
    backend: TranscribeBackend,
    *,
    path: str = "/",
    max_file_size: str | int | None = None,
    **kw: Any,
) -> FastAPI:
    """Mount `build_ui(backend, **kw)` on `app` at `path`; routes the app already has keep precedence."""
    kw.setdefault("budget", getattr(app.state, "audio_budget", None))  # the API's, from `create_app`
    kw.setdefault("models", getattr(app.state, "models", None))
    blocks = build_ui(backend, **kw)
    return gr.mount_gradio_app(
        app,
        blocks,
        path=path,
        theme=THEME,
        css=CSS,
        max_file_size=max_file_size,
        footer_links=["api", "settings"],
        run_history=False,  # transcripts may be private; do not keep them in the browser
        show_error=True,
    )
