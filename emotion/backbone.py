"""The image backbone: torchvision ResNet18 without its classifier, 512-d.

Weights are named by a spec: ``imagenet`` (torchvision's weights API, read from
the torch hub cache; never downloaded silently on a machine without internet),
``none`` (random, seeded: carries almost no expression information, for tests
and offline runs), or a path to a state dict (such as the face backbone of
train_face_backbone.py).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn

from .errors import EmotionError

log = logging.getLogger(__name__)

IMAGE_DIM = 512
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BF16_MIN_COSINE = 0.99  # bf16 is used only where it agrees with fp32 this well


def build_resnet18() -> nn.Module:
    model = torchvision.models.resnet18(weights=None)
    model.fc = nn.Identity()
    return model


def state_sha256(state: dict[str, torch.Tensor]) -> str:
    """A hash of a state dict's names and values, independent of how it was saved."""
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _without_fc(state: dict) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


def imagenet_file() -> tuple[Path, str]:
    """Where torchvision caches ResNet18's ImageNet weights, and their URL."""
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    return Path(torch.hub.get_dir()) / "checkpoints" / weights.url.rsplit("/", 1)[-1], weights.url


def imagenet_state() -> dict[str, torch.Tensor]:
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    cached, _ = imagenet_file()
    name = cached.name
    if not cached.is_file():
        raise EmotionError(
            f"ImageNet weights for ResNet18 are not in the torch cache ({cached}) and this "
            f"machine cannot download them. Either copy {name} (from {weights.url}, on a "
            f"machine with internet) to {cached}, or pass --image_weights PATH to a ResNet18 "
            "state dict (e.g. saved_models/face_resnet18.pt), or --image_weights none for "
            "random weights (much weaker image embeddings).")
    return weights.get_state_dict(progress=False, check_hash=False)


def load_state(spec: str, seed: int = 0) -> tuple[dict[str, torch.Tensor], str]:
    """The backbone's state dict (no fc) for a weights spec, and a resolved description."""
    if spec == "imagenet":
        return _without_fc(imagenet_state()), "imagenet:IMAGENET1K_V1"
    if spec == "none":
        torch.manual_seed(seed)
        return _without_fc(build_resnet18().state_dict()), f"none:random(seed={seed})"
    path = Path(spec)
    if not path.is_file():
        raise EmotionError(f"--image_weights {spec!r}: not 'imagenet', 'none' or a file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same advice
        raise EmotionError(f"{path} is not a readable torch state dict ({e})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or "conv1.weight" not in obj:
        raise EmotionError(f"{path} holds no ResNet18 state dict (no conv1.weight)")
    return _without_fc(obj), f"file:{path.name}"


def make_backbone(state: dict[str, torch.Tensor], device: str = "cpu") -> nn.Module:
    model = build_resnet18()
    ref = model.state_dict()
    wrong = [k for k in ref if k in state and getattr(state[k], "shape", None) != ref[k].shape]
    if wrong:  # load_state_dict would raise torch's many-line RuntimeError
        k = wrong[0]
        raise EmotionError(f"weights do not fit ResNet18: {k} has shape "
                           f"{tuple(getattr(state[k], 'shape', ()))}, not {tuple(ref[k].shape)}"
                           f" ({len(wrong)} parameter(s) of the wrong shape)")
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise EmotionError(f"weights do not fit ResNet18: missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]}")
    return model.eval().to(device).to(memory_format=torch.channels_last)


def resize_batch(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, size, size): bilinear, antialiased; as is when already that size.

    The one resize between the stored crops and the network: train_face_backbone.py
    trains through it, and embedding a backbone trained at another size must call it too.
    """
    if tuple(x.shape[-2:]) == (size, size):
        return x
    return nn.functional.interpolate(x, size=(size, size), mode="bilinear",
                                     align_corners=False, antialias=True)


def cpu_supports_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise EmotionError("--device cuda: no CUDA device here; use --device cpu or auto")
    if device not in ("cpu", "cuda"):
        raise EmotionError(f"--device {device!r}: choose cpu, cuda or auto")
    return device


@dataclass
class ImageEmbedder:
    """Batches of [0,1] RGB images (N, H, W, 3) -> (N, 512) float32."""

    model: nn.Module
    device: str = "cpu"
    precision: str = "fp32"  # or "bf16": autocast, only after agreeing with fp32
    input_size: int | None = None  # side the network takes; None: the crops' own

    def _forward(self, x: torch.Tensor, bf16: bool) -> torch.Tensor:
        dev = "cuda" if self.device == "cuda" else "cpu"
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=bf16):
            return self.model(x).float()

    def _prepare(self, images: np.ndarray) -> torch.Tensor:
        x = torch.as_tensor(np.ascontiguousarray(images), dtype=torch.float32)
        x = x.permute(0, 3, 1, 2)
        if self.input_size:
            x = resize_batch(x, self.input_size)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        x = (x - mean) / std
        return x.to(self.device).contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        if len(images) == 0:
            return np.zeros((0, IMAGE_DIM), np.float32)
        x = self._prepare(images)
        return self._forward(x, self.precision == "bf16").cpu().numpy()

    @torch.inference_mode()
    def choose_precision(self, sample: np.ndarray, wanted: str = "auto") -> str:
        """Use bf16 when asked or 'auto' and the hardware has it, if it agrees with fp32.

        The check runs on real inputs (the first batch); the mean cosine must be
        at least BF16_MIN_COSINE, else fp32 is used and the reason logged.
        """
        if wanted == "fp32" or len(sample) == 0:
            self.precision = "fp32"
            return self.precision
        if self.device == "cpu" and not cpu_supports_bf16():
            self.precision = "fp32"
            return self.precision
        x = self._prepare(sample)
        a, b = self._forward(x, False), self._forward(x, True)
        cos = float(torch.nn.functional.cosine_similarity(a, b, dim=1).min())
        self.precision = "bf16" if cos >= BF16_MIN_COSINE else "fp32"
        log.info("bf16 vs fp32 embeddings: min cosine %.5f -> %s", cos, self.precision)
        return self.precision
