"""Speaker-disjoint splits: no speaker's clips are on two sides."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from emotion.core.errors import EmotionError

SPLITS = ("train", "val", "test")


def assign_speakers(speakers: Iterable[str], *, seed: int = 0, val_fraction: float = 0.2,
                    test_fraction: float = 0.2) -> dict[str, str]:
    """Map each speaker to train, val or test; seeded, independent of input order.

    Val and test get at least one speaker each, train the rest.
    """
    unique = sorted(set(speakers))
    if len(unique) < 3:
        raise EmotionError(
            f"a speaker-disjoint train/val/test split needs at least 3 speakers, found "
            f"{len(unique)}; add speakers, or put every clip in one split with "
            "--split train|val|test")
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise EmotionError("val and test fractions must be in (0, 1) and sum to less than 1")
    order = np.random.default_rng(seed).permutation(len(unique))
    n_val = max(1, int(round(val_fraction * len(unique))))
    n_test = max(1, int(round(test_fraction * len(unique))))
    n_val = min(n_val, len(unique) - n_test - 1)
    out = {}
    for rank, i in enumerate(order):
        out[unique[i]] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return out


def speaker_folds(speakers: Sequence[str], k: int, seed: int) -> list[np.ndarray]:
    """Boolean masks of k folds, each holding whole speakers."""
    unique = sorted(set(speakers))
    rng = np.random.default_rng(seed)
    rng.shuffle(unique)
    fold_of = {s: i % k for i, s in enumerate(unique)}
    ids = np.array([fold_of[s] for s in speakers])
    return [ids == i for i in range(k)]
