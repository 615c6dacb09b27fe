"""train_face_backbone.py: reading, augmentation, training, the saved file, and its use
by extract_embeddings.py; bad inputs and bad weights files are refused in one line."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
import torch
import torchvision

from emotion.core import h5io
from emotion.core.errors import EmotionError
from emotion.core.labels import ALL_LABELS, EMOTIONS
from emotion.models import image_backbone as ib
from emotion.models.embedder import Embedder
from emotion.models.image_backbone import (
    ImageEmbedder,
    load_state,
    make_backbone,
    resize_batch,
    state_sha256,
)
from emotion.stages import extract as extract_embeddings
from emotion.stages import face_batches as batches
from emotion.stages import train_backbone as fb
from emotion.stages import train_backbone as train_face_backbone

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def weights(preprocessed, tmp_path_factory):
    """A short run of the stage at 32 px on the 64 px sample, from scratch (no ImageNet here)."""
    out = tmp_path_factory.mktemp("face") / "face_resnet18.pt"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.hub, "get_dir", lambda: str(out.parent / "empty_hub"))
        assert train_face_backbone.main([
            "--images_h5", str(preprocessed[0]), "--out", str(out), "--epochs", "2",
            "--arch", "resnet18", "--batch_size", "16", "--lr", "0.002", "--net_size", "32",
            "--device", "cpu", "--precision", "fp32", "--seed", "0"]) == 0
    return out


@pytest.fixture(scope="module")
def extracted(weights, preprocessed, tmp_path_factory) -> dict:
    """extract_embeddings.py with --image_weights the trained file."""
    img_h5, aud_h5 = preprocessed
    out = tmp_path_factory.mktemp("face_emb")
    paths = {"images": out / "ei.h5", "audio": out / "ea.h5", "embedder": out / "embedder.pt"}
    assert extract_embeddings.main([
        "--image_weights", str(weights), "--image_h5", str(img_h5), "--audio_h5", str(aud_h5),
        "--out_image_h5", str(paths["images"]), "--out_audio_h5", str(paths["audio"]),
        "--embedder_out", str(paths["embedder"]), "--folds", "1",
        "--device", "cpu", "--precision", "fp32"]) == 0
    return paths


def _images(h5, split="val", n=8) -> np.ndarray:
    with h5io.open_checked(h5, h5io.PREPROCESSED_IMAGES) as f:
        return h5io.read_images(f[f"{split}/images"], slice(0, n))


# ---------------------------------------------------------------- reading


def test_reader_drops_other_classes_and_reads_each_row_once_in_bounded_blocks(
        preprocessed, monkeypatch):
    largest = []
    real = h5io.read_images

    def spy(ds, index):
        out = real(ds, index)
        largest.append(len(out))
        return out

    monkeypatch.setattr(h5io, "read_images", spy)
    with h5io.open_checked(preprocessed[0], h5io.PREPROCESSED_IMAGES) as f:
        reader = batches.SplitReader(f["train"], block=4, buffer_blocks=2)
        assert reader.dropped == {"surprise": 2} and len(reader) == 36
        assert reader.counts() == dict.fromkeys(EMOTIONS, 6)
        plain = list(reader.batches(5))
        shuffled = list(reader.batches(5, generator=torch.Generator().manual_seed(0),
                                       min_batch=2))
        again = list(reader.batches(5, generator=torch.Generator().manual_seed(0),
                                    min_batch=2))
    assert max(largest) <= 8  # a block, or a slice spanning at most twice its rows
    assert [len(y) for _, y in shuffled] == [5] * 7  # 36 = 7 x 5 + 1: a batch of 1 is left
    assert len(shuffled) == batches.n_batches(36, 5, min_batch=2) and len(plain) == 8
    key = [(int(y), float(x.sum())) for xs, ys in plain for x, y in zip(xs, ys, strict=True)]
    got = [(int(y), float(x.sum())) for xs, ys in shuffled for x, y in zip(xs, ys, strict=True)]
    assert len(set(got)) == len(got) and set(got) < set(key)  # no row twice, one left out
    assert got != key[:35]
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(shuffled, again, strict=True))


def test_reader_mixes_the_emotions_of_a_file_sorted_by_class(tmp_path):
    # preprocess_images.py writes a split class by class: a batch must still mix them
    # about as independent draws would, or training swings with each batch's mix.
    per_class, size = 512, 128
    labels = np.repeat(np.arange(len(EMOTIONS)), per_class)
    with h5py.File(tmp_path / "sorted.h5", "w") as f:
        g = f.create_group("train")
        g["images"] = np.zeros((len(labels), 2, 2, 3), np.uint8)
        g["labels"] = labels
        reader = batches.SplitReader(g)
        shares = np.array([np.bincount(y, minlength=len(EMOTIONS)) / len(y)
                           for _, y in reader.batches(size,
                                                      generator=torch.Generator().manual_seed(0))])
    independent = np.sqrt((1 / 6) * (5 / 6) / size)  # 0.033
    assert len(shares) == len(labels) // size
    assert shares.std(0).max() < 1.5 * independent  # blocks of 32 in buffers of 16: 0.09


def test_reader_reads_rows_far_apart_by_index(preprocessed, tmp_path):
    sparse = tmp_path / "sparse.h5"
    shutil.copy(preprocessed[0], sparse)
    with h5py.File(sparse, "a") as f:
        labels = f["train/labels"][()]
        six = np.flatnonzero(labels < len(EMOTIONS))
        kept = [int(six[0]), int(six[-1])]
        f["train/labels"][...] = np.where(np.isin(np.arange(len(labels)), kept), labels,
                                          ALL_LABELS.index("contempt"))
    with h5io.open_checked(sparse, h5io.PREPROCESSED_IMAGES) as f:
        reader = batches.SplitReader(f["train"])
        assert reader.dropped == {"contempt": len(labels) - 2} and kept[1] - kept[0] > 30
        (x, y), = reader.batches(8)
        np.testing.assert_array_equal(x, h5io.read_images(f["train/images"], kept))
    assert y.tolist() == labels[kept].tolist()


def test_augmentation_is_seeded_and_stays_in_range(preprocessed):
    x = ib.to_network_size(_images(preprocessed[0]), 32)
    a = batches.augment(x.clone(), torch.Generator().manual_seed(1))
    b = batches.augment(x.clone(), torch.Generator().manual_seed(1))
    c = batches.augment(x.clone(), torch.Generator().manual_seed(2))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0 and not torch.allclose(a, x)


def test_training_prepares_images_as_the_embedder_does(preprocessed):
    """At the crops' own size, training's input is the embedder's, bit for bit."""
    x = _images(preprocessed[0])
    embedder = ImageEmbedder(make_backbone(load_state("none")[0]))
    assert torch.equal(ib.normalise(ib.to_network_size(x, x.shape[1])), embedder._prepare(x))
    t = torch.rand(2, 3, 64, 64)
    assert resize_batch(t, 64) is t and resize_batch(t, 32).shape == (2, 3, 32, 32)


# ---------------------------------------------------------------- training


def test_a_short_run_lowers_the_training_loss(preprocessed):
    with h5io.open_checked(preprocessed[0], h5io.PREPROCESSED_IMAGES) as f:
        state, init = ib.initial_state("scratch", seed=0)
        cfg = fb.FaceTrainConfig(epochs=3, batch_size=36, lr=1e-3, size=32, augment=False,
                                 label_smoothing=0.0)
        best, history = fb.fit(batches.SplitReader(f["train"]), batches.SplitReader(f["val"]),
                               state, cfg, progress=False)
    assert init == "scratch"
    losses = [h["loss"] for h in history]
    assert losses[-1] < 0.5 * losses[0], losses
    assert best["epoch"] in (1, 2, 3) and set(best["head"]) == {"weight", "bias"}


def test_saved_file_is_plain_data_with_its_fields(weights, preprocessed):
    d = torch.load(weights, weights_only=True)
    assert d["format"] == ib.FACE_FORMAT and d["format_version"] == ib.FACE_FORMAT_VERSION
    assert d["arch"] == "resnet18" and d["init"] == "scratch"  # no ImageNet in the cache
    assert d["input_size"] == 32 and d["source_size"] == 64
    assert d["label_names"] == list(EMOTIONS) and len(d["mean"]) == len(d["std"]) == 3
    assert not any(k.startswith("fc.") for k in d["state_dict"])
    assert d["head"]["weight"].shape == (6, 512)
    assert d["dropped"]["train"] == {"surprise": 2} and d["counts"]["val"]["sad"] == 3
    assert {"val", "test", "selection"} <= set(d["metrics"]) and len(d["history"]) == 2
    assert d["config"]["size"] == 32 and d["config"]["precision"] == "fp32"
    assert "torch" in d["versions"]
    assert ib.read_weights(weights)["sha256"] == d["sha256"]
    # the recorded val metrics are those of the saved weights
    model = ib.FaceNet(d["state_dict"]).to(memory_format=torch.channels_last)
    model.head.load_state_dict(d["head"])
    with h5io.open_checked(preprocessed[0], h5io.PREPROCESSED_IMAGES) as f:
        val = fb.evaluate_backbone(model, batches.SplitReader(f["val"]), size=32, device="cpu",
                                   bf16=False, batch_size=7)
    assert val == d["metrics"]["val"]


def test_load_state_accepts_the_file_with_a_stable_hash(weights):
    a, desc = load_state(str(weights))
    b, _ = load_state(str(weights))
    assert desc == "file:face_resnet18.pt"
    assert state_sha256(a) == state_sha256(b) == torch.load(weights, weights_only=True)["sha256"]
    make_backbone(a)
    assert ib.weights_input_size(str(weights)) == 32
    assert ib.weights_input_size("imagenet") is None and ib.weights_input_size("none") is None


def test_weights_round_trip_through_extract_embeddings(weights, extracted, preprocessed):
    emb = Embedder.load(extracted["embedder"])  # as the stage ran
    assert emb.image.sha256 == torch.load(weights, weights_only=True)["sha256"]
    assert emb.image.weights == "file:face_resnet18.pt"
    with h5io.open_checked(preprocessed[0], h5io.PREPROCESSED_IMAGES) as src, \
            h5io.open_checked(extracted["images"], h5io.EMBEDDINGS_IMAGES) as f:
        assert f.attrs["image_weights"] == "file:face_resnet18.pt"
        for split in ("train", "val"):
            x = h5io.read_images(src[f"{split}/images"], slice(0, 10))
            np.testing.assert_allclose(emb.embed_images(x), f[f"{split}/embeddings"][:10],
                                       rtol=1e-5, atol=1e-5)


def test_the_embedder_resizes_to_the_trained_input_size(weights, extracted, preprocessed):
    emb = Embedder.load(extracted["embedder"])
    x = _images(preprocessed[0])
    model = make_backbone(ib.read_weights(weights)["state_dict"])
    with torch.inference_mode():
        trained_view = model(ib.normalise(ib.to_network_size(x, 32))).numpy()
    np.testing.assert_allclose(emb.embed_images(x), trained_view, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- bad inputs


def _without_val(f: h5py.File) -> None:
    del f["val"]


def _only_happy_in_train(f: h5py.File) -> None:
    f["train/labels"][...] = EMOTIONS.index("happy")


@pytest.mark.parametrize("case, argv, edit, expected", [
    ("size", ["--net_size", "16"], None, "--net_size 16: at least 32"),
    ("schema", [], "audio", "holds preprocessed_audio, not preprocessed_images"),
    ("no_val", [], _without_val, "has no val images of the six emotions"),
    ("one_class", [], _only_happy_in_train, "holds 1 of the six emotions (happy)"),
    ("init", ["--init", "imagenet_typo"], None, "choose auto, imagenet, scratch"),
    ("weights", ["--class_weight_power", "-1"], None, "--class_weight_power must be in [0, 2]"),
])
def test_stage_refuses_bad_inputs_in_one_line(case, argv, edit, expected, preprocessed,
                                              tmp_path, capsys):
    img_h5, aud_h5 = preprocessed
    src = aud_h5 if edit == "audio" else img_h5
    if callable(edit):
        src = tmp_path / f"{case}.h5"
        shutil.copy(img_h5, src)
        with h5py.File(src, "a") as f:
            edit(f)
    out = tmp_path / "w.pt"
    rc = train_face_backbone.main(["--images_h5", str(src), "--out", str(out), "--device",
                                   "cpu", "--init", "scratch", "--epochs", "1", "--batch_size",
                                   "16", "--net_size", "32", *argv])
    err = capsys.readouterr().err
    assert rc == 2 and expected in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_init_imagenet_without_the_cache(preprocessed, tmp_path, monkeypatch, caplog, capsys):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    rc = train_face_backbone.main(["--images_h5", str(preprocessed[0]), "--init", "imagenet",
                                   "--arch", "resnet18", "--out", str(tmp_path / "w.pt"),
                                   "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "resnet18-f37072fd.pth" in err and "--init scratch" in err
    with caplog.at_level("WARNING"):
        _, init = ib.initial_state("auto")
    assert init == "scratch" and "training from SCRATCH" in caplog.text


@pytest.fixture(scope="module")
def bad_files(weights, tmp_path_factory) -> dict:
    """Weights files that must be refused: not torch, truncated, other architectures."""
    tmp_path = tmp_path_factory.mktemp("bad_weights")
    good = torch.load(weights, weights_only=True)
    (tmp_path / "text.pt").write_text("these are not weights\n")
    raw = weights.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(raw[: len(raw) // 2])
    r34 = {k: v for k, v in torchvision.models.resnet34().state_dict().items()
           if not k.startswith("fc.")}
    wide = dict(good["state_dict"], **{"conv1.weight": torch.zeros(32, 3, 7, 7)})
    short = {k: v for k, v in good["state_dict"].items() if not k.startswith("layer4.")}
    for name, state in (("resnet34", r34), ("shape", wide), ("missing", short)):
        torch.save(dict(good, state_dict=state, sha256=state_sha256(state)),
                   tmp_path / f"{name}.pt")
    torch.save(dict(good, mean=[0.5, 0.5, 0.5]), tmp_path / "mean.pt")
    torch.save({"state_dict": good["state_dict"]}, tmp_path / "plain.pt")
    torch.save(short, tmp_path / "plain_missing.pt")
    return {p.stem: p for p in tmp_path.glob("*.pt")}


@pytest.mark.parametrize("name, expected", [
    ("text", "not a readable face backbone"), ("truncated", "not a readable face backbone"),
    ("resnet34", "do not fit ResNet18: 96 unexpected (layer1.2.conv1.weight"),
    ("shape", "1 of the wrong shape (conv1.weight (32, 3, 7, 7) instead of (64, 3, 7, 7))"),
    ("missing", "do not fit ResNet18: 30 missing (layer4.0.conv1.weight"),
    ("mean", "trained with mean [0.5, 0.5, 0.5]"), ("plain", "not a face backbone file"),
])
def test_bad_weights_files_are_refused_in_one_line(bad_files, name, expected):
    with pytest.raises(EmotionError) as e:
        ib.read_weights(bad_files[name])
    assert expected in str(e.value) and "\n" not in str(e.value), str(e.value)


@pytest.mark.parametrize("name", ["text", "truncated", "resnet34", "plain_missing"])
def test_extract_embeddings_refuses_bad_weights_files(bad_files, name, preprocessed, tmp_path,
                                                      capsys):
    img_h5, aud_h5 = preprocessed
    rc = extract_embeddings.main([
        "--image_weights", str(bad_files[name]), "--image_h5", str(img_h5),
        "--audio_h5", str(aud_h5), "--out_image_h5", str(tmp_path / "i.h5"),
        "--out_audio_h5", str(tmp_path / "a.h5"), "--embedder_out", str(tmp_path / "e.pt"),
        "--folds", "1", "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "e.pt").exists() and not (tmp_path / "i.h5").exists()


def test_extract_embeddings_refuses_weights_of_the_wrong_shape(bad_files, preprocessed,
                                                               tmp_path, capsys):
    img_h5, aud_h5 = preprocessed
    rc = extract_embeddings.main([
        "--image_weights", str(bad_files["shape"]), "--image_h5", str(img_h5),
        "--audio_h5", str(aud_h5), "--out_image_h5", str(tmp_path / "i.h5"),
        "--out_audio_h5", str(tmp_path / "a.h5"), "--embedder_out", str(tmp_path / "e.pt"),
        "--folds", "1", "--device", "cpu"])
    assert rc == 2 and "conv1.weight" in capsys.readouterr().err
