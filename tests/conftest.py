"""Shared fixtures: a small generated data set and the stage outputs made from it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
sys.path.insert(0, str(ROOT))  # the stage scripts live at the repository root

from emotion.synth import make_sample_set  # noqa: E402


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


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
    import preprocess_images
    import preprocessing_audio

    audio_dir, images_dir = sample_set
    out = tmp_path_factory.mktemp("prep")
    img_h5, aud_h5 = out / "preprocessed_images.h5", out / "preprocessed_audio.h5"
    assert preprocess_images.main(["--src", str(images_dir), "--out", str(img_h5),
                                   "--size", "64", "--workers", "1"]) == 0
    assert preprocessing_audio.main(["--audio_dir", str(audio_dir), "--out_h5", str(aud_h5),
                                     "--workers", "1"]) == 0
    return img_h5, aud_h5
