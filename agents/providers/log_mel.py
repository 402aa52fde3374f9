"""Whisper-style log-mel features, in numpy, for the Smart Turn end-of-turn model.

Smart Turn v3 is a Whisper-encoder classifier: its input is the log-mel spectrogram Whisper's
feature extractor makes of an 8 s window at 16 kHz, with the waveform normalised to zero mean and
unit variance first. The recipe (Whisper's published front end):

- 400-sample frames (25 ms) every 160 samples (10 ms), a periodic Hann window, frames centred
  (the signal reflect-padded by half a frame at both ends), power spectrum of a 400-point FFT;
- 80 triangular mel filters on the Slaney mel scale from 0 to 8 kHz, each scaled to unit area
  (Slaney normalisation);
- ``log10`` of the filter energies (floored at 1e-10), the last frame dropped (3000 -> 800 frames
  for 8 s: 801 centred frames minus one), values clipped to 8 below the maximum (80 dB of
  range), then mapped with ``(x + 4) / 4``.

Written here rather than taken from ``transformers`` or ``librosa``: both are heavy (torch,
numba) for forty lines of arithmetic; ``tests/test_log_mel.py`` checks the filter bank and the
spectrogram against their definitions.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160
N_MELS = 80
WINDOW_SECONDS = 8
WINDOW_SAMPLES = SAMPLE_RATE * WINDOW_SECONDS
FRAMES = WINDOW_SAMPLES // HOP  # 800

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

# Slaney's mel scale: linear (200/3 Hz per mel) below 1 kHz, logarithmic above.
_F_SP = 200.0 / 3.0
_BREAK_HZ = 1000.0
_BREAK_MEL = _BREAK_HZ / _F_SP  # 15
_LOG_STEP = np.log(6.4) / 27.0


def hz_to_mel(hz: F64) -> F64:
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / _F_SP
    with np.errstate(divide="ignore"):
        logarithmic = _BREAK_MEL + np.log(np.maximum(hz, 1e-12) / _BREAK_HZ) / _LOG_STEP
    return np.where(hz >= _BREAK_HZ, logarithmic, linear)


def mel_to_hz(mel: F64) -> F64:
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * _F_SP
    logarithmic = _BREAK_HZ * np.exp(_LOG_STEP * (mel - _BREAK_MEL))
    return np.where(mel >= _BREAK_MEL, logarithmic, linear)


def mel_filter_bank(
    *, n_mels: int = N_MELS, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE
) -> F64:
    """``[n_mels, n_fft // 2 + 1]``: triangular Slaney-mel filters, each of unit area."""
    bins = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(0.0, hz_to_mel(np.array(sample_rate / 2.0)), n_mels + 2))
    lo, centre, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lo) / (centre - lo)
    falling = (hi - bins[None, :]) / (hi - centre)
    triangles = np.clip(np.minimum(rising, falling), 0.0, None)
    return triangles * (2.0 / (hi - lo))


_FILTERS = mel_filter_bank()
_HANN = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic
_FRAME_INDEX = np.arange(FRAMES + 1)[:, None] * HOP + np.arange(N_FFT)[None, :]


def power_spectrogram(audio: F64) -> F64:
    """``[n_fft // 2 + 1, frames]`` power spectrum of centred, Hann-windowed frames of a window
    of exactly :data:`WINDOW_SAMPLES` samples (801 frames)."""
    padded = np.pad(audio, N_FFT // 2, mode="reflect")
    frames = padded[_FRAME_INDEX] * _HANN
    spectrum = np.fft.rfft(frames, n=N_FFT, axis=1)
    return (spectrum.real**2 + spectrum.imag**2).T


def fit_window(pcm: npt.NDArray[np.int16] | F32) -> F32:
    """The last :data:`WINDOW_SECONDS` of ``pcm`` as float32 in [-1, 1), zeros in front when
    shorter (the model sees the end of the turn at the end of its window)."""
    audio = np.asarray(pcm)
    if audio.dtype == np.int16:
        audio = audio.astype(np.float32) / 32768.0
    audio = audio.astype(np.float32, copy=False).reshape(-1)[-WINDOW_SAMPLES:]
    if audio.size == WINDOW_SAMPLES:
        return audio
    out = np.zeros(WINDOW_SAMPLES, dtype=np.float32)
    out[WINDOW_SAMPLES - audio.size :] = audio
    return out


def log_mel(window: F32) -> F32:
    """``[80, 800]`` float32 features of an 8 s window (see :func:`fit_window`)."""
    if window.shape != (WINDOW_SAMPLES,):
        raise ValueError(f"expected {WINDOW_SAMPLES} samples, got shape {window.shape}")
    x = window.astype(np.float32)
    x = (x - x.mean()) / np.sqrt(x.var() + np.float32(1e-7))
    mel = _FILTERS @ power_spectrogram(x.astype(np.float64))
    logs = np.log10(np.maximum(mel, 1e-10))[:, :FRAMES]
    logs = np.maximum(logs, logs.max() - 8.0)
    out: F32 = ((logs + 4.0) / 4.0).astype(np.float32)
    return out
