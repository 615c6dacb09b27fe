"""The anomaly stage: the detector's conventions, train_anomaly.py end to end, bad input."""

import json
import shutil

import h5py
import joblib
import numpy as np
import pytest

from emotion.core.errors import EmotionError, SchemaError
from emotion.core.h5io import load_paired
from emotion.models import anomaly
from emotion.models.anomaly import AnomalyDetector, fit_detectors, load_detector, payload
from emotion.stages import train_anomaly
from emotion.stages.probes import AUDIO_PROBES, IMAGE_PROBES

KINDS = [*AUDIO_PROBES, *IMAGE_PROBES, "mismatched"]


# ----------------------------------------------------------------- the detector
@pytest.fixture(scope="module")
def toy() -> tuple[AnomalyDetector, np.ndarray, np.ndarray]:
    """A detector fitted on Gaussian 'embeddings' (fast: no stage runs)."""
    rng = np.random.default_rng(0)
    image = rng.standard_normal((200, 512)).astype(np.float32)
    audio = rng.standard_normal((200, 128)).astype(np.float32)
    dets = fit_detectors(image, audio, n_estimators=50, contamination=0.01, seed=0)
    return AnomalyDetector(payload(dets, embedder_id="toy")), image, audio


def test_score_is_negated_decision_function_and_far_points_are_anomalies(toy):
    det, image, audio = toy
    far_image, far_audio = np.full((1, 512), 8.0), np.full((1, 128), -8.0)
    x = np.vstack([np.c_[image[:20], audio[:20]], np.c_[far_image, far_audio]])
    scores, flags = det.score(x[:, :512], x[:, 512:], combine=False)
    both = det.data["detectors"]["both"]
    z = both["scaler"].transform(x)
    np.testing.assert_allclose(scores, -both["forest"].decision_function(z))
    assert flags == ["anomaly" if p == -1 else "normal" for p in both["forest"].predict(z)]
    assert scores[-1] > scores[:-1].max() and flags[-1] == "anomaly"
    assert det.threshold == 0.0 and set(flags) <= {"anomaly", "normal"}


@pytest.mark.parametrize(("max_features", "max_samples"), [(1.0, "auto"), (0.5, "auto"),
                                                          (1.0, 1)])
def test_decision_function_gives_sklearns_numbers(max_features, max_samples):
    from sklearn.ensemble import IsolationForest

    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 40))
    forest = IsolationForest(n_estimators=30, max_features=max_features,
                             max_samples=max_samples, random_state=0).fit(x)
    probe = np.vstack([rng.standard_normal((50, 40)), np.full((1, 40), 6.0)])
    np.testing.assert_allclose(anomaly.decision_function(forest, probe),
                               forest.decision_function(probe), rtol=0, atol=1e-12)
    np.testing.assert_allclose(anomaly.decision_function(forest, probe[:1]),
                               forest.decision_function(probe[:1]), rtol=0, atol=1e-12)


def test_a_pair_scores_as_its_most_alarmed_forest(toy):
    """Served scores for a pair: the highest of the 640-d, image and audio forests, so
    one bad half is flagged even where the 640-d forest dilutes it."""
    det, image, audio = toy
    bad_audio = audio[:20].copy()
    bad_audio[-1] = 9.0
    served, flags = det.score(image[:20], bad_audio)
    parts = [det.score(image[:20], bad_audio, combine=False)[0], det.score(image=image[:20])[0],
             det.score(audio=bad_audio)[0]]
    np.testing.assert_allclose(served, np.maximum.reduce(parts))
    assert flags[-1] == "anomaly" and served[-1] == pytest.approx(parts[2][-1])


def test_one_modality_uses_its_own_detector_and_checks_dimensions(toy):
    det, image, audio = toy
    for name, kw, x in (("image_only", {"image": image[:5]}, image[:5]),
                        ("audio_only", {"audio": audio[:5]}, audio[:5])):
        d = det.data["detectors"][name]
        scores, flags = det.score(**kw)
        z = d["scaler"].transform(x)
        np.testing.assert_allclose(scores, -d["forest"].decision_function(z))
        assert len(flags) == 5 and det.which(**kw) == name
    assert det.score(audio=np.full(128, 9.0))[1] == ["anomaly"]  # one vector is one row
    with pytest.raises(EmotionError, match="512"):
        det.score(image=np.zeros((2, 500)))
    with pytest.raises(EmotionError, match="128"):
        det.score(image=image[:2], audio=np.zeros((2, 640)))
    with pytest.raises(EmotionError, match="rows"):
        det.score(image=image[:3], audio=audio[:2])
    with pytest.raises(EmotionError, match="nothing to score"):
        det.score()
    with pytest.raises(EmotionError, match="NaN"):
        det.score(audio=np.full((1, 128), np.nan))
    det.check_embedder("toy")
    with pytest.raises(EmotionError, match="embedder"):
        det.check_embedder("another")


def test_load_detector_refuses_missing_and_foreign_files(toy, tmp_path):
    det, image, audio = toy
    path = det.save(tmp_path / "d.joblib")
    np.testing.assert_allclose(load_detector(path).score(image[:4], audio[:4])[0],
                               det.score(image[:4], audio[:4])[0])
    with pytest.raises(SchemaError, match="does not exist"):
        load_detector(tmp_path / "nope.joblib")
    (tmp_path / "text.joblib").write_text("not a pickle")
    with pytest.raises(SchemaError, match="not a readable"):
        load_detector(tmp_path / "text.joblib")
    joblib.dump({"format": "something-else"}, tmp_path / "other.joblib")
    with pytest.raises(SchemaError, match="not an anomaly detector"):
        load_detector(tmp_path / "other.joblib")
    wrong = dict(det.data, detectors={**det.data["detectors"],
                                      "audio_only": det.data["detectors"]["image_only"]})
    joblib.dump(wrong, tmp_path / "wrong.joblib")
    with pytest.raises(SchemaError, match="audio_only"):
        load_detector(tmp_path / "wrong.joblib")
    joblib.dump(dict(det.data, detectors=None), tmp_path / "none.joblib")
    with pytest.raises(SchemaError, match="missing"):
        load_detector(tmp_path / "none.joblib")


# ----------------------------------------------------------------- the stage
@pytest.fixture(scope="module")
def stage(paired, embedded, tmp_path_factory):
    out = tmp_path_factory.mktemp("anomaly")
    assert train_anomaly.main([
        "--train_h5", str(paired["train"]), "--test_h5", str(paired["test"]),
        "--embedder", str(embedded["embedder"]), "--save_dir", str(out),
        "--n_estimators", "50", "--n_probes", "8", "--seed", "0"]) == 0
    return out


def test_stage_writes_every_output(stage, paired):
    names = {p.name for p in stage.iterdir()}
    assert names == {"isolation_forest.joblib", "anomaly_scores.npz", "anomaly_metrics.json",
                     "anomaly_hist.png", "anomaly_pca.png"}  # and no .partial left over
    for png in ("anomaly_hist.png", "anomaly_pca.png"):
        assert (stage / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    m = json.loads((stage / "anomaly_metrics.json").read_text())
    assert list(m["auroc"]) == KINDS
    for table in (m["auroc"], *m["other_detectors"].values()):
        assert 0.0 <= table["mismatched"] <= 1.0
    assert set(m["other_detectors"]) == {"knn_mean_distance", "mahalanobis_ledoit_wolf"}
    d = joblib.load(stage / "isolation_forest.joblib")
    assert d["format"] == "emotion-anomaly" and d["format_version"] == 2
    assert set(d["detectors"]) == {"both", "image_only", "audio_only"}
    assert d["feature_dims"] == {"image": 512, "audio": 128} and d["threshold"] == 0.0
    assert d["embedder_id"] == load_paired(paired["test"]).embedder_id == m["embedder_id"]
    assert d["auroc"] == m["auroc"] and "scikit-learn" in d["versions"]


def test_saved_detector_reproduces_saved_scores(stage, paired):
    saved = np.load(stage / "anomaly_scores.npz")
    test = load_paired(paired["test"])
    scores, flags = load_detector(stage / "isolation_forest.joblib").score(test.image, test.audio)
    np.testing.assert_allclose(scores, saved["test_scores"], rtol=1e-6)
    np.testing.assert_array_equal(saved["test_labels"], test.labels)
    assert flags == ["anomaly" if s > 0 else "normal" for s in saved["test_scores"]]
    assert {f"probe_{k}_scores" for k in saved["probe_kinds"]} <= set(saved.files)
    assert len(saved["probe_mismatched_scores"]) == 8


def test_inputs_with_no_voice_or_no_face_are_refused_before_the_detector(stage):
    """Noise, room tone and silence never reach the audio models (the speech gate hears
    no one), textures and blank frames never reach the image models (the face policy
    finds no face): the metrics say so for every probe, and score none of them."""
    m = json.loads((stage / "anomaly_metrics.json").read_text())
    for kind in ("white_noise", "pink_noise", "room_tone", "digital_silence"):
        assert m["rejected_probes"][kind] == {"rejected": 8,
                                              "reason": "no speech (the speech gate)"}
        assert m["auroc"][kind] is None
    for kind in ("texture", "blank"):
        assert m["rejected_probes"][kind]["rejected"] == 8
        assert "no face" in m["rejected_probes"][kind]["reason"]
        assert m["faces_found"][kind] == 0 and m["auroc"][kind] is None


# ----------------------------------------------------------------- bad input
def _run(capsys, paired, embedded, tmp_path, **over) -> str:
    args = {"train_h5": paired["train"], "test_h5": paired["test"],
            "embedder": embedded["embedder"], "save_dir": tmp_path / "out", **over}
    argv = [x for k, v in args.items() for x in (f"--{k}", str(v))]
    assert train_anomaly.main([*argv, "--n_estimators", "5", "--n_probes", "2"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and not (tmp_path / "out").exists()
    line = [x for x in err.splitlines() if x.startswith("train_anomaly.py: error:")]
    assert len(line) == 1
    return line[0]


def test_wrong_embedder_id_is_refused(capsys, paired, embedded, tmp_path):
    other = shutil.copy(paired["test"], tmp_path / "test.h5")
    with h5py.File(other, "r+") as f:
        f.attrs["embedder_id"] = "0123456789abcdef"
    msg = _run(capsys, paired, embedded, tmp_path, test_h5=other)
    assert "0123456789abcdef" in msg and "--embedder" in msg


def test_missing_empty_and_foreign_files_are_refused(capsys, paired, embedded, tmp_path):
    assert "does not exist" in _run(capsys, paired, embedded, tmp_path,
                                    train_h5=tmp_path / "none.h5")
    assert "does not exist" in _run(capsys, paired, embedded, tmp_path,
                                    embedder=tmp_path / "none.pt")
    assert "not a readable HDF5" in _run(capsys, paired, embedded, tmp_path,
                                         test_h5=embedded["embedder"])
    empty = shutil.copy(paired["test"], tmp_path / "empty.h5")
    with h5py.File(empty, "r+") as f:
        for name in ("image_embeddings", "audio_embeddings", "labels", "image_paths",
                     "audio_paths"):
            shape, dtype = f[name].shape, f[name].dtype
            del f[name]
            f.create_dataset(name, shape=(0, *shape[1:]), dtype=dtype)
    assert "holds no pairs" in _run(capsys, paired, embedded, tmp_path, test_h5=empty)
    assert "contamination" in _run(capsys, paired, embedded, tmp_path, contamination=0.7)


def test_writes_are_atomic(tmp_path):
    def fail(f):
        f.write(b"half")
        raise KeyboardInterrupt

    (tmp_path / "a.json").write_text("{}")
    with pytest.raises(KeyboardInterrupt):
        anomaly.write_atomic(tmp_path / "a.json", fail)
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    assert (tmp_path / "a.json").read_text() == "{}"
