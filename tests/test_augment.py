"""Meeting-like copies of a recording: a generated room, noise at a set SNR, a telephone
line, another level; same length, finite, and what each claims to be."""

from __future__ import annotations

import numpy as np
import pytest

from emotion.media import augment
from emotion.stages.sample_data import speech_like

SR = 16_000


@pytest.fixture
def voice() -> np.ndarray:
    return speech_like("happy", duration=2.0, rng=np.random.default_rng(0))


def _band_power(y: np.ndarray, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(y)) ** 2
    f = np.fft.rfftfreq(y.size, 1 / SR)
    return float(spec[(f >= lo) & (f < hi)].sum())


def test_noise_is_added_at_the_asked_snr(voice):
    rng = np.random.default_rng(1)
    for snr in (5.0, 20.0):
        noisy = augment.add_noise(voice, snr, rng)
        noise = noisy - voice
        got = 10 * np.log10(np.mean(voice.astype(np.float64) ** 2) / np.mean(noise ** 2))
        assert got == pytest.approx(snr, abs=0.2)


def test_the_room_decays_and_keeps_the_length(voice):
    rng = np.random.default_rng(2)
    ir = augment.room_impulse(SR, rng, rt60=0.5)
    energy = np.cumsum(ir[::-1] ** 2)[::-1]  # Schroeder's backward integral
    at = int(0.25 * SR)
    assert 10 * np.log10(energy[at] / energy[1]) == pytest.approx(-30, abs=6)
    wet = augment.reverberate(voice, ir)
    assert wet.shape == voice.shape and np.isfinite(wet).all()
    assert np.max(np.abs(wet)) == pytest.approx(np.max(np.abs(voice)), rel=1e-4)


def test_the_telephone_line_cuts_above_its_band(voice):
    line = augment.telephone(voice, SR)
    assert line.shape == voice.shape
    above = _band_power(line, 4200, 8000) / _band_power(voice, 4200, 8000)
    inside = _band_power(line, 500, 3000) / _band_power(voice, 500, 3000)
    assert above < 1e-3 and inside > 0.5


def test_meeting_copies_are_seeded_and_usable(voice):
    a = augment.meeting_copy(voice, SR, np.random.default_rng(3))
    b = augment.meeting_copy(voice, SR, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert a.shape == voice.shape and a.dtype == np.float32 and np.isfinite(a).all()
    assert np.max(np.abs(a)) > 0
