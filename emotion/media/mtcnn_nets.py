"""MTCNN's three networks in PyTorch, with the weights the ``mtcnn`` pip package ships.

The weights (``mtcnn/assets/weights/{pnet,rnet,onet}.lz4``, Keras-ordered float32
arrays, MIT licence) are read without importing the package, whose ``__init__``
imports TensorFlow. :mod:`emotion.media.mtcnn` runs the detection pipeline on them.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from torch import nn

from emotion.core.errors import EmotionError
from emotion.core.paths import installed_path


class MtcnnWeightsError(EmotionError, ImportError):
    """The ``mtcnn`` package (and so its weight files) is not installed."""


# --------------------------------------------------------------------------- networks

class _ConvStack(nn.Module):
    """Numbered conv + PReLU (+ pool) blocks, named as the weight layout expects:
    block i is ``conv{i}``, ``prelu{i}`` and, when given, ``pool{i}``."""

    def __init__(self, blocks: list[tuple[int, int, int, nn.Module | None]]):
        super().__init__()
        self.n_blocks = len(blocks)
        for i, (c_in, c_out, kernel, pool) in enumerate(blocks, 1):
            setattr(self, f"conv{i}", nn.Conv2d(c_in, c_out, kernel))
            setattr(self, f"prelu{i}", nn.PReLU(c_out))
            if pool is not None:
                setattr(self, f"pool{i}", pool)

    def _blocks(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, self.n_blocks + 1):
            x = getattr(self, f"prelu{i}")(getattr(self, f"conv{i}")(x))
            pool = getattr(self, f"pool{i}", None)
            x = pool(x) if pool is not None else x
        return x


# Keras "same" max-pooling pads at the end only, which ceil_mode reproduces; "valid" does not.
def _same_pool(kernel: int, stride: int) -> nn.Module:
    return nn.MaxPool2d(kernel, stride, ceil_mode=True)


class PNet(_ConvStack):
    """Proposal network: fully convolutional, any input of at least 12x12."""

    def __init__(self) -> None:
        super().__init__([(3, 10, 3, _same_pool(2, 2)), (10, 16, 3, None), (16, 32, 3, None)])
        self.conv4_1 = nn.Conv2d(32, 4, 1)
        self.conv4_2 = nn.Conv2d(32, 2, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (N, 3, H, W) -> box regression (N, 4, h, w), [no face, face] probs (N, 2, h, w)."""
        x = self._blocks(x)
        return self.conv4_1(x), torch.softmax(self.conv4_2(x), dim=1)


class RNet(_ConvStack):
    """Refinement network on 24x24 crops."""

    def __init__(self) -> None:
        super().__init__([(3, 28, 3, _same_pool(3, 2)), (28, 48, 3, nn.MaxPool2d(3, 2)),
                          (48, 64, 2, None)])
        self.fc4 = nn.Linear(64 * 3 * 3, 128)
        self.prelu4 = nn.PReLU(128)
        self.fc5_1 = nn.Linear(128, 4)
        self.fc5_2 = nn.Linear(128, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (N, 3, 24, 24) -> box regression (N, 4), [no face, face] probs (N, 2)."""
        # A plain NCHW flatten: load_state_dict reorders fc4's inputs from Keras's order.
        x = self.prelu4(self.fc4(self._blocks(x).flatten(1)))
        return self.fc5_1(x), torch.softmax(self.fc5_2(x), dim=1)


class ONet(_ConvStack):
    """Output network on 48x48 crops; also regresses the five landmarks."""

    def __init__(self) -> None:
        super().__init__([(3, 32, 3, _same_pool(3, 2)), (32, 64, 3, nn.MaxPool2d(3, 2)),
                          (64, 64, 3, _same_pool(2, 2)), (64, 128, 2, None)])
        self.fc5 = nn.Linear(128 * 3 * 3, 256)
        self.prelu5 = nn.PReLU(256)
        self.fc6_1 = nn.Linear(256, 4)
        self.fc6_2 = nn.Linear(256, 10)
        self.fc6_3 = nn.Linear(256, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: (N, 3, 48, 48) -> box regression (N, 4), landmarks (N, 10: 5 x then 5 y),
        [no face, face] probs (N, 2)."""
        x = self.prelu5(self.fc5(self._blocks(x).flatten(1)))
        return self.fc6_1(x), self.fc6_2(x), torch.softmax(self.fc6_3(x), dim=1)


# --------------------------------------------------------------------------- weights

# Parameter names in the order of the Keras weight lists (layer creation order; a conv or
# dense layer contributes kernel then bias, a PReLU its alpha).
_LAYOUT: dict[str, tuple[type[nn.Module], list[str]]] = {
    "pnet": (PNet, ["conv1", "prelu1", "conv2", "prelu2", "conv3", "prelu3",
                    "conv4_1", "conv4_2"]),
    "rnet": (RNet, ["conv1", "prelu1", "conv2", "prelu2", "conv3", "prelu3",
                    "fc4", "prelu4", "fc5_1", "fc5_2"]),
    "onet": (ONet, ["conv1", "prelu1", "conv2", "prelu2", "conv3", "prelu3",
                    "conv4", "prelu4", "fc5", "prelu5", "fc6_1", "fc6_2", "fc6_3"]),
}
# The dense layer right after Keras's Permute((2, 1, 3)) + Flatten, with the (C, H, W) shape
# it flattens: Keras feeds it features in (W, H, C) order, torch's flatten in (C, H, W) order.
_FLATTENED = {"rnet": ("fc4", (64, 3, 3)), "onet": ("fc5", (128, 3, 3))}


def weights_dir() -> Path:
    """The ``mtcnn`` package's weight folder, found without importing the package."""
    return installed_path("mtcnn", "assets/weights", error=MtcnnWeightsError,
                          needed_for="the MTCNN detector needs the weight files of the mtcnn "
                                     "package",
                          install="pip install mtcnn==1.0.0 (TensorFlow is not needed)")


def keras_weights(name: str) -> list[np.ndarray]:
    """The package's weight list for ``name`` ("pnet", "rnet", "onet"), in Keras layouts."""
    import joblib  # only needed here; keeps importing this module cheap

    path = weights_dir() / f"{name}.lz4"
    if not path.is_file():
        raise MtcnnWeightsError(f"missing {path}; reinstall with pip install mtcnn==1.0.0")
    try:
        return list(joblib.load(path))
    except ImportError as exc:  # joblib needs the lz4 package for .lz4 files
        raise MtcnnWeightsError(f"cannot read {path} ({exc}); pip install lz4") from exc


@functools.lru_cache(maxsize=8)
def load_state_dict(name: str) -> dict[str, torch.Tensor]:
    """The package's weights for ``name`` as a state dict of the torch module above.

    Cached: every detector instance copies from the same tensors (load_state_dict copies).
    """
    module_cls, layers = _LAYOUT[name]
    arrays = iter(keras_weights(name))
    state: dict[str, torch.Tensor] = {}
    for layer in layers:
        if layer.startswith("prelu"):
            # Keras keeps one alpha per channel as (1, 1, C) (shared over H, W) or (C,).
            state[f"{layer}.weight"] = torch.from_numpy(next(arrays).reshape(-1).copy())
            continue
        kernel, bias = next(arrays), next(arrays)
        if kernel.ndim == 4:  # conv: (kh, kw, in, out) -> (out, in, kh, kw)
            kernel = kernel.transpose(3, 2, 0, 1)
        else:                 # dense: (in, out) -> (out, in)
            kernel = kernel.T
            flat = _FLATTENED.get(name)
            if flat is not None and flat[0] == layer:
                c, h, w = flat[1]
                kernel = kernel.reshape(-1, w, h, c).transpose(0, 3, 2, 1).reshape(-1, c * h * w)
        state[f"{layer}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel, np.float32))
        state[f"{layer}.bias"] = torch.from_numpy(np.ascontiguousarray(bias, np.float32))
    if next(arrays, None) is not None:
        raise MtcnnWeightsError(f"{name}.lz4 holds more arrays than {name} has parameters")
    expected = module_cls().state_dict()
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise MtcnnWeightsError(f"{name}.{key}: weight shape {tuple(value.shape)}, "
                                    f"expected {tuple(expected[key].shape)}")
    return state


def build_network(name: str, device: str | torch.device = "cpu") -> nn.Module:
    """``PNet``, ``RNet`` or ``ONet`` with the package's weights, in eval mode on ``device``."""
    net = _LAYOUT[name][0]()
    net.load_state_dict(load_state_dict(name))
    return net.eval().requires_grad_(False).to(device)
