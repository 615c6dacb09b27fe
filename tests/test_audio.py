import librosa
import numpy as np
import pytest
import soundfile as sf

from emotion.core.errors import MediaError
from emotion.media.audio import (
    SAMPLE_RATE,
    AudioParams,
    load_audio,
    log_mel,
    prepare_clip,
)
from emotion.stages.preprocess_audio import featurise
from emotion.stages.sample_data import speech_like


def features_from_file(path):
    """The preprocessing stage's path for one file: (log-mel, speech seconds)."""
    feats, duration, _ = featurise(*load_audio(path), AudioParams())
    return feats, duration


@pytest.fixture
def voice():
    return speech_like("happy", f0=150, duration=2.0, rng=np.random.default_rng(0))


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
@pytest.mark.parametrize("sr, channels", [(16000, 1), (44100, 2), (8000, 1), (48000, 2)])
def test_any_wav_width_rate_and_channels_gives_the_same_features(tmp_path, voice, subtype, sr,
                                                                  channels):
    y = librosa.resample(voice, orig_sr=SAMPLE_RATE, target_sr=sr) if sr != SAMPLE_RATE else voice
    if channels == 2:
        y = np.stack([y, y], axis=1)
    path = tmp_path / "clip.wav"
    sf.write(path, y * 0.8, sr, subtype=subtype)
    feats, duration = features_from_file(path)
    ref, ref_duration = features_from_file(_write(tmp_path / "ref.wav", voice))
    assert feats.shape == ref.shape == (64, AudioParams().n_frames)
    assert abs(duration - ref_duration) < 0.05
    # 8-bit and 8 kHz lose detail; everything else agrees closely.
    tol = 6.0 if (subtype == "PCM_U8" or sr == 8000) else 1.5
    assert np.median(np.abs(feats - ref)) < tol


def _write(path, y, sr=SAMPLE_RATE):
    sf.write(path, y, sr, subtype="PCM_16")
    return path


def test_log_mel_equals_librosa(voice):
    clip, _ = prepare_clip(voice, SAMPLE_RATE)
    ours = log_mel(clip)
    ref = librosa.power_to_db(
        librosa.feature.melspectrogram(y=clip, sr=SAMPLE_RATE, n_fft=400, hop_length=160,
                                       n_mels=64), ref=np.max, top_db=80.0)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=2e-3)


def test_log_mel_batch_equals_single(voice):
    a, _ = prepare_clip(voice, SAMPLE_RATE)
    b, _ = prepare_clip(voice[::-1].copy(), SAMPLE_RATE)
    batch = log_mel(np.stack([a, b]))
    np.testing.assert_allclose(batch[1], log_mel(b), atol=1e-4)


def test_prepare_clip_trims_normalises_and_fits(voice):
    padded = np.concatenate([np.zeros(8000, np.float32), voice * 0.1, np.zeros(8000, np.float32)])
    clip, duration = prepare_clip(padded, SAMPLE_RATE)
    assert clip.shape == (48000,)
    assert abs(np.abs(clip).max() - 0.9) < 1e-3
    assert duration < len(padded) / SAMPLE_RATE - 0.8  # leading and trailing silence gone
    long = np.tile(voice, 4)
    clip, duration = prepare_clip(long, SAMPLE_RATE)
    assert clip.shape == (48000,) and duration > 3.0


def test_fixed_duration_is_a_parameter(voice):
    params = AudioParams(fixed_duration=1.0)
    clip, _ = prepare_clip(voice, SAMPLE_RATE, params)
    assert clip.shape == (16000,)
    assert log_mel(clip, params).shape == (64, 101)


def test_silence_and_garbage_are_refused():
    with pytest.raises(MediaError, match="silence"):
        prepare_clip(np.zeros(16000, np.float32), SAMPLE_RATE)
    with pytest.raises(MediaError, match="zero-length"):
        prepare_clip(np.zeros(0, np.float32), SAMPLE_RATE)
    with pytest.raises(MediaError, match="NaN"):
        prepare_clip(np.full(100, np.nan, np.float32), SAMPLE_RATE)


def test_load_audio_errors(tmp_path):
    with pytest.raises(MediaError, match="no such file"):
        load_audio(tmp_path / "missing.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(MediaError, match="empty"):
        load_audio(tmp_path / "empty.wav")
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    with pytest.raises(MediaError, match="unreadable"):
        load_audio(tmp_path / "bad.wav")
