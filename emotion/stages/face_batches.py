"""Batches of training faces: read from HDF5 in bounded memory, shuffled, augmented.

Images are read from the file in blocks of contiguous rows, shuffled by block
and then within a buffer of blocks: memory stays bounded (about two buffers of
BLOCK * BUFFER_BLOCKS images) however many images the file holds.

Preprocessed files hold each split's rows class by class, so a block is almost
always one emotion. Blocks must be short and a buffer must hold many of them, or
a batch's mix of emotions swings from one batch to the next: with blocks of 32
rows in buffers of 16 the share of happy faces in a batch of 128 had a standard
deviation of 0.118 (0.039 for independent draws), and EfficientNet-Lite0 from
ImageNet reached val accuracy 0.297 after 160 batches against 0.328 with the
blocks used now. Short blocks read no slower: the rows of a block are contiguous and
a buffer's blocks are read in file order.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator

import h5py
import numpy as np
import torch
from torch.nn import functional as F

from emotion.core import h5io
from emotion.core.distributed import shard_blocks
from emotion.core.labels import ALL_LABELS, EMOTIONS

BLOCK = 4               # rows read with one slice
BUFFER_BLOCKS = 128     # blocks whose rows are shuffled together
# Augmentation: the crops are upright, centred faces, so only small moves.
ROTATE_DEG = 10.0
SCALE = 0.10            # zoom 0.9 to 1.1
SHIFT = 0.08            # of the side
BRIGHTNESS = 0.2
CONTRAST = 0.2


# --------------------------------------------------------------------------
# Reading: bounded memory, shuffled by block


class SplitReader:
    """One split's images of the six emotions, in batches; other classes are dropped.

    With ``shard=(rank, world)`` the reader holds only its rank's blocks of rows
    (block i of the six-emotion rows goes to rank i % world): under
    DistributedDataParallel each process reads its own part of the file.
    `counts` and `all_labels` still describe the whole split.
    """

    def __init__(self, group: h5py.Group, *, block: int = BLOCK,
                 buffer_blocks: int = BUFFER_BLOCKS, shard: tuple[int, int] = (0, 1)):
        self.images = group["images"]
        labels = group["labels"][()].astype(np.int64)
        keep = (labels >= 0) & (labels < len(EMOTIONS))
        rows = np.flatnonzero(keep)
        self.all_labels = labels[rows]  # ALL_LABELS starts with EMOTIONS: same index
        rank, world = shard
        if world > 1:
            mine = [np.arange(s, min(s + block, len(rows)))
                    for s in shard_blocks(len(rows), block, rank, world)]
            rows = rows[np.concatenate(mine)] if mine else rows[:0]
        self.rows = rows
        self.labels = labels[rows]
        self.dropped = dict(sorted(Counter(
            ALL_LABELS[i] if 0 <= i < len(ALL_LABELS) else str(i) for i in labels[~keep]
        ).items()))
        self.block, self.buffer_blocks = block, buffer_blocks

    def __len__(self) -> int:
        return len(self.rows)

    def counts(self) -> dict[str, int]:
        c = np.bincount(self.all_labels, minlength=len(EMOTIONS))
        return {name: int(n) for name, n in zip(EMOTIONS, c, strict=True)}

    def _read(self, rows: np.ndarray) -> np.ndarray:
        lo, hi = int(rows[0]), int(rows[-1]) + 1
        if hi - lo <= 2 * len(rows):  # one slice, then drop the other classes' rows
            return h5io.read_images(self.images, slice(lo, hi))[rows - lo]
        return h5io.read_images(self.images, rows)  # a wide gap: sorted fancy index

    def batches(self, batch_size: int, *, generator: torch.Generator | None = None,
                min_batch: int = 1) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(images (n, S, S, 3) in [0,1], labels (n,) index into EMOTIONS).

        With a generator the order is shuffled: blocks in random order, rows
        shuffled within each buffer of blocks. Every batch but the last is full;
        a last batch smaller than `min_batch` is left out.
        """
        starts = np.arange(0, len(self.rows), self.block)
        if generator is not None:
            starts = starts[torch.randperm(len(starts), generator=generator).numpy()]
        x_left = np.zeros((0, *self.images.shape[1:]), np.float32)
        y_left = np.zeros(0, np.int64)
        for g in range(0, len(starts), self.buffer_blocks):
            group = sorted(starts[g:g + self.buffer_blocks])  # sorted: file order reads
            x = np.concatenate([x_left] + [self._read(self.rows[s:s + self.block])
                                           for s in group])
            y = np.concatenate([y_left] + [self.labels[s:s + self.block] for s in group])
            order = (torch.randperm(len(y), generator=generator).numpy()
                     if generator is not None else np.arange(len(y)))
            full = len(y) // batch_size * batch_size
            for i in range(0, full, batch_size):
                idx = order[i:i + batch_size]
                yield x[idx], y[idx]
            x_left, y_left = x[order[full:]], y[order[full:]]
            del x
        if len(y_left) >= max(min_batch, 1):
            yield x_left, y_left


def n_batches(n: int, batch_size: int, min_batch: int = 1) -> int:
    """How many batches SplitReader.batches yields for n rows."""
    return n // batch_size + (1 if n % batch_size >= max(min_batch, 1) else 0)


# --------------------------------------------------------------------------
# Images to network input: resize, augment (training only), normalise


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random flip, rotation, zoom and shift (one affine warp), brightness and contrast.

    x: [0,1] (N, 3, H, W). The random numbers come from the CPU generator, so a
    seed gives the same augmentation on any device.
    """
    n = len(x)
    u = torch.rand(n, 7, generator=generator) * 2 - 1  # uniform in [-1, 1]
    flip = torch.where(u[:, 0] < 0, -1.0, 1.0)
    angle = u[:, 1] * math.radians(ROTATE_DEG)
    zoom = 1 + u[:, 2] * SCALE
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    shift = u[:, 3:5] * 2 * SHIFT  # affine_grid spans [-1, 1]: the side is 2 long
    theta = torch.stack([torch.stack([cos * flip, -sin, shift[:, 0]], 1),
                         torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1).to(x.device)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    contrast = (1 + u[:, 5] * CONTRAST).view(n, 1, 1, 1).to(x.device)
    brightness = (1 + u[:, 6] * BRIGHTNESS).view(n, 1, 1, 1).to(x.device)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (((x - mean) * contrast + mean) * brightness).clamp_(0.0, 1.0)


def random_erase(x: torch.Tensor, generator: torch.Generator, p: float,
                 area: tuple[float, float] = (0.02, 0.2)) -> torch.Tensor:
    """With probability p per image, a random rectangle (a share `area` of the picture,
    aspect 1/3 to 3) painted with the image's mean: a hand or a shadow over part of a face."""
    n, _, h, w = x.shape
    u = torch.rand(n, 5, generator=generator)
    share = area[0] + u[:, 1] * (area[1] - area[0])
    aspect = torch.exp((u[:, 2] * 2 - 1) * math.log(3))
    eh = (torch.sqrt(share * aspect) * h).clamp(1, h)
    ew = (torch.sqrt(share / aspect) * w).clamp(1, w)
    top, left = u[:, 3] * (h - eh), u[:, 4] * (w - ew)
    rows = torch.arange(h).view(1, h, 1)
    cols = torch.arange(w).view(1, 1, w)
    box = ((rows >= top.view(n, 1, 1)) & (rows < (top + eh).view(n, 1, 1))
           & (cols >= left.view(n, 1, 1)) & (cols < (left + ew).view(n, 1, 1))
           & (u[:, 0] < p).view(n, 1, 1)).unsqueeze(1).to(x.device)
    return torch.where(box, x.mean(dim=(1, 2, 3), keepdim=True), x)


def mix(x: torch.Tensor, generator: torch.Generator, *, mixup: float, cutmix: float
        ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mixup (alpha `mixup`) or CutMix (alpha `cutmix`; one of the two per batch when both
    are on): (mixed images, the partner of each image as a permutation, lam).

    The loss is lam * CE(y) + (1 - lam) * CE(y[perm]). Alpha 0 turns a method off.
    """
    n = len(x)
    perm = torch.randperm(n, generator=generator)
    seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
    rng = np.random.default_rng(seed)
    methods = [m for m, a in (("mixup", mixup), ("cutmix", cutmix)) if a > 0]
    if not methods:
        return x, perm, 1.0
    method = methods[int(rng.integers(len(methods)))]
    lam = float(rng.beta(mixup, mixup) if method == "mixup" else rng.beta(cutmix, cutmix))
    partner = x[perm.to(x.device)]
    if method == "mixup":
        return lam * x + (1 - lam) * partner, perm, lam
    h, w = x.shape[-2:]
    ch, cw = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
    x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
    out = x.clone()
    out[:, :, y0:y1, x0:x1] = partner[:, :, y0:y1, x0:x1]
    return out, perm, 1 - (y1 - y0) * (x1 - x0) / (h * w)  # lam of the area actually kept


# --------------------------------------------------------------------------
# The network and its initial weights
