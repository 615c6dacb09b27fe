"""The anomaly detector: Isolation Forests on the embeddings, saved, loaded, judged.

Three detectors are fitted on the train pairs, each a StandardScaler (fitted on
train only) and an IsolationForest: ``both`` on the fused 640-d
[image, audio] vector, ``image_only`` (512-d) and ``audio_only`` (128-d), so an
input with one modality missing (an audio-only upload, a video window with no
face) can still be scored.

Convention, everywhere: ``anomaly_score = -decision_function(x)``, higher means
more anomalous; ``anomaly_flag`` is "anomaly" when the score is above the
threshold 0.0 (that is, when sklearn's ``predict`` says -1), else "normal".

isolation_forest.joblib is a plain dict (see :func:`payload`) holding sklearn
objects. joblib (pickle) files execute code when loaded: load them only from
paths the operator configured, never from an upload or a user-given path.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from .atomic import write_atomic
from .audio_encoder import EMBED_DIM as AUDIO_DIM
from .backbone import IMAGE_DIM
from .errors import EmotionError, SchemaError

log = logging.getLogger(__name__)

FORMAT = "emotion-anomaly"
FORMAT_VERSION = 1
FEATURE_DIMS = {"image": IMAGE_DIM, "audio": AUDIO_DIM}
DETECTORS = {"both": ("image", "audio"), "image_only": ("image",), "audio_only": ("audio",)}
THRESHOLD = 0.0          # in anomaly_score units: decision_function < 0 is an anomaly
ANOMALY, NORMAL = "anomaly", "normal"
MAX_REFERENCE = 50_000   # train rows kept by the kNN / Mahalanobis comparisons


# ----------------------------------------------------------------- fitting
def fit_detector(x: np.ndarray, *, n_estimators: int = 200, contamination: float = 0.01,
                 seed: int = 0) -> dict:
    """{"scaler", "forest"}: a StandardScaler and an IsolationForest fitted on x."""
    from sklearn.ensemble import IsolationForest
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)
    forest = IsolationForest(n_estimators=n_estimators, contamination=contamination,
                             random_state=seed).fit(scaler.transform(x))
    return {"scaler": scaler, "forest": forest}


def fit_detectors(image: np.ndarray, audio: np.ndarray, **kw) -> dict[str, dict]:
    """The three detectors of :data:`DETECTORS`, on the train pairs."""
    parts = {"image": image, "audio": audio}
    return {name: fit_detector(np.concatenate([parts[m] for m in mods], axis=1), **kw)
            for name, mods in DETECTORS.items()}


def payload(detectors: dict[str, dict], **fields) -> dict:
    """The dict saved as isolation_forest.joblib (fields: embedder_id, auroc, ...)."""
    from .h5io import library_versions
    from .labels import EMOTIONS

    return {"format": FORMAT, "format_version": FORMAT_VERSION, "detectors": detectors,
            "feature_dims": dict(FEATURE_DIMS), "threshold": THRESHOLD,
            "label_names": list(EMOTIONS), "versions": _versions(library_versions()), **fields}


def _versions(base: dict) -> dict:
    import joblib

    return {**base, "joblib": joblib.__version__}


# ----------------------------------------------------------------- scoring
def _rows(x, modality: str) -> np.ndarray:
    dim = FEATURE_DIMS[modality]
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] != dim:
        raise EmotionError(f"{modality} embeddings of shape {x.shape}; the anomaly detector "
                           f"takes (N, {dim}) {modality} embeddings from the same embedder")
    if not np.all(np.isfinite(x)):
        raise EmotionError(f"{modality} embeddings hold NaN or infinite values")
    return x


def flags_for(scores: np.ndarray, threshold: float = THRESHOLD) -> list[str]:
    return [ANOMALY if s > threshold else NORMAL for s in np.asarray(scores)]


class AnomalyDetector:
    """The saved payload, with the scoring that predict.py and the service call."""

    def __init__(self, data: dict):
        self.data = data

    @property
    def threshold(self) -> float:
        return float(self.data["threshold"])

    @property
    def embedder_id(self) -> str:
        return str(self.data.get("embedder_id", ""))

    def check_embedder(self, embedder_id: str) -> None:
        """Refuse embeddings from an embedder other than the one the forests were fitted on."""
        if self.embedder_id and embedder_id != self.embedder_id:
            raise EmotionError(f"the anomaly detector was fitted on embeddings of embedder "
                               f"{self.embedder_id}, not {embedder_id}; re-run "
                               "train_anomaly.py with this embedder's paired files")

    @staticmethod
    def which(image: np.ndarray | None = None, audio: np.ndarray | None = None) -> str:
        """The detector for what is present: both, image_only or audio_only."""
        if image is None and audio is None:
            raise EmotionError("nothing to score: give image embeddings, audio embeddings "
                               "or both")
        return "both" if image is not None and audio is not None else (
            "image_only" if image is not None else "audio_only")

    def transform(self, image: np.ndarray | None = None, audio: np.ndarray | None = None
                  ) -> tuple[str, np.ndarray]:
        """(detector name, the checked features scaled by that detector's scaler)."""
        name = self.which(image, audio)
        parts = {"image": image, "audio": audio}
        rows = [_rows(parts[m], m) for m in DETECTORS[name]]
        if len({len(r) for r in rows}) > 1:
            raise EmotionError(f"{len(rows[0])} image rows but {len(rows[1])} audio rows; "
                               "give one of each per input")
        x = np.concatenate(rows, axis=1)
        return name, self.data["detectors"][name]["scaler"].transform(x) if len(x) else x

    def score(self, image: np.ndarray | None = None, audio: np.ndarray | None = None, *,
              combine: bool = True) -> tuple[np.ndarray, list[str]]:
        """(anomaly scores (N,), flags): higher is more anomalous; either input may be None.

        Inputs are (N, 512) image and/or (N, 128) audio embeddings (a single
        vector is taken as N = 1); a missing modality picks the detector fitted
        on the other one alone. With both present, the score is the highest of
        the 640-d forest's and each single-modality forest's (`combine`): the
        640-d forest alone dilutes one bad half (128 audio dimensions among 640)
        and, measured on real data, flags 3 % of white-noise pairs where the
        audio forest flags all of them. Each forest's score is relative to its own
        threshold (decision_function), so the highest is the most alarmed one.
        """
        name, z = self.transform(image, audio)
        if len(z) == 0:
            return np.zeros(0, np.float64), []
        scores = -self.data["detectors"][name]["forest"].decision_function(z)
        if name == "both" and combine:
            for single, x in (("image_only", image), ("audio_only", audio)):
                scores = np.maximum(scores, self.score(**{single.split("_")[0]: x})[0])
        return scores, flags_for(scores, self.threshold)

    def save(self, path: str | Path) -> Path:
        import joblib

        return write_atomic(path, lambda f: joblib.dump(self.data, f))


def load_detector(path: str | Path) -> AnomalyDetector:
    """Load isolation_forest.joblib, checked. It runs pickled code: trusted paths only."""
    import joblib

    path = Path(path)
    hint = "run train_anomaly.py to make one, or pass the right path"
    if not path.is_file():
        raise SchemaError(f"anomaly detector {path} does not exist; {hint}")
    try:
        data = joblib.load(path)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same advice
        raise SchemaError(f"{path} is not a readable anomaly detector ({e}); {hint}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SchemaError(f"{path} is not an anomaly detector file; {hint}")
    if data.get("format_version") != FORMAT_VERSION:
        raise SchemaError(f"{path} has anomaly format {data.get('format_version')}, this code "
                          f"reads {FORMAT_VERSION}; re-run train_anomaly.py")
    detectors = data.get("detectors")
    for name, mods in DETECTORS.items():
        d = detectors.get(name) if isinstance(detectors, dict) else None
        dim = sum(FEATURE_DIMS[m] for m in mods)
        if not isinstance(d, dict) or any(getattr(d.get(k), "n_features_in_", None) != dim
                                          for k in ("scaler", "forest")):
            raise SchemaError(f"{path}: detector {name!r} is missing or does not take {dim} "
                              "features; re-run train_anomaly.py")
    _warn_versions(path, data.get("versions", {}))
    return AnomalyDetector(data)


def _warn_versions(path: Path, saved: dict) -> None:
    import sklearn

    if saved.get("scikit-learn") not in (None, sklearn.__version__):
        log.warning("%s was saved with scikit-learn %s, this is %s: scores may differ; "
                    "re-run train_anomaly.py", path, saved["scikit-learn"], sklearn.__version__)


# ----------------------------------------------------------------- comparisons
class KNNDistance:
    """Mean Euclidean distance to the k nearest train points, in the scaled space."""

    def __init__(self, k: int = 5, *, seed: int = 0):
        self.k, self.seed = k, seed

    def fit(self, z: np.ndarray) -> KNNDistance:
        from sklearn.neighbors import NearestNeighbors

        z = _subsample(z, self.seed)
        self.nn_ = NearestNeighbors(n_neighbors=min(self.k, len(z))).fit(z)
        return self

    def score(self, z: np.ndarray) -> np.ndarray:
        return self.nn_.kneighbors(z)[0].mean(axis=1)


class Mahalanobis:
    """Mahalanobis distance under a Ledoit-Wolf shrunk covariance of the train points."""

    def __init__(self, *, seed: int = 0):
        self.seed = seed

    def fit(self, z: np.ndarray) -> Mahalanobis:
        from scipy.linalg import cho_factor
        from sklearn.covariance import LedoitWolf

        lw = LedoitWolf(store_precision=False).fit(_subsample(z, self.seed))
        # shrinkage keeps the covariance positive definite: a Cholesky solve is enough
        self.location_, self.chol_ = lw.location_, cho_factor(lw.covariance_, lower=True)
        return self

    def score(self, z: np.ndarray) -> np.ndarray:
        from scipy.linalg import solve_triangular

        d = solve_triangular(self.chol_[0], (z - self.location_).T, lower=True)
        return np.sqrt(np.sum(d * d, axis=0))


def _subsample(z: np.ndarray, seed: int) -> np.ndarray:
    if len(z) <= MAX_REFERENCE:
        return z
    return z[np.sort(np.random.default_rng(seed).choice(len(z), MAX_REFERENCE, replace=False))]


def auroc(negatives: np.ndarray, positives: np.ndarray) -> float | None:
    """AUROC of a score that should be higher for positives; None if a side is empty."""
    from sklearn.metrics import roc_auc_score

    if len(negatives) == 0 or len(positives) == 0:
        return None
    y = np.r_[np.zeros(len(negatives)), np.ones(len(positives))]
    return float(roc_auc_score(y, np.r_[negatives, positives]))


# ----------------------------------------------------------------- files
def write_json(path: str | Path, obj: dict) -> Path:
    return write_atomic(path, lambda f: f.write(json.dumps(obj, indent=2).encode()))


def write_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    return write_atomic(path, lambda f: np.savez(f, **arrays))


# ----------------------------------------------------------------- the stage
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


def train(train_h5: str | Path, test_h5: str | Path, embedder: str | Path,
          save_dir: str | Path, *, n_estimators: int = 200, contamination: float = 0.01,
          seed: int = 0, n_probes: int = 64) -> dict:
    """Fit, judge on probes, and write every output of train_anomaly.py; returns the metrics."""
    from .embedder import Embedder
    from .pairing import load_paired
    from .probes import evaluate, log_table, make_probes

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
        config=config, trained_on={"train_h5": str(train_h5), "n_train": len(tr.labels)}))
    probes = make_probes(emb, te, n=n_probes, seed=seed)
    metrics, scores = evaluate(det, tr, te, probes, seed=seed)
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
    det.save(out / "isolation_forest.joblib")  # last: it is what later stages pick up
    log.info("wrote %s (isolation_forest.joblib, anomaly_scores.npz, anomaly_metrics.json, "
             "anomaly_hist.png, anomaly_pca.png)", out)
    return metrics


# ----------------------------------------------------------------- plots
MAX_POINTS = 5_000  # per set in the scatter


def _figure(width: float = 8.0, height: float = 5.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)  # Agg, without pyplot's global state
    return fig


def _save_png(fig, path: Path) -> Path:
    fig.tight_layout()
    return write_atomic(path, lambda f: fig.savefig(f, format="png"))


def plot_histogram(path: str | Path, scores: dict[str, np.ndarray], threshold: float) -> Path:
    """Densities of the anomaly scores of train, test and each probe kind."""
    fig = _figure()
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
    return _save_png(fig, Path(path))


def plot_pca(path: str | Path, z: dict[str, np.ndarray], *, seed: int = 0) -> Path:
    """2-D PCA fitted on the scaled train embeddings; train, test and probes projected."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=seed).fit(z["train"])
    fig = _figure(7.0, 6.0)
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
    return _save_png(fig, Path(path))
