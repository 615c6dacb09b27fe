"""Train the fusion classifier on paired embeddings.

    python train_multimodal.py --train_h5 saved_paired_train_paired_embeddings.h5 \
        --val_h5 saved_paired_val_paired_embeddings.h5 \
        --test_h5 saved_paired_test_paired_embeddings.h5 \
        --epochs 50 --batch_size 128 --lr 0.001 --save_dir saved_models

Keeps the checkpoint with the best validation macro-F1 (mean over image+audio,
image only and audio only) as {save_dir}/multimodal_best.pth.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from emotion import cli
from emotion.backbone import resolve_device
from emotion.errors import EmotionError
from emotion.fusion import load_checkpoint, save_checkpoint
from emotion.pairing import load_paired
from emotion.training import FitConfig, evaluate, fit

log = logging.getLogger("train_multimodal")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train_h5", default="saved_paired_train_paired_embeddings.h5")
    p.add_argument("--val_h5", default="saved_paired_val_paired_embeddings.h5")
    p.add_argument("--test_h5", default="saved_paired_test_paired_embeddings.h5")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--patience", type=int, default=10, help="early stopping, in epochs")
    p.add_argument("--save_dir", default="saved_models")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)

    def body() -> None:
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
        out = Path(args.save_dir) / "multimodal_best.pth"
        model, _ = load_checkpoint(save_checkpoint(best, out))  # what predict.py will load
        best["metrics"]["test"] = evaluate(model, test)
        save_checkpoint(best, out)
        (Path(args.save_dir) / "multimodal_history.json").write_text(json.dumps(history))
        for split in ("val", "test"):
            m = best["metrics"][split]
            log.info("%s (epoch %d): %s", split, best["epoch"], ", ".join(
                f"{c} acc {v['accuracy']:.3f} F1 {v['macro_f1']:.3f}" for c, v in m.items()))
        log.info("saved %s", out)

    return cli.run(body, "train_multimodal.py")


if __name__ == "__main__":
    raise SystemExit(main())
