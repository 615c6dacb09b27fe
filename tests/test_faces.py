"""The face policy: faces found, missed faces rescued by the centre-square check,
frames without a face never read as one."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from emotion.core.errors import ArtifactError, EmotionError
from emotion.media import blazeface
from emotion.media.faces import (
    FaceFinder,
    FacePolicy,
    FaceVerifier,
    SecondOpinion,
    detection_view,
)
from emotion.media.images import center_square, load_image
from emotion.stages.probes import blank_frame, texture_frame
from emotion.stages.sample_data import draw_face, in_frame


@pytest.fixture(scope="module")
def finder() -> FaceFinder:
    return FaceFinder(FacePolicy(), 64)


def _no_face_frames(rng) -> list[np.ndarray]:
    frames = [blank_frame(360, 640, rng, i) for i in range(4)]
    frames += [texture_frame(360, 640, rng, i) for i in range(4)]
    slide = np.full((360, 640, 3), 245, np.uint8)  # a screen share: a slide of text
    for k, line in enumerate(("Quarterly results", "- revenue up 4 %", "- costs flat",
                              "- next steps: hiring")):
        cv2.putText(slide, line, (40, 60 + 60 * k), cv2.FONT_HERSHEY_SIMPLEX, 1.2 - 0.2 * (k > 0),
                    (30, 30, 30), 2, cv2.LINE_AA)
    return frames + [slide]


def test_faces_in_frames_are_detected_and_cropped(finder, rng):
    for emotion in ("happy", "sad", "angry"):
        frame = in_frame(draw_face(emotion, size=160, rng=rng), 640, 360)
        crop = finder(frame)
        assert crop.found and crop.detected and crop.image.shape == (64, 64, 3)
        assert crop.image.std() > 20  # a face, not a flat patch of the background


def test_a_frame_without_a_face_is_never_read_as_one(finder, rng):
    for frame in _no_face_frames(rng):
        crop = finder(frame)
        assert not crop.found and crop.image is None and not crop.detected


def test_the_centre_square_check_tells_a_missed_face_from_no_face(rng):
    """With no detector (--face_crop 0), a tight face crop passes the O-Net check of its
    centre square, a texture or blank frame does not."""
    finder = FaceFinder(FacePolicy(detector="none"), 48)
    face = draw_face("neutral", size=128, rng=rng)[24:104, 24:104]  # a data set's tight crop
    crop = finder(face)
    assert crop.found and not crop.detected
    for frame in _no_face_frames(rng):
        assert not finder(frame).found
    no_fallback = FaceFinder(FacePolicy(detector="none", fallback=None), 48)
    assert not no_fallback(face).found


def test_verifier_probabilities(rng):
    verify = FaceVerifier()
    face = draw_face("happy", size=128, rng=rng)[24:104, 24:104]
    assert verify(face, center_square(80, 80)) > 0.9
    assert verify(blank_frame(80, 80, rng, 0), center_square(80, 80)) < 0.1


def test_small_and_square_pictures_are_upscaled_and_padded_for_detection():
    policy = FacePolicy()
    view, scale, offset = detection_view(np.zeros((48, 48, 3), np.uint8), policy)
    assert scale == 4.0 and offset == 64.0 and view.shape == (320, 320, 3)
    view, scale, offset = detection_view(np.zeros((360, 640, 3), np.uint8), policy)
    assert (scale, offset) == (1.0, 0.0) and view.shape == (360, 640, 3)


def test_every_detector_runs_under_the_same_policy(rng):
    frame = in_frame(draw_face("neutral", size=200, rng=rng), 480, 360)
    assert FaceFinder(FacePolicy(detector="blazeface"), 64)(frame).detected
    for name in ("mtcnn", "haar"):  # drawn faces are hard for them: only the contract
        crop = FaceFinder(FacePolicy(detector=name), 64)(frame)
        assert crop.image is None or crop.image.shape == (64, 64, 3)
        assert not crop.detected or crop.found
    with pytest.raises(EmotionError, match="blazeface, mtcnn, haar"):
        FacePolicy(detector="magic")


def test_blazeface_anchors_and_nms():
    a = blazeface.anchors()
    assert a.shape == (896, 2) and (a > 0).all() and (a < 1).all()
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    merged, scores = blazeface.weighted_nms(boxes, np.array([0.9, 0.3, 0.8], np.float32))
    assert len(merged) == 2 and scores.tolist() == pytest.approx([0.9, 0.8])
    # the first box is the score-weighted mean of the two overlapping ones
    np.testing.assert_allclose(merged[0], [0.25, 0.25, 10.25, 10.25], atol=1e-5)


def test_blazeface_finds_a_small_face_in_a_wide_frame_with_tiles(rng):
    """Shrunk to 128 px, a 100-px face in a 640x360 frame is too small for BlazeFace;
    the second pass over squares of the frame finds it."""
    frame = np.full((360, 640, 3), 90, np.uint8)
    frame[200:300, 480:580] = draw_face("happy", size=100, rng=rng)
    once, _ = blazeface.BlazeFace(tiles=False).detect(frame)
    tiled, _ = blazeface.BlazeFace(tiles=True).detect(frame)
    assert len(once) == 0 and len(tiled) == 1
    x1, y1, x2, y2 = tiled[0]
    assert 480 < (x1 + x2) / 2 < 580 and 200 < (y1 + y2) / 2 < 300


def test_a_changed_model_file_is_refused(tmp_path, monkeypatch):
    fake = tmp_path / "face.tflite"
    fake.write_bytes(b"not the model")
    monkeypatch.setattr(blazeface, "MODEL", fake)
    with pytest.raises(ArtifactError, match="sha256"):
        blazeface.BlazeFace()


def test_second_opinion_passes_a_photographed_face_and_refuses_other_boxes(finder, rng):
    """A participant's check: the photographed face (the astronaut) and a drawn one pass;
    boxes over a textured wall, a slide's text and a cup of coffee do not."""
    fixtures = Path(__file__).parent / "fixtures"
    check = SecondOpinion()
    astronaut = load_image(fixtures / "astronaut.jpg")
    box = finder.largest_face(astronaut)
    assert box is not None and check(astronaut, box)
    drawn = in_frame(draw_face("neutral", size=160, rng=rng), 640, 360)
    assert check(drawn, finder.largest_face(drawn))
    coffee = load_image(fixtures / "coffee.jpg")
    h, w = coffee.shape[:2]
    others = [(coffee, (w / 4, h / 4, 3 * w / 4, 3 * h / 4))]
    others += [(f, (200.0, 100.0, 320.0, 220.0)) for f in _no_face_frames(rng)]
    assert not any(check(img, b) for img, b in others)
