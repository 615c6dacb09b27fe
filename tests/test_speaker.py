"""Light-ASD port: parity with the authors' code, batching, weight checks, its inputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import python_speech_features

from emotion.core.errors import ArtifactError, MediaError
from emotion.media.speaker_inputs import (
    SYNC_LEAD,
    asd_crop,
    lip_sync,
    loudness,
    mfcc,
    mouth_motion,
    smooth_boxes,
    track_crops,
)
from emotion.models.speaker import WEIGHTS, ActiveSpeakerModel, common_length

# Made by the authors' code (shared/models/light_asd/README.md): seeded random faces
# and MFCCs, and the logits of both weight files.
PARITY = Path(__file__).resolve().parent / "fixtures" / "light_asd_parity_synthetic.npz"
FILE_KEY = {"ava": "pretrain_AVA_CVPR", "talkset": "finetuning_TalkSet"}
TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def parity():
    with np.load(PARITY) as z:
        return dict(z)


@pytest.fixture(scope="module", params=sorted(WEIGHTS))
def model(request):
    return ActiveSpeakerModel.load(weights=request.param)


def test_weights_reproduce_the_authors_logits(model, parity):
    key = FILE_KEY[model.weights]
    av = model.score(parity["video_gray"], parity["mfcc"])
    v = model.visual_only(parity["video_gray"])
    gap_av = float(np.abs(av - parity[f"scores_{key}"]).max())
    gap_v = float(np.abs(v - parity[f"visual_only_{key}"]).max())
    print(f"{model.weights}: max |diff| audio-visual {gap_av:.2e}, visual-only {gap_v:.2e}")
    assert av.shape == v.shape == (len(parity["video_gray"]),)
    assert av.dtype == np.float32
    assert gap_av <= TOLERANCE and gap_v <= TOLERANCE


@pytest.fixture(scope="module")
def ava():
    return ActiveSpeakerModel.load(weights="ava")


def test_a_batch_scores_each_face_as_alone(ava, parity):
    model = ava
    faces, feats = parity["video_gray"][:8], parity["mfcc"][:32]
    one = model.score(faces, feats)
    other = model.score(faces[::-1].copy(), feats)
    batch = model.score(np.stack([faces, faces[::-1], faces]), feats)   # shared sound
    assert batch.shape == (3, len(faces))
    np.testing.assert_allclose(batch[0], one, atol=1e-4)
    np.testing.assert_allclose(batch[1], other, atol=1e-4)
    np.testing.assert_allclose(batch[2], one, atol=1e-4)
    per_face = model.score(np.stack([faces, faces]), np.stack([feats, feats]))
    np.testing.assert_allclose(per_face, np.stack([one, one]), atol=1e-4)
    vis = model.visual_only(np.stack([faces, faces]))
    np.testing.assert_allclose(vis[1], model.visual_only(faces), atol=1e-4)


def test_auto_precision_agrees_with_fp32_or_stays_fp32(ava, parity):
    """"auto" decides at load: bf16 where the CPU has it and a probe's logits agree with
    fp32's within BF16_MAX_DIFF; every later batch is scored the same way."""
    from emotion.models.image_backbone import cpu_supports_bf16
    from emotion.models.speaker import BF16_MAX_DIFF

    auto = ActiveSpeakerModel.load(weights="ava", precision="auto")
    assert auto.precision in (("bf16", "fp32") if cpu_supports_bf16() else ("fp32",))
    faces, feats = parity["video_gray"], parity["mfcc"]
    first = auto.score(faces, feats)
    np.testing.assert_array_equal(auto.score(faces, feats), first)
    assert np.abs(first - ava.score(faces, feats)).max() <= BF16_MAX_DIFF
    with pytest.raises(ArtifactError, match="precision"):
        ActiveSpeakerModel.load(weights="ava", precision="fp16")


def test_uneven_lengths_are_cut_like_the_authors(ava, parity):
    model = ava
    faces, feats = parity["video_gray"], parity["mfcc"]            # 20 frames, 80 MFCCs
    assert common_length(81, 323) == 80 and common_length(20, 90) == 20
    short = model.score(faces[:10], feats[:39])                    # 39 MFCCs: 9 frames
    assert short.shape == (9,)
    np.testing.assert_allclose(short, model.score(faces[:9], feats[:36]), atol=1e-5)
    assert model.score(faces[:5], feats).shape == (5,)


def test_bad_inputs_say_what_is_wrong(ava, parity):
    model = ava
    faces, feats = parity["video_gray"], parity["mfcc"]
    with pytest.raises(MediaError, match="112"):
        model.score(faces[:, :64, :64], feats)
    with pytest.raises(MediaError, match="uint8"):
        model.visual_only(faces.astype(np.float32))
    with pytest.raises(MediaError, match="13"):
        model.score(faces, feats[:, :12])
    with pytest.raises(MediaError, match="at least 4"):
        model.score(faces, feats[:3])
    with pytest.raises(MediaError, match="no face frames"):
        model.score(faces[None, :0], feats)
    with pytest.raises(MediaError, match="no face frames"):
        model.visual_only(faces[:0][None][:0])
    with pytest.raises(MediaError, match="3 MFCC sequences for 2"):
        model.score(np.stack([faces, faces]), np.stack([feats] * 3))


def test_a_missing_or_altered_weight_file_is_named(tmp_path):
    with pytest.raises(ArtifactError, match="no such file.*reinstall"):
        ActiveSpeakerModel.load(tmp_path / "pretrain_AVA_CVPR.model")
    altered = tmp_path / "pretrain_AVA_CVPR.model"
    shutil.copyfile(ActiveSpeakerModel.load().path, altered)
    with altered.open("r+b") as f:
        f.seek(-1, 2)
        f.write(b"\x00" if f.read(1) != b"\x00" else b"\x01")
    with pytest.raises(ArtifactError, match=f"{altered}.*sha256.*expected {WEIGHTS['ava'][1]}"):
        ActiveSpeakerModel.load(altered)
    with pytest.raises(ArtifactError, match="choose one of ava, talkset"):
        ActiveSpeakerModel.load(weights="columbia")
    # the talkset file is a good file, but not the one asked for
    talkset = ActiveSpeakerModel.load(weights="talkset").path
    with pytest.raises(ArtifactError, match="sha256"):
        ActiveSpeakerModel.load(talkset, weights="ava")


# ------------------------------------------------------------------------- the inputs

def _speech(rng, seconds: float = 1.3) -> np.ndarray:
    t = np.arange(int(16_000 * seconds)) / 16_000
    tone = 0.3 * np.sin(2 * np.pi * (150 + 80 * t) * t) * (1 + np.sin(2 * np.pi * 3 * t))
    return (tone + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def test_mfcc_is_python_speech_features_on_16_bit_samples(rng):
    audio = _speech(rng)
    pcm = np.clip(np.rint(audio * 32768), -32768, 32767).astype(np.int16)
    want = python_speech_features.mfcc(pcm, 16000, numcep=13, winlen=0.025, winstep=0.010)
    got = mfcc(pcm)
    assert got.shape == (1 + int(np.ceil((pcm.size - 400) / 160)), 13) == want.shape
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(mfcc(audio), got)                  # floats in [-1, 1]
    assert np.abs(mfcc(audio / 2)[:, 0] - got[:, 0]).mean() > 0.5    # energy is kept


def test_mfcc_refuses_what_it_cannot_use():
    with pytest.raises(MediaError, match="16000 Hz"):
        mfcc(np.zeros(800, np.int16), 8000)
    with pytest.raises(MediaError, match="mono"):
        mfcc(np.zeros((800, 2), np.int16))
    with pytest.raises(MediaError, match="no audio"):
        mfcc(np.zeros(0, np.float32))
    with pytest.raises(MediaError, match="NaN"):
        mfcc(np.full(800, np.nan, np.float32))


def _authors_crop(frame_rgb, box, cs=0.4):
    """The authors' crop_video + evaluate_network steps, as written there (BGR frames,
    the whole frame padded), without their lossy video round trip."""
    image = np.ascontiguousarray(frame_rgb[:, :, ::-1])
    bs = max(box[3] - box[1], box[2] - box[0]) / 2
    bsi = int(bs * (1 + 2 * cs))
    frame = np.pad(image, ((bsi, bsi), (bsi, bsi), (0, 0)), "constant", constant_values=110)
    my, mx = (box[1] + box[3]) / 2 + bsi, (box[0] + box[2]) / 2 + bsi
    face = frame[int(my - bs):int(my + bs * (1 + 2 * cs)),
                 int(mx - bs * (1 + cs)):int(mx + bs * (1 + cs))]
    face = cv2.cvtColor(cv2.resize(face, (224, 224)), cv2.COLOR_BGR2GRAY)
    return face[56:168, 56:168]


def test_asd_crop_matches_the_authors_crop(rng):
    frame = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    boxes = [(100.3, 60.7, 180.2, 150.9),      # inside
             (-20.0, -15.5, 40.0, 50.0),       # over the top-left corner
             (280.4, 200.1, 330.0, 260.0),     # over the bottom-right corner
             (150.0, 100.0, 160.5, 108.0)]     # small
    for box in boxes:
        got = asd_crop(frame, box)
        assert got.shape == (112, 112) and got.dtype == np.uint8
        np.testing.assert_array_equal(got, _authors_crop(frame, box))


def test_asd_crop_refuses_empty_boxes_and_bad_frames(rng):
    frame = rng.integers(0, 256, (50, 50, 3), dtype=np.uint8)
    with pytest.raises(MediaError, match="empty"):
        asd_crop(frame, (10, 10, 10.5, 10.5))
    with pytest.raises(MediaError, match="not finite"):
        asd_crop(frame, (np.nan, 0, 20, 20))
    with pytest.raises(MediaError, match="RGB"):
        asd_crop(frame[:, :, :2], (0, 0, 20, 20))
    with pytest.raises(MediaError, match="uint8"):
        asd_crop(frame.astype(np.float32), (0, 0, 20, 20))


def test_asd_crop_of_a_grey_frame_is_the_rgb_frames_crop(rng):
    """Video decoding gives grey frames (the luma plane): cut the same as RGB, made grey."""
    import cv2

    frame = cv2.GaussianBlur(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8), (7, 7), 2)
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    for box in [(100.0, 60.0, 160.0, 130.0), (-20.0, -10.0, 40.0, 50.0)]:
        diff = np.abs(asd_crop(grey, box).astype(int) - asd_crop(frame, box).astype(int))
        assert diff.max() <= 2


def test_smooth_boxes_drops_a_jump_and_keeps_short_tracks(rng):
    track = np.tile([40.0, 30.0, 80.0, 90.0], (20, 1)) + rng.normal(0, 0.1, (20, 4))
    jumped = track.copy()
    jumped[7] += 60                                   # one wrong detection
    smooth = smooth_boxes(jumped)
    assert np.abs(smooth - smooth_boxes(track)).max() < 1.0
    side = smooth[:, 2] - smooth[:, 0]
    np.testing.assert_allclose(side, smooth[:, 3] - smooth[:, 1])    # squares
    assert np.all(np.abs(side - 60) < 1.0)            # the box's larger side, 60
    short = smooth_boxes(track[:3])                   # under 7 frames: not emptied
    assert np.all(short[:, 2] - short[:, 0] > 50)


def test_track_crops_cuts_every_frame(rng):
    frames = [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(5)]
    boxes = np.tile([50.0, 30.0, 100.0, 90.0], (5, 1))
    crops = track_crops(frames, boxes)
    assert crops.shape == (5, 112, 112)
    np.testing.assert_array_equal(crops[3], asd_crop(frames[3], boxes[3]))
    with pytest.raises(MediaError, match="5 frames but 4 boxes"):
        track_crops(frames, boxes[:4])


def syllables(rng, n: int = 75) -> np.ndarray:
    """A talker's on/off pattern over n video frames: bursts of 3 to 7 frames."""
    on, t, talking = np.zeros(n), 0, True
    while t < n:
        k = int(rng.integers(3, 8))
        on[t:t + k] = talking
        t, talking = t + k, not talking
    return on


def talking_face(rng, on: np.ndarray, box=(40, 20, 120, 100)) -> list[np.ndarray]:
    """Grey frames of a face whose mouth opens to a random height on the frames of `on`."""
    x1, y1, x2, y2 = box
    s = (x2 - x1) / 2
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    frames = []
    for talking in on:
        g = np.full((120, 160), 150, np.uint8)
        g[y1:y2, x1:x2] = 190
        opening = int(rng.uniform(0.05, 0.25) * s) if talking else 0
        g[int(cy + 0.45 * s) - opening:int(cy + 0.45 * s) + opening + 1,
          int(cx - 0.3 * s):int(cx + 0.3 * s)] = 40
        frames.append(g)
    return frames


def voice_of(rng, on: np.ndarray, lead: float = SYNC_LEAD, sr: int = 16_000) -> np.ndarray:
    """Noise as loud as `on` says, `lead` seconds after the mouth moved."""
    per = sr // 25
    lag = int(round(lead * 25))
    level = np.repeat(np.r_[np.zeros(lag), on[:len(on) - lag]] * 0.3 + 0.001, per)
    return (rng.normal(size=len(level)) * level).astype(np.float32)


@pytest.mark.parametrize("seed", range(5))
def test_lip_sync_tells_the_mouth_that_makes_the_sound(seed):
    rng = np.random.default_rng(seed)
    box = np.tile([40.0, 20.0, 120.0, 100.0], (75, 1))
    own, other = syllables(rng), syllables(rng)     # the speaker's; another talker's
    audio = voice_of(rng, own)
    loud = loudness(audio, np.arange(75) / 25 + SYNC_LEAD)
    speaker = lip_sync(mouth_motion(talking_face(rng, own), box), loud)
    mouthing = lip_sync(mouth_motion(talking_face(rng, other), box), loud)
    assert speaker > 0.5 and mouthing < 0.3
    # a face that does not move has no motion to compare: unmeasured, not a score
    assert lip_sync(mouth_motion(talking_face(rng, np.zeros(75)), box), loud) is None
    # the mouth is found from the box: moved with the face, it is the same answer
    shifted = [np.roll(g, 30, axis=1) for g in talking_face(np.random.default_rng(7), own)]
    again = lip_sync(mouth_motion(shifted, box + [30, 0, 30, 0]), loud)
    alike = lip_sync(mouth_motion(talking_face(np.random.default_rng(7), own), box), loud)
    assert again == pytest.approx(alike, abs=1e-6)


def test_loudness_is_the_log_power_around_each_time():
    audio = np.r_[np.full(1600, 0.5), np.full(1600, 0.1)].astype(np.float32)
    out = loudness(audio, np.array([0.025, 0.175, 0.5]), span=0.02)
    np.testing.assert_allclose(out[:2], np.log([0.25 + 1e-8, 0.01 + 1e-8]), rtol=1e-6)
    assert np.isnan(out[2])                       # past the audio's end


def test_lip_sync_refuses_what_it_cannot_compare(rng):
    with pytest.raises(MediaError, match="frames but"):
        mouth_motion([np.zeros((10, 10), np.uint8)] * 3, np.zeros((2, 4)))
    with pytest.raises(MediaError, match="loudness"):
        lip_sync(np.ones(20), np.ones(19))
    assert lip_sync(rng.random(5), rng.random(5)) is None          # too few frames
    # a box off the frame gives no motion there, and too little is left to compare
    off = np.tile([500.0, 500.0, 580.0, 580.0], (20, 1))
    motion = mouth_motion([np.zeros((120, 160), np.uint8)] * 20, off)
    assert np.isnan(motion[1:]).all() and lip_sync(motion, rng.random(20)) is None


def test_one_jump_of_the_picture_does_not_make_a_face_a_speaker(rng):
    """A listener's face barely moves but for one jump (a head turn, a cut) that falls on
    the loudest frame: uncapped, that one frame would make the correlation high."""
    loud = rng.normal(-5, 1, 75)
    motion = rng.uniform(0.1, 0.2, 75)
    top = int(np.argmax(loud))
    motion[top] = 50.0
    assert np.corrcoef(motion, loud)[0, 1] > 0.2
    assert abs(lip_sync(motion, loud)) < 0.3
    # a face that stays still but for a few frames has nothing to compare
    still = np.zeros(75)
    still[[10, 30, 50]] = 1.0
    assert lip_sync(still, loud) is None
