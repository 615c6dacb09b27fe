"""Train the anomaly detector (Isolation Forests) on paired embeddings, and judge it on probes.

    python train_anomaly.py --train_h5 saved_paired_train_paired_embeddings.h5 \
        --test_h5 saved_paired_test_paired_embeddings.h5 --save_dir results/anomaly \
        --n_estimators 200 --contamination 0.01

Fits a StandardScaler + IsolationForest on the fused 640-d [image, audio]
embeddings, and one each on image only and audio only (for inputs missing a
modality). Probes made through the embedder's own preprocessing (noise, room
tone, digital silence, textures, blank frames, mismatched emotions) measure how
well it separates out-of-distribution input from the test pairs (AUROC).
Writes {save_dir}/isolation_forest.joblib, anomaly_scores.npz,
anomaly_metrics.json, anomaly_hist.png and anomaly_pca.png.
"""

from __future__ import annotations

import argparse
import logging

from emotion import cli
from emotion.anomaly import train
from emotion.errors import EmotionError

log = logging.getLogger("train_anomaly")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train_h5", default="saved_paired_train_paired_embeddings.h5")
    p.add_argument("--test_h5", default="saved_paired_test_paired_embeddings.h5")
    p.add_argument("--save_dir", default="results/anomaly")
    p.add_argument("--n_estimators", type=int, default=200)
    p.add_argument("--contamination", type=float, default=0.01,
                   help="expected share of anomalies in train, in (0, 0.5]")
    p.add_argument("--embedder", default="saved_models/embedder.pt",
                   help="the embedder that made the paired files; probes are embedded with it")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n_probes", type=int, default=64, help="probes of each kind")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)

    def body() -> None:
        if args.n_estimators < 1 or args.n_probes < 1:
            raise EmotionError("--n_estimators and --n_probes must be at least 1")
        if not 0 < args.contamination <= 0.5:
            raise EmotionError(f"--contamination {args.contamination}: must be in (0, 0.5]")
        train(args.train_h5, args.test_h5, args.embedder, args.save_dir,
              n_estimators=args.n_estimators, contamination=args.contamination,
              seed=args.seed, n_probes=args.n_probes)

    return cli.run(body, "train_anomaly.py")


if __name__ == "__main__":
    raise SystemExit(main())
