"""decode_audio against real ffmpeg: clips in many containers become the same 16 kHz mono tone."""

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np
import pytest

from tuned_whisper import audio
from tuned_whisper.audio import (
    SAMPLE_RATE,
    AudioDecodeError,
    audio_duration,
    decode_audio,
    decode_audio_to_disk,
    ffmpeg_binary,
)

# Fixtures are encoded with a fixed ffmpeg, whatever a test does to the one decode_audio picks.
FFMPEG = shutil.which("ffmpeg") or imageio_ffmpeg.get_ffmpeg_exe()
TONE_HZ = 440
VIDEO = ["-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=1"]

Encode = Callable[..., Path]


@pytest.fixture(autouse=True)
def fresh_ffmpeg_binary() -> Iterator[None]:
    """ffmpeg_binary() is cached; tests that change PATH or TW_FFMPEG must not leak into the others."""
    ffmpeg_binary.cache_clear()
    yield
    ffmpeg_binary.cache_clear()


@pytest.fixture(scope="module")
def encode(tmp_path_factory: pytest.TempPathFactory) -> Encode:
    """encode(name, *ffmpeg_args) writes tmp/name once per module and returns its path."""
    folder = tmp_path_factory.mktemp("media")

    def _encode(name: str, *args: str) -> Path:
        out = folder / name
        if not out.exists():
            cmd = [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args, str(out)]
            subprocess.run(cmd, check=True)
        return out

    return _encode


def tone(sample_rate: int, seconds: float = 1.0) -> list[str]:
    return ["-f", "lavfi", "-i", f"sine=frequency={TONE_HZ}:sample_rate={sample_rate}:duration={seconds}"]


def peak_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE)[spectrum.argmax()])


def assert_is_the_tone(samples: np.ndarray, seconds: float = 1.0) -> None:
    assert samples.dtype == np.float32
    assert samples.ndim == 1
    assert abs(len(samples) - seconds * SAMPLE_RATE) <= 0.05 * SAMPLE_RATE  # encoders pad a little
    assert 0.05 < np.abs(samples).max() <= 1.0
    assert abs(peak_hz(samples) - TONE_HZ) < 5, "the tone moved: resampling is wrong"


# (file name, source sample rate, channels, codec and extra inputs)
CLIPS = [
    pytest.param("tone.wav", 8000, 1, [], id="wav-8k-mono"),
    pytest.param("tone.flac", 44100, 2, [], id="flac-44k-stereo"),
    pytest.param("tone.mp3", 44100, 2, ["-c:a", "libmp3lame"], id="mp3-44k-stereo"),
    pytest.param("tone.opus", 48000, 2, ["-c:a", "libopus"], id="ogg-opus-48k-stereo"),
    pytest.param("tone.m4a", 48000, 6, ["-c:a", "aac"], id="m4a-aac-48k-5.1"),
    pytest.param("tone.webm", 48000, 1, ["-c:a", "libopus"], id="webm-opus-48k-mono"),
    pytest.param("clip.mp4", 44100, 2, [*VIDEO, "-c:v", "mpeg4", "-c:a", "aac"], id="mp4-video-44k-stereo"),
    pytest.param("clip.mkv", 48000, 6, [*VIDEO, "-c:v", "mpeg4", "-c:a", "flac"], id="mkv-video-48k-5.1"),
]


@pytest.mark.parametrize(("name", "sample_rate", "channels", "codec"), CLIPS)
def test_every_container_becomes_16k_mono_with_the_tone_intact(
    encode: Encode, name: str, sample_rate: int, channels: int, codec: list[str]
) -> None:
    path = encode(name, *tone(sample_rate), *codec, "-ac", str(channels))

    from_path = decode_audio(path)
    from_bytes = decode_audio(path.read_bytes())

    assert_is_the_tone(from_path)
    # Bytes are read from a seekable copy, so even an MP3's encoder padding is trimmed alike.
    np.testing.assert_array_equal(from_bytes, from_path)
    on_disk = decode_audio_to_disk(path)
    assert len(on_disk) == len(from_path)
    np.testing.assert_array_equal(on_disk[:], from_path)
    np.testing.assert_array_equal(on_disk[1000:1100], from_path[1000:1100])


def test_mp4_with_its_index_at_the_end_decodes_from_bytes(
    encode: Encode, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ffmpeg writes the moov atom last; past a few tens of kB a pipe cannot seek back to it.
    path = encode("long.m4a", *tone(44100, seconds=10), "-c:a", "aac")
    runs = spy_on_ffmpeg(monkeypatch)

    samples = decode_audio(path.read_bytes())

    assert len(runs) == 1, "bytes are decoded from a seekable copy, in one run"
    assert_is_the_tone(samples, seconds=10)


def test_no_temporary_files_are_left_behind(
    encode: Encode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = encode("long.m4a", *tone(44100, seconds=10), "-c:a", "aac").read_bytes()
    tmp_dir = tmp_path / "tmp"
    tmp_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_dir))
    made = spy_on_temp_files(monkeypatch)

    decode_audio(data)  # Linux: the seekable copy lives in a memfd, never on disk
    # Without memfd_create (macOS) the copy is a named temporary file, removed on success and on failure.
    monkeypatch.delattr(os, "memfd_create", raising=False)
    decode_audio(data)
    with pytest.raises(AudioDecodeError):
        decode_audio(b"certainly not audio " * 100)

    assert len(made) == 2
    assert list(tmp_dir.iterdir()) == []


def test_decoding_stops_just_past_max_duration(encode: Encode, monkeypatch: pytest.MonkeyPatch) -> None:
    path = encode("twenty.flac", *tone(16000, seconds=20))
    runs = spy_on_ffmpeg(monkeypatch)

    with pytest.raises(AudioDecodeError) as error:
        decode_audio(path, max_duration_s=5, name="twenty.flac")

    assert error.value.reason == "too_long"
    assert "'twenty.flac' is 20.0 s long; the limit is 5 s" in str(error.value)
    assert runs[0][runs[0].index("-t") + 1] == "6.0"


def test_too_long_bytes_name_the_upload(encode: Encode) -> None:
    data = encode("twenty.wav", *tone(16000, seconds=20)).read_bytes()

    with pytest.raises(AudioDecodeError, match=r"'talk\.wav' is 20\.0 s long; the limit is 5 s") as error:
        decode_audio(data, max_duration_s=5, name="talk.wav")

    assert error.value.reason == "too_long"


def test_a_recording_that_says_it_is_too_long_is_refused_before_it_is_decoded(
    encode: Encode, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An hour of FLAC against a 50-minute limit: the container's duration is enough to refuse it.
    path = encode("hour.flac", "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "3600")
    decoded = spy_on_decoded_samples(monkeypatch)

    with pytest.raises(AudioDecodeError, match=r"'hour\.flac' is 3600\.0 s long; the limit is 3000 s"):
        decode_audio(path.read_bytes(), max_duration_s=3000, name="hour.flac")

    assert sum(decoded) < 600 * SAMPLE_RATE, "ffmpeg should have been stopped at the header"


def test_a_long_recording_decoded_to_disk_is_read_back_by_span(encode: Encode) -> None:
    path = encode("twenty.flac", *tone(16000, seconds=20))

    pcm = decode_audio_to_disk(path, max_duration_s=30)

    in_memory = decode_audio(path)
    assert len(pcm) == len(in_memory)
    np.testing.assert_array_equal(
        pcm[5 * SAMPLE_RATE : 6 * SAMPLE_RATE], in_memory[5 * SAMPLE_RATE : 6 * SAMPLE_RATE]
    )
    assert len(pcm[len(pcm) - 10 : len(pcm) + 100]) == 10
    assert pcm[100:50].size == 0
    pcm.close()


def test_audio_within_the_limit_is_decoded_whole(encode: Encode) -> None:
    samples = decode_audio(encode("twenty.flac", *tone(16000, seconds=20)), max_duration_s=30)

    assert audio_duration(samples) == pytest.approx(20.0, abs=0.01)


def test_loud_float_audio_is_clipped_to_full_scale(encode: Encode) -> None:
    loud = ["-f", "lavfi", "-i", f"aevalsrc=2*sin(2*PI*{TONE_HZ}*t):s=44100:d=1", "-c:a", "pcm_f32le"]

    samples = decode_audio(encode("loud.wav", *loud))

    assert samples.min() == -1.0
    assert samples.max() == 1.0


def test_a_name_that_looks_like_a_url_is_read_as_a_file(
    encode: Encode, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = encode("http:tone.wav", *tone(8000))
    monkeypatch.chdir(path.parent)

    assert_is_the_tone(decode_audio(Path("http:tone.wav")))


# --- inputs that are not audio ---------------------------------------------------------------------------


def test_empty_input_is_refused_without_running_ffmpeg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audio.subprocess, "Popen", fail_if_called)
    empty = tmp_path / "silence.wav"
    empty.touch()

    for source, name in [(b"", "upload.mp3"), (empty, "silence.wav")]:
        with pytest.raises(AudioDecodeError, match=rf"{name}' is empty") as error:
            decode_audio(source, name=name if isinstance(source, bytes) else None)
        assert error.value.reason == "empty"


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(AudioDecodeError, match=r"nowhere\.wav' does not exist") as error:
        decode_audio(tmp_path / "nowhere.wav")

    assert error.value.reason == "not_found"


@pytest.mark.parametrize("as_bytes", [False, True], ids=["path", "bytes"])
@pytest.mark.parametrize(
    ("name", "content"),
    [
        pytest.param("notes.txt", b"meeting notes, not a recording\n", id="text"),
        pytest.param("noise.bin", np.random.default_rng(0).bytes(5000), id="random-bytes"),
    ],
)
def test_files_that_are_not_audio_say_so(tmp_path: Path, name: str, content: bytes, as_bytes: bool) -> None:
    path = tmp_path / name
    path.write_bytes(content)

    with pytest.raises(AudioDecodeError) as error:
        decode_audio(content, name=name) if as_bytes else decode_audio(path)

    assert error.value.reason == "not_audio"
    assert f"could not decode '{path if not as_bytes else name}'" in str(error.value)
    assert "ffmpeg said: " in str(error.value)
    assert "/dev/fd" not in str(error.value)


@pytest.mark.parametrize("as_bytes", [False, True], ids=["path", "bytes"])
def test_a_wav_cut_off_after_its_header_is_corrupt(encode: Encode, tmp_path: Path, as_bytes: bool) -> None:
    whole = encode("twenty.wav", *tone(16000, seconds=20)).read_bytes()
    header_only = whole[: whole.index(b"data") + 8]
    path = tmp_path / "cut.wav"
    path.write_bytes(header_only)

    with pytest.raises(AudioDecodeError, match=r"cut\.wav' holds no audio samples") as error:
        decode_audio(header_only, name="cut.wav") if as_bytes else decode_audio(path)

    assert error.value.reason == "corrupt"


@pytest.mark.parametrize("as_bytes", [False, True], ids=["path", "bytes"])
@pytest.mark.parametrize("name", ["silent.mp4", "silent.mkv"])
def test_a_video_without_sound_has_no_audio_stream(encode: Encode, name: str, as_bytes: bool) -> None:
    path = encode(name, *VIDEO, "-c:v", "mpeg4")

    with pytest.raises(AudioDecodeError, match=rf"{name}' has no audio stream") as error:
        decode_audio(path.read_bytes(), name=name) if as_bytes else decode_audio(path, name=name)

    assert error.value.reason == "no_audio_stream"
    assert "does not contain any stream" in str(error.value)  # ffmpeg's own words


# --- which ffmpeg ----------------------------------------------------------------------------------------


def test_without_a_system_ffmpeg_the_bundled_one_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TW_FFMPEG", raising=False)
    monkeypatch.setenv("PATH", "")

    assert ffmpeg_binary() == imageio_ffmpeg.get_ffmpeg_exe()


@pytest.mark.parametrize(
    ("name", "codec"),
    [("bundled.mp3", ["-c:a", "libmp3lame"]), ("bundled.m4a", ["-c:a", "aac"])],
)
def test_the_bundled_ffmpeg_decodes_too(
    encode: Encode, monkeypatch: pytest.MonkeyPatch, name: str, codec: list[str]
) -> None:
    path = encode(name, *tone(44100), *codec, "-ac", "2")
    monkeypatch.setenv("TW_FFMPEG", imageio_ffmpeg.get_ffmpeg_exe())

    assert_is_the_tone(decode_audio(path))
    assert_is_the_tone(decode_audio(path.read_bytes()))
    assert ffmpeg_binary() == imageio_ffmpeg.get_ffmpeg_exe()


def test_a_bad_tw_ffmpeg_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TW_FFMPEG", "/nonexistent/ffmpeg")

    with pytest.raises(RuntimeError, match="TW_FFMPEG"):
        decode_audio(b"RIFF")


def test_audio_duration_counts_seconds_at_16k() -> None:
    assert audio_duration(np.zeros(24000, dtype=np.float32)) == 1.5


# --- helpers ---------------------------------------------------------------------------------------------


def spy_on_ffmpeg(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Record the argument list of every ffmpeg run decode_audio makes."""
    runs: list[list[str]] = []
    real_popen = subprocess.Popen

    def popen(args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        runs.append(list(args))
        return real_popen(args, **kwargs)

    monkeypatch.setattr(audio.subprocess, "Popen", popen)
    return runs


def spy_on_decoded_samples(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record how many samples each chunk ffmpeg hands back holds."""
    counts: list[int] = []
    real_append = audio._InMemory.append

    def append(self: Any, chunk: np.ndarray) -> None:
        counts.append(len(chunk))
        real_append(self, chunk)

    monkeypatch.setattr(audio._InMemory, "append", append)
    return counts


def spy_on_temp_files(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    made: list[str] = []
    real = tempfile.NamedTemporaryFile

    def named_temporary_file(*args: object, **kwargs: object) -> object:
        made.append("made")
        return real(*args, **kwargs)

    monkeypatch.setattr(audio.tempfile, "NamedTemporaryFile", named_temporary_file)
    return made


def fail_if_called(*args: object, **kwargs: object) -> None:
    raise AssertionError("ffmpeg should not have run")
