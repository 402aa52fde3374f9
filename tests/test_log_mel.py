"""Our Whisper-style log-mel front end (agents/providers/log_mel.py), checked against the
definitions it implements: Slaney mel scale, unit-area triangular filters, centred Hann frames,
Whisper's log compression, and the 8 s window the end-of-turn model reads."""

from __future__ import annotations

import numpy as np
import pytest

from agents.providers import log_mel as lm


def test_slaney_mel_scale_is_linear_below_1khz_and_logarithmic_above() -> None:
    assert lm.hz_to_mel(np.array(1000.0)) == pytest.approx(15.0)
    assert lm.hz_to_mel(np.array(500.0)) == pytest.approx(7.5)
    # 6.4 times the frequency above 1 kHz is 27 mels more
    assert lm.hz_to_mel(np.array(6400.0)) == pytest.approx(15.0 + 27.0)
    hz = np.array([0.0, 300.0, 999.0, 1000.0, 4000.0, 8000.0])
    assert lm.mel_to_hz(lm.hz_to_mel(hz)) == pytest.approx(hz)


def test_filters_are_unit_area_triangles_peaking_at_their_mel_centres() -> None:
    bank = lm.mel_filter_bank()
    assert bank.shape == (80, 201) and (bank >= 0).all()
    centres = lm.mel_to_hz(np.linspace(0, lm.hz_to_mel(np.array(8000.0)), 82))[1:-1]
    bin_hz = 8000.0 / 200
    peaks = bank.argmax(axis=1) * bin_hz
    assert np.abs(peaks - centres).max() <= bin_hz
    # Slaney normalisation: each triangle has unit area in Hz (checked where bins are dense)
    wide = centres > 2000
    areas = bank.sum(axis=1) * bin_hz
    assert areas[wide] == pytest.approx(1.0, rel=0.02)


def test_power_spectrogram_puts_a_tone_in_its_bin_with_centred_frames() -> None:
    t = np.arange(lm.WINDOW_SAMPLES) / 16000
    spec = lm.power_spectrogram(np.sin(2 * np.pi * 1000 * t))
    assert spec.shape == (201, lm.FRAMES + 1)
    assert (spec.argmax(axis=0)[1:-1] == 25).all()  # 1000 Hz / 40 Hz per bin
    # centred frames: the first is centred on sample 0 (reflect-padded), so a click there
    # shows in frame 0 and not in frame 3 (30 ms later, beyond the 25 ms frame)
    click = np.zeros(lm.WINDOW_SAMPLES)
    click[0] = 1.0
    clicked = lm.power_spectrogram(click)
    assert clicked[:, 0].sum() > 0 and clicked[:, 3].sum() == 0


def test_window_keeps_the_last_eight_seconds_and_pads_in_front() -> None:
    short = np.full(16000, 1000, dtype=np.int16)
    w = lm.fit_window(short)
    assert w.shape == (lm.WINDOW_SAMPLES,) and w.dtype == np.float32
    assert (w[: lm.WINDOW_SAMPLES - 16000] == 0).all()
    assert w[-1] == pytest.approx(1000 / 32768)
    long = np.arange(10 * 16000, dtype=np.float32) / 1e6
    assert lm.fit_window(long)[0] == pytest.approx(long[-lm.WINDOW_SAMPLES])


def test_features_are_whisper_shaped_and_compressed() -> None:
    rng = np.random.default_rng(1)
    audio = lm.fit_window((rng.standard_normal(3 * 16000) * 3000).astype(np.int16))
    feats = lm.log_mel(audio)
    assert feats.shape == (80, 800) and feats.dtype == np.float32
    # clipped to 8 (log10 units) below the maximum, then (x + 4) / 4: a range of at most 2
    assert feats.max() - feats.min() <= 2.0 + 1e-6
    # loudness does not matter: the waveform is normalised before the spectrogram
    assert lm.log_mel(audio * 0.1) == pytest.approx(feats, abs=1e-3)
    with pytest.raises(ValueError, match="expected"):
        lm.log_mel(audio[:1000])
