"""The UI's Live tab: the browser itself speaks the realtime protocol to `/v1/realtime`, the same path
as any OpenAI realtime client (server VAD turns, partial and final text from the batched replicas).

Gradio's streaming microphone is not used: its server keeps only the newest chunk of an event that is
still running (the 100 ms chunks in between are dropped), so on a busy two-core machine a third to a half
of the speech never reached the model. Here the page sends all of it over one WebSocket, as 24 kHz PCM
in blocks of about 45 ms.
A browser cannot hold the API key: the page asks its server for a short-lived client secret first.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

import gradio as gr

from tuned_whisper.languages import LANGUAGE_NAMES

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def _page(languages: dict[str, str]) -> str:
    options = '<option value="auto">Detect the language</option>' + "".join(
        f'<option value="{code}">{html.escape(name.title())}</option>' for code, name in languages.items()
    )
    return (
        '<div class="tw-live-row">'
        '<button class="tw-live-toggle" type="button">Start</button>'
        f'<select class="tw-live-language" aria-label="Language">{options}</select>'
        '<span class="tw-live-status" role="status">Press Start and speak: each turn is transcribed when '
        "you pause; partial text shows while you talk.</span></div>"
        '<div class="tw-live-text" id="tw-live-text" aria-label="Live transcript" aria-live="polite"></div>'
    )


def live_tab(mint: Callable[[], str]) -> gr.HTML:
    """The Live tab's page inside the caller's Blocks; `mint` makes the key the page connects with
    ("" where the server has no API key)."""

    def live_secret(*_: object) -> str:  # the page calls it by this name; Gradio passes one (empty) list
        return mint()

    return gr.HTML(
        _page(LANGUAGE_NAMES),
        css_template=(ASSETS / "live.css").read_text(encoding="utf-8"),
        js_on_load=(ASSETS / "live.js").read_text(encoding="utf-8"),
        server_functions=[live_secret],
        elem_id="tw-live",
    )
