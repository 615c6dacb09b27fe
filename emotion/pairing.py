"""Pair image and audio embeddings of the same emotion, split by split.

Audio comes only from the same split as the image (a clip never sits in train
and test pairs). Every image of the six emotions gets one clip of its emotion,
drawn by cycling through a seeded shuffle of that class's clips, so each clip is
used about equally often and small audio classes are oversampled to the size of
the image class. Classes outside the six, and images whose class has no clip
in the split, are dropped and counted.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import h5io
from .errors import EmotionError
from .labels import ALL_LABELS, EMOTIONS

log = logging.getLogger(__name__)

CHUNK = 8192


def paired_path(prefix: str | Path, split: str) -> Path:
    return Path(f"{prefix}_{split}_paired_embeddings.h5")


def cycle_draw(pool: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n items of pool: whole seeded permutations, then part of one more."""
    reps = -(-n // len(pool))
    return np.concatenate([rng.permutation(pool) for _ in range(reps)])[:n]


def pair_split(image_labels: np.ndarray, audio_labels: np.ndarray, rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray, Counter]:
    """Indices (image_idx, audio_idx) of the pairs of one split, and what was dropped."""
    dropped: Counter = Counter()
    img_idx, aud_idx = [], []
    for c, name in enumerate(ALL_LABELS):
        images = np.flatnonzero(image_labels == c)
        if len(images) == 0:
            continue
        if name not in EMOTIONS:
            dropped[f"image class {name} (not one of the six)"] += len(images)
            continue
        clips = np.flatnonzero(audio_labels == c)
        if len(clips) == 0:
            dropped[f"image class {name} (no clip of it in this split)"] += len(images)
            continue
        img_idx.append(images)
        aud_idx.append(cycle_draw(clips, len(images), rng))
    for c, name in enumerate(ALL_LABELS):
        n = int((audio_labels == c).sum())
        if n and name not in EMOTIONS:
            dropped[f"audio class {name} (not one of the six)"] += n
    if not img_idx:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), dropped
    return np.concatenate(img_idx), np.concatenate(aud_idx), dropped


def make_pairs(image_h5: str | Path, audio_h5: str | Path, out_prefix: str | Path, *,
               seed: int = 0) -> dict:
    """Write saved_paired_{split}_paired_embeddings.h5 for every split of the images."""
    summary: dict = {}
    with h5io.open_checked(image_h5, h5io.EMBEDDINGS_IMAGES) as fi, \
            h5io.open_checked(audio_h5, h5io.EMBEDDINGS_AUDIO) as fa:
        if fi.attrs["embedder_id"] != fa.attrs["embedder_id"]:
            raise EmotionError(f"{image_h5} and {audio_h5} were embedded by different embedders "
                               f"({fi.attrs['embedder_id']} vs {fa.attrs['embedder_id']}); "
                               "run extract_embeddings.py once for both")
        audio_splits = np.array(h5io.read_strings(fa["all/splits"]))
        audio_labels = fa["all/labels"][()].astype(np.int64)
        audio_paths = h5io.read_strings(fa["all/paths"])
        for s_i, split in enumerate(h5io.splits_of(fi, h5io.EMBEDDINGS_IMAGES)):
            rng = np.random.default_rng([seed, s_i])
            in_split = np.flatnonzero(audio_splits == split)
            g = fi[split]
            img_labels = g["labels"][()].astype(np.int64)
            ii, jj, dropped = pair_split(img_labels, audio_labels[in_split], rng)
            jj = in_split[jj]
            if len(ii) == 0:
                have = dict(Counter(ALL_LABELS[c] for c in img_labels))
                raise EmotionError(
                    f"split {split!r}: no pairs (images {have}, "
                    f"{len(in_split)} clips in this split); every split of the images needs "
                    "clips of the same emotions in the audio's split of that name")
            order = np.argsort(ii, kind="stable")  # read images in file order
            ii, jj = ii[order], jj[order]
            out = paired_path(out_prefix, split)
            config = {"image_h5": str(image_h5), "audio_h5": str(audio_h5), "seed": seed}
            with h5io.create(out, h5io.PAIRED, config=config, label_names=EMOTIONS) as fo:
                fo.attrs["split"] = split
                fo.attrs["embedder_id"] = fi.attrs["embedder_id"]
                fo.attrs["seed"] = seed
                fo.attrs["dropped"] = json.dumps(dict(dropped))
                audio_emb = fa["all/embeddings"][()]  # (clips, 128): small
                out_rows = h5io.Appender(fo["/"], {"image_embeddings": ((g["embeddings"].shape[1],),
                                                                        np.float32),
                                                   "audio_embeddings": ((audio_emb.shape[1],),
                                                                        np.float32)})
                for k in range(0, len(ii), CHUNK):  # stream: 420,000 images need not fit
                    i_k, j_k = ii[k:k + CHUNK], jj[k:k + CHUNK]
                    out_rows.append(image_embeddings=g["embeddings"][i_k],
                                    audio_embeddings=audio_emb[j_k])
                fo.create_dataset("labels", data=img_labels[ii].astype(np.int16))
                img_paths = h5io.read_strings(g["paths"])
                h5io.write_strings(fo, "image_paths", [img_paths[i] for i in ii])
                h5io.write_strings(fo, "audio_paths", [audio_paths[j] for j in jj])
                counts = Counter(EMOTIONS[c] for c in img_labels[ii])
                fo.attrs["counts"] = json.dumps(dict(sorted(counts.items())))
                fo.attrs["audio_clips_used"] = len(set(jj.tolist()))
            summary[split] = {"pairs": len(ii), "counts": dict(sorted(counts.items())),
                              "audio_clips": len(set(jj.tolist())), "dropped": dict(dropped),
                              "path": str(out)}
            log.info("%s: %d pairs from %d distinct clips; dropped %s", split, len(ii),
                     len(set(jj.tolist())), dict(dropped) or "nothing")
    return summary


@dataclass(frozen=True)
class Paired:
    """One split's pairs, in memory (N x 640 floats: 420,000 pairs are ~1 GB)."""

    image: np.ndarray        # (N, 512) float32
    audio: np.ndarray        # (N, 128) float32
    labels: np.ndarray       # (N,) int64, index into EMOTIONS
    image_paths: list[str]
    audio_paths: list[str]
    split: str
    embedder_id: str
    path: str


def load_paired(path: str | Path, *, what: str = "") -> Paired:
    """Read a paired file after validating it; an empty file is an error."""
    with h5io.open_checked(path, h5io.PAIRED, label_names=EMOTIONS) as f:
        n = len(f["labels"])
        if n == 0:
            raise EmotionError(f"{path}{' (' + what + ')' if what else ''} holds no pairs; "
                               "re-run make_paired_h5_filtered.py on data with that split")
        return Paired(f["image_embeddings"][()].astype(np.float32, copy=False),
                      f["audio_embeddings"][()].astype(np.float32, copy=False),
                      f["labels"][()].astype(np.int64), h5io.read_strings(f["image_paths"]),
                      h5io.read_strings(f["audio_paths"]), str(f.attrs["split"]),
                      str(f.attrs["embedder_id"]), str(path))
