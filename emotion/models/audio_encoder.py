"""The learned audio encoder: log-mel (n_mels, frames) -> 128-d embedding.

An untrained projection of the mel carries little emotion (docs/design.md), so the
encoder is a small CNN trained to classify emotion on the train split only;
its penultimate layer is the embedding.

Embeddings of the clips an encoder was trained on look cleaner than a new
speaker's will. :func:`out_of_fold_embeddings` therefore embeds every train clip
with an encoder that did not see that clip's speaker (speaker-grouped folds),
and maps each fold encoder's space onto the final encoder's space with a
least-squares linear map fitted on clips both encoders were trained on, so that
every stored embedding lives in the space of the encoder saved for inference.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from emotion.core.errors import EmotionError
from emotion.core.fitting import class_weights
from emotion.core.splits import speaker_folds

log = logging.getLogger(__name__)

EMBED_DIM = 128


@dataclass(frozen=True)
class EncoderConfig:
    n_mels: int = 64
    channels: tuple[int, ...] = (16, 32, 64, 128)
    embed_dim: int = EMBED_DIM
    dropout: float = 0.3


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 40
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-3
    freq_mask: int = 8       # SpecAugment: up to this many mel bands masked
    time_mask: int = 40      # and up to this many frames
    seed: int = 0


class AudioEncoder(nn.Module):
    """Conv blocks over (mel, time), mean over mel, mean+std over time, linear to 128."""

    def __init__(self, config: EncoderConfig, n_classes: int):
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        c_in = 1
        for c in config.channels:
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c_in = c
        self.conv = nn.Sequential(*layers)
        self.proj = nn.Linear(2 * c_in, config.embed_dim)
        self.head = nn.Sequential(nn.ReLU(), nn.Dropout(config.dropout),
                                  nn.Linear(config.embed_dim, n_classes))
        # Per-band normalisation of the dB input, fitted on the train clips.
        self.register_buffer("mel_mean", torch.zeros(config.n_mels))
        self.register_buffer("mel_std", torch.ones(config.n_mels))

    def embed(self, mel: torch.Tensor) -> torch.Tensor:
        x = (mel - self.mel_mean[:, None]) / self.mel_std[:, None]
        h = self.conv(x[:, None]).mean(dim=2)                      # (B, C, T')
        stats = torch.cat([h.mean(dim=2), h.std(dim=2, unbiased=False)], dim=1)
        return self.proj(stats)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(mel))


def _spec_augment(x: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Mask one random band of mel bins and one of frames per clip, and shift in time."""
    b, m, t = x.shape
    x = x.clone()
    floor = x.amin(dim=(1, 2), keepdim=True)
    for i in range(b):
        f = int(torch.randint(0, cfg.freq_mask + 1, (1,), generator=gen))
        f0 = int(torch.randint(0, max(1, m - f), (1,), generator=gen))
        x[i, f0:f0 + f] = floor[i]
        w = int(torch.randint(0, cfg.time_mask + 1, (1,), generator=gen))
        t0 = int(torch.randint(0, max(1, t - w), (1,), generator=gen))
        x[i, :, t0:t0 + w] = floor[i]
        shift = int(torch.randint(-t // 10, t // 10 + 1, (1,), generator=gen))
        x[i] = torch.roll(x[i], shift, dims=1)
    return x


def train_encoder(features: np.ndarray, labels: np.ndarray, n_classes: int, *,
                  config: EncoderConfig = EncoderConfig(), train: TrainConfig = TrainConfig(),
                  device: str = "cpu", desc: str = "audio encoder") -> AudioEncoder:
    """Fit an encoder on (N, n_mels, frames) log-mels and integer labels."""
    if len(features) < 2:
        raise EmotionError(f"{desc}: {len(features)} training clip(s); the audio encoder "
                           "needs a train split with clips of at least two emotions")
    torch.manual_seed(train.seed)
    gen = torch.Generator().manual_seed(train.seed)
    model = AudioEncoder(config, n_classes).to(device)
    x = torch.as_tensor(features, dtype=torch.float32)
    y = torch.as_tensor(labels, dtype=torch.long)
    model.mel_mean.copy_(x.mean(dim=(0, 2)))
    model.mel_std.copy_(x.std(dim=(0, 2)).clamp_min(1e-3))
    weights = torch.as_tensor(class_weights(labels, n_classes))
    steps = max(1, (len(x) + train.batch_size - 1) // train.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=train.lr, epochs=train.epochs,
                                                steps_per_epoch=steps)
    model.train()
    for epoch in range(train.epochs):
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for s in range(steps):
            idx = order[s * train.batch_size:(s + 1) * train.batch_size]
            if len(idx) < 2:  # BatchNorm needs two
                continue
            xb = _spec_augment(x[idx], train, gen).to(device)
            loss = F.cross_entropy(model(xb), y[idx].to(device), weight=weights.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        log.debug("%s epoch %d loss %.4f", desc, epoch + 1, total / len(x))
    model.eval()
    return model


@torch.inference_mode()
def embed(model: AudioEncoder, features: np.ndarray, *, batch_size: int = 256,
          device: str = "cpu") -> np.ndarray:
    """(N, n_mels, frames) log-mels -> (N, 128) float32 embeddings."""
    model.eval()
    out = [model.embed(torch.as_tensor(features[i:i + batch_size], dtype=torch.float32)
                       .to(device)).float().cpu().numpy()
           for i in range(0, len(features), batch_size)]
    if not out:
        return np.zeros((0, model.config.embed_dim), np.float32)
    return np.concatenate(out).astype(np.float32, copy=False)


def out_of_fold_embeddings(features: np.ndarray, labels: np.ndarray, speakers: Sequence[str],
                           final: AudioEncoder, n_classes: int, *, folds: int = 5,
                           config: EncoderConfig = EncoderConfig(),
                           train: TrainConfig = TrainConfig(), device: str = "cpu"
                           ) -> np.ndarray:
    """Train-clip embeddings from encoders that never saw the clip's speaker.

    Each fold's encoder embeds its held-out speakers; a linear map (least
    squares, with bias) fitted on the fold's training clips, embedded by both the
    fold encoder and `final`, carries those embeddings into `final`'s space.
    """
    k = min(folds, len(set(speakers)))
    if k < 2:
        log.warning("one train speaker: out-of-fold embeddings impossible; using the "
                    "final encoder's (optimistic) embeddings for train")
        return embed(final, features, device=device)
    out = np.zeros((len(features), final.config.embed_dim), np.float32)
    for i, held in enumerate(speaker_folds(speakers, k, train.seed)):
        fit = ~held
        if len(set(labels[fit].tolist())) < 2:
            out[held] = embed(final, features[held], device=device)
            continue
        enc = train_encoder(features[fit], labels[fit], n_classes, config=config,
                            train=train, device=device, desc=f"audio encoder fold {i + 1}/{k}")
        src = embed(enc, features[fit], device=device)
        dst = embed(final, features[fit], device=device)
        a = np.hstack([src, np.ones((len(src), 1), np.float32)])
        w, *_ = np.linalg.lstsq(a, dst, rcond=None)
        held_src = embed(enc, features[held], device=device)
        out[held] = np.hstack([held_src, np.ones((len(held_src), 1), np.float32)]) @ w
        log.info("audio encoder fold %d/%d: %d held-out clips", i + 1, k, int(held.sum()))
    return out


def to_state(model: AudioEncoder, classes: Sequence[str]) -> dict:
    """Plain data for a checkpoint (loads with weights_only=True)."""
    cfg = asdict(model.config)
    cfg["channels"] = list(cfg["channels"])
    return {"config": cfg, "classes": list(classes),
            "state_dict": copy.deepcopy({k: v.cpu() for k, v in model.state_dict().items()})}


def from_state(state: dict) -> AudioEncoder:
    cfg = dict(state["config"])
    cfg["channels"] = tuple(cfg["channels"])
    model = AudioEncoder(EncoderConfig(**cfg), len(state["classes"]))
    model.load_state_dict(state["state_dict"])
    return model.eval()
