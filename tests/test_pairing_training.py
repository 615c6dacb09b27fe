"""make_paired_h5_filtered.py and train_multimodal.py on the generated sample."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import h5py
import numpy as np
import pytest
import torch

from emotion.core import h5io
from emotion.core.fitting import class_weights
from emotion.core.h5io import load_paired
from emotion.core.labels import ALL_LABELS, EMOTIONS
from emotion.models.fusion import CONDITIONS, load_checkpoint, predict_proba
from emotion.stages import pair as make_paired_h5_filtered
from emotion.stages import train_fusion as train_multimodal
from emotion.stages.pair import cycle_draw, pair_split
from emotion.stages.train_fusion import score_conditions


def _audio_split_of(embedded) -> dict[str, str]:
    with h5py.File(embedded["audio"]) as f:
        return dict(zip(h5io.read_strings(f["all/paths"]), h5io.read_strings(f["all/splits"]),
                        strict=True))


def test_pairs_take_audio_of_the_same_emotion_and_split(paired, embedded):
    split_of = _audio_split_of(embedded)
    with h5py.File(embedded["audio"]) as f:
        label_of = dict(zip(h5io.read_strings(f["all/paths"]), f["all/labels"][()],
                            strict=True))
    for split, path in paired.items():
        d = load_paired(path)
        assert d.image.shape == (len(d.labels), 512) and d.audio.shape == (len(d.labels), 128)
        assert {split_of[p] for p in d.audio_paths} == {split}
        assert all(ALL_LABELS[label_of[p]] == EMOTIONS[y]
                   for p, y in zip(d.audio_paths, d.labels, strict=True))


def test_classes_outside_the_six_are_dropped_and_counted(paired):
    with h5py.File(paired["train"]) as f:
        dropped = json.loads(f.attrs["dropped"])
        assert json.loads(f.attrs["label_names"]) == list(EMOTIONS)
    assert dropped == {"image class surprise (not one of the six)": 2}


def test_pairing_is_reproducible_under_a_seed(embedded, paired, tmp_path):
    def run(seed, name):
        prefix = tmp_path / name
        assert make_paired_h5_filtered.main(["--image_h5", str(embedded["images"]),
                                             "--audio_h5", str(embedded["audio"]),
                                             "--out_prefix", str(prefix),
                                             "--seed", str(seed)]) == 0
        return load_paired(f"{prefix}_train_paired_embeddings.h5")

    a, b, c = run(0, "a"), run(0, "b"), run(1, "c")
    assert a.audio_paths == b.audio_paths and np.array_equal(a.audio, b.audio)
    assert a.audio_paths == load_paired(paired["train"]).audio_paths
    # another seed draws other clips for the same faces (repeated where clips outnumber them)
    assert a.audio_paths != c.audio_paths and set(a.image_paths) == set(c.image_paths)


def test_cycle_draw_uses_every_clip_evenly():
    rng = np.random.default_rng(0)
    drawn = cycle_draw(np.arange(4), 10, rng)
    counts = Counter(drawn.tolist())
    assert set(counts) == {0, 1, 2, 3} and max(counts.values()) - min(counts.values()) <= 1


def test_pair_split_drops_classes_without_clips():
    img = np.array([0, 0, 3, 6])      # angry, angry, happy, calm
    aud = np.array([0, 1, 1])         # angry, disgust, disgust
    ii, jj, dropped = pair_split(img, aud, np.random.default_rng(0))
    assert sorted(ii.tolist()) == [0, 1] and set(jj.tolist()) == {0}
    assert dropped["image class happy (no clip of it in this split)"] == 1
    assert dropped["image class calm (not one of the six)"] == 1


def test_an_empty_split_is_a_clear_error(paired, tmp_path, capsys):
    empty = tmp_path / "empty.h5"
    shutil.copy(paired["val"], empty)
    with h5py.File(empty, "a") as f:
        for name in ("image_embeddings", "audio_embeddings", "labels", "image_paths",
                     "audio_paths"):
            data = f[name][:0]
            del f[name]
            f.create_dataset(name, data=data, dtype=h5io.STR if data.dtype == object else None)
    rc = train_multimodal.main(["--train_h5", str(paired["train"]), "--val_h5", str(empty),
                                "--test_h5", str(paired["test"]), "--epochs", "1",
                                "--save_dir", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert rc == 2 and "holds no pairs" in err and "--val_h5" in err
    assert not (tmp_path / "m" / "multimodal_best.pth").exists()


def test_wrong_schema_for_training_is_a_clear_error(paired, embedded, tmp_path, capsys):
    rc = train_multimodal.main(["--train_h5", str(embedded["audio"]),
                                "--val_h5", str(paired["val"]), "--test_h5", str(paired["test"]),
                                "--save_dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "not paired_embeddings" in err and "make_paired_h5_filtered" in err


def test_checkpoint_is_plain_data_and_round_trips(trained, paired):
    raw = torch.load(trained, weights_only=True)
    assert raw["label_names"] == list(EMOTIONS)
    assert set(raw["normalisation"]) == {"image_mean", "image_std", "audio_mean", "audio_std"}
    assert set(raw["metrics"]) >= {"val", "test"}
    model, ckpt = load_checkpoint(trained)
    test = load_paired(paired["test"])
    assert ckpt["embedder_id"] == test.embedder_id
    # the metrics stored at training time are what the loaded model gives now
    again = score_conditions(model, test)
    for cond in CONDITIONS:
        assert again[cond]["accuracy"] == pytest.approx(ckpt["metrics"]["test"][cond]["accuracy"])


def test_the_model_learns_and_serves_one_modality(trained, paired):
    """On the generated set, prosody and drawn expressions are learnable: each
    condition beats chance (1/6) on unseen speakers, and a missing modality
    gives a proper distribution."""
    model, ckpt = load_checkpoint(trained)
    val = ckpt["metrics"]["val"]
    assert val["both"]["accuracy"] > 0.4
    assert val["audio_only"]["accuracy"] > 0.4
    test = load_paired(paired["test"])
    p_audio = predict_proba(model, None, test.audio)
    p_image = predict_proba(model, test.image, None)
    for p in (p_audio, p_image):
        assert p.shape == (len(test.labels), 6) and np.allclose(p.sum(1), 1, atol=1e-5)
    # None and a zero mask are the same thing
    masked = predict_proba(model, test.image, test.audio,
                           image_mask=np.zeros(len(test.labels)))
    np.testing.assert_allclose(masked, p_audio, atol=1e-6)


def test_training_is_seeded(paired, tmp_path):
    outs = []
    for name in ("a", "b"):
        assert train_multimodal.main([
            "--train_h5", str(paired["train"]), "--val_h5", str(paired["val"]),
            "--test_h5", str(paired["test"]), "--epochs", "2", "--batch_size", "32",
            "--save_dir", str(tmp_path / name), "--device", "cpu"]) == 0
        outs.append(torch.load(tmp_path / name / "multimodal_best.pth", weights_only=True))
    a, b = (o["state_dict"] for o in outs)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_class_weights_balance_the_classes():
    w = class_weights(np.array([0, 0, 0, 1, 2, 2]), 6)
    assert w[0] * 3 == pytest.approx(w[1] * 1) == pytest.approx(w[2] * 2)
    assert w[3:].sum() == 0


def test_class_weights_power_softens_or_drops_the_balance():
    labels = np.array([0, 0, 0, 0, 1, 2, 2])
    half, none = class_weights(labels, 4, power=0.5), class_weights(labels, 4, power=0)
    assert half[0] * 2 == pytest.approx(half[1])          # sqrt of the 4:1 count ratio
    assert half[1] / half[0] < class_weights(labels, 4)[1] / class_weights(labels, 4)[0]
    assert none[:3] == pytest.approx([1.0, 1.0, 1.0]) and none[3] == 0
    assert half[:3].mean() == pytest.approx(1.0)
