"""The audio boundary: any file or upload ffmpeg can read becomes float32 mono 16 kHz samples."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

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
_GUESSED_DURATION = ("duration from bitrate", "bitrate for duration")
_READ_BYTES = 30 * SAMPLE_RATE * 4  # ffmpeg's output is read 30 s at a time
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
    n_samples: int
    log: list[tuple[str, str]]  # (level, message)
    declared_too_long_s: float | None = None
    """The duration the container declared, when it was over the limit and decoding was stopped."""


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


def audio_duration(samples: Samples) -> float:
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
    "<bytes>". Inputs longer than `max_duration_s` are refused as soon as the container says so, else
    after decoding only just past the limit. Raises AudioDecodeError, whose `reason` says why.
    """
    sink = _InMemory()
    _decode(source, max_duration_s, name, sink)
    return sink.samples()


def decode_audio_to_disk(
    source: str | os.PathLike[str] | bytes,
    *,
    max_duration_s: float | None = None,
    name: str | None = None,
) -> PcmFile:
    """`decode_audio`, with the samples streamed from ffmpeg into a `PcmFile` instead of memory: a
    request then holds only the windows it is decoding, however long the recording."""
    sink = PcmFile()
    try:
        _decode(source, max_duration_s, name, sink)
    except BaseException:
        sink.close()
        raise
    return sink


class Samples(Protocol):
    """Mono 16 kHz float32 audio read by span: a numpy array, a `PcmFile`, or a view over either."""

    def __len__(self) -> int: ...

    def __getitem__(self, span: slice, /) -> np.ndarray: ...


class PcmFile:
    """Decoded samples in an anonymous temporary file (it has no name, so nothing is left behind even if
    the process dies), read back by span: `pcm[a:b]` is a float32 array of those samples."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="tuned-whisper-pcm-")  # noqa: SIM115 (closed by close())
        self._length = 0

    def append(self, chunk: np.ndarray) -> None:
        self._file.write(np.ascontiguousarray(chunk, dtype="<f4").tobytes())
        self._length += len(chunk)

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, span: slice, /) -> np.ndarray:
        if not isinstance(span, slice):
            raise TypeError("read a PcmFile by slice: pcm[start:stop]")
        start, stop, step = span.indices(self._length)
        if step != 1:
            raise ValueError("a PcmFile is read in contiguous spans")
        if stop <= start:
            return np.zeros(0, dtype=np.float32)
        self._file.flush()
        buffer = bytearray((stop - start) * 4)
        read = os.preadv(self._file.fileno(), [buffer], start * 4)
        if read != len(buffer):
            raise OSError(f"short read from the decoded audio: {read} of {len(buffer)} bytes")
        return np.frombuffer(buffer, dtype="<f4").astype(np.float32, copy=False)

    def close(self) -> None:
        self._file.close()


class _InMemory:
    def __init__(self) -> None:
        self._chunks: list[np.ndarray] = []

    def append(self, chunk: np.ndarray) -> None:
        self._chunks.append(chunk)

    def __len__(self) -> int:
        return sum(len(c) for c in self._chunks)

    def samples(self) -> np.ndarray:
        if not self._chunks:
            return np.zeros(0, dtype=np.float32)
        return self._chunks[0] if len(self._chunks) == 1 else np.concatenate(self._chunks)


_Sink = PcmFile | _InMemory


def _decode(
    source: str | os.PathLike[str] | bytes, max_duration_s: float | None, name: str | None, sink: _Sink
) -> None:
    if isinstance(source, bytes):
        label = name or "<bytes>"
        if not source:
            raise AudioDecodeError(
                f"{label!r} is empty (0 bytes); send an audio file", reason="empty", source_name=label
            )
        # Read from a seekable copy, not a pipe: the container's duration (a too-long upload is refused
        # before decoding) and MP4s with their index at the end both need one.
        with _seekable_copy(source) as (url, pass_fds):
            run = _run_ffmpeg(url, max_duration_s, sink, pass_fds=pass_fds)
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
        run = _run_ffmpeg(f"file:{path}", max_duration_s, sink)
    _check(run, label, max_duration_s)


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
    url: str, max_duration_s: float | None, sink: _Sink, *, pass_fds: tuple[int, ...] = ()
) -> _FfmpegRun:
    """Run ffmpeg on url, its samples streamed into sink as they come, its log read beside them."""
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
    stream = ffmpeg.input(url, protocol_whitelist="file").output("pipe:", **output_options)
    stream = stream.global_args("-nostdin", "-hide_banner", "-nostats", "-loglevel", "level+info")
    args = stream.compile(cmd=ffmpeg_binary())
    process = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=pass_fds
    )
    log: list[tuple[str, str]] = []
    declared: list[float] = []

    def read_log() -> None:
        assert process.stderr is not None
        estimated = False
        for raw in process.stderr:
            entry = _log_entry(raw)
            if entry is None:
                continue
            log.append(entry)
            level, message = entry
            # "Estimating duration from bitrate": a guess, which may be far off, so not a reason to refuse
            estimated = estimated or any(guess in message.lower() for guess in _GUESSED_DURATION)
            duration = _duration_in(level, message)
            if duration is None or max_duration_s is None or estimated or declared:
                continue
            if duration > max_duration_s + _LIMIT_MARGIN_S:  # too long: say so now, not after decoding it
                declared.append(duration)
                process.kill()

    reader = threading.Thread(target=read_log, name="ffmpeg-log", daemon=True)
    reader.start()
    assert process.stdout is not None
    carry = b""
    try:
        while block := process.stdout.read(_READ_BYTES):
            data = carry + block
            whole = len(data) - len(data) % 4
            carry = data[whole:]
            chunk = np.frombuffer(data[:whole], dtype="<f4").astype(np.float32)
            np.clip(chunk, -1.0, 1.0, out=chunk)  # float decoders (mp3, aac) can overshoot full scale
            sink.append(chunk)
    except BaseException:
        process.kill()
        raise
    finally:
        process.stdout.close()
        returncode = process.wait()
        reader.join()
    return _FfmpegRun(url, returncode, len(sink), log, declared[0] if declared else None)


def _log_entry(raw: bytes) -> tuple[str, str] | None:
    match = _LOG_LINE.match(raw.decode("utf-8", "replace").rstrip("\r\n").strip("\r"))
    return (match["level"], match["message"].strip()) if match else None


def _check(run: _FfmpegRun, label: str, max_duration_s: float | None) -> None:
    """Raise the AudioDecodeError that explains what went wrong with a run, if anything did."""
    if run.declared_too_long_s is not None and max_duration_s is not None:
        message = _too_long_message(label, run.declared_too_long_s, max_duration_s)
        raise AudioDecodeError(message, reason="too_long", source_name=label)
    said = f"ffmpeg said: {_problem_tail(run, label)}"
    if run.returncode != 0:
        if any(marker in message for _, message in run.log for marker in _NO_STREAM):
            message = f"{label!r} has no audio stream; send a file with sound. {said}"
            raise AudioDecodeError(message, reason="no_audio_stream", source_name=label)
        message = f"ffmpeg could not decode {label!r}; is it an audio or video file? {said}"
        raise AudioDecodeError(message, reason="not_audio", source_name=label)
    if run.n_samples == 0:
        message = f"{label!r} holds no audio samples; it may be truncated or corrupt. {said}"
        raise AudioDecodeError(message, reason="corrupt", source_name=label)
    if max_duration_s is not None and run.n_samples / SAMPLE_RATE > max_duration_s:
        raise AudioDecodeError(
            _too_long_message(label, _input_duration(run.log), max_duration_s),
            reason="too_long",
            source_name=label,
        )


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


def _duration_in(level: str, message: str) -> float | None:
    match = _DURATION.match(message) if level == "info" else None
    if match is None:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _input_duration(log: list[tuple[str, str]]) -> float | None:
    """The duration the container declares, if ffmpeg printed one."""
    return next((d for level, message in log if (d := _duration_in(level, message)) is not None), None)


def _too_long_message(label: str, duration_s: float | None, limit_s: float) -> str:
    if duration_s is not None and duration_s > limit_s:
        return f"{label!r} is {duration_s:.1f} s long; the limit is {limit_s:g} s. Trim or split it."
    # The container did not say how long it is; all we know is that decoding ran past the limit.
    return f"{label!r} is longer than the limit of {limit_s:g} s. Trim or split it."
