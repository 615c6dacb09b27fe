"""What every training loop of the project shares: class weights and early stopping."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Share of a one-cycle schedule spent raising the learning rate.
PCT_START = 0.3


@dataclass(frozen=True)
class Schedule:
    """What every training loop here takes: passes over the data, the batch size,
    AdamW's peak learning rate (one-cycle schedule) and weight decay, the seed."""

    epochs: int = 50
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0


def class_weights(labels: np.ndarray, n: int, power: float = 1.0) -> np.ndarray:
    """Inverse frequency raised to `power` (1: inverse frequency, 0.5: its square root,
    0: every class alike), mean 1 over the classes present; absent classes weigh 0."""
    counts = np.bincount(np.asarray(labels, np.int64), minlength=n).astype(np.float64)
    present = counts > 0
    w = np.zeros(n)
    w[present] = (counts[present].sum() / counts[present]) ** power
    w[present] /= w[present].mean()
    return w.astype(np.float32)


class EarlyStopping:
    """Stop after `patience` epochs without a better score, but never while the
    one-cycle learning rate still rises: validation scores are noisy there, and
    the best epochs come as it anneals.
    """

    def __init__(self, patience: int, epochs: int, pct_start: float = PCT_START):
        self.patience = patience
        self.warmup = int(math.ceil(pct_start * epochs))
        self.best = -math.inf
        self.since = 0

    def update(self, score: float) -> bool:
        """Record an epoch's score; True when it is the best so far."""
        if score > self.best:
            self.best, self.since = score, 0
            return True
        self.since += 1
        return False

    def should_stop(self, epoch: int) -> bool:
        """After the 1-based `epoch`, whether to stop."""
        return self.since >= self.patience and epoch > self.warmup
