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

import logging
from pathlib import Path

import numpy as np

from emotion.core.atomic import check_format, read_artifact, write_atomic
from emotion.core.errors import EmotionError, SchemaError
from emotion.models.image_backbone import IMAGE_DIM
from emotion.models.voice import EMBED_DIM as AUDIO_DIM

log = logging.getLogger(__name__)

FORMAT = "emotion-anomaly"
FORMAT_VERSION = 2
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


def decision_function(forest, x: np.ndarray) -> np.ndarray:
    """``forest.decision_function(x)``, the same numbers, without sklearn's dispatch of
    one joblib call per tree: that costs about 9 ms a call whatever the rows (a video
    scores one window at a time, three forests each), this about 1 ms. It reads the
    fitted forest's per-tree path lengths, as sklearn's own scoring does; a forest
    without them (another sklearn version) goes through sklearn."""
    try:
        from sklearn.ensemble._iforest import _average_path_length

        lengths, averages = forest._decision_path_lengths, forest._average_path_length_per_tree
        subsample = forest._max_features != x.shape[1]
        norm = len(forest.estimators_) * float(_average_path_length([forest._max_samples])[0])
    except (AttributeError, ImportError):
        return forest.decision_function(x)
    x = np.ascontiguousarray(x, dtype=np.float32)
    depths = np.zeros(len(x))
    for tree, features, length, average in zip(forest.estimators_, forest.estimators_features_,
                                               lengths, averages, strict=True):
        leaves = tree.tree_.apply(np.ascontiguousarray(x[:, features]) if subsample else x)
        depths += length[leaves] + average[leaves] - 1.0
    # sklearn: a forest of one-sample trees has no path length to divide by: 2 ** -1
    scores = -(2.0 ** (-depths / norm)) if norm else np.full(len(x), -0.5)
    return scores - forest.offset_


def fit_detectors(image: np.ndarray, audio: np.ndarray, **kw) -> dict[str, dict]:
    """The three detectors of :data:`DETECTORS`, on the train pairs."""
    parts = {"image": image, "audio": audio}
    return {name: fit_detector(np.concatenate([parts[m] for m in mods], axis=1), **kw)
            for name, mods in DETECTORS.items()}


def payload(detectors: dict[str, dict], **fields) -> dict:
    """The dict saved as isolation_forest.joblib (fields: embedder_id, auroc, ...)."""
    from emotion.core.h5io import library_versions
    from emotion.core.labels import EMOTIONS

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
        and, measured on real data, flags 6 % of white-noise pairs (3 % with
        random image weights) where the audio forest flags all of them. Each
        forest's score is relative to its own threshold (decision_function), so
        the highest is the most alarmed one.
        """
        name, z = self.transform(image, audio)
        if len(z) == 0:
            return np.zeros(0, np.float64), []
        scores = -decision_function(self.data["detectors"][name]["forest"], z)
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
    data = read_artifact(path, joblib.load, what="anomaly detector", made_by="train_anomaly.py")
    check_format(data, path, fmt=FORMAT, version=FORMAT_VERSION, what="anomaly detector",
                 made_by="train_anomaly.py")
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
