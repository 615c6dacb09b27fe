"""train_eval_plot.py and emotion.stages.evaluate: metrics, plots, predictions, bad inputs."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest

from emotion.core import h5io
from emotion.core.h5io import load_paired
from emotion.core.labels import EMOTIONS
from emotion.models.fusion import CONDITIONS, load_checkpoint
from emotion.stages import evaluate as train_eval_plot
from emotion.stages.evaluate import (
    classification_metrics,
    confusion_counts,
    normalise_rows,
    report_text,
)
from emotion.stages.train_fusion import score_conditions

PNGS = ("confusion_val_raw.png", "confusion_val_normalized.png", "confusion_test_raw.png",
        "confusion_test_normalized.png", "accuracy_by_condition.png", "per_class_f1.png")


def _args(trained, paired, save_dir, **over) -> list[str]:
    a = {"model_path": trained, "val_h5": paired["val"], "test_h5": paired["test"],
         "save_dir": save_dir, **over}
    return [x for k, v in a.items() for x in (f"--{k}", str(v))]


@pytest.fixture(scope="module")
def evaluated(trained, paired, tmp_path_factory):
    out = tmp_path_factory.mktemp("plots")
    assert train_eval_plot.main(_args(trained, paired, out)) == 0
    return out


# ------------------------------------------------------------------ unit

def test_confusion_counts_known_answer_with_absent_classes():
    labels = np.array([0, 0, 1, 2, 2, 2, 5])
    pred = np.array([0, 1, 1, 2, 2, 0, 3])  # 3 predicted but never true; 4 neither
    cm = confusion_counts(labels, pred)
    expected = np.zeros((6, 6), int)
    expected[0, 0], expected[0, 1], expected[1, 1] = 1, 1, 1
    expected[2, 2], expected[2, 0], expected[5, 3] = 2, 1, 1
    np.testing.assert_array_equal(cm, expected)
    norm = normalise_rows(cm)
    np.testing.assert_allclose(norm[2], [1 / 3, 0, 2 / 3, 0, 0, 0])
    np.testing.assert_allclose(norm.sum(1), [1, 1, 1, 0, 0, 1])  # absent rows stay 0


def test_metrics_and_report_list_all_six_classes_when_one_is_absent():
    labels = np.array([0, 0, 1, 1, 2, 3, 4])  # no "sad"
    m = classification_metrics(labels, labels.copy())
    assert list(m["per_class_f1"]) == list(EMOTIONS)
    assert m["accuracy"] == 1.0 and m["per_class_f1"]["sad"] == 0.0
    assert m["macro_f1"] == pytest.approx(5 / 6)  # the definition every stage shares
    text = report_text(labels, {"both": np.eye(6)[labels]}, split="val")
    assert all(name in text for name in EMOTIONS)


# ------------------------------------------------------------------ the stage

def test_main_writes_metrics_plots_and_predictions(evaluated, trained, paired, capsys):
    metrics = json.loads((evaluated / "metrics.json").read_text())
    assert set(metrics) == {"test", "val"}
    for split, m in metrics.items():
        assert {"accuracy", "macro_f1", "per_class_f1", "by_condition"} <= set(m)
        assert set(m["by_condition"]) == set(CONDITIONS)
        for c in (m, *m["by_condition"].values()):
            assert list(c["per_class_f1"]) == list(EMOTIONS)
            values = [c["accuracy"], c["macro_f1"], *c["per_class_f1"].values()]
            assert all(0.0 <= v <= 1.0 for v in values)
        assert m["accuracy"] == m["by_condition"]["both"]["accuracy"]
        assert (evaluated / f"classification_report_{split}.txt").stat().st_size > 0
    for name in PNGS:
        assert (evaluated / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert not list(evaluated.glob("*.partial"))

    # The metrics agree with the saved predictions, and with the training loop's scores.
    model, _ = load_checkpoint(trained)
    with np.load(evaluated / "predictions.npz") as npz:
        assert list(npz["label_names"]) == list(EMOTIONS)
        for split in ("val", "test"):
            labels = npz[f"{split}_labels"]
            data = load_paired(paired[split])
            np.testing.assert_array_equal(labels, data.labels)
            assert list(npz[f"{split}_image_paths"]) == data.image_paths
            assert list(npz[f"{split}_audio_paths"]) == data.audio_paths
            ref = score_conditions(model, data)
            for cond in CONDITIONS:
                proba = npz[f"{split}_{cond}_proba"]
                assert proba.shape == (len(labels), 6)
                np.testing.assert_allclose(proba.sum(1), 1, atol=1e-5)
                got = metrics[split]["by_condition"][cond]
                acc = float((proba.argmax(1) == labels).mean())
                assert got["accuracy"] == pytest.approx(acc)
                assert got["accuracy"] == pytest.approx(ref[cond]["accuracy"])
                assert got["macro_f1"] == pytest.approx(ref[cond]["macro_f1"])
                assert np.sum(got["confusion_matrix"]) == len(labels)
            # audio only, each clip once: pairs repeat clips, a clip's verdict is its own
            clips = metrics[split]["audio_only_per_clip"]
            paths = np.array(data.audio_paths)
            assert clips["n"] == len(set(data.audio_paths)) < len(labels)
            proba = npz[f"{split}_audio_only_proba"]
            correct = {p: bool(ok) for p, ok in zip(paths, proba.argmax(1) == labels,
                                                      strict=True)}
            assert clips["accuracy"] == pytest.approx(np.mean(list(correct.values())))


def _copy_paired(src, dst, *, embedder_id=None, empty=False, schema=None):
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        if embedder_id is not None:
            f.attrs["embedder_id"] = embedder_id
        if schema is not None:
            f.attrs["schema"] = schema
        if empty:
            for name in ("image_embeddings", "audio_embeddings", "labels"):
                ds = f[name]
                shape, dtype = ds.shape, ds.dtype
                del f[name]
                f.create_dataset(name, shape=(0, *shape[1:]), dtype=dtype)
            for name in ("image_paths", "audio_paths"):
                del f[name]
                h5io.write_strings(f, name, [])
    return dst


@pytest.mark.parametrize("case, needle", [
    ("embedder", "trained on embedder"),
    ("empty", "holds no pairs"),
    ("schema", "not paired_embeddings"),
    ("no_model", "does not exist"),
    ("no_file", "does not exist"),
])
def test_bad_inputs_exit_2_with_one_clear_line(case, needle, trained, paired, tmp_path,
                                               capsys):
    bad = tmp_path / "bad_val.h5"
    over = {"val_h5": bad}
    if case == "embedder":
        _copy_paired(paired["val"], bad, embedder_id="some-other-embedder")
    elif case == "empty":
        _copy_paired(paired["val"], bad, empty=True)
    elif case == "schema":
        _copy_paired(paired["val"], bad, schema="embeddings_audio")
    elif case == "no_model":
        over = {"model_path": tmp_path / "missing.pth"}
    save = tmp_path / "plots"
    assert train_eval_plot.main(_args(trained, paired, save, **over)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("train_eval_plot.py: error:"), err
    assert needle in err[0]
    assert not save.exists()  # nothing written before every input checked out
