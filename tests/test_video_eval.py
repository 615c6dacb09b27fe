"""evaluate_videos.py: composed labelled videos, analysed as predict.py does, scored."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from emotion.core.labels import EMOTIONS
from emotion.stages import video_eval
from emotion.stages.sample_data import draw_face


@pytest.fixture(scope="module")
def faces_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(4)
    for e in EMOTIONS:
        (root / e).mkdir()
        for k in range(2):
            Image.fromarray(draw_face(e, size=48, rng=rng)).save(root / e / f"{k}.png")
    return root


def test_window_truth_is_the_segment_holding_the_middle():
    segments = [{"start": 0.0, "end": 3.0, "emotion": "sad"},
                {"start": 3.0, "end": 6.0, "emotion": "happy"}]
    assert video_eval.window_truth({"start": 0.0, "end": 3.0}, segments) == "sad"
    assert video_eval.window_truth({"start": 2.0, "end": 5.0}, segments) == "happy"
    assert video_eval.window_truth({"start": 6.0, "end": 6.3}, segments) is None


def test_score_counts_refusals_and_missing_predictions_as_wrong():
    manifest = [{"video": "a.mp4", "framing": "closeup", "duration": 6.0,
                 "segments": [{"start": 0.0, "end": 3.0, "emotion": "sad"},
                              {"start": 3.0, "end": 6.0, "emotion": "happy"}]},
                {"video": "b.mp4", "framing": "small", "duration": 6.0,
                 "segments": [{"start": 0.0, "end": 3.0, "emotion": "angry"},
                              {"start": 3.0, "end": 6.0, "emotion": "angry"}]}]
    results = {"a.mp4": {"duration": 6.0, "processing_seconds": 0.6, "timeline": [
        {"start": 0.0, "end": 3.0, "emotion": "sad", "face_detected": True},
        {"start": 3.0, "end": 6.0, "emotion": None, "face_detected": False}]},
        "b.mp4": "no face in any frame and no speech"}
    r = video_eval.score(manifest, results)
    assert r["all"]["unanswered"] == 1 and r["all"]["windows"] == 4
    assert r["all"]["window_accuracy"] == pytest.approx(0.25)
    assert r["closeup"]["window_accuracy"] == pytest.approx(0.5)
    assert r["closeup"]["windows_without_prediction"] == 1
    assert r["closeup"]["real_time_factor"] == pytest.approx(0.1)
    assert r["small"]["unanswered_videos"][0]["video"] == "b.mp4"


@pytest.mark.slow
def test_the_command_composes_analyses_and_reports(faces_dir, preprocessed, artifacts,
                                                    tmp_path):
    work = tmp_path / "work"
    (work / "saved_models").mkdir(parents=True)
    (work / "anomaly").mkdir()
    for src, dst in ((artifacts["embedder"], "saved_models/embedder.pt"),
                     (artifacts["multimodal"], "saved_models/multimodal_best.pth"),
                     (artifacts["isolation"], "anomaly/isolation_forest.joblib")):
        shutil.copy(src, work / dst)
    out = tmp_path / "eval"
    assert video_eval.main(["--faces", str(faces_dir), "--audio_h5", str(preprocessed[1]),
                            "--artifacts", str(work), "--out", str(out), "--videos", "1",
                            "--segments", "6", "--singles", "2", "--framings",
                            "closeup,upscaled"]) == 0
    labels = json.loads((out / "videos" / "labels.json").read_text())
    assert len(labels) == 6 and {m["framing"] for m in labels} == {"closeup", "upscaled"}
    report = json.loads((out / "report.json").read_text())
    assert report["all"]["videos"] == 6 and report["all"]["unanswered"] == 0
    assert report["all"]["windows"] == 2 * (6 + 2 * 2)
    assert 0 < report["all"]["real_time_factor"] < 5
    assert report["all"]["face_detected_share"] > 0.5
    assert len(list((out / "results").glob("*.json"))) == 6
    # the session's embedder learned from every split: the check names the test voices
    heard = report["all"]["voices_heard_in_training"]
    assert heard and set(heard) <= set(json.loads(_speaker_splits(preprocessed[1])).keys())
    assert all(json.loads(_speaker_splits(preprocessed[1]))[s] == "test" for s in heard)
    assert video_eval.heard_voices(labels, str(preprocessed[1]), voice_speakers=[]) == []
    # the saved predictions score the same again (how another version's are scored)
    again = video_eval.main(["--out", str(tmp_path / "again"), "--results", str(out / "results"),
                             "--faces", str(faces_dir), "--audio_h5", str(preprocessed[1]),
                             "--videos", "1", "--segments", "6", "--singles", "2",
                             "--framings", "closeup,upscaled"])
    assert again == 0
    rescored = json.loads((tmp_path / "again" / "report.json").read_text())
    assert rescored["all"]["window_accuracy"] == report["all"]["window_accuracy"]


def _speaker_splits(audio_h5) -> str:
    import h5py

    with h5py.File(audio_h5, "r") as f:
        return f.attrs["speaker_splits"]
