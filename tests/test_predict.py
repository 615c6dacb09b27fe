"""The analysis core and predict.py on generated media."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from emotion.core.errors import ArtifactError, MediaError
from emotion.core.labels import EMOTIONS
from emotion.media.audio import load_audio
from emotion.media.images import load_image
from emotion.models.embedder import Embedder
from emotion.models.fusion import predict_proba
from emotion.serve import predict
from emotion.serve.analyzer import Analyzer
from emotion.stages.sample_data import draw_face, make_video, speech_like


@pytest.fixture(scope="module")
def analyzer(artifacts) -> Analyzer:
    return Analyzer(artifacts["embedder"], artifacts["multimodal"], artifacts["isolation"])


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("media")
    rng = np.random.default_rng(5)
    # A face in a frame, as a camera sees it
    face = np.pad(draw_face("happy", size=128, rng=rng), ((40, 40), (60, 60), (0, 0)),
                  mode="edge")
    Image.fromarray(face).save(d / "face.png")
    Image.fromarray(np.full((120, 160, 3), 90, np.uint8)).save(d / "wall.png")
    sf.write(d / "clip.wav", speech_like("sad", duration=2.5, rng=rng), 16_000)
    sf.write(d / "long.wav", np.concatenate([speech_like("angry", duration=4.0, rng=rng),
                                             np.zeros(16_000 * 3, np.float32)]), 16_000)
    sf.write(d / "silent.wav", np.zeros(16_000 * 2, np.float32), 16_000)
    sf.write(d / "empty.wav", np.zeros(0, np.float32), 16_000)
    (d / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + rng.bytes(4000))
    (d / "zero.mp4").write_bytes(b"")
    make_video(d / "segments.mp4", [("happy", 6.0), ("sad", 6.0), ("angry", 6.0)], seed=1)
    make_video(d / "mute.mp4", [("happy", 4.0)], audio=False, seed=2)
    make_video(d / "noface.mp4", [(None, 4.0)], seed=3, voice="neutral")
    make_video(d / "blank.mp4", [(None, 4.0)], seed=4)
    return {k.stem: k for k in d.iterdir()}


def _covers(timeline: list[dict], duration: float, hop: float) -> None:
    assert timeline[0]["start"] == 0.0
    for a, b in zip(timeline, timeline[1:], strict=False):
        assert b["start"] == pytest.approx(a["start"] + hop, abs=1e-3)
    assert timeline[-1]["end"] == pytest.approx(duration, abs=0.15)


def test_image_and_audio(analyzer, media):
    """The pair's answer is the fusion of the face's and the clip's own embeddings."""
    r = analyzer.analyze_pair(media["face"], media["clip"])
    assert len(r["timeline"]) == 1 and r["timeline"][0]["modalities"] == "both"
    image, detected = analyzer.image_embedding([load_image(media["face"])])
    assert detected and r["timeline"][0]["face_detected"]
    y, sr = load_audio(media["clip"])
    assert sr == analyzer.embedder.audio_params.sample_rate
    audio = analyzer.audio_embedding(y)
    expected = predict_proba(analyzer.model, image[None], audio[None])[0]
    got = np.array([r["emotion_probs"][e] for e in EMOTIONS])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert r["emotion"] == EMOTIONS[int(np.argmax(expected))]
    score = analyzer.detector.score(image[None], audio[None])[0][0]
    assert r["anomaly_score"] == pytest.approx(score, abs=1e-6)
    assert r["anomaly_flag"] == ("anomaly" if score > analyzer.detector.threshold else "normal")


def test_audio_alone_windows_cover_the_file_and_silence_is_marked(analyzer, media):
    r = analyzer.analyze_audio(media["long"])
    _covers(r["timeline"], sf.info(media["long"]).duration, analyzer.hop)
    first, last = r["timeline"][0], r["timeline"][-1]
    assert first["modalities"] == "audio_only" and first["speech_found"]
    assert last["modalities"] == "none" and last["emotion_probs"] is None  # marked, not guessed
    assert r["windows"]["scored"] < r["windows"]["total"]


def test_image_alone(analyzer, media):
    r = analyzer.analyze_image(media["face"])
    assert r["modalities"] == "image_only" and sum(r["emotion_probs"].values()) == \
        pytest.approx(1.0, abs=1e-5)
    with pytest.raises(MediaError, match="no face"):
        analyzer.analyze_image(media["wall"])


def test_video_timeline_follows_the_segments(analyzer, media):
    """Three 6 s segments (happy, sad, angry): each window sits in one segment, and
    the predicted emotion changes where the segments change."""
    r = analyzer.analyze_video(media["segments"])
    tl = r["timeline"]
    _covers(tl, 18.0, analyzer.hop)
    assert all(w["face_found"] and w["speech_found"] for w in tl[:6])
    per_segment = [[w["emotion"] for w in tl if s * 6 <= w["start"] < (s + 1) * 6]
                   for s in range(3)]
    majority = [max(set(s), key=s.count) for s in per_segment]
    assert len(set(majority)) == 3, per_segment
    assert sum(m == t for m, t in zip(majority, ("happy", "sad", "angry"), strict=True)) >= 2


def test_overlapping_windows(artifacts, analyzer, media):
    """With a 1.5 s hop, a window holds the same samples as the window of the same
    start without overlap. The first gets the same answer; later ones are read against
    the file's earlier windows (the voice head's speaker norm), more of them with
    overlap, so only their samples are compared."""
    from emotion.serve.analyzer import Options

    a = Analyzer(artifacts["embedder"], artifacts["multimodal"], artifacts["isolation"],
                 options=Options(hop=1.5))
    r = a.analyze_audio(media["long"])
    _covers(r["timeline"], sf.info(media["long"]).duration, 1.5)
    plain = {w["start"]: w for w in analyzer.analyze_audio(media["long"])["timeline"]}
    both = [w for w in r["timeline"] if w["start"] in plain and w["emotion_probs"]]
    assert [w["start"] for w in both] == [0.0, 3.0]
    ref = plain[0.0]["emotion_probs"]
    assert all(both[0]["emotion_probs"][e] == pytest.approx(ref[e], abs=1e-6)
               for e in EMOTIONS)
    overlapped = {w.start: w.audio for w in a._iter(media["long"], use_video=False)}
    for w in analyzer._iter(media["long"], use_video=False):
        np.testing.assert_array_equal(overlapped[w.start], w.audio)


@pytest.mark.parametrize("name,match", [
    ("corrupt", "cannot be decoded|decoding failed|no usable"),
    ("zero", "cannot be decoded|zero|no usable"),
    ("blank", "no face in any frame and no speech"),
])
def test_videos_with_nothing_to_analyse_are_refused(analyzer, media, name, match):
    with pytest.raises(MediaError, match=match):
        analyzer.analyze_video(media[name])


def test_a_video_without_faces_gets_an_audio_only_timeline(analyzer, media):
    r = analyzer.analyze_video(media["noface"])
    assert r["modalities"] == "audio_only"
    assert any("no face" in w for w in r["warnings"])
    assert all(not w["face_found"] and not w["face_detected"] for w in r["timeline"])
    assert all(w["modalities"] == "audio_only" for w in r["timeline"] if w["speech_found"])
    assert r["windows"]["with_speech"] > 0


def test_a_video_without_sound_gets_an_image_only_timeline(analyzer, media):
    r = analyzer.analyze_video(media["mute"])
    assert r["modalities"] == "image_only" and any("no audio track" in w for w in r["warnings"])
    assert all(w["face_found"] and not w["speech_found"] for w in r["timeline"])


@pytest.mark.parametrize("name,match", [
    ("silent", "no speech"), ("empty", "holds no audio|cannot be decoded|no usable|zero"),
    ("corrupt", "cannot be decoded|decoding failed|no usable|holds no audio"),
])
def test_bad_audio(analyzer, media, name, match):
    with pytest.raises(MediaError, match=match):
        analyzer.analyze_audio(media[name])


def test_artifacts_that_do_not_belong_together_are_refused(artifacts, tmp_path):
    """An embedder made otherwise than the models' is refused, naming what differs."""
    other = Embedder.load(artifacts["embedder"])
    policy = dataclasses.replace(other.image.face, margin=0.4)
    other = Embedder(other.image_state, dataclasses.replace(other.image, face=policy),
                     other.voice_state, other.voice, other.audio_params,
                     speech_gate=other.speech_gate)
    other.save(tmp_path / "other_embedder.pt")
    with pytest.raises(ArtifactError, match=r"image\.face\.margin: 0\.25 there, 0\.4 here"):
        Analyzer(tmp_path / "other_embedder.pt", artifacts["multimodal"],
                 artifacts["isolation"])
    with pytest.raises(ArtifactError, match="does not exist"):
        Analyzer(artifacts["embedder"], tmp_path / "missing.pth", artifacts["isolation"])


def _predict(argv, capsys):
    rc = predict.main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_predict_video_writes_json_and_plot(artifacts, media, tmp_path, capsys):
    rc, out, err = _predict(["--video", str(media["segments"]), "--embedder",
                             artifacts["embedder"], "--multimodal", artifacts["multimodal"],
                             "--isolation", artifacts["isolation"],
                             "--out", str(tmp_path / "r.json"),
                             "--plot", str(tmp_path / "t.png")], capsys)
    assert rc == 0, err
    printed = json.loads(out)
    assert printed == json.loads((tmp_path / "r.json").read_text())
    assert {"emotion_probs", "anomaly_score", "anomaly_flag", "timeline"} <= set(printed)
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("argv,match", [
    (["--video", "MISSING.mp4"], "no such file"),
    (["--audio", "SILENT"], "no speech"),
    (["--video", "BLANK"], "no face in any frame and no speech"),
    (["--image", "WALL"], "no face"),
    ([], "nothing to analyse"),
])
def test_predict_bad_input_is_one_line(artifacts, media, capsys, argv, match):
    argv = [str(media[a.lower()]) if a.isupper() else a for a in argv]
    rc, _, err = _predict(argv + ["--embedder", artifacts["embedder"],
                                  "--multimodal", artifacts["multimodal"],
                                  "--isolation", artifacts["isolation"]], capsys)
    assert rc == 2 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and __import__("re").search(match, err), err
