"""Training the fusion classifier on paired embeddings."""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from emotion.core import cli
from emotion.core.atomic import write_text_atomic
from emotion.core.errors import EmotionError
from emotion.core.fitting import PCT_START, EarlyStopping, Schedule, class_weights
from emotion.core.h5io import Paired, load_paired
from emotion.core.labels import EMOTIONS
from emotion.core.metrics import classification_metrics
from emotion.core.paths import DEFAULT, HISTORY_NAME, MULTIMODAL_NAME
from emotion.models import fusion
from emotion.models.fusion import FusionModel
from emotion.models.image_backbone import resolve_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitConfig(Schedule):
    """The fusion model's training: the schedule, early stopping, modality dropout."""

    patience: int = 10           # epochs without a better validation score
    drop_image: float = 0.25     # modality dropout: chance a sample loses its image
    drop_audio: float = 0.25     # and, separately, its audio (never both)


def score_conditions(model: FusionModel, data: Paired) -> dict:
    """Accuracy and macro-F1 (and per-class F1) of one split under each modality condition."""
    return {cond: classification_metrics(
        data.labels, fusion.predict_condition(model, data.image, data.audio, cond).argmax(1))
        for cond in fusion.CONDITIONS}


def selection_score(metrics: dict) -> float:
    """Validation macro-F1, averaged over the three modality conditions.

    The model serves all three (video with a face and a voice, audio uploads,
    windows without a face), so the checkpoint kept is the best over all three.
    """
    return float(np.mean([metrics[c]["macro_f1"] for c in fusion.CONDITIONS]))


def _train_epoch(model: FusionModel, x_image: torch.Tensor, x_audio: torch.Tensor,
                 y: torch.Tensor, cfg: FitConfig, *, opt, sched, gen: torch.Generator,
                 weights: torch.Tensor, device: str) -> float:
    """One shuffled pass with modality dropout; the mean loss."""
    model.train()
    order = torch.randperm(len(y), generator=gen)
    total = 0.0
    for s in range(max(1, -(-len(y) // cfg.batch_size))):
        idx = order[s * cfg.batch_size:(s + 1) * cfg.batch_size]
        r = torch.rand(len(idx), generator=gen)
        im = (r >= cfg.drop_image).float()                         # drop the image
        am = ((r < cfg.drop_image) | (r >= cfg.drop_image + cfg.drop_audio)).float()
        logits = model(x_image[idx].to(device), x_audio[idx].to(device), im.to(device),
                       am.to(device))
        loss = F.cross_entropy(logits, y[idx].to(device), weight=weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total += loss.item() * len(idx)
    return total / len(y)


def fit(train: Paired, val: Paired, cfg: FitConfig = FitConfig(), *,
        device: str = "cpu", train_args: dict | None = None, progress: bool = True
        ) -> tuple[dict, list[dict]]:
    """Train; returns the best checkpoint (plain data) and the per-epoch history."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = FusionModel(fusion.FusionConfig(image_dim=train.image.shape[1],
                                     audio_dim=train.audio.shape[1]))
    model.set_normalisation(train.image, train.audio)
    model.to(device)
    data = (torch.as_tensor(train.image, dtype=torch.float32),
            torch.as_tensor(train.audio, dtype=torch.float32), torch.as_tensor(train.labels))
    weights = torch.as_tensor(class_weights(train.labels, len(EMOTIONS))).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, epochs=cfg.epochs, pct_start=PCT_START,
        steps_per_epoch=max(1, -(-len(train.labels) // cfg.batch_size)))
    stopper = EarlyStopping(cfg.patience, cfg.epochs)
    best, history = None, []
    bar = tqdm(range(1, cfg.epochs + 1), desc="train", unit="epoch", disable=not progress)
    for epoch in bar:
        loss = _train_epoch(model, *data, cfg, opt=opt, sched=sched, gen=gen, weights=weights,
                            device=device)
        model.cpu()
        val_metrics = score_conditions(model, val)
        score = selection_score(val_metrics)
        history.append({"epoch": epoch, "loss": loss, "val": val_metrics, "score": score})
        bar.set_postfix(loss=f"{loss:.3f}", val=f"{score:.3f}",
                        best=f"{max(score, stopper.best):.3f}")
        if stopper.update(score):
            best = fusion.to_checkpoint(
                model, embedder_id=train.embedder_id, embedder_settings=train.embedder_settings,
                metrics={"val": val_metrics, "selection_score": score,
                         "selection": "mean val macro-F1 over conditions"},
                epoch=epoch, train_args=train_args or {})
        elif stopper.should_stop(epoch):
            log.info("early stop after epoch %d: no better validation score in %d epochs",
                     epoch, cfg.patience)
            break
        model.to(device)
    bar.close()
    return best, history


# --------------------------------------------------------------------------
# The command line (train_multimodal.py)

USAGE = """Train the fusion classifier on paired embeddings.

    python train_multimodal.py --train_h5 saved_paired_train_paired_embeddings.h5 \
        --val_h5 saved_paired_val_paired_embeddings.h5 \
        --test_h5 saved_paired_test_paired_embeddings.h5 \
        --epochs 50 --batch_size 128 --lr 0.001 --save_dir saved_models

Keeps the checkpoint with the best validation macro-F1 (mean over image+audio,
image only and audio only) as {save_dir}/multimodal_best.pth.
"""


def get_args_parser() -> argparse.ArgumentParser:
    p = cli.parser(USAGE)
    p.add_argument("--train_h5", default=str(DEFAULT.paired("train")))
    p.add_argument("--val_h5", default=str(DEFAULT.paired("val")))
    p.add_argument("--test_h5", default=str(DEFAULT.paired("test")))
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--patience", type=int, default=10, help="early stopping, in epochs")
    p.add_argument("--save_dir", default=str(DEFAULT.models))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    return p


def run(args: argparse.Namespace) -> None:
    """The stage, for parsed arguments."""
    if args.epochs < 1 or args.batch_size < 1 or args.lr <= 0:
        raise EmotionError("--epochs and --batch_size must be at least 1, --lr positive")
    device = resolve_device(args.device)
    train = load_paired(args.train_h5, what="--train_h5")
    val = load_paired(args.val_h5, what="--val_h5")
    test = load_paired(args.test_h5, what="--test_h5")
    ids = {d.embedder_id for d in (train, val, test)}
    if len(ids) != 1:
        raise EmotionError(f"the paired files come from different embedders {sorted(ids)}; "
                           "re-run extract_embeddings.py and make_paired_h5_filtered.py")
    log.info("pairs: train %d, val %d, test %d", len(train.labels), len(val.labels),
             len(test.labels))
    cfg = FitConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                    patience=args.patience, seed=args.seed)
    best, history = fit(train, val, cfg, device=device, train_args=vars(args))
    out = Path(args.save_dir) / MULTIMODAL_NAME
    # scored as predict.py will load it
    model, _ = fusion.load_checkpoint(fusion.save_checkpoint(best, out))
    best["metrics"]["test"] = score_conditions(model, test)
    fusion.save_checkpoint(best, out)
    write_text_atomic(json.dumps(history), Path(args.save_dir) / HISTORY_NAME)
    for split in ("val", "test"):
        m = best["metrics"][split]
        log.info("%s (epoch %d): %s", split, best["epoch"], ", ".join(
            f"{c} acc {v['accuracy']:.3f} F1 {v['macro_f1']:.3f}" for c, v in m.items()))
    log.info("saved %s", out)


def main(argv: list[str] | None = None) -> int:
    return cli.run_main(argv, get_args_parser, run, "train_multimodal.py")
