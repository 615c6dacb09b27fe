"""Evaluate the fusion classifier on the val and test pairs; write metrics and plots.

    python train_eval_plot.py --model_path saved_models/multimodal_best.pth \
        --test_h5 saved_paired_test_paired_embeddings.h5 \
        --val_h5 saved_paired_val_paired_embeddings.h5 --save_dir results/plots

Scores each split with image + audio, image only and audio only. Writes
metrics.json, predictions.npz (probabilities, labels, paths),
classification_report_{split}.txt, confusion_{split}_{raw,normalized}.png,
accuracy_by_condition.png and per_class_f1.png to --save_dir, and prints a table.
"""

from __future__ import annotations

import argparse
import logging

from emotion import cli
from emotion.evaluation import evaluate_checkpoint, format_table

log = logging.getLogger("train_eval_plot")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_path", default="saved_models/multimodal_best.pth")
    p.add_argument("--test_h5", default="saved_paired_test_paired_embeddings.h5")
    p.add_argument("--val_h5", default="saved_paired_val_paired_embeddings.h5")
    p.add_argument("--save_dir", default="results/plots")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)

    def body() -> None:
        metrics = evaluate_checkpoint(args.model_path, {"val": args.val_h5, "test": args.test_h5},
                                      args.save_dir)
        print(format_table(metrics))

    return cli.run(body, "train_eval_plot.py")


if __name__ == "__main__":
    raise SystemExit(main())
