"""The Live tab as a person uses it: Chromium's microphone (a fake one that plays a real clip) streams
into the served app, and the transcript appears while the clip plays, turn by turn."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.clips import JFK
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, UI_LOGIN
from tuned_whisper.audio import ffmpeg_binary
from tuned_whisper.config import PROJECT_ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCREENSHOT = PROJECT_ROOT / "artifacts" / "ui-live.png"
HEARD_TIMEOUT_MS = 90_000  # the clip plays at real time (11 s), then the turn's decode on two cores


@pytest.fixture(scope="module")
def microphone_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """JFK's clip as the WAV that Chromium's fake microphone plays (in a loop), with 3 s of silence after
    it so that the server's voice-activity detection closes the turn."""
    wav = tmp_path_factory.mktemp("mic") / "jfk-mic.wav"
    command = [ffmpeg_binary(), "-v", "error", "-i", str(JFK.path), "-af", "apad=pad_dur=3"]
    command += ["-ac", "1", "-ar", "48000", "-c:a", "pcm_s16le", str(wav)]
    subprocess.run(command, check=True)
    return wav


@pytest.fixture(scope="module")
def chromium_with_microphone(microphone_clip: Path) -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}; install Debian's chromium package")
    fake_microphone = [
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone_clip}",
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + fake_microphone)
        yield browser
        browser.close()


@pytest.fixture
def live_page(chromium_with_microphone: Browser, served_app: str) -> Iterator[Page]:
    context = chromium_with_microphone.new_context(
        viewport={"width": 1400, "height": 1000}, http_credentials=UI_LOGIN
    )
    context.grant_permissions(["microphone"], origin=served_app)
    page = context.new_page()
    page.goto(served_app)
    page.get_by_role("tab", name="Live").click()
    yield page
    context.close()


def test_speaking_into_the_live_tab_shows_the_words_as_turns_complete(live_page: Page) -> None:
    live = live_page.locator("#tw-live")
    live.get_by_role("button", name="Start").click()
    transcript = live_page.locator("#tw-live-text")
    expect(transcript).to_contain_text("fellow Americans", ignore_case=True, timeout=HEARD_TIMEOUT_MS)
    expect(transcript).to_contain_text("for your country", ignore_case=True, timeout=HEARD_TIMEOUT_MS)
    live.get_by_role("button", name="Stop").click()
    expect(live.get_by_role("status")).to_have_text("Stopped.", timeout=HEARD_TIMEOUT_MS)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    live_page.screenshot(path=str(SCREENSHOT))
    turns = [line for line in transcript.inner_text().splitlines() if line.strip()]
    assert len(turns) >= 3 and not any(line.endswith("…") for line in turns)  # finished turns, a line each
