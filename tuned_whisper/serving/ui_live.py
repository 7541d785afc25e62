"""The UI's Live tab: Gradio's streaming microphone feeding a `LiveSession`, the same path as the
realtime WebSocket (server VAD turns, partial and final text from the batched model replicas)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
import numpy as np

from tuned_whisper.audio_formats import resample
from tuned_whisper.serving.api import TranscribeBackend
from tuned_whisper.streaming import Completed, Delta, LiveSession, SpeechStarted
from tuned_whisper.types import TranscribeOptions

STREAM_EVERY_S = 0.25


@dataclass
class LiveView:
    """One browser's live session and what it shows: finished turns, and the open turn's partial text."""

    session: LiveSession
    turns: dict[str, str] = field(default_factory=dict)
    partial: dict[str, str] = field(default_factory=dict)

    def drain(self) -> None:
        while not self.session.events.empty():
            event = self.session.events.get_nowait()
            if isinstance(event, SpeechStarted):
                self.partial[event.item_id] = ""
            elif isinstance(event, Delta):
                self.partial[event.item_id] = self.partial.get(event.item_id, "") + event.delta
            elif isinstance(event, Completed):
                self.partial.pop(event.item_id, None)
                if event.transcript:
                    self.turns[event.item_id] = event.transcript

    def text(self) -> str:
        lines = list(self.turns.values())
        lines += [f"{text} …" for text in self.partial.values() if text.strip()]
        return "\n".join(lines)


def _samples(chunk: tuple[int, np.ndarray]) -> np.ndarray:
    """Gradio's (rate, int16 or float array, maybe stereo) → float32 16 kHz mono."""
    rate, data = chunk
    audio = np.asarray(data)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    if np.issubdtype(audio.dtype, np.integer):
        audio = audio.astype(np.float32) / 32768.0
    return resample(audio.astype(np.float32), int(rate))


def live_tab(backend: TranscribeBackend, language: gr.Dropdown | None = None) -> None:
    """The Live tab's components and events, inside the caller's Blocks."""

    async def transcribe(audio: np.ndarray, options: TranscribeOptions) -> str:
        return (await backend.transcribe(audio, options)).text

    def new_view(language_choice: str) -> LiveView:
        chosen = None if language_choice in (None, "", "auto") else language_choice
        return LiveView(LiveSession(transcribe, TranscribeOptions(language=chosen)))

    async def step(chunk: tuple[int, np.ndarray] | None, view: LiveView | None, lang: str) -> tuple[str, Any]:
        view = view or new_view(lang)
        if chunk is not None and np.asarray(chunk[1]).size:
            view.session.append(_samples(chunk))
        view.drain()
        return view.text(), view

    async def stop(view: LiveView | None) -> tuple[str, None]:
        if view is None:
            return "", None
        if view.session.turn is not None:
            view.session.commit()
        while view.session.finals:
            await asyncio.sleep(0.1)
        view.drain()
        await view.session.close()
        return view.text(), None

    gr.Markdown("Speak: each turn is transcribed when you pause; partial text shows while you talk.")
    mic = gr.Audio(
        sources=["microphone"], streaming=True, type="numpy", label="Microphone", elem_id="tw-live-mic"
    )
    text = gr.Textbox(label="Live transcript", lines=10, interactive=False, elem_id="tw-live-text")
    state = gr.State(None)
    chosen = language if language is not None else gr.State("auto")
    mic.stream(
        step,
        inputs=[mic, state, chosen],
        outputs=[text, state],
        stream_every=STREAM_EVERY_S,
        time_limit=3600,
        concurrency_limit=32,
        api_visibility="private",
        show_progress="hidden",
    )
    mic.stop_recording(stop, inputs=[state], outputs=[text, state], api_visibility="private")
