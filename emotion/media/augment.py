"""Copies of a recording as a meeting would deliver it: a room, background noise, a
telephone line, another level. The voice branch trains on such copies so that what it
learns is the voice and not one studio's microphone (issue 24).

Every function takes 16 kHz-or-other mono float32 and a seeded generator, and returns
float32 of the same length. The impulse responses are generated (exponentially decaying
noise after a direct path, as Schroeder's statistical room model): no recorded room
ships with the project.
"""

from __future__ import annotations

import numpy as np

from emotion.media.audio import resample

TELEPHONE_RATE = 8_000
TELEPHONE_BAND = (300.0, 3400.0)


def room_impulse(sr: int, rng: np.random.Generator, *, rt60: float | None = None
                 ) -> np.ndarray:
    """A generated room impulse response: a direct path, a few milliseconds of gap,
    then noise decaying by 60 dB over `rt60` seconds (0.2-0.8 s when not given)."""
    rt60 = float(rng.uniform(0.2, 0.8)) if rt60 is None else rt60
    n = int(sr * min(rt60, 1.0))
    t = np.arange(n) / sr
    tail = rng.normal(0.0, 1.0, n) * np.exp(-6.9078 * t / rt60)  # ln(1000): -60 dB at rt60
    gap = int(sr * rng.uniform(0.002, 0.01))
    tail[:gap] = 0.0
    direct_to_reverb = 10 ** (rng.uniform(-3.0, 6.0) / 20)
    tail /= np.sqrt(np.sum(tail ** 2)) + 1e-12
    ir = tail
    ir[0] = direct_to_reverb
    return ir.astype(np.float32)


def reverberate(y: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """`y` in the room of `ir`, cut to its own length, at its own peak."""
    from scipy.signal import fftconvolve

    wet = fftconvolve(y, ir)[: y.size]
    peak = float(np.max(np.abs(wet), initial=0.0))
    return (wet * (float(np.max(np.abs(y), initial=0.0)) / peak if peak > 0 else wet)
            ).astype(np.float32)


def coloured_noise(n: int, rng: np.random.Generator, *, exponent: float) -> np.ndarray:
    """Noise whose power falls as 1 / f ** exponent (0 white, 1 pink, 2 brown), unit RMS."""
    spectrum = rng.normal(size=n // 2 + 1) + 1j * rng.normal(size=n // 2 + 1)
    f = np.arange(n // 2 + 1, dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spectrum / f ** (exponent / 2), n)
    return (x / (np.sqrt(np.mean(x ** 2)) + 1e-12)).astype(np.float32)


def add_noise(y: np.ndarray, snr_db: float, rng: np.random.Generator, *,
              exponent: float | None = None) -> np.ndarray:
    """`y` with noise at `snr_db` below its mean power (white to brown when not given)."""
    exponent = float(rng.uniform(0.0, 2.0)) if exponent is None else exponent
    power = float(np.mean(np.square(y, dtype=np.float64))) + 1e-12
    noise = coloured_noise(y.size, rng, exponent=exponent)
    return (y + noise * np.float32(np.sqrt(power / 10 ** (snr_db / 10)))).astype(np.float32)


def telephone(y: np.ndarray, sr: int) -> np.ndarray:
    """A narrowband line: down to 8 kHz, the 300-3400 Hz band, and back to `sr`."""
    from scipy.signal import butter, sosfilt

    narrow = resample(np.asarray(y, np.float32), sr, TELEPHONE_RATE)
    sos = butter(4, TELEPHONE_BAND, btype="bandpass", fs=TELEPHONE_RATE, output="sos")
    back = resample(sosfilt(sos, narrow).astype(np.float32), TELEPHONE_RATE, sr)
    out = np.zeros_like(y, dtype=np.float32)
    out[: min(y.size, back.size)] = back[: y.size]
    return out


def meeting_copy(y: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """One random meeting-like copy: a room (70 %), background noise at 5-20 dB SNR
    (80 %), a telephone line (30 %), and a level 0-30 dB down."""
    out = np.asarray(y, np.float32)
    if rng.random() < 0.7:
        out = reverberate(out, room_impulse(sr, rng))
    if rng.random() < 0.8:
        out = add_noise(out, float(rng.uniform(5.0, 20.0)), rng)
    if rng.random() < 0.3:
        out = telephone(out, sr)
    return (out * np.float32(10 ** (-rng.uniform(0.0, 30.0) / 20))).astype(np.float32)
