"""Shared fixtures: a small generated data set and the stage outputs made from it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import schemathesis
import soundfile as sf

from emotion.stages.sample_data import make_sample_set, make_video, speech_like

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors: more threads only add overhead, and oversubscribe a busy machine.
    A module asks for it with pytestmark = pytest.mark.usefixtures("one_torch_thread")."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def _until(condition, seconds: float = 30.0, what: str = "condition") -> None:
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, f"{what} not reached in {seconds:g} s"
        time.sleep(0.01)


@pytest.fixture
def until():
    """until(condition, seconds, what): poll; the bound only guards against a hang."""
    return _until


@pytest.fixture(scope="session")
def sample_set(tmp_path_factory) -> tuple[Path, Path]:
    """(audio_dir, images_dir): 6 speakers x 6 emotions x 2 clips; 6/3/3 faces per class."""
    root = tmp_path_factory.mktemp("sample")
    return make_sample_set(root, n_speakers=6, clips_per_emotion=2,
                           images_per_class={"train": 6, "val": 3, "test": 3},
                           image_size=64, extra_class_images=2, seed=7)


@pytest.fixture(scope="session")
def preprocessed(sample_set, tmp_path_factory) -> tuple[Path, Path]:
    """(preprocessed_images.h5, preprocessed_audio.h5) made by the two stage scripts."""
    from emotion.stages import preprocess_audio as preprocessing_audio
    from emotion.stages import preprocess_images

    audio_dir, images_dir = sample_set
    out = tmp_path_factory.mktemp("prep")
    img_h5, aud_h5 = out / "preprocessed_images.h5", out / "preprocessed_audio.h5"
    assert preprocess_images.main(["--src", str(images_dir), "--out", str(img_h5),
                                   "--size", "64", "--workers", "1"]) == 0
    assert preprocessing_audio.main(["--audio_dir", str(audio_dir), "--out_h5", str(aud_h5),
                                     "--workers", "1"]) == 0
    return img_h5, aud_h5


@pytest.fixture(scope="session")
def embedded(preprocessed, tmp_path_factory) -> dict[str, Path]:
    """extract_embeddings.py on the preprocessed sample: embeddings files and embedder.pt."""
    from emotion.stages import extract as extract_embeddings

    img_h5, aud_h5 = preprocessed
    out = tmp_path_factory.mktemp("emb")
    paths = {"images": out / "embeddings_images.h5", "audio": out / "embeddings_audio.h5",
             "embedder": out / "embedder.pt"}
    assert extract_embeddings.main([
        "--image_h5", str(img_h5), "--audio_h5", str(aud_h5),
        "--out_image_h5", str(paths["images"]), "--out_audio_h5", str(paths["audio"]),
        "--embedder_out", str(paths["embedder"]), "--image_weights", "none",
        "--device", "cpu", "--folds", "2"]) == 0
    return paths


@pytest.fixture(scope="session")
def paired(embedded, tmp_path_factory) -> dict[str, Path]:
    """make_paired_h5_filtered.py on the embeddings: {split: paired file}."""
    from emotion.stages import pair as make_paired_h5_filtered

    prefix = tmp_path_factory.mktemp("paired") / "saved_paired"
    assert make_paired_h5_filtered.main([
        "--image_h5", str(embedded["images"]), "--audio_h5", str(embedded["audio"]),
        "--out_prefix", str(prefix), "--seed", "0"]) == 0
    return {s: Path(f"{prefix}_{s}_paired_embeddings.h5") for s in ("train", "val", "test")}


@pytest.fixture(scope="session")
def trained(paired, tmp_path_factory) -> Path:
    """train_multimodal.py on the pairs: the path of multimodal_best.pth."""
    from emotion.stages import train_fusion as train_multimodal

    save = tmp_path_factory.mktemp("models")
    assert train_multimodal.main([
        "--train_h5", str(paired["train"]), "--val_h5", str(paired["val"]),
        "--test_h5", str(paired["test"]), "--epochs", "40", "--batch_size", "16",
        "--lr", "0.003", "--save_dir", str(save), "--device", "cpu"]) == 0
    return save / "multimodal_best.pth"


@pytest.fixture(scope="session")
def artifacts(embedded, paired, trained, tmp_path_factory) -> dict[str, str]:
    """train_anomaly.py on the pairs: the three paths predict.py and the service load."""
    from emotion.stages import train_anomaly

    out = tmp_path_factory.mktemp("anomaly")
    assert train_anomaly.main(["--train_h5", str(paired["train"]),
                               "--test_h5", str(paired["test"]), "--save_dir", str(out),
                               "--embedder", str(embedded["embedder"]), "--n_estimators", "50",
                               "--n_probes", "4"]) == 0
    return {"embedder": str(embedded["embedder"]), "multimodal": str(trained),
            "isolation": str(out / "isolation_forest.joblib")}


# ----------------------------------------------------------------- the service's tests
@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    """Uploads for the service tests: clips, videos and a text file named .mp4."""
    d = tmp_path_factory.mktemp("upload_media")
    rng = np.random.default_rng(11)
    sf.write(d / "speech.wav", speech_like("happy", duration=5.0, rng=rng), 16_000)
    sf.write(d / "long.wav", speech_like("sad", duration=8.0, rng=rng), 16_000)
    sf.write(d / "silent.wav", np.zeros(16_000 * 2, np.float32), 16_000)
    make_video(d / "talk.mp4", [("happy", 4.0)], seed=1)
    make_video(d / "mute.mp4", [("happy", 3.0)], audio=False, seed=2)
    make_video(d / "blank.mp4", [(None, 3.0)], seed=3)
    (d / "notes.mp4").write_text("minutes of the meeting, not a video\n" * 20)
    return {p.stem: p for p in d.iterdir()}


@pytest.fixture(scope="module")
def api_schema():
    """The service's OpenAPI document, to validate answers against."""
    from emotion.serve.app import OPENAPI

    return schemathesis.openapi.from_dict(json.loads(OPENAPI.read_text()))
