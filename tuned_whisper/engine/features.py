"""Whisper's log-mel spectrogram of a 30 s window in numpy: what the CTranslate2 backend feeds its encoder.

Whisper's recipe: a 400-point STFT (25 ms Hann window, periodic) every 160 samples (10 ms) over the
signal reflected at both ends, the power of each bin, a Slaney-scaled mel filterbank (80 or 128 bands,
0-8 kHz, area-normalised), log10 floored at 1e-10, then clamped to 8 (log10 units) below the window's
peak and scaled as (x + 4) / 4. Kept here so that a model replica imports neither torch nor another
project's package for it.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from tuned_whisper.audio import SAMPLE_RATE

N_FFT = 400
HOP = 160


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """The Slaney mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3)
    logarithmic = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz < 1000.0, linear, logarithmic)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * (200.0 / 3)
    logarithmic = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel < 15.0, linear, logarithmic)


@lru_cache(maxsize=4)
def mel_filters(n_mels: int) -> np.ndarray:
    """(n_mels, N_FFT // 2 + 1) triangular filters, each normalised to the same area."""
    bins = np.fft.rfftfreq(N_FFT, d=1.0 / SAMPLE_RATE)
    top = _hz_to_mel(np.array(SAMPLE_RATE / 2))
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.array(0.0)), top, n_mels + 2))
    widths = np.diff(edges)
    distance = edges[:, np.newaxis] - bins[np.newaxis, :]
    rising = -distance[:-2] / widths[:-1, np.newaxis]
    falling = distance[2:] / widths[1:, np.newaxis]
    filters = np.maximum(0.0, np.minimum(rising, falling))
    filters *= (2.0 / (edges[2:] - edges[:-2]))[:, np.newaxis]
    return filters.astype(np.float32)


@lru_cache(maxsize=1)
def _window() -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)


def log_mel(samples: np.ndarray, n_mels: int = 80) -> np.ndarray:
    """(n_mels, len(samples) // HOP) log-mel features of 16 kHz audio (pad a window to 30 s first)."""
    audio = np.asarray(samples, dtype=np.float32)
    half = N_FFT // 2
    padded = np.pad(audio, (half, half), mode="reflect")
    frames = 1 + (len(padded) - N_FFT) // HOP
    strided = np.lib.stride_tricks.as_strided(
        padded, shape=(frames, N_FFT), strides=(padded.strides[0] * HOP, padded.strides[0])
    )
    spectrum = np.fft.rfft(strided * _window(), axis=1)
    power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)[:-1]  # the last frame is dropped
    mel = mel_filters(n_mels) @ power.T
    log = np.log10(np.maximum(mel, 1e-10))
    log = np.maximum(log, log.max() - 8.0)
    return ((log + 4.0) / 4.0).astype(np.float32)
