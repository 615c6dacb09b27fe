"""The anomaly stage: fit the three Isolation Forests, judge them on probes, write it all.

Outputs, in ``save_dir``: isolation_forest.joblib (the detector, written last:
it is what later stages pick up), anomaly_scores.npz, anomaly_metrics.json,
anomaly_hist.png and anomaly_pca.png. The probes and their scoring are in
:mod:`emotion.stages.probes`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from emotion.core import cli
from emotion.core.atomic import write_json, write_npz
from emotion.core.errors import EmotionError, SchemaError
from emotion.core.h5io import load_paired
from emotion.core.paths import DEFAULT, ISOLATION_NAME
from emotion.core.plots import figure, save_png
from emotion.models.anomaly import FEATURE_DIMS, AnomalyDetector, fit_detectors, payload
from emotion.models.embedder import Embedder
from emotion.stages.probes import log_table, make_probes, score_probes

log = logging.getLogger(__name__)


def check_inputs(train, test, embedder_id: str, embedder_path: str | Path) -> None:
    """Same embedder everywhere, and the embedding sizes the detector takes."""
    if len(train.labels) < 2:
        raise EmotionError(f"{train.path} holds {len(train.labels)} pair; the detector needs "
                           "at least 2 train pairs")
    for d in (train, test):
        if d.embedder_id != embedder_id:
            raise EmotionError(
                f"{d.path} was embedded by embedder {d.embedder_id}, but {embedder_path} is "
                f"{embedder_id}; pass the embedder.pt that extract_embeddings.py wrote with "
                "these embeddings (--embedder), or re-run extract_embeddings.py and "
                "make_paired_h5_filtered.py")
        for m in ("image", "audio"):
            if getattr(d, m).shape[1] != FEATURE_DIMS[m]:
                raise SchemaError(f"{d.path}: {m} embeddings are {getattr(d, m).shape[1]}-d, "
                                  f"the detector takes {FEATURE_DIMS[m]}-d")


def train_detector(train_h5: str | Path, test_h5: str | Path, embedder: str | Path,
          save_dir: str | Path, *, n_estimators: int = 200, contamination: float = 0.01,
          seed: int = 0, n_probes: int = 64) -> dict:
    """Fit, judge on probes, and write every output of train_anomaly.py; returns the metrics."""

    tr = load_paired(train_h5, what="--train_h5")
    te = load_paired(test_h5, what="--test_h5")
    emb = Embedder.load(embedder, device="cpu")
    check_inputs(tr, te, emb.embedder_id, embedder)
    log.info("fitting on %d train pairs; judging on %d test pairs", len(tr.labels), len(te.labels))
    config = {"train_h5": str(train_h5), "test_h5": str(test_h5), "embedder": str(embedder),
              "n_estimators": n_estimators, "contamination": contamination, "seed": seed,
              "n_probes": n_probes}
    det = AnomalyDetector(payload(
        fit_detectors(tr.image, tr.audio, n_estimators=n_estimators,
                      contamination=contamination, seed=seed),
        n_estimators=n_estimators, contamination=contamination, embedder_id=emb.embedder_id,
        embedder_settings=emb.settings(), config=config,
        trained_on={"train_h5": str(train_h5), "n_train": len(tr.labels)}))
    probes = make_probes(emb, te, n=n_probes, seed=seed)
    metrics, scores = score_probes(det, tr, te, probes, seed=seed)
    log_table(metrics)
    det.data["auroc"] = metrics["auroc"]
    metrics |= {"threshold": det.threshold, "embedder_id": emb.embedder_id, "config": config,
                "label_names": det.data["label_names"], "versions": det.data["versions"]}

    out = Path(save_dir)
    kinds = [k for k in probes if k in scores]
    write_npz(out / "anomaly_scores.npz", {
        "train_scores": scores["train"], "test_scores": scores["test"],
        "test_labels": te.labels, "label_names": np.array(det.data["label_names"]),
        "threshold": np.float64(det.threshold), "probe_kinds": np.array(kinds),
        **{f"probe_{k}_scores": scores[k] for k in kinds}})
    plot_histogram(out / "anomaly_hist.png", scores, det.threshold)
    sets = {"train": (tr.image, tr.audio), "test": (te.image, te.audio)}
    sets |= {k: (probes[k].image, probes[k].audio) for k in kinds}
    z = {k: det.transform(*v)[1] for k, v in sets.items()}
    plot_pca(out / "anomaly_pca.png", z, seed=seed)
    write_json(out / "anomaly_metrics.json", metrics)
    det.save(out / ISOLATION_NAME)  # last: it is what later stages pick up
    log.info("wrote %s (isolation_forest.joblib, anomaly_scores.npz, anomaly_metrics.json, "
             "anomaly_hist.png, anomaly_pca.png)", out)
    return metrics


# ----------------------------------------------------------------- plots
MAX_POINTS = 5_000  # per set in the scatter


def plot_histogram(path: str | Path, scores: dict[str, np.ndarray], threshold: float) -> Path:
    """Densities of the anomaly scores of train, test and each probe kind."""
    fig = figure(8.0, 5.0, dpi=100)
    ax = fig.add_subplot()
    every = np.concatenate([v for v in scores.values() if len(v)])
    bins = np.histogram_bin_edges(np.r_[every, threshold], bins=40)
    for name, v in scores.items():
        if len(v):
            ax.hist(v, bins=bins, density=True, histtype="step" if name in ("train", "test")
                    else "stepfilled", alpha=1.0 if name in ("train", "test") else 0.35,
                    linewidth=2 if name in ("train", "test") else 1, label=f"{name} ({len(v)})")
    ax.axvline(threshold, color="k", linestyle="--", label=f"threshold ({threshold:g})")
    ax.set(title="Anomaly scores of pairs (the most alarmed of the 640-d, image and audio "
                 "forests)",
           xlabel="anomaly score (-decision_function; higher = more anomalous)",
           ylabel="density")
    ax.legend(fontsize="small")
    return save_png(fig, path)


def plot_pca(path: str | Path, z: dict[str, np.ndarray], *, seed: int = 0) -> Path:
    """2-D PCA fitted on the scaled train embeddings; train, test and probes projected."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=seed).fit(z["train"])
    fig = figure(7.0, 6.0, dpi=100)
    ax = fig.add_subplot()
    rng = np.random.default_rng(seed)
    style = {"train": {"marker": "o", "s": 10, "color": "0.65"},
             "test": {"marker": "x", "s": 30, "color": "k"}}
    markers = "^vsDP*Xh<>"
    for i, (name, v) in enumerate(z.items()):
        if len(v) > MAX_POINTS:
            v = v[rng.choice(len(v), MAX_POINTS, replace=False)]
        p = pca.transform(v)
        kw = style.get(name, {"marker": markers[i % len(markers)], "s": 22})
        ax.scatter(p[:, 0], p[:, 1], alpha=0.75, label=f"{name} ({len(v)})", **kw)
    ev = pca.explained_variance_ratio_
    ax.set(title="PCA of scaled embeddings (fitted on train)",
           xlabel=f"PC1 ({ev[0]:.1%} of train variance)",
           ylabel=f"PC2 ({ev[1]:.1%} of train variance)")
    ax.legend(fontsize="small", markerscale=1.5)
    return save_png(fig, path)


# --------------------------------------------------------------------------
# The command line (train_anomaly.py)

USAGE = """Train the anomaly detector (Isolation Forests) on paired embeddings; judge it on probes.

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


def get_args_parser() -> argparse.ArgumentParser:
    p = cli.parser(USAGE)
    p.add_argument("--train_h5", default=str(DEFAULT.paired("train")))
    p.add_argument("--test_h5", default=str(DEFAULT.paired("test")))
    p.add_argument("--save_dir", default=str(DEFAULT.anomaly))
    p.add_argument("--n_estimators", type=int, default=200)
    p.add_argument("--contamination", type=float, default=0.01,
                   help="expected share of anomalies in train, in (0, 0.5]")
    p.add_argument("--embedder", default=str(DEFAULT.embedder),
                   help="the embedder that made the paired files; probes are embedded with it")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n_probes", type=int, default=64, help="probes of each kind")
    return p


def run(args: argparse.Namespace) -> None:
    """The stage, for parsed arguments."""
    if args.n_estimators < 1 or args.n_probes < 1:
        raise EmotionError("--n_estimators and --n_probes must be at least 1")
    if not 0 < args.contamination <= 0.5:
        raise EmotionError(f"--contamination {args.contamination}: must be in (0, 0.5]")
    train_detector(args.train_h5, args.test_h5, args.embedder, args.save_dir,
          n_estimators=args.n_estimators, contamination=args.contamination,
          seed=args.seed, n_probes=args.n_probes)


def main(argv: list[str] | None = None) -> int:
    return cli.run_main(argv, get_args_parser, run, "train_anomaly.py")
