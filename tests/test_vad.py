"""The speech gate: speech is heard whatever its level; silence, hum and noise are not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emotion.media import vad
from emotion.media.vad import SpeechDetector
from emotion.stages.probes import pink_noise, room_tone, white_noise
from emotion.stages.sample_data import speech_like

SR = 16_000


@pytest.fixture(scope="module")
def gate() -> SpeechDetector:
    return SpeechDetector()


@pytest.mark.parametrize("peak_dbfs", [-6, -30, -40, -50])
def test_speech_is_heard_at_any_level(gate, peak_dbfs):
    """A quiet speaker is no less a speaker: the old energy gate (-45 dBFS frames)
    refused sentences peaking below about -40 dBFS."""
    rng = np.random.default_rng(3)
    for emotion in ("sad", "neutral", "angry"):
        y = speech_like(emotion, duration=2.5, rng=rng)
        y = y * np.float32(10 ** (peak_dbfs / 20) / np.abs(y).max())
        assert gate.has_speech(y), (emotion, peak_dbfs)


def test_the_gate_judges_what_is_said_not_how_loud(gate):
    """Levelled first, a sentence 60 dB down is heard as at full scale; silero alone
    would miss it (its probabilities fall with the level)."""
    y = speech_like("sad", duration=2.5, rng=np.random.default_rng(4))
    y = y * np.float32(0.5 / np.abs(y).max())
    quiet = y * np.float32(1e-3)
    assert gate.speech_seconds(quiet) == pytest.approx(gate.speech_seconds(y), abs=0.07)
    unlevelled = SpeechDetector(level_normalised=False, pitch_opinion=False)
    assert unlevelled.speech_seconds(quiet) < 0.5 * unlevelled.speech_seconds(y)
    assert not unlevelled.has_speech(quiet) and gate.has_speech(quiet)


@pytest.mark.parametrize("make", [white_noise, pink_noise, room_tone])
def test_noise_and_room_tone_are_not_speech(gate, make):
    y = make(3 * SR, SR, np.random.default_rng(0))
    assert not gate.has_speech(y)
    assert not gate.has_speech(y / np.abs(y).max())  # not even at full scale


def test_silence_and_hum_are_not_speech(gate):
    t = np.arange(3 * SR) / SR
    assert not gate.has_speech(np.zeros(3 * SR, np.float32))
    for hz in (50, 60, 120):
        assert not gate.has_speech((0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32))
    assert not gate.has_speech(np.zeros(10, np.float32)) and not gate.has_speech(None)


def test_speech_seconds_follow_the_speech(gate):
    speech = speech_like("happy", duration=1.5, rng=np.random.default_rng(1))
    y = np.concatenate([np.zeros(SR, np.float32), speech, np.zeros(2 * SR, np.float32)])
    assert 1.0 < gate.speech_seconds(y) < 2.2


def test_the_runner_gives_silero_vads_own_probabilities(gate):
    """The project runs silero-vad's sequence model itself (numpy + onnxruntime); it must
    give the package's own numbers (the package's import pins torch to one thread)."""
    threads = torch.get_num_threads()
    try:
        from importlib import resources

        from silero_vad.sequence_vad import SileroVADSequence

        ref = SileroVADSequence(str(resources.files("silero_vad.data").joinpath(vad.MODEL)))
    finally:
        torch.set_num_threads(threads)
    y = np.concatenate([speech_like("fear", duration=2.0, rng=np.random.default_rng(2)),
                        np.zeros(40_000, np.float32)])  # longer than one block of frames
    np.testing.assert_allclose(gate.probabilities(y), ref.audio_forward(y, max_frames=64),
                               atol=1e-6)


@pytest.mark.parametrize("make", [white_noise, pink_noise, room_tone])
def test_slowed_hearings_do_not_turn_noise_into_speech(gate, make):
    """Played slower, noise is still noise (and hum still hum): the second and third
    hearings of a refused window let no more of them through."""
    assert gate.slowed_views
    y = make(3 * SR, SR, np.random.default_rng(1))
    for rate in gate.slowed_views:
        assert gate.speech_seconds(y, rate=rate) < vad.MIN_SPEECH_SECONDS
    t = np.arange(3 * SR) / SR
    for hz in (50, 60, 120):
        hum = (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
        assert all(gate.speech_seconds(hum, rate=r) < vad.MIN_SPEECH_SECONDS
                   for r in gate.slowed_views)


def test_speech_seconds_are_the_recordings_own_at_any_rate(gate):
    y = speech_like("happy", duration=2.5, rng=np.random.default_rng(6))
    plain = gate.speech_seconds(y)
    for rate in gate.slowed_views:
        assert gate.speech_seconds(y, rate=rate) == pytest.approx(plain, abs=0.6)
        assert vad.slowed(y, rate).size == pytest.approx(y.size / rate, abs=2)


def test_a_window_refused_at_speed_is_heard_slowed(gate, monkeypatch):
    """The gate's logic: refused as it is, heard at a slower view, it holds speech; a
    gate without slowed views (an embedder made before them) refuses it."""
    y = speech_like("fear", duration=2.0, rng=np.random.default_rng(7))

    calls = []

    def only_when_slowed(audio, at_speed=0.3):  # silero unsure at the recording's speed
        calls.append(audio.size)
        n = (audio.size + vad.FRAME - 1) // vad.FRAME
        return np.full(n, 0.9 if audio.size > 1.2 * y.size else at_speed, np.float32)

    monkeypatch.setattr(gate, "probabilities", only_when_slowed)
    assert gate.has_speech(y)
    plain = SpeechDetector(slowed_views=(), pitch_opinion=False)
    monkeypatch.setattr(plain, "probabilities", only_when_slowed)
    assert not plain.has_speech(y)
    assert plain.settings()["slowed_views"] == [] and gate.settings()["slowed_views"]
    # no hint of a voice at first (noise, hum, silence): one hearing only, refused
    calls.clear()
    monkeypatch.setattr(gate, "probabilities", lambda a: only_when_slowed(a, at_speed=0.05))
    assert not gate.has_speech(y) and len(calls) == 1


def test_slowed_views_must_slow(gate):
    with pytest.raises(ValueError, match="slowed_views"):
        SpeechDetector(slowed_views=(1.5,))


def test_a_voice_half_heard_slowed_is_asked_its_pitch(gate, monkeypatch):
    """Refused at every speed but half-heard slowed (a scream): speech when pYIN finds it
    voiced long enough; noise half-heard so is not; a voice never half-heard is not asked."""
    t = np.arange(3 * SR) / SR
    scream = (0.3 * sum(np.sin(2 * np.pi * 900 * h * t) / h for h in (1, 2, 3))
              ).astype(np.float32)
    noise = white_noise(3 * SR, SR, np.random.default_rng(2))
    asked = []
    real = vad.voiced_seconds

    def voiced(audio):
        asked.append(audio.size)
        return real(audio)

    def silero(top_slowed, size):
        def probabilities(audio):
            n = (audio.size + vad.FRAME - 1) // vad.FRAME
            return np.full(n, top_slowed if audio.size > 1.2 * size else 0.2, np.float32)
        return probabilities

    monkeypatch.setattr(vad, "voiced_seconds", voiced)
    assert gate.pitch_opinion and gate.settings()["pitch_opinion"]
    monkeypatch.setattr(gate, "probabilities", silero(0.4, scream.size))
    assert gate.has_speech(scream) and len(asked) == 1
    assert not gate.has_speech(noise) and len(asked) == 2
    plain = SpeechDetector(pitch_opinion=False)
    monkeypatch.setattr(plain, "probabilities", silero(0.4, scream.size))
    assert not plain.has_speech(scream) and len(asked) == 2
    monkeypatch.setattr(gate, "probabilities", silero(0.25, scream.size))   # below the hint
    assert not gate.has_speech(scream) and len(asked) == 2
