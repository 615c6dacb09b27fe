"""The fusion classifier over image (512-d) and audio (128-d) embeddings.

Image MLP 512->256 and audio MLP 128->256, concatenated, a linear layer to the
six emotions. A missing modality (an audio upload, a window with no face, a
silent window) is a zero mask on its branch; training drops each modality at
random (modality dropout) so that either branch alone gives sensible output.

Checkpoints are plain data (load with ``torch.load(weights_only=True)``): the
config, label names, state dict, the input normalisation fitted on train, the
embedder id the inputs came from, metrics and versions.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from emotion.core.atomic import load_plain, save_atomic
from emotion.core.h5io import library_versions
from emotion.core.labels import EMOTIONS, check_label_names

log = logging.getLogger(__name__)

FORMAT = "emotion-multimodal"
FORMAT_VERSION = 2
# Modality conditions, as masks (image present, audio present).
CONDITIONS = {"both": (1.0, 1.0), "image_only": (1.0, 0.0), "audio_only": (0.0, 1.0)}


@dataclass(frozen=True)
class FusionConfig:
    image_dim: int = 512
    audio_dim: int = 128
    # The audio embedding's leading dimensions the model reads: the voice branch's six
    # logits. Its other dimensions (principal components, for the anomaly detector) let
    # the model learn which training voices were which rather than what they express:
    # with them it overfitted the training speakers (README, "The voice branch").
    audio_inputs: int = 6
    hidden: int = 256
    n_classes: int = len(EMOTIONS)
    dropout: float = 0.3


class FusionModel(nn.Module):
    def __init__(self, config: FusionConfig = FusionConfig()):
        super().__init__()
        self.config = config
        c = config
        self.image_mlp = nn.Sequential(nn.Linear(c.image_dim, c.hidden), nn.ReLU(),
                                       nn.Dropout(c.dropout))
        self.audio_mlp = nn.Sequential(nn.Linear(c.audio_inputs, c.hidden), nn.ReLU(),
                                       nn.Dropout(c.dropout))
        self.classifier = nn.Linear(2 * c.hidden, c.n_classes)
        # Input normalisation fitted on the train split; stored in the checkpoint
        # under "normalisation", not in the state dict.
        for name, dim in (("image", c.image_dim), ("audio", c.audio_inputs)):
            self.register_buffer(f"{name}_mean", torch.zeros(dim), persistent=False)
            self.register_buffer(f"{name}_std", torch.ones(dim), persistent=False)

    def forward(self, image: torch.Tensor, audio: torch.Tensor,
                image_mask: torch.Tensor | None = None,
                audio_mask: torch.Tensor | None = None) -> torch.Tensor:
        hi = self.image_mlp((image - self.image_mean) / self.image_std)
        audio = audio[:, :self.config.audio_inputs]
        ha = self.audio_mlp((audio - self.audio_mean) / self.audio_std)
        if image_mask is not None:
            hi = hi * image_mask[:, None]
        if audio_mask is not None:
            ha = ha * audio_mask[:, None]
        return self.classifier(torch.cat([hi, ha], dim=1))

    def set_normalisation(self, image: np.ndarray, audio: np.ndarray) -> None:
        for name, x in (("image", image), ("audio", audio[:, :self.config.audio_inputs])):
            t = torch.as_tensor(x, dtype=torch.float32)
            getattr(self, f"{name}_mean").copy_(t.mean(dim=0))
            getattr(self, f"{name}_std").copy_(t.std(dim=0).clamp_min(1e-6))

    def normalisation(self) -> dict[str, torch.Tensor]:
        return {k: getattr(self, k).detach().cpu().clone()
                for k in ("image_mean", "image_std", "audio_mean", "audio_std")}


@torch.inference_mode()
def predict_proba(model: FusionModel, image: np.ndarray | None, audio: np.ndarray | None,
                  *, image_mask: np.ndarray | None = None, audio_mask: np.ndarray | None = None,
                  batch_size: int = 4096) -> np.ndarray:
    """Class probabilities (N, 6). A modality given as None, or masked 0, is absent."""
    c = model.config
    n = len(image) if image is not None else len(audio)
    if image is None:
        image, image_mask = np.zeros((n, c.image_dim), np.float32), np.zeros(n, np.float32)
    if audio is None:
        audio, audio_mask = np.zeros((n, c.audio_dim), np.float32), np.zeros(n, np.float32)
    im = np.ones(n, np.float32) if image_mask is None else np.asarray(image_mask, np.float32)
    am = np.ones(n, np.float32) if audio_mask is None else np.asarray(audio_mask, np.float32)
    model.eval()
    out = []
    for i in range(0, n, batch_size):
        sl = slice(i, i + batch_size)
        logits = model(torch.as_tensor(image[sl], dtype=torch.float32),
                       torch.as_tensor(audio[sl], dtype=torch.float32),
                       torch.as_tensor(im[sl]), torch.as_tensor(am[sl]))
        out.append(torch.softmax(logits, dim=1).numpy())
    return np.concatenate(out) if out else np.zeros((0, c.n_classes), np.float32)


def predict_condition(model: FusionModel, image: np.ndarray, audio: np.ndarray,
                      condition: str) -> np.ndarray:
    im, am = CONDITIONS[condition]
    n = len(image)
    return predict_proba(model, image, audio, image_mask=np.full(n, im, np.float32),
                         audio_mask=np.full(n, am, np.float32))


# ------------------------------------------------------------------ checkpoints

def to_checkpoint(model: FusionModel, *, embedder_id: str, embedder_settings: dict,
                  metrics: dict, epoch: int, train_args: dict) -> dict:
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "config": asdict(model.config), "label_names": list(EMOTIONS),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "normalisation": model.normalisation(), "embedder_id": embedder_id,
        "embedder_settings": embedder_settings,
        "metrics": metrics, "epoch": epoch, "train_args": train_args,
        "versions": library_versions(),
    }


def save_checkpoint(ckpt: dict, path: str | Path) -> Path:
    return save_atomic(ckpt, path)


def load_checkpoint(path: str | Path) -> tuple[FusionModel, dict]:
    """The model (eval mode) and the checkpoint's plain data."""
    ckpt = load_plain(path, fmt=FORMAT, version=FORMAT_VERSION, what="multimodal model",
                      made_by="train_multimodal.py")
    check_label_names(ckpt["label_names"], EMOTIONS, what=str(path))
    model = FusionModel(FusionConfig(**ckpt["config"]))
    model.load_state_dict(ckpt["state_dict"])
    for k, v in ckpt["normalisation"].items():
        getattr(model, k).copy_(v)
    return model.eval(), ckpt
