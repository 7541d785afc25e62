"""Four hours of audio, with the real engine and real ffmpeg: decoded to disk and read a window at a time,
so neither the CLI nor the API's process grows with the recording; a recording over the limit is refused
from its header, before it is decoded."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import openai
import psutil
import pytest

from tests.clips import JFK
from tests.servers import serve_asgi
from tuned_whisper.audio import ffmpeg_binary
from tuned_whisper.serving import ApiSettings, EngineBackend, create_app

pytestmark = pytest.mark.slow

HOURS = 4
GROWTH_MB = 200
"""How much more than for an 11 s clip a process may hold for 4 h of audio (decoded whole: 3.7 GB more)."""

_PEAK_OF_CHILD = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:]).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)
sys.exit(code)
"""


@pytest.fixture(scope="module")
def four_hours(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 h of 16 kHz FLAC (2.9 MB): silence, JFK after one hour, silence, JFK again, silence."""
    path = tmp_path_factory.mktemp("long") / "four_hours.flac"
    silence = ["-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono:d={}"]
    rest = HOURS * 3600 - 3 * 3600 - 2 * JFK.duration
    inputs = [
        *[a.format(3600) for a in silence],
        *["-i", str(JFK.path)],
        *[a.format(7200) for a in silence],
        *["-i", str(JFK.path)],
        *[a.format(f"{rest:.3f}") for a in silence],
    ]
    speech = ";".join(f"[{i}:a]aresample=16000,aformat=channel_layouts=mono[s{i}]" for i in (1, 3))
    graph = f"{speech};[0:a][s1][2:a][s3][4:a]concat=n=5:v=0:a=1"
    command = [ffmpeg_binary(), "-v", "error", "-y", *inputs, "-filter_complex", graph, "-c:a", "flac"]
    subprocess.run([*command, str(path)], check=True)
    return path


def cli_peak_mb(audio: Path, output_dir: Path) -> int:
    """Peak resident memory of `tuned-whisper transcribe` on one file, read by a fresh parent process."""
    cli = [sys.executable, "-m", "tuned_whisper.cli", "transcribe", str(audio), "-o", str(output_dir)]
    result = subprocess.run(
        [sys.executable, "-c", _PEAK_OF_CHILD, *cli, "--language", "en", "-f", "txt"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return int(result.stdout.split()[-1])


def test_the_cli_transcribes_four_hours_in_about_the_memory_of_one_clip(
    four_hours: Path, tmp_path: Path
) -> None:
    clip_mb = cli_peak_mb(JFK.path, tmp_path)
    long_mb = cli_peak_mb(four_hours, tmp_path)

    text = (tmp_path / "four_hours.txt").read_text()
    assert text.lower().count("ask not what your country") + text.lower().count("fellow america") >= 2
    assert long_mb < clip_mb + GROWTH_MB, f"4 h took {long_mb} MB against {clip_mb} MB for 11 s"


class PeakRss:
    """This process's resident memory, polled every 50 ms while the block runs."""

    def __enter__(self) -> PeakRss:
        self.process = psutil.Process()
        self.before_mb = self.peak_mb = self.process.memory_info().rss // 2**20
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(0.05):
            self.peak_mb = max(self.peak_mb, self.process.memory_info().rss // 2**20)

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def test_the_api_transcribes_four_hours_without_holding_them_and_refuses_five_at_once(
    transcriber: object, four_hours: Path
) -> None:
    app = create_app(EngineBackend(transcriber), ApiSettings(max_audio_s=HOURS * 3600 + 60))  # type: ignore[arg-type]
    strict = create_app(EngineBackend(transcriber), ApiSettings(max_audio_s=3 * 3600))  # type: ignore[arg-type]
    with serve_asgi(app) as url, serve_asgi(strict) as strict_url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=600)
        warm = client.audio.transcriptions.create(model="whisper-1", file=JFK.path, language="en")
        with PeakRss() as rss:
            long = client.audio.transcriptions.create(
                model="whisper-1", file=four_hours, language="en", response_format="verbose_json"
            )

        strict_client = openai.OpenAI(base_url=f"{strict_url}/v1", api_key="unused", max_retries=0)
        started = time.perf_counter()
        with pytest.raises(openai.BadRequestError) as refused:
            strict_client.audio.transcriptions.create(model="whisper-1", file=four_hours)
        refused_after_s = time.perf_counter() - started

    assert JFK.missing_phrases(warm.text) == []
    assert long.duration == pytest.approx(HOURS * 3600, abs=1)
    # Both readings of JFK are found, at 1 h and 3 h 11 s (the speech-only audio is one window, so a
    # segment may run across the two, but it ends where the second one does).
    segments = long.segments or []
    assert long.text.lower().count("your country") >= 4, long.text
    assert 3595 < segments[0].start < 3605
    second = 3 * 3600 + JFK.duration
    assert second < segments[-1].end < second + JFK.duration + 2
    assert rss.peak_mb - rss.before_mb < GROWTH_MB, f"{rss.before_mb} MB -> {rss.peak_mb} MB"
    assert refused.value.code == "too_long"
    assert "14400.0 s long; the limit is 10800 s" in refused.value.message
    # Decoding 4 h takes about 10 s here; the header says enough at once.
    assert refused_after_s < 5.0
