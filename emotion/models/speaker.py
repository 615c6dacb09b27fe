"""Who is speaking: the project's port of Light-ASD (active speaker detection).

Liao et al., "A Light Weight Model for Active Speaker Detection", CVPR 2023; MIT
licence, weights shipped in ``emotion/models/assets/light_asd`` (its README names
the source). The network reads a face track's grey 112 x 112 lip-area crops at 25
frames a second and the sound's 13 MFCCs at 100 a second
(:mod:`emotion.media.speaker_inputs` prepares both) and gives, per video frame, the
logit that this face is the one speaking; above 0 means speaking.

The modules are named as in the authors' code (``model.visualEncoder``, ``lossAV``
...), so their state dict loads as it is, with no name rewritten.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from emotion.core.errors import ArtifactError, MediaError
from emotion.core.paths import file_sha256

ASSETS = Path(__file__).resolve().parent / "assets" / "light_asd"
# name -> (file, sha256). "ava": trained on AVA-ActiveSpeaker (mAP 94.1 %);
# "talkset": the same fine-tuned on TalkSet (the authors' choice for other video).
WEIGHTS = {
    "ava": ("pretrain_AVA_CVPR.model",
            "d44bc3ea7baa8e0946fa3921311714a630ed8b90a1928fab0dbe30d918909317"),
    "talkset": ("finetuning_TalkSet.model",
                "efc375833887eefa9d209dc92810e18519b04c3c73ea35a549f2a7f40b7d94d5"),
}
FACE_SIZE = 112
N_MFCC = 13
MFCC_PER_FRAME = 4            # 100 MFCC frames a second, 25 video frames a second
# The network's own input scaling (the authors' grey mean and std over AVA faces).
GREY_MEAN, GREY_STD = 0.4161, 0.1688
BN_EPS = 0.001
BF16_MAX_DIFF = 0.1           # logits: bf16 is used only where it agrees with fp32 this well

log = logging.getLogger(__name__)
VISUAL_CHUNK = 1              # faces through the visual encoder at once (see ASDNet.visual)


def _bn(dim: int, channels: int) -> nn.Module:
    return (nn.BatchNorm3d if dim == 3 else nn.BatchNorm2d)(channels, eps=BN_EPS)


class VisualBlock(nn.Module):
    """Two branches, (1,k,k) spatial then (k,1,1) temporal convolutions for k = 3 and 5,
    added, then a 1x1x1 convolution; every convolution is followed by BN and ReLU."""

    def __init__(self, c_in: int, c_out: int, *, down: bool = False):
        super().__init__()
        stride = (1, 2, 2) if down else (1, 1, 1)
        for k in (3, 5):
            p = k // 2
            setattr(self, f"s_{k}", nn.Conv3d(c_in, c_out, (1, k, k), stride=stride,
                                              padding=(0, p, p), bias=False))
            setattr(self, f"bn_s_{k}", _bn(3, c_out))
            setattr(self, f"t_{k}", nn.Conv3d(c_out, c_out, (k, 1, 1), padding=(p, 0, 0),
                                              bias=False))
            setattr(self, f"bn_t_{k}", _bn(3, c_out))
        self.last = nn.Conv3d(c_out, c_out, 1, bias=False)
        self.bn_last = _bn(3, c_out)
        self.relu = nn.ReLU()

    def _branch(self, x: torch.Tensor, k: int) -> torch.Tensor:
        x = self.relu(getattr(self, f"bn_s_{k}")(getattr(self, f"s_{k}")(x)))
        return self.relu(getattr(self, f"bn_t_{k}")(_over_time(getattr(self, f"t_{k}"), x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._branch(x, 3) + self._branch(x, 5)
        return self.relu(self.bn_last(_over_time(self.last, x)))


def _over_time(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """A (k, 1, 1) Conv3d run as a Conv2d over (time, pixels): the same sums, about
    twice as fast on the CPU (measured: bench/bench_speaker.py), weights unchanged."""
    b, _, t, h, w = x.shape
    y = F.conv2d(x.reshape(b, -1, t, h * w), conv.weight[..., 0],
                 padding=(conv.padding[0], 0))
    return y.reshape(b, -1, t, h, w)


class AudioBlock(nn.Module):
    """The 2-D twin of :class:`VisualBlock` over (MFCC coefficient, time): (k,1) kernels
    over the coefficients (``m_k``), then (1,k) over time (``t_k``)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        for k in (3, 5):
            p = k // 2
            setattr(self, f"m_{k}", nn.Conv2d(c_in, c_out, (k, 1), padding=(p, 0), bias=False))
            setattr(self, f"bn_m_{k}", _bn(2, c_out))
            setattr(self, f"t_{k}", nn.Conv2d(c_out, c_out, (1, k), padding=(0, p), bias=False))
            setattr(self, f"bn_t_{k}", _bn(2, c_out))
        self.last = nn.Conv2d(c_out, c_out, 1, bias=False)
        self.bn_last = _bn(2, c_out)
        self.relu = nn.ReLU()

    def _branch(self, x: torch.Tensor, k: int) -> torch.Tensor:
        x = self.relu(getattr(self, f"bn_m_{k}")(getattr(self, f"m_{k}")(x)))
        return self.relu(getattr(self, f"bn_t_{k}")(getattr(self, f"t_{k}")(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._branch(x, 3) + self._branch(x, 5)
        return self.relu(self.bn_last(self.last(x)))


class VisualEncoder(nn.Module):
    """(B, 1, T, 112, 112) scaled grey faces -> (B, T, 128)."""

    def __init__(self):
        super().__init__()
        self.block1 = VisualBlock(1, 32, down=True)
        self.pool1 = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.block2 = VisualBlock(32, 64)
        self.pool2 = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.block3 = VisualBlock(64, 128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.pool2(self.block2(self.pool1(self.block1(x)))))
        return x.amax(dim=(3, 4)).transpose(1, 2)       # the maximum over space, per frame


class AudioEncoder(nn.Module):
    """(B, 1, 13, 4T) MFCCs -> (B, T, 128): two pools halve time twice."""

    def __init__(self):
        super().__init__()
        self.block1 = AudioBlock(1, 32)
        self.pool1 = nn.MaxPool2d((1, 3), stride=(1, 2), padding=(0, 1))
        self.block2 = AudioBlock(32, 64)
        self.pool2 = nn.MaxPool2d((1, 3), stride=(1, 2), padding=(0, 1))
        self.block3 = AudioBlock(64, 128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.pool2(self.block2(self.pool1(self.block1(x)))))
        return x.mean(dim=2).transpose(1, 2)            # the mean over the coefficients


class BGRU(nn.Module):
    """A forward GRU, then a second one run backwards in time, each followed by GELU."""

    def __init__(self, channels: int = 128):
        super().__init__()
        self.gru_forward = nn.GRU(channels, channels, batch_first=True)
        self.gru_backward = nn.GRU(channels, channels, batch_first=True)
        self.gelu = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.gelu(self.gru_forward(x)[0])
        x = self.gru_backward(x.flip(1))[0].flip(1)
        return self.gelu(x)


class ASDNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.visualEncoder = VisualEncoder()
        self.audioEncoder = AudioEncoder()
        self.GRU = BGRU(128)

    def visual(self, faces: torch.Tensor) -> torch.Tensor:
        """(B, T, 112, 112) grey values 0..255 -> (B, T, 128)."""
        x = (faces.float().unsqueeze(1) / 255 - GREY_MEAN) / GREY_STD
        # One face at a time: the first block's maps of 75 frames already take 30 MB, and
        # on the CPU a batch of 4 faces ran about 1.6 x slower than 4 faces in turn
        # (bench/bench_speaker.py); the results are the same. Channels last (the
        # weights too: channels_last below): under bf16 the encoder runs about 1.5 x
        # faster (oneDNN's blocked kernels), fp32 as fast as before.
        return torch.cat([self.visualEncoder(
            x[i:i + VISUAL_CHUNK].contiguous(memory_format=torch.channels_last_3d))
            for i in range(0, len(x), VISUAL_CHUNK)])

    def audio(self, mfcc: torch.Tensor) -> torch.Tensor:
        """(B, 4T, 13) -> (B, T, 128)."""
        return self.audioEncoder(mfcc.unsqueeze(1).transpose(2, 3))


class Head(nn.Module):
    """128 -> 2 per frame; output 1 is the logit of "speaking"."""

    def __init__(self):
        super().__init__()
        self.FC = nn.Linear(128, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.FC(x)[..., 1]


class LightASD(nn.Module):
    """The whole network, named as the authors' state dict names it."""

    def __init__(self):
        super().__init__()
        self.model = ASDNet()
        self.lossAV = Head()      # the audio-visual head
        self.lossV = Head()       # the visual-only head

    def forward(self, faces: torch.Tensor, mfcc: torch.Tensor) -> torch.Tensor:
        """(B, T, 112, 112) faces and (B or 1, 4T, 13) MFCCs -> (B, T) logits."""
        v = self.model.visual(faces)
        a = self.model.audio(mfcc)
        return self.lossAV(self.model.GRU(v + a))

    def visual_only(self, faces: torch.Tensor) -> torch.Tensor:
        return self.lossV(self.model.visual(faces))




def weights_file(weights: str = "ava", path: str | Path | None = None) -> Path:
    """The weight file for `weights` (the shipped one, or `path`), checked against its
    pinned sha256."""
    if weights not in WEIGHTS:
        raise ArtifactError(f"active-speaker weights {weights!r}: choose one of "
                            f"{', '.join(WEIGHTS)}")
    name, sha = WEIGHTS[weights]
    path = Path(path) if path is not None else ASSETS / name
    fix = (f"copy Light-ASD's {name} (sha256 {sha}) there, or reinstall the package, "
           f"which ships it in {ASSETS}")
    if not path.is_file():
        raise ArtifactError(f"{path}: no such file; {fix}")
    got = file_sha256(path)
    if got != sha:
        raise ArtifactError(f"{path} is not Light-ASD's {name} (sha256 {got}, expected "
                            f"{sha}); {fix}")
    return path


def _frames(faces: np.ndarray) -> np.ndarray:
    faces = np.asarray(faces)
    if faces.ndim not in (3, 4) or faces.shape[-2:] != (FACE_SIZE, FACE_SIZE):
        raise MediaError(f"faces must be (T, {FACE_SIZE}, {FACE_SIZE}) or (B, T, {FACE_SIZE}, "
                         f"{FACE_SIZE}) grey crops, got shape {faces.shape}")
    if faces.dtype != np.uint8:
        raise MediaError(f"faces must be uint8 grey values, got {faces.dtype}")
    if faces.size == 0:
        raise MediaError(f"no face frames (shape {faces.shape})")
    return faces


def common_length(n_frames: int, n_mfcc: int) -> int:
    """Video frames scored for `n_frames` faces and `n_mfcc` MFCC frames: as the authors'
    inference does, the MFCCs are cut to a multiple of 4 and both to the shorter."""
    return min(n_frames, n_mfcc // MFCC_PER_FRAME)


class ActiveSpeakerModel:
    """Light-ASD in eval mode on the CPU; numpy in, per-frame logits out.

    `precision` "fp32" (the parity tests' path), or "auto": bf16 autocast where the
    CPU has it (half the time, measured) and a probe's logits agree with fp32's
    within BF16_MAX_DIFF, else fp32; `precision` then says which it is."""

    def __init__(self, net: LightASD, weights: str, path: Path, precision: str = "fp32"):
        if precision not in ("fp32", "auto"):
            raise ArtifactError(f"Light-ASD precision {precision!r}: choose fp32 or auto")
        self.net = net.eval()
        for m in net.model.visualEncoder.modules():        # see ASDNet.visual
            if isinstance(m, nn.Conv3d):
                m.to(memory_format=torch.channels_last_3d)
        self.weights = weights
        self.path = path
        self.precision = precision

    @classmethod
    def load(cls, path: str | Path | None = None, weights: str = "ava",
             precision: str = "fp32") -> ActiveSpeakerModel:
        """The shipped `weights` ("ava" or "talkset"), or the same file at `path`."""
        path = weights_file(weights, path)
        net = LightASD()
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        except (RuntimeError, OSError, ValueError) as e:      # unreadable or mismatched
            raise ArtifactError(f"{path}: cannot load Light-ASD weights ({e})") from e
        model = cls(net, weights, path, precision)
        if precision == "auto":
            model._choose_precision()
        return model

    @torch.inference_mode()
    def _choose_precision(self) -> None:
        """"auto" becomes bf16 where the CPU has it and a seeded probe's logits agree with
        fp32's within BF16_MAX_DIFF, else fp32: decided once, at load, so that every
        analysis of a process scores alike."""
        from emotion.models.image_backbone import cpu_supports_bf16

        self.precision = "fp32"
        if not cpu_supports_bf16():
            return
        rng = np.random.default_rng(0)
        v = torch.from_numpy(rng.integers(0, 256, (1, 20, FACE_SIZE, FACE_SIZE), np.uint8))
        a = torch.from_numpy((rng.standard_normal((1, 80, N_MFCC)) * 10).astype(np.float32))
        exact = self.net(v, a)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = self.net(v, a).float()
        diff = float((fast - exact).abs().max())
        self.precision = "bf16" if diff <= BF16_MAX_DIFF else "fp32"
        log.info("Light-ASD bf16 vs fp32: largest logit difference %.4f -> %s", diff,
                 self.precision)

    def _forward(self, v: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            return self.net(v, a).float()

    @torch.inference_mode()
    def score(self, faces: np.ndarray, mfcc: np.ndarray) -> np.ndarray:
        """Audio-visual "speaking" logits per video frame.

        `faces`: (T, 112, 112) uint8 grey crops of one face track, or (B, T, 112, 112)
        for B faces of the same stretch (one forward pass). `mfcc`: (4T, 13) float MFCCs
        of that stretch's sound, shared by every face, or (B, 4T, 13), one per face.
        Returns (T',) or (B, T') float32, T' = :func:`common_length` (the last video
        frame is dropped when the MFCCs fall short of 4 per frame)."""
        faces = _frames(faces)
        mfcc = np.asarray(mfcc, dtype=np.float32)
        if mfcc.ndim not in (2, 3) or mfcc.shape[-1] != N_MFCC:
            raise MediaError(f"mfcc must be (4T, {N_MFCC}) or (B, 4T, {N_MFCC}), "
                             f"got shape {mfcc.shape}")
        single = faces.ndim == 3
        if mfcc.ndim == 3 and (single or mfcc.shape[0] != faces.shape[0]):
            raise MediaError(f"{mfcc.shape[0]} MFCC sequences for "
                             f"{1 if single else faces.shape[0]} face tracks")
        n = common_length(faces.shape[-3], mfcc.shape[-2])
        if n == 0:
            raise MediaError(f"{mfcc.shape[-2]} MFCC frames: at least {MFCC_PER_FRAME} "
                             "are needed for one video frame")
        v = torch.from_numpy(np.ascontiguousarray(faces[..., :n, :, :]))
        a = torch.from_numpy(np.ascontiguousarray(mfcc[..., :n * MFCC_PER_FRAME, :]))
        out = self._forward(v[None] if single else v, a if a.ndim == 3 else a[None])
        return out[0].numpy() if single else out.numpy()

    @torch.inference_mode()
    def visual_only(self, faces: np.ndarray) -> np.ndarray:
        """The visual-only head's logits, (T,) or (B, T), for faces whose sound is not
        theirs to judge (the authors' ``lossV``)."""
        faces = _frames(faces)
        single = faces.ndim == 3
        v = torch.from_numpy(np.ascontiguousarray(faces))
        out = self.net.visual_only(v[None] if single else v)
        return out[0].numpy() if single else out.numpy()
