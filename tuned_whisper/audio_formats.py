"""Raw audio as live clients send it (PCM16 at 24/16/8 kHz, G.711 μ-law and A-law at 8 kHz) → float32
16 kHz mono, the engine's format. Pure numpy: no ffmpeg per 100 ms chunk."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from tuned_whisper.audio import SAMPLE_RATE

Encoding = Literal["audio/pcm", "audio/pcmu", "audio/pcma"]
PCM_RATES = (24000, 16000, 8000)


@dataclass(frozen=True)
class AudioFormat:
    """How a client's raw bytes are encoded."""

    type: Encoding = "audio/pcm"
    rate: int = 24000

    @classmethod
    def parse(cls, value: object) -> AudioFormat:
        """From OpenAI's `{"type": "audio/pcm", "rate": 24000}` (G.711 is always 8 kHz)."""
        if not isinstance(value, dict):
            raise ValueError("format must be an object such as {'type': 'audio/pcm', 'rate': 24000}")
        kind = value.get("type")
        if kind in ("audio/pcmu", "audio/pcma"):
            return cls(kind, 8000)
        if kind != "audio/pcm":
            raise ValueError(f"unsupported audio format {kind!r}: use audio/pcm, audio/pcmu or audio/pcma")
        rate = value.get("rate", 24000)
        if rate not in PCM_RATES:
            raise ValueError(
                f"unsupported audio/pcm rate {rate!r}: use one of {', '.join(map(str, PCM_RATES))}"
            )
        return cls("audio/pcm", int(rate))

    @property
    def bytes_per_sample(self) -> int:
        return 2 if self.type == "audio/pcm" else 1

    def to_dict(self) -> dict[str, object]:
        return {"type": self.type, "rate": self.rate}


def _ulaw_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (codes >> 4) & 0x07
    magnitude = (((codes & 0x0F) << 3) + 0x84) << exponent
    linear = magnitude - 0x84
    return np.where(codes & 0x80, -linear, linear).astype(np.float32) / 32768.0


def _alaw_table() -> np.ndarray:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    linear = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << (exponent - 1))
    return np.where(codes & 0x80, linear, -linear).astype(np.float32) / 32768.0


_ULAW = _ulaw_table()
_ALAW = _alaw_table()


def resample(samples: np.ndarray, rate: int) -> np.ndarray:
    """To 16 kHz by linear interpolation (from 24 kHz after a short low-pass): enough for speech."""
    if rate == SAMPLE_RATE or not samples.size:
        return samples.astype(np.float32, copy=False)
    if rate > SAMPLE_RATE:
        samples = np.convolve(samples, np.array([0.25, 0.5, 0.25], dtype=np.float32), mode="same")
    length = round(samples.size * SAMPLE_RATE / rate)
    positions = np.arange(length, dtype=np.float64) * (rate / SAMPLE_RATE)
    return np.interp(positions, np.arange(samples.size), samples).astype(np.float32)


def decode_chunk(data: bytes, audio_format: AudioFormat) -> np.ndarray:
    """One chunk of raw audio → float32 16 kHz mono; a PCM16 chunk must hold whole samples."""
    if audio_format.type == "audio/pcm":
        if len(data) % 2:
            raise ValueError("audio/pcm is 16-bit little-endian: a chunk must have an even number of bytes")
        samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    else:
        table = _ULAW if audio_format.type == "audio/pcmu" else _ALAW
        samples = table[np.frombuffer(data, dtype=np.uint8)]
    return resample(samples, audio_format.rate)


def encode_pcm16(samples: np.ndarray, rate: int = 24000) -> bytes:
    """16 kHz float32 → PCM16 little-endian at `rate` (what a client sends; for tests and the CLI)."""
    if rate != SAMPLE_RATE:
        length = round(samples.size * rate / SAMPLE_RATE)
        positions = np.arange(length, dtype=np.float64) * (SAMPLE_RATE / rate)
        samples = np.interp(positions, np.arange(samples.size), samples)
    return (np.clip(samples, -1.0, 1.0 - 1 / 32768) * 32768).astype("<i2").tobytes()


def encode_ulaw(samples: np.ndarray) -> bytes:
    """16 kHz float32 → G.711 μ-law at 8 kHz (what a telephony client sends; for tests and the CLI)."""
    narrow = np.interp(np.arange(samples.size // 2) * 2.0, np.arange(samples.size), samples)
    pcm = np.clip(narrow * 32768, -32635, 32635).astype(np.int32)
    sign = np.where(pcm < 0, 0x80, 0)
    magnitude = np.abs(pcm) + 0x84
    exponent = np.clip(np.floor(np.log2(magnitude)).astype(np.int32) - 7, 0, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()
