"""Training the fusion classifier on paired embeddings."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score
from torch.nn import functional as F
from tqdm import tqdm

from .fusion import CONDITIONS, FusionConfig, FusionModel, predict_condition, to_checkpoint
from .labels import EMOTIONS
from .pairing import Paired

log = logging.getLogger(__name__)

PCT_START = 0.3  # share of the one-cycle schedule spent raising the learning rate


@dataclass(frozen=True)
class FitConfig:
    epochs: int = 50
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 10           # epochs without a better validation score
    drop_image: float = 0.25     # modality dropout: chance a sample loses its image
    drop_audio: float = 0.25     # and, separately, its audio (never both)
    seed: int = 0


def class_weights(labels: np.ndarray, n: int = len(EMOTIONS)) -> torch.Tensor:
    """Inverse frequency, mean 1 over the classes present; absent classes weigh 0."""
    counts = np.bincount(labels, minlength=n).astype(np.float64)
    present = counts > 0
    w = np.zeros(n)
    w[present] = counts[present].sum() / (present.sum() * counts[present])
    return torch.as_tensor(w, dtype=torch.float32)


def evaluate(model: FusionModel, data: Paired) -> dict:
    """Accuracy and macro-F1 per modality condition."""
    out = {}
    for cond in CONDITIONS:
        pred = predict_condition(model, data.image, data.audio, cond).argmax(1)
        out[cond] = {"accuracy": float(accuracy_score(data.labels, pred)),
                     "macro_f1": float(f1_score(data.labels, pred, average="macro",
                                                labels=range(len(EMOTIONS)), zero_division=0))}
    return out


def selection_score(metrics: dict) -> float:
    """Validation macro-F1, averaged over the three modality conditions.

    The model serves all three (video with a face and a voice, audio uploads,
    windows without a face), so the checkpoint kept is the best over all three.
    """
    return float(np.mean([metrics[c]["macro_f1"] for c in CONDITIONS]))


def fit(train: Paired, val: Paired, cfg: FitConfig = FitConfig(), *,
        device: str = "cpu", train_args: dict | None = None, progress: bool = True
        ) -> tuple[dict, list[dict]]:
    """Train; returns the best checkpoint (plain data) and the per-epoch history."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = FusionModel(FusionConfig(image_dim=train.image.shape[1],
                                     audio_dim=train.audio.shape[1]))
    model.set_normalisation(train.image, train.audio)
    model.to(device)
    xi = torch.as_tensor(train.image, dtype=torch.float32)
    xa = torch.as_tensor(train.audio, dtype=torch.float32)
    y = torch.as_tensor(train.labels)
    weights = class_weights(train.labels).to(device)
    steps = max(1, -(-len(y) // cfg.batch_size))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, epochs=cfg.epochs,
                                                steps_per_epoch=steps, pct_start=PCT_START)
    warmup = int(np.ceil(PCT_START * cfg.epochs))
    best, best_score, since, history = None, -1.0, 0, []
    bar = tqdm(range(cfg.epochs), desc="train", unit="epoch", disable=not progress)
    for epoch in bar:
        model.train()
        order = torch.randperm(len(y), generator=gen)
        total = 0.0
        for s in range(steps):
            idx = order[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            r = torch.rand(len(idx), generator=gen)
            im = (r >= cfg.drop_image).float()                         # drop the image
            am = ((r < cfg.drop_image) | (r >= cfg.drop_image + cfg.drop_audio)).float()
            logits = model(xi[idx].to(device), xa[idx].to(device), im.to(device),
                           am.to(device))
            loss = F.cross_entropy(logits, y[idx].to(device), weight=weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        model.cpu()
        val_metrics = evaluate(model, val)
        model.to(device)
        score = selection_score(val_metrics)
        history.append({"epoch": epoch + 1, "loss": total / len(y), "val": val_metrics,
                        "score": score})
        bar.set_postfix(loss=f"{total / len(y):.3f}", val=f"{score:.3f}",
                        best=f"{max(score, best_score):.3f}")
        if score > best_score:
            best_score, since = score, 0
            model.cpu()
            best = to_checkpoint(model, embedder_id=train.embedder_id,
                                 metrics={"val": val_metrics, "selection_score": score,
                                          "selection": "mean val macro-F1 over conditions"},
                                 epoch=epoch + 1, train_args=train_args or {})
            model.to(device)
        else:
            since += 1
            # no early stop while the one-cycle learning rate still rises (noisy scores)
            if since >= cfg.patience and epoch + 1 > warmup:
                log.info("early stop after epoch %d: no better validation score in %d epochs",
                         epoch + 1, cfg.patience)
                break
    bar.close()
    return best, history
