"""Per-participant timelines (emotion.serve.meeting) with a stand-in speaker network: the
speaker's window is fused with the voice, a listener's takes the image-only path, speech
no face makes goes to the unseen lane, a participant off screen is absent."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from emotion.core.labels import EMOTIONS
from emotion.media.decode import Window
from emotion.media.faces import FaceCrop
from emotion.serve.meeting import Meeting, SpeakingCalibration

W, H, SR = 320, 160, 16_000
LEFT, RIGHT = (30.0, 40.0, 110.0, 120.0), (200.0, 40.0, 280.0, 120.0)
WALLS = {LEFT: (200, 60, 60), RIGHT: (60, 60, 200)}


class LipsOfLight:
    """Scores a face as speaking when its crops are bright (the test lights the speaker)."""

    def __init__(self):
        self.batches = []

    def score(self, faces: np.ndarray, mfcc: np.ndarray) -> np.ndarray:
        self.batches.append(faces.shape[0])
        return np.where(faces.mean(axis=(2, 3)) > 128, 3.0, -3.0)


def fake_score(image, audio) -> dict:
    e = "happy" if audio is not None else ("sad" if image is not None else "neutral")
    probs = {n: 0.9 if n == e else 0.02 for n in EMOTIONS}
    return {"emotion": e, "emotion_probs": probs, "anomaly_score": -0.1,
            "anomaly_flag": "normal",
            "modalities": "both" if image is not None and audio is not None
            else "image_only" if image is not None else "audio_only"}


class FakeScorer:
    """fake_score on each pair; counts the calls (the meeting scores in one)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, pairs) -> list[dict]:
        self.calls += 1
        return [fake_score(image, audio) for image, audio in pairs]


def window(index: int, shown: list, speaker, speech: bool) -> tuple[Window, list, np.ndarray]:
    rgb = np.full((H, W, 3), 40, np.uint8)
    grey = np.full((H, W), 40, np.uint8)
    for box in shown:
        x1, y1, x2, y2 = (int(v) for v in box)
        rgb[y1:y2, x1:x2] = WALLS[box]
        if box == speaker:
            grey[:, x1 - 20:x2 + 20] = 250
    start = 3.0 * index
    w = Window(index, start, start + 3.0,
               audio=(np.random.default_rng(index).normal(0, 0.1, 3 * SR).astype(np.float32)
                      if speech else np.zeros(3 * SR, np.float32)),
               frames=[rgb] * 3, times=[start + 0.5, start + 1.5, start + 2.5],
               gray=[grey] * 75, gray_times=[start + k / 25 for k in range(75)])
    faces = [[FaceCrop(np.full((64, 64, 3), 128, np.uint8), True, b) for b in shown]] * 3
    emb = np.random.default_rng(index).normal(size=(3 * len(shown), 512)).astype(np.float32)
    return w, faces, emb


def run_script() -> dict:
    net = LipsOfLight()
    m = Meeting(net, calibration=SpeakingCalibration(a=1.0, b=0.0, c=0.0), frame_scale=2.0)
    script = [([LEFT, RIGHT], LEFT, True),      # left speaks
              ([LEFT, RIGHT], RIGHT, True),     # right speaks
              ([LEFT, RIGHT], None, True),      # someone with no tile speaks
              ([LEFT, RIGHT], None, False),     # silence
              ([LEFT], LEFT, True)]             # right is gone
    for k, (shown, speaker, speech) in enumerate(script):
        w, faces, emb = window(k, shown, speaker, speech)
        m.observe(w, faces, emb, np.ones(128, np.float32) if speech else None)
    scorer = FakeScorer()
    out = m.finish(scorer, hop=3.0)
    out["batches"], out["score_calls"] = net.batches, scorer.calls
    return out


@pytest.fixture()
def result():
    return run_script()


def test_speech_windows_go_to_the_network_in_batches_of_asd_batch(result, monkeypatch):
    from emotion.serve import meeting

    monkeypatch.setattr(meeting, "ASD_BATCH", 2)
    small = run_script()
    assert small["batches"] == [4, 3]          # windows 1-2, then 3 and 5 at the end
    for a, b in zip(small["participants"], result["participants"], strict=True):
        assert [w["speaking_logit"] for w in a["timeline"]] == \
            [w["speaking_logit"] for w in b["timeline"]]


def test_each_speakers_voice_is_read_against_their_own_earlier_windows():
    """With a speaker-norm head, a speech window's features are embedded again against
    the context of whoever is credited: here the embedding is the context's size."""
    m = Meeting(LipsOfLight(), calibration=SpeakingCalibration(a=1.0, b=0.0, c=0.0))
    script = [([LEFT, RIGHT], LEFT, True), ([LEFT, RIGHT], RIGHT, True),
              ([LEFT, RIGHT], None, True), ([LEFT, RIGHT], LEFT, True),
              ([LEFT, RIGHT], None, True)]
    for k, (shown, speaker, speech) in enumerate(script):
        w, faces, emb = window(k, shown, speaker, speech)
        m.observe(w, faces, emb, np.ones(128, np.float32), voice=np.full(8, k, np.float32))

    def embed_voice(x, context):
        out = np.full((len(x), 128), context.n + 10 * x[0, 0], np.float32)
        context.add(x)
        return out

    def score_many(pairs):
        return [{**fake_score(i, a), "anomaly_score": None if a is None else float(a[0])}
                for i, a in pairs]

    out = m.finish(score_many, hop=3.0, embed_voice=embed_voice)
    left = min(out["participants"], key=lambda p: p["box"][0])
    right = max(out["participants"], key=lambda p: p["box"][0])
    # window k's features hold k: 10 k + the number of that speaker's earlier windows
    assert [w["anomaly_score"] for w in left["timeline"] if w["role"] == "speaking"] == \
        [0.0, 31.0]
    assert [w["anomaly_score"] for w in right["timeline"] if w["role"] == "speaking"] == \
        [10.0]
    assert [w["anomaly_score"] for w in out["unseen_speaker"]["timeline"]] == [20.0, 41.0]
    # without embed_voice (a head without speaker norm) the window's own embedding is used
    plain = Meeting(LipsOfLight(), calibration=SpeakingCalibration(a=1.0, b=0.0, c=0.0))
    for k, (shown, speaker, speech) in enumerate(script):
        w, faces, emb = window(k, shown, speaker, speech)
        plain.observe(w, faces, emb, np.full(128, 7.0, np.float32), voice=np.zeros(8))
    out = plain.finish(score_many, hop=3.0)
    assert {w["anomaly_score"] for p in out["participants"] for w in p["timeline"]
            if w["role"] == "speaking"} == {7.0}


def test_each_participant_gets_a_lane_on_one_grid(result):
    people = result["participants"]
    assert [p["id"] for p in people] == ["P1", "P2"]
    assert all(len(p["timeline"]) == 5 for p in people)
    left = people[0] if people[0]["box"][0] < people[1]["box"][0] else people[1]
    assert left["box"] == [60.0, 80.0, 220.0, 240.0]          # frame_scale applied
    assert left["first_seen"] == 0.5
    assert left["thumbnail"].startswith("data:image/jpeg;base64,")
    # every participant on screen in every speech window went through the network in one
    # batch (the meeting holds up to ASD_BATCH windows, then sends them together)
    assert result["batches"] == [7]
    assert result["score_calls"] == 1           # and every window was scored in one call


def test_speaker_is_fused_and_listener_is_image_only(result):
    by_x = sorted(result["participants"], key=lambda p: p["box"][0])
    left, right = by_x
    w0l, w0r = left["timeline"][0], right["timeline"][0]
    assert w0l["role"] == "speaking" and w0l["speech_found"] and w0l["modalities"] == "both"
    assert w0l["speaking"] > 0.9 and w0r["speaking"] < 0.1
    assert w0r["role"] == "listening" and not w0r["speech_found"]
    assert w0r["modalities"] == "image_only" and w0r["emotion"] == "sad"
    assert right["timeline"][1]["role"] == "speaking"
    assert left["talk_seconds"] == 6.0 and right["talk_seconds"] == 3.0


def test_speech_with_no_speaker_on_screen_goes_to_the_unseen_lane(result):
    unseen = result["unseen_speaker"]
    assert [w["start"] for w in unseen["timeline"]] == [6.0]
    assert unseen["timeline"][0]["modalities"] == "audio_only"
    assert unseen["timeline"][0]["speech_found"] and not unseen["timeline"][0]["face_found"]
    assert unseen["talk_seconds"] == 3.0
    for p in result["participants"]:
        assert not p["timeline"][2]["speech_found"]       # never the largest face's
        assert p["timeline"][3]["speaking"] == 0.0        # silence: nobody speaks


def test_absence_summary_and_changes(result):
    right = max(result["participants"], key=lambda p: p["box"][0])
    gone = right["timeline"][4]
    assert gone["present"] is False and gone["emotion"] is None and gone["speaking"] == 0.0
    assert right["present_seconds"] == 12.0
    assert abs(sum(right["emotion_shares"].values()) - 1.0) < 1e-6
    assert right["emotion_shares"]["happy"] == 0.25
    assert [c["emotion"] for c in right["changes"]] == ["sad", "happy", "sad"]


def test_calibration_is_relative_to_the_others_on_screen():
    cal = SpeakingCalibration(a=1.0, b=2.0, c=0.0)
    # a film's speaker below 0 but far ahead of the listeners still speaks
    assert cal.probability(-1.5, margin=1.5) > 0.5
    assert cal.probability(-1.5, margin=-1.5) < 0.5


def test_a_face_alone_speaks_by_its_own_fit():
    """Without a fit for a lone face, alone counts as the largest margin (the old rule:
    a still photo's -2 is credited); with one, its logit alone decides."""
    old = SpeakingCalibration(a=0.3, b=1.1, c=-0.6)
    assert old.probability(-2.0, margin=None) > 0.5
    cal = SpeakingCalibration(a=0.3, b=1.1, c=-0.6, alone_a=4.0, alone_c=1.0)
    assert cal.probability(-2.0, margin=None) < 0.5 < cal.probability(1.0, margin=None)
    assert cal.probability(-2.0, margin=2.0) == old.probability(-2.0, margin=2.0)


def test_speech_beside_a_lone_face_that_does_not_move_goes_to_the_unseen_lane():
    net = LipsOfLight()
    m = Meeting(net, calibration=SpeakingCalibration(a=1.0, b=1.0, c=0.0, alone_a=4.0,
                                                     alone_c=1.0))
    for k, speaker in enumerate([LEFT, None]):       # it speaks; then someone unseen does
        w, faces, emb = window(k, [LEFT], speaker, True)
        m.observe(w, faces, emb, np.ones(128, np.float32))
    out = m.finish(FakeScorer(), hop=3.0)
    lane = out["participants"][0]["timeline"]
    assert lane[0]["role"] == "speaking" and lane[1]["role"] == "listening"
    assert [w["start"] for w in out["unseen_speaker"]["timeline"]] == [3.0]


# ------------------------------------------------------------------ voice contrast
def two_voices(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n windows' voice features, voices A and B in turn (A first), and which are A's."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(2, 48))
    is_a = np.arange(n) % 2 == 0
    return np.where(is_a[:, None], a, b) + rng.normal(0, 0.2, (n, 48)), is_a


def test_voice_contrast_tells_a_speaker_from_lips_that_always_move(monkeypatch):
    from emotion.serve import meeting

    voices, is_a = two_voices(12)
    rng = np.random.default_rng(1)
    logits = np.stack([np.where(is_a, 2.0, -2.0),          # speaks when A is heard
                       np.full(12, 3.0),                    # lips move all along
                       np.where(is_a, -1.0, 1.0)], 1) + rng.normal(0, 0.1, (12, 3))
    logits[[4, 5], 2] = np.nan                              # off screen twice
    out = meeting.voice_contrast(voices, logits)
    assert np.all(out[is_a, 0] > 3.0) and np.all(out[~is_a, 0] < -3.0)
    assert np.all(np.abs(out[:, 1]) < 0.5)
    assert np.isnan(out[[4, 5], 2]).all() and np.all(out[~is_a & ~np.isnan(logits[:, 2]), 2] > 1)
    # the same in chunks of a few rows (a long recording's likeness, a slice at a time)
    monkeypatch.setattr(meeting, "CHUNK", 5)
    np.testing.assert_allclose(meeting.voice_contrast(voices, logits), out)
    # one voice all along: nothing to compare with, no contrast
    same = np.repeat(voices[:1], 6, axis=0)
    assert np.all(meeting.voice_contrast(same, logits[:6])[~np.isnan(logits[:6])] == 0.0)


class LipsByLight:
    """A face's logit grows with how bright its crops are (the test sets each one's)."""

    def score(self, faces: np.ndarray, mfcc: np.ndarray) -> np.ndarray:
        return (faces.mean(axis=(2, 3)) - 128) / 40


def test_a_face_whose_lips_always_move_is_not_credited_with_another_voice():
    """LEFT speaks with voice A and moves its lips all along; RIGHT speaks, barely moving,
    with voice B. By the logits alone LEFT is credited with both voices; weighing in how
    each face scores when the other voice is heard gives B to RIGHT."""
    voices, is_a = two_voices(8)
    levels = {True: {LEFT: 200, RIGHT: 40}, False: {LEFT: 200, RIGHT: 170}}

    def run(calibration):
        m = Meeting(LipsByLight(), calibration=calibration)
        for k in range(8):
            w, faces, emb = window(k, [LEFT, RIGHT], None, True)
            for box, level in levels[bool(is_a[k])].items():
                for g in w.gray:
                    g[:, int(box[0]) - 20:int(box[2]) + 20] = level
            m.observe(w, faces, emb, np.ones(128, np.float32), voice=voices[k])
        out = m.finish(FakeScorer(), hop=3.0)
        left, right = sorted(out["participants"], key=lambda p: p["box"][0])
        return ([w["role"] == "speaking" for w in left["timeline"]],
                [w["role"] == "speaking" for w in right["timeline"]])

    plain = SpeakingCalibration(a=1.0, b=1.0, c=-1.0)
    left, right = run(plain)
    assert all(left) and not any(right)
    left, right = run(replace(plain, voice=1.0))
    assert left == list(is_a) and right == list(~is_a)


def test_a_calibration_file_without_the_voice_and_sync_weights_means_the_logit_alone(
        tmp_path):
    import json

    fit = {"weights": "talkset", "a": 0.3, "b": 1.1, "c": -0.6, "fitted_on": "test"}
    (tmp_path / "old.json").write_text(json.dumps(fit))
    (tmp_path / "new.json").write_text(json.dumps({**fit, "voice": 3.0, "sync": 3.0}))
    old = SpeakingCalibration.load(tmp_path / "old.json")
    new = SpeakingCalibration.load(tmp_path / "new.json")
    assert old.voice == 0.0 and old.evidence(1.0, 2.0) == 1.0
    assert new.voice == 3.0 and new.evidence(1.0, 2.0) == 7.0
    assert old.sync == 0.0 and old.score(1.0, 0.5) == 1.0
    assert new.sync == 3.0 and new.score(1.0, 0.5) == 2.5 and new.score(1.0, None) == 1.0


def test_the_face_whose_mouth_moves_with_the_sound_is_credited():
    """Both faces move their lips all along, LEFT a little brighter (a higher logit); the
    sound rises and falls with RIGHT's mouth. By the logits alone LEFT is credited;
    with the lip sync weighed in, RIGHT."""
    from emotion.media.speaker_inputs import MOUTH

    def mouth_frames(rng, n=75):
        on, t, talking = np.zeros(n), 0, bool(rng.integers(2))
        while t < n:
            k = int(rng.integers(3, 8))
            on[t:t + k], t, talking = talking, t + k, not talking
        return on

    def run(calibration):
        m = Meeting(LipsByLight(), calibration=calibration)
        rng = np.random.default_rng(3)
        for k in range(4):
            w, faces, emb = window(k, [LEFT, RIGHT], None, True)
            talk = {LEFT: mouth_frames(rng), RIGHT: mouth_frames(rng)}
            level = np.repeat(np.r_[0.0, talk[RIGHT][:-1]] * 0.3 + 0.001, SR // 25)
            w.audio = (rng.normal(size=len(level)) * level).astype(np.float32)
            w.gray = []
            for t in range(75):
                g = np.full((H, W), 40, np.uint8)
                for box, bright in ((LEFT, 200), (RIGHT, 180)):
                    x1, y1, x2, y2 = box
                    g[:, int(x1) - 20:int(x2) + 20] = bright
                    s, cx, cy = (x2 - x1) / 2, (x1 + x2) / 2, (y1 + y2) / 2
                    half = int(rng.uniform(0.05, 0.2) * s) if talk[box][t] else 0
                    mid = int(cy + (MOUTH[1] + MOUTH[3]) / 2 * s)
                    g[mid - half:mid + half + 1, int(cx - 0.3 * s):int(cx + 0.3 * s)] = 20
                w.gray.append(g)
            m.observe(w, faces, emb, np.ones(128, np.float32))
        out = m.finish(FakeScorer(), hop=3.0)
        left, right = sorted(out["participants"], key=lambda p: p["box"][0])
        return left["timeline"], right["timeline"]

    plain = SpeakingCalibration(a=1.0, b=1.0, c=-1.0)
    left, right = run(plain)
    assert all(w["role"] == "speaking" for w in left)
    assert not any(w["role"] == "speaking" for w in right)
    assert all(r["lip_sync"] > 0.4 > lf["lip_sync"] for lf, r in zip(left, right, strict=True))
    left, right = run(replace(plain, sync=3.0))
    assert all(w["role"] == "speaking" for w in right)
    assert not any(w["role"] == "speaking" for w in left)
