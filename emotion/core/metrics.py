"""Classification and detection scores, computed one way for every stage.

All six classes count (``labels=range(n)``) and a class absent from a split
scores F1 0 (``zero_division=0``), so figures from different stages and
splits can be compared.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from emotion.core.labels import EMOTIONS


def classification_metrics(labels: np.ndarray, pred: np.ndarray,
                           label_names: Sequence[str] = EMOTIONS) -> dict:
    """Accuracy, macro-F1 and per-class F1 (and support) over all of `label_names`."""
    from sklearn.metrics import accuracy_score, f1_score

    idx = list(range(len(label_names)))
    labels = np.asarray(labels, np.int64)
    support = np.bincount(labels, minlength=len(idx))
    if len(labels) == 0:
        zeros = {n: 0.0 for n in label_names}
        return {"accuracy": 0.0, "macro_f1": 0.0, "per_class_f1": zeros,
                "support": {n: 0 for n in label_names}, "n": 0}
    per_class = f1_score(labels, pred, labels=idx, average=None, zero_division=0)
    return {
        "accuracy": float(accuracy_score(labels, pred)),
        "macro_f1": float(f1_score(labels, pred, labels=idx, average="macro", zero_division=0)),
        "per_class_f1": {n: float(v) for n, v in zip(label_names, per_class, strict=True)},
        "support": {n: int(c) for n, c in zip(label_names, support, strict=True)},
        "n": int(len(labels)),
    }


def confusion_counts(labels: np.ndarray, pred: np.ndarray,
                     n_classes: int = len(EMOTIONS)) -> np.ndarray:
    """(n_classes, n_classes) counts; rows are true classes, columns predictions."""
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(labels, pred, labels=list(range(n_classes)))


def normalise_rows(cm: np.ndarray) -> np.ndarray:
    """Each row divided by its total (recall on the diagonal); an empty row stays 0."""
    rows = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, rows, out=np.zeros(cm.shape, np.float64), where=rows > 0)


def auroc(negatives: np.ndarray, positives: np.ndarray) -> float | None:
    """AUROC of a score that should be higher for positives; None if a side is empty."""
    from sklearn.metrics import roc_auc_score

    if len(negatives) == 0 or len(positives) == 0:
        return None
    y = np.r_[np.zeros(len(negatives)), np.ones(len(positives))]
    return float(roc_auc_score(y, np.r_[negatives, positives]))
