"""Participants through the whole analysis (generated videos, the session's tiny models):
one face stays one participant with today's top-level answer, two faces get two lanes,
a short last window keeps its face, the decoder gives 25 grey frames a second."""

from __future__ import annotations

import numpy as np
import pytest

from emotion.media.decode import DENSE_FPS, iter_windows
from emotion.serve.analyzer import Analyzer
from emotion.stages.sample_data import make_meeting, make_video


@pytest.fixture(scope="module")
def analyzer(artifacts) -> Analyzer:
    return Analyzer(artifacts["embedder"], artifacts["multimodal"], artifacts["isolation"])


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("participants")
    make_video(d / "one.mp4", [("happy", 4.0), ("sad", 3.4)], frame_size=(320, 240), seed=3)
    make_meeting(d / "two.mp4", [(0, ["happy", "neutral"], 3.0), (1, ["happy", "sad"], 3.0),
                                 (None, ["angry", "sad"], 3.0)], seed=4)
    return {p.stem: p for p in d.iterdir()}


def test_one_face_is_one_participant_and_the_top_level_is_unchanged(analyzer, videos):
    r = analyzer.analyze_video(videos["one"])
    assert [p["id"] for p in r["participants"]] == ["P1"]
    lane = r["participants"][0]["timeline"]
    assert [(w["start"], w["end"]) for w in lane] == [(w["start"], w["end"])
                                                      for w in r["timeline"]]
    assert all(w["present"] for w in lane)
    # the top-level windows are what the largest face and the whole audio gave before
    for w, top in zip(analyzer._iter(videos["one"], use_video=True), r["timeline"],
                      strict=True):
        image, detected = analyzer.image_embedding(w.frames)
        before = analyzer._window(w, image, analyzer.audio_embedding(w.audio),
                                  face_detected=detected)
        assert before["emotion"] == top["emotion"]
        assert before["emotion_probs"] == pytest.approx(top["emotion_probs"], abs=1e-5)


def test_a_short_last_window_keeps_the_face_on_screen(analyzer, videos):
    """7.4 s in 3-s windows: the last lasts 1.4 s, and its face is still answered."""
    r = analyzer.analyze_video(videos["one"])
    last = r["timeline"][-1]
    assert last["end"] - last["start"] < 1.5
    assert last["face_found"] and last["emotion"] is not None
    assert r["participants"][0]["timeline"][-1]["present"]


def test_two_faces_get_two_lanes_on_one_grid(analyzer, videos):
    r = analyzer.analyze_video(videos["two"])
    people = r["participants"]
    assert [p["id"] for p in people] == ["P1", "P2"]
    for p in people:
        assert len(p["timeline"]) == len(r["timeline"])
        assert all(w["present"] for w in p["timeline"])
        assert p["first_seen"] < 1.5
        x1, y1, x2, y2 = p["box"]
        assert 0 <= x1 < x2 <= 384 and 0 <= y1 < y2 <= 192
        assert abs(sum(p["emotion_shares"].values()) - 1.0) < 1e-3
        for w in p["timeline"]:
            assert 0.0 <= w["speaking"] <= 1.0
            assert w["role"] in ("speaking", "listening")
            assert w["modalities"] == ("both" if w["role"] == "speaking" else "image_only")
    # the two faces are side by side: different boxes
    assert people[0]["box"][0] != people[1]["box"][0]
    # silence (the third turn) is credited to no one
    assert not any(p["timeline"][2]["speech_found"] for p in people)
    heard = [w for w in r["timeline"] if w["speech_found"]]
    credited = sum(any(p["timeline"][i]["speech_found"] for p in people)
                   for i, w in enumerate(r["timeline"]) if w["speech_found"])
    assert credited + len(r["unseen_speaker"]["timeline"]) == len(heard)


def test_one_window_in_scan_every_looks_for_new_faces(analyzer, videos, monkeypatch):
    scans = []
    real = analyzer.embedder.faces

    def faces(rgb, **kw):
        scans.append(kw["scan"])
        return real(rgb, **kw)

    monkeypatch.setattr(analyzer.embedder, "faces", faces)
    r = analyzer.analyze_video(videos["two"])
    assert analyzer.options.meeting.scan_every == 2 and len(r["timeline"]) == 3
    assert scans[::3] == [True, False, True]          # each window's first frame
    assert not any(scans[1::3] + scans[2::3])          # the others follow it
    # the window that followed its faces still has both
    assert [all(w["present"] for w in p["timeline"]) for p in r["participants"]] == [True] * 2


def test_each_voice_is_read_against_its_own_earlier_windows(analyzer, videos, tmp_path,
                                                          monkeypatch):
    """A speaker-norm head (the default recipe): an audio file's windows are read against
    the file's earlier ones; a video's speech against its participant's own (test_meeting
    checks whose), while the top-level timeline reads each window alone."""
    import soundfile as sf

    from emotion.stages.sample_data import speech_like

    assert analyzer.embedder.speaker_norm
    assert analyzer.used()["voice_branch"]["speaker_norm"].startswith("per participant")
    seen = []
    real = analyzer.embedder.embed_features

    def embed_features(x, context=None):
        seen.append(None if context is None else context.n)
        return real(x, context)

    monkeypatch.setattr(analyzer.embedder, "embed_features", embed_features)
    clip = tmp_path / "voice.wav"
    sf.write(clip, speech_like("happy", duration=8.5, rng=np.random.default_rng(5)), 16_000)
    r = analyzer.analyze_audio(clip)
    heard = sum(w["speech_found"] for w in r["timeline"])
    assert heard >= 2 and seen == list(range(heard))
    seen.clear()
    r = analyzer.analyze_video(videos["two"])
    top = sum(w["speech_found"] for w in r["timeline"])
    assert seen[:top] == [None] * top                    # the top level: each window alone
    assert all(n is not None for n in seen[top:])        # then each speaker's, from 0
    assert seen[top:].count(0) >= 1


def test_dense_grey_frames_at_the_speaker_networks_rate(videos):
    """A 10-fps video still gives 25 grey frames a second (frames repeat), at the size of
    the sampled RGB frames, in time order."""
    windows = list(iter_windows(videos["one"], window=3.0, hop=3.0, sample_rate=16_000,
                                dense_fps=DENSE_FPS))
    first = windows[0]
    assert len(first.gray) == 75 and first.gray[0].shape == first.frames[0].shape[:2]
    assert np.all(np.diff(first.gray_times) >= 0)
    assert first.gray[0].dtype == np.uint8
    same = first.gray_times.index(first.times[0])  # the same decoded frame, in grey
    grey_of_rgb = first.frames[0].astype(np.float32) @ np.float32([0.299, 0.587, 0.114])
    assert np.abs(first.gray[same].astype(np.float32) - grey_of_rgb).mean() < 3


def test_a_generated_speaker_moves_their_mouth_and_a_listener_does_not(videos):
    """make_meeting draws the speaker's mouth opening with their voice (so that the
    active-speaker network has lips to read); the listener's tile stays still."""
    import av

    frames = []
    with av.open(str(videos["two"])) as c:
        for f in c.decode(video=0):
            if f.time >= 3.0:              # the first turn: participant 0 speaks
                break
            frames.append(f.to_ndarray(format="gray").astype(np.float32))
    frames = np.stack(frames)
    half = frames.shape[2] // 2
    speaker, listener = frames[:, :, :half], frames[:, :, half:]
    moved = np.abs(np.diff(speaker, axis=0)).mean(axis=(1, 2))
    still = np.abs(np.diff(listener, axis=0)).mean(axis=(1, 2))
    # (the encoder's first frames shake every tile a little: compare the usual frame)
    assert np.median(moved) > 5 * max(float(np.median(still)), 0.01)
