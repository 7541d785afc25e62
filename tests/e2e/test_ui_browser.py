"""The UI as a person uses it: a real Chromium uploads a clip, presses Transcribe, reads and downloads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import srt
from playwright.sync_api import Browser, Page, expect
from playwright.sync_api import Error as PlaywrightError

from tests.clips import GERMAN, JFK
from tests.conftest import TRAIN, train_references
from tests.e2e.conftest import UI_LOGIN
from tuned_whisper.config import PROJECT_ROOT
from tuned_whisper.evaluation import score

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCREENSHOT = PROJECT_ROOT / "artifacts" / "ui-transcript.png"
TRANSCRIBE_TIMEOUT_MS = 90_000  # CPU inference on two cores, first request included


def upload(page: Page, path: Path) -> None:
    page.locator("#tw-audio input[type=file]").set_input_files(path)
    page.wait_for_timeout(500)  # let the component take the file before Transcribe reads it


def transcribe(page: Page) -> None:
    page.get_by_role("button", name="Transcribe").click()


def test_upload_transcribe_and_download_subtitles(ui_page: Page) -> None:
    upload(ui_page, JFK.path)
    transcribe(ui_page)

    transcript = ui_page.locator("#tw-transcript textarea")
    expect(transcript).to_have_value(re.compile("my fellow Americans", re.I), timeout=TRANSCRIBE_TIMEOUT_MS)
    assert JFK.missing_phrases(transcript.input_value()) == []
    expect(ui_page.locator("#tw-language textarea")).to_have_value("English")
    rows = ui_page.locator("#tw-segments tbody tr")
    expect(rows.first).to_contain_text(re.compile(r"00:00:\d\d\.\d{3}"))

    with ui_page.expect_download() as download:
        ui_page.locator("#tw-downloads a[download='jfk.srt']").click()
    assert download.value.suggested_filename == "jfk.srt"
    cues = list(srt.parse(Path(download.value.path()).read_text(encoding="utf-8")))
    assert cues and all(cue.end > cue.start for cue in cues)
    assert JFK.missing_phrases(" ".join(cue.content for cue in cues)) == []

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    ui_page.screenshot(path=SCREENSHOT, full_page=True)


def test_a_bad_file_gets_a_readable_error_and_the_next_file_works(ui_page: Page, tmp_path: Path) -> None:
    notes = tmp_path / "notes.wav"
    notes.write_text("meeting notes, not a recording\n", encoding="utf-8")
    upload(ui_page, notes)
    transcribe(ui_page)
    expect(ui_page.get_by_text("could not decode 'notes.wav'")).to_be_visible(timeout=30_000)

    ui_page.get_by_text(GERMAN.path.name, exact=True).click()  # one of the example clips
    # The example has loaded once the player shows its length (8.5 s: 0:08 or 0:09); a click before races.
    expect(ui_page.locator("#tw-audio")).to_contain_text(re.compile(r"0:0[89]"), timeout=90_000)
    transcribe(ui_page)
    expect(ui_page.locator("#tw-language textarea")).to_have_value("German", timeout=TRANSCRIBE_TIMEOUT_MS)
    expect(ui_page.locator("#tw-transcript textarea")).to_have_value(re.compile("Termin"))


def test_with_an_api_key_set_the_ui_asks_for_it_before_showing_anything(
    chromium: Browser, server_url: str
) -> None:
    stranger = chromium.new_context()
    # Challenged for credentials it does not have, headless Chromium (no sign-in prompt) gives up.
    with pytest.raises(PlaywrightError, match="ERR_INVALID_AUTH_CREDENTIALS"):
        stranger.new_page().goto(server_url)
    for path in ("/", "/config", "/gradio_api/info"):  # the page, and the Gradio API behind it
        refused = stranger.request.get(f"{server_url}{path}")
        assert refused.status == 401, path
        assert refused.headers["www-authenticate"].startswith("Basic")
        assert "API key" in refused.text()
    stranger.close()

    wrong = chromium.new_context(http_credentials={"username": "operator", "password": "sk-wrong"})
    assert wrong.request.get(server_url).status == 401
    wrong.close()


def test_a_fine_tuned_model_dropped_into_the_registry_is_picked_in_the_model_dropdown(
    chromium: Browser, server_url: str, adapters_dir: Path, overfit_run: dict
) -> None:
    clip = TRAIN / "both_help.flac"  # "press * to toggle pause, press # to enter a new dictation filename"
    reference = train_references()[clip.name]
    link = adapters_dir / "ui-house-style"
    link.symlink_to(overfit_run["adapter"], target_is_directory=True)
    context = chromium.new_context(viewport={"width": 1400, "height": 1000}, http_credentials=UI_LOGIN)
    try:
        page = context.new_page()
        page.goto(server_url)  # the dropdown is filled on page load: the adapter is there, no restart
        page.get_by_role("button", name="Transcribe").wait_for()
        upload(page, clip)
        texts = {}
        for model in ("ui-house-style", None):  # the adapter, then the base model (first in the list)
            page.locator("#tw-model input").click()
            options = page.get_by_role("option")
            expect(options.filter(has_text="ui-house-style")).to_have_count(1)
            (options.filter(has_text=model) if model else options.first).click()
            transcript = page.locator("#tw-transcript textarea")
            before = transcript.input_value()
            transcribe(page)
            expect(transcript).not_to_have_value(before, timeout=TRANSCRIBE_TIMEOUT_MS)
            texts[model or "base"] = transcript.input_value()
    finally:
        context.close()
        link.unlink()
    fine, plain = (score([reference], [texts[m]]).wer for m in ("ui-house-style", "base"))
    print(f"adapter: {texts['ui-house-style']!r} ({fine:.2f}); base: {texts['base']!r} ({plain:.2f})")
    assert fine < plain  # the house style ("press", "filename", "*", "#") came from the adapter
