"""The audio boundary: any file or upload ffmpeg can read becomes float32 mono 16 kHz samples."""

import contextlib
import functools
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import ffmpeg
import numpy as np

SAMPLE_RATE = 16000

DecodeFailure = Literal["empty", "not_found", "not_audio", "corrupt", "no_audio_stream", "too_long"]
"""Why decoding failed, in a form the HTTP layer can map to a status code."""

# Decode this much past max_duration_s, so that "longer than the limit" is observable and ffmpeg stops early.
_LIMIT_MARGIN_S = 1.0
_TAIL_LINES = 3
_PROBLEM_LEVELS = ("panic", "fatal", "error")
# `-loglevel level+info` prefixes each line with its level, so errors can be told from the banner and the
# input's Duration can be read from the same run. The context ("[mp3 @ 0x55...]") is optional.
_LOG_LINE = re.compile(r"^(?:\[[^\]]*\] )?\[(?P<level>[a-z]+)\] (?P<message>.*)$")
_DURATION = re.compile(r"^\s*Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_NO_STREAM = ("does not contain any stream", "matches no streams")
# The mov/mp4 demuxer's complaint when its index (moov atom) sits after the data and the input cannot seek.
_NEEDS_SEEK = "partial file"
_NOISE = ("Guessed Channel Layout",)  # warnings that never explain a failure


class AudioDecodeError(ValueError):
    """The input could not be turned into audio; the message names the file and says why."""

    def __init__(self, message: str, *, reason: DecodeFailure, source_name: str) -> None:
        super().__init__(message)
        self.reason: DecodeFailure = reason
        self.source_name = source_name


@dataclass(frozen=True)
class _FfmpegRun:
    url: str
    returncode: int
    samples: np.ndarray
    log: list[tuple[str, str]]  # (level, message)


@functools.cache
def ffmpeg_binary() -> str:
    """The ffmpeg to run: $TW_FFMPEG if set, else `ffmpeg` on PATH, else the one bundled by imageio-ffmpeg."""
    override = os.environ.get("TW_FFMPEG")
    if override:
        found = shutil.which(override)
        if found is None:
            raise RuntimeError(f"TW_FFMPEG={override!r} is not an executable; point it at an ffmpeg binary")
        return found
    found = shutil.which("ffmpeg")
    if found is not None:
        return found
    try:
        import imageio_ffmpeg  # optional: only needed where no system ffmpeg is installed
    except ImportError as exc:
        raise RuntimeError(
            "ffmpeg not found: install it (apt-get install ffmpeg), `pip install imageio-ffmpeg`, "
            "or set TW_FFMPEG to an ffmpeg binary"
        ) from exc
    return imageio_ffmpeg.get_ffmpeg_exe()


def audio_duration(samples: np.ndarray) -> float:
    """Length in seconds of samples at SAMPLE_RATE."""
    return len(samples) / SAMPLE_RATE


def decode_audio(
    source: str | os.PathLike[str] | bytes,
    *,
    max_duration_s: float | None = None,
    name: str | None = None,
) -> np.ndarray:
    """Decode a file path or in-memory bytes to float32 mono 16 kHz samples in [-1, 1].

    `name` labels the input in error messages (the upload's filename); it defaults to the path, or
    "<bytes>". Inputs longer than `max_duration_s` are refused after decoding only just past the limit.
    Raises AudioDecodeError, whose `reason` says why.
    """
    if isinstance(source, bytes):
        label = name or "<bytes>"
        if not source:
            raise AudioDecodeError(
                f"{label!r} is empty (0 bytes); send an audio file", reason="empty", source_name=label
            )
        run = _decode_bytes(source, max_duration_s)
    else:
        path = Path(source)
        label = name or str(path)
        if not path.exists():
            raise AudioDecodeError(f"{label!r} does not exist", reason="not_found", source_name=label)
        if path.is_file() and path.stat().st_size == 0:
            raise AudioDecodeError(
                f"{label!r} is empty (0 bytes); send an audio file", reason="empty", source_name=label
            )
        # "file:" keeps names like "http:x.wav" or "-x.wav" from being read as a URL or an option.
        run = _run_ffmpeg(f"file:{path}", "file", max_duration_s)
    return _checked(run, label, max_duration_s)


def _decode_bytes(data: bytes, max_duration_s: float | None) -> _FfmpegRun:
    run = _run_ffmpeg("pipe:", "pipe", max_duration_s, stdin=data)
    needs_seek = any(_NEEDS_SEEK in message for _, message in run.log)
    if run.returncode == 0 and run.samples.size and not needs_seek:
        return run
    # MP4/M4A/MOV written with the index at the end cannot be read from a pipe; neither can some damaged
    # files. Retrying from a seekable copy fixes the former, and costs one more short ffmpeg run otherwise.
    with _seekable_copy(data) as (url, pass_fds):
        return _run_ffmpeg(url, "file", max_duration_s, pass_fds=pass_fds)


@contextlib.contextmanager
def _seekable_copy(data: bytes) -> Iterator[tuple[str, tuple[int, ...]]]:
    """Yield (ffmpeg url, fds the child needs) for a seekable copy of data that is gone on exit."""
    if hasattr(os, "memfd_create"):
        # An anonymous in-memory file (Linux): nothing on disk to clean up, even if this process dies.
        fd = os.memfd_create("tuned-whisper-audio")
        try:
            with open(fd, "wb", closefd=False) as f:
                f.write(data)
            yield f"file:/dev/fd/{fd}", (fd,)
        finally:
            os.close(fd)
        return
    with tempfile.NamedTemporaryFile(prefix="tuned-whisper-", suffix=".audio") as tmp:  # deleted on close
        tmp.write(data)
        tmp.flush()
        yield f"file:{tmp.name}", ()


def _run_ffmpeg(
    url: str,
    protocols: str,
    max_duration_s: float | None,
    *,
    stdin: bytes | None = None,
    pass_fds: tuple[int, ...] = (),
) -> _FfmpegRun:
    output_options: dict[str, object] = {
        "format": "f32le",
        "acodec": "pcm_f32le",
        "ac": 1,
        "ar": SAMPLE_RATE,
        "vn": None,
        "sn": None,
        "dn": None,
    }
    if max_duration_s is not None:
        output_options["t"] = max_duration_s + _LIMIT_MARGIN_S
    # The whitelist stops playlists (HLS, concat) inside an upload from reaching out to the network.
    stream = ffmpeg.input(url, protocol_whitelist=protocols).output("pipe:", **output_options)
    stream = stream.global_args("-nostdin", "-hide_banner", "-nostats", "-loglevel", "level+info")
    args = stream.compile(cmd=ffmpeg_binary())
    result = subprocess.run(args, input=stdin, capture_output=True, pass_fds=pass_fds, check=False)
    samples = np.frombuffer(result.stdout, dtype="<f4").astype(np.float32)
    np.clip(samples, -1.0, 1.0, out=samples)  # float decoders (mp3, aac) can overshoot full scale
    return _FfmpegRun(url, result.returncode, samples, _parse_log(result.stderr))


def _parse_log(stderr: bytes) -> list[tuple[str, str]]:
    log = []
    for line in stderr.decode("utf-8", "replace").splitlines():
        match = _LOG_LINE.match(line.strip("\r"))
        if match:
            log.append((match["level"], match["message"].strip()))
    return log


def _checked(run: _FfmpegRun, label: str, max_duration_s: float | None) -> np.ndarray:
    """Return the samples of a run, or raise the AudioDecodeError that explains what went wrong."""
    said = f"ffmpeg said: {_problem_tail(run, label)}"
    if run.returncode != 0:
        if any(marker in message for _, message in run.log for marker in _NO_STREAM):
            message = f"{label!r} has no audio stream; send a file with sound. {said}"
            raise AudioDecodeError(message, reason="no_audio_stream", source_name=label)
        message = f"ffmpeg could not decode {label!r}; is it an audio or video file? {said}"
        raise AudioDecodeError(message, reason="not_audio", source_name=label)
    if run.samples.size == 0:
        message = f"{label!r} holds no audio samples; it may be truncated or corrupt. {said}"
        raise AudioDecodeError(message, reason="corrupt", source_name=label)
    if max_duration_s is not None and audio_duration(run.samples) > max_duration_s:
        raise AudioDecodeError(
            _too_long_message(label, _input_duration(run.log), max_duration_s),
            reason="too_long",
            source_name=label,
        )
    return run.samples


def _problem_tail(run: _FfmpegRun, label: str) -> str:
    """The last few distinct errors (else warnings), with ffmpeg's name for the input swapped for ours."""
    problems = [message for level, message in run.log if level in _PROBLEM_LEVELS]
    problems = problems or [
        message for level, message in run.log if level == "warning" and not message.startswith(_NOISE)
    ]
    cleaned = []
    for message in problems:
        message = message.removeprefix(f"{run.url}: ")
        if run.url != "pipe:":  # "pipe:" also names the output, so leave it alone
            message = message.replace(run.url, label)
        if message not in cleaned:
            cleaned.append(message)
    return "; ".join(cleaned[-_TAIL_LINES:]) or "nothing"


def _input_duration(log: list[tuple[str, str]]) -> float | None:
    """The duration the container declares, if ffmpeg printed one."""
    for level, message in log:
        match = _DURATION.match(message) if level == "info" else None
        if match:
            hours, minutes, seconds = match.groups()
            return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    return None


def _too_long_message(label: str, duration_s: float | None, limit_s: float) -> str:
    if duration_s is not None and duration_s > limit_s:
        return f"{label!r} is {duration_s:.1f} s long; the limit is {limit_s:g} s. Trim or split it."
    # The container did not say how long it is; all we know is that decoding ran past the limit.
    return f"{label!r} is longer than the limit of {limit_s:g} s. Trim or split it."
