"""Participant tracks: ids that hold through missed detections, a reordered gallery and a
switch to speaker view; one face gives one participant; a passing false face is dropped."""

from __future__ import annotations

import numpy as np
import pytest

from emotion.media.tracks import FaceTracker, Track, TrackerSettings, appearance, frame_changed

W, H = 640, 360
# each person: skin, hair and wall colours (RGB)
PEOPLE = [((220, 180, 150), (40, 30, 20), (60, 110, 170)),
          ((150, 100, 70), (200, 190, 60), (170, 60, 60)),
          ((240, 210, 190), (120, 60, 20), (60, 150, 80)),
          ((190, 140, 110), (20, 20, 20), (200, 200, 200))]
TILES = [(0, 0, 320, 180), (320, 0, 640, 180), (0, 180, 320, 360), (320, 180, 640, 360)]


def tile_face(frame: np.ndarray, person: int, rect, rng) -> tuple:
    """Paint a person's wall, hair and face in a tile; the face's box."""
    skin, hair, wall = PEOPLE[person]
    x1, y1, x2, y2 = rect
    frame[y1:y2, x1:x2] = wall
    cx, cy = (x1 + x2) // 2 + int(rng.integers(-3, 4)), (y1 + y2) // 2 + int(rng.integers(-3, 4))
    s = (y2 - y1) // 3
    frame[cy - s - s // 3:cy - s // 2, cx - s:cx + s] = hair
    frame[cy - s:cy + s, cx - 3 * s // 4:cx + 3 * s // 4] = skin
    return (cx - 3 * s / 4, cy - s, cx + 3 * s / 4, cy + s)


def gallery(order: list[int], rng, tiles=TILES) -> tuple[np.ndarray, list]:
    frame = np.full((H, W, 3), 30, np.uint8)
    boxes = [tile_face(frame, p, tiles[k], rng) for k, p in enumerate(order)]
    return frame, boxes


def test_a_reordered_gallery_keeps_every_id():
    rng = np.random.default_rng(0)
    tracker = FaceTracker()
    truth_of: dict[int, int] = {}
    t = 0.0
    for order in [[0, 1, 2, 3]] * 6 + [[3, 0, 1, 2]] * 6:
        frame, boxes = gallery(order, rng)
        ids = tracker.update(t, frame, boxes)
        for person, pid in zip(order, ids, strict=True):
            assert truth_of.setdefault(pid, person) == person
        t += 1.0
    final = tracker.finish()
    assert sorted(v for v in final.values() if v is not None) == [0, 1, 2, 3]
    assert tracker.cuts == [6.0]  # the reorder is seen as a layout change


def test_speaker_view_and_back_find_the_same_person():
    rng = np.random.default_rng(1)
    tracker = FaceTracker()
    ids_of: dict[int, set] = {}
    t = 0.0
    for k in range(12):
        if 4 <= k < 7:  # speaker view: person 2 alone, full frame
            frame, boxes = gallery([2], rng, tiles=[(0, 0, W, H)])
            order = [2]
        else:
            order = [0, 1, 2]
            frame, boxes = gallery(order, rng)
        for person, pid in zip(order, tracker.update(t, frame, boxes), strict=True):
            ids_of.setdefault(person, set()).add(pid)
        t += 1.0
    final = tracker.finish()
    finals = {p: {final[i] for i in raw} for p, raw in ids_of.items()}
    assert all(len(v) == 1 for v in finals.values()), finals
    assert len({next(iter(v)) for v in finals.values()}) == 3


def test_missed_detections_keep_the_id_and_one_face_is_one_participant():
    rng = np.random.default_rng(2)
    tracker = FaceTracker()
    seen = set()
    for k in range(20):
        frame, boxes = gallery([1], rng)
        if k % 3 == 1:
            boxes = []  # the detector missed it
        seen.update(tracker.update(float(k), frame, boxes))
    final = tracker.finish()
    assert len(seen) == 1 and set(final.values()) == {0}


def test_a_false_face_seen_once_is_not_a_participant():
    rng = np.random.default_rng(3)
    tracker = FaceTracker(TrackerSettings(min_frames=2))
    for k in range(10):
        frame, boxes = gallery([0, 1], rng)
        if k == 4:
            frame[200:260, 500:560] = (250, 20, 200)
            boxes = boxes + [(500.0, 200.0, 560.0, 260.0)]
        tracker.update(float(k), frame, boxes)
    kept = [v for v in tracker.finish().values() if v is not None]
    assert sorted(kept) == [0, 1]


def test_appearance_tells_people_apart_and_ignores_scale():
    rng = np.random.default_rng(4)
    a_frame, a_boxes = gallery([0, 1], rng)
    b_frame, b_boxes = gallery([0], rng, tiles=[(0, 0, W, H)])
    a0, a1 = appearance(a_frame, a_boxes[0]), appearance(a_frame, a_boxes[1])
    b0 = appearance(b_frame, b_boxes[0])
    assert np.isclose(np.linalg.norm(a0), 1.0)
    assert float(a0 @ b0) > float(a1 @ b0) + 0.3


@pytest.mark.parametrize("change,expected", [(0, False), (120, True)])
def test_frame_changed(change, expected):
    a = np.full((H, W, 3), 100, np.uint8)
    b = (a.astype(int) + change).clip(0, 255).astype(np.uint8)
    assert frame_changed(a, b, 18.0) is expected
    assert frame_changed(None, b, 18.0) is False


def test_a_face_and_the_centre_square_that_stood_for_it_are_one_participant():
    """A close-up whose face the detector found in some frames and the verified centre
    square stood for in others: one participant, not two."""
    rng = np.random.default_rng(5)
    tracker = FaceTracker()
    frame, boxes = gallery([0], rng, tiles=[(140, 0, 500, 360)])
    centre = (140.0, 0.0, 500.0, 360.0)
    for k in range(9):
        tracker.update(float(k), frame, [centre] if k % 3 == 1 else boxes)
    assert set(tracker.finish().values()) == {0}


def test_a_face_seen_once_is_kept_when_it_is_the_only_one():
    rng = np.random.default_rng(6)
    tracker = FaceTracker(TrackerSettings(min_frames=2))
    frame, boxes = gallery([2], rng)
    tracker.update(0.0, frame, boxes)
    for k in range(1, 6):
        tracker.update(float(k), frame, [])
    assert list(tracker.finish().values()) == [0]


def test_a_false_face_seen_all_along_is_dropped_when_the_check_rejects_it():
    """Something the detector keeps finding in a tile (glare, a logo) passes the frame
    count; the second detector's check drops it, and is asked only while it may matter."""
    rng = np.random.default_rng(7)
    false_box = (500.0, 200.0, 560.0, 260.0)
    asked: list[tuple] = []

    def verify(rgb, box):
        asked.append(box)
        return box != false_box

    tracker = FaceTracker(TrackerSettings(verify_frames=3), verify)
    for k in range(10):
        frame, boxes = gallery([0, 1], rng)
        frame[200:260, 500:560] = (250, 20, 200)
        tracker.update(float(k), frame, boxes + [false_box])
    final = tracker.finish()
    kept = {raw: v for raw, v in final.items() if v is not None}
    assert sorted(kept.values()) == [0, 1]
    assert all(tracker.tracks[raw].first_box != false_box for raw in kept)
    # each person is asked once (they pass), the false face three times (verify_frames)
    assert asked.count(false_box) == 3 and len(asked) == 2 + 3


def test_one_face_that_fails_the_check_is_still_the_participant():
    rng = np.random.default_rng(8)
    tracker = FaceTracker(verify=lambda rgb, box: False)
    for k in range(6):
        frame, boxes = gallery([3], rng)
        tracker.update(float(k), frame, boxes)
    assert set(tracker.finish().values()) == {0}


def _signatures(look: float) -> tuple[np.ndarray, np.ndarray]:
    """Two unit signatures whose similarity is `look`."""
    a = np.zeros(8, np.float32)
    b = np.zeros(8, np.float32)
    a[0] = b[0] = 1.0
    b[:2] = look, np.sqrt(1 - look ** 2)
    return a, b


@pytest.mark.parametrize("look,merged", [(0.80, True), (0.30, False)])
def test_participants_that_never_meet_merge_when_they_look_alike(look, merged):
    """The dev meetings' same person split in two (a clip restarting every turn, a
    return from speaker view) looked 0.80 and 0.82 alike, two people at most 0.29: the
    first merge."""
    tracker = FaceTracker()
    a, b = _signatures(look)
    for i, (sig, times) in enumerate([(a, range(0, 6)), (b, range(6, 12))]):
        tr = Track(i, times[0], (0, 0, 50, 50), times[-1], (0, 0, 50, 50), sig,
                   [float(t) for t in times])
        tracker.tracks.append(tr)
    tracker.frames_seen = 12
    final = tracker.finish()
    assert (final[0] == final[1]) is merged
