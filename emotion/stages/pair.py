"""Pair image and audio embeddings of the same emotion, split by split.

Audio comes only from the split of the pairs (a clip never sits in train and
test pairs). Faces the image backbone was trained on are never paired: when the
backbone is the face backbone trained on the train faces, the train pairs (which
the fusion model and the anomaly detector are fitted on) take half of the val
faces, stratified by emotion and seeded, and the val pairs (for model selection)
the other half; so everything fitted downstream of the backbone sees faces as
new as a user's. Otherwise each split's faces are its own.

Every face of the six emotions gets one clip of its emotion, drawn by cycling
through a seeded shuffle of that class's clips, so each clip is used about equally
often and small audio classes are oversampled to the size of the image class
(and faces repeated where a class has more clips than faces).
Classes outside the six, and faces whose class has no clip in the split, are
dropped and counted.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np

from emotion.core import cli, h5io
from emotion.core.errors import EmotionError
from emotion.core.labels import ALL_LABELS, EMOTIONS
from emotion.core.paths import DEFAULT, paired_path

log = logging.getLogger(__name__)

CHUNK = 8192


def cycle_draw(pool: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n items of pool: whole seeded permutations, then part of one more."""
    reps = -(-n // len(pool))
    return np.concatenate([rng.permutation(pool) for _ in range(reps)])[:n]


def pair_split(image_labels: np.ndarray, audio_labels: np.ndarray, rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray, Counter]:
    """Indices (image_idx, audio_idx) of the pairs of one split, and what was dropped.

    Every face gets a clip of its emotion, and every clip a face: a class with more
    clips than faces (few faces the backbone never saw) repeats its faces.
    """
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
        n = max(len(images), len(clips))
        img_idx.append(images if n == len(images) else cycle_draw(images, n, rng))
        aud_idx.append(cycle_draw(clips, n, rng))
    for c, name in enumerate(ALL_LABELS):
        n = int((audio_labels == c).sum())
        if n and name not in EMOTIONS:
            dropped[f"audio class {name} (not one of the six)"] += n
    if not img_idx:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), dropped
    return np.concatenate(img_idx), np.concatenate(aud_idx), dropped


def _write_split(out: Path, g, fa, ii: np.ndarray, jj: np.ndarray, *, split: str,
                 config: dict, dropped: Counter) -> Counter:
    """One split's paired file: image rows `ii` of group `g` with audio rows `jj`."""
    img_labels = g["labels"][()].astype(np.int64)
    with h5io.create(out, h5io.PAIRED, config=config, label_names=EMOTIONS) as fo:
        fo.attrs["split"] = split
        fo.attrs["embedder_id"] = fa.attrs["embedder_id"]
        fo.attrs["embedder_settings"] = fa.attrs["embedder_settings"]
        fo.attrs["image_split"] = config["image_split"]
        fo.attrs["seed"] = config["seed"]
        fo.attrs["dropped"] = json.dumps(dict(dropped))
        audio_emb = fa["all/embeddings"][()]  # (clips, 128): small
        rows = h5io.Appender(fo["/"], {
            "image_embeddings": ((g["embeddings"].shape[1],), np.float32),
            "audio_embeddings": ((audio_emb.shape[1],), np.float32)})
        for k in range(0, len(ii), CHUNK):  # stream: 420,000 images need not fit
            i_k, j_k = ii[k:k + CHUNK], jj[k:k + CHUNK]
            uniq, inverse = np.unique(i_k, return_inverse=True)  # h5py reads sorted rows
            rows.append(image_embeddings=g["embeddings"][uniq][inverse],
                        audio_embeddings=audio_emb[j_k])
        fo.create_dataset("labels", data=img_labels[ii].astype(np.int16))
        img_paths = h5io.read_strings(g["paths"])
        audio_paths = h5io.read_strings(fa["all/paths"])
        h5io.write_strings(fo, "image_paths", [img_paths[i] for i in ii])
        h5io.write_strings(fo, "audio_paths", [audio_paths[j] for j in jj])
        counts = Counter(EMOTIONS[c] for c in img_labels[ii])
        fo.attrs["counts"] = json.dumps(dict(sorted(counts.items())))
        fo.attrs["audio_clips_used"] = len(set(jj.tolist()))
    return counts


def image_sources(fi, seed: int) -> dict[str, tuple[str, np.ndarray]]:
    """For each split of pairs, (the image split its faces come from, their rows)."""
    splits = h5io.splits_of(fi, h5io.EMBEDDINGS_IMAGES)
    rows = {s: np.arange(len(fi[s]["labels"])) for s in splits}
    if fi.attrs.get("backbone_trained_on", "") != "train" or "val" not in splits:
        return {s: (s, rows[s]) for s in splits}
    labels = fi["val"]["labels"][()]
    rng = np.random.default_rng([seed, 99])
    fit, select = [], []
    for c in np.unique(labels):
        mine = rng.permutation(np.flatnonzero(labels == c))
        fit.append(mine[: (len(mine) + 1) // 2])
        select.append(mine[(len(mine) + 1) // 2:])
    out = {"train": ("val", np.sort(np.concatenate(fit))),
           "val": ("val", np.sort(np.concatenate(select)))}
    return out | ({"test": ("test", rows["test"])} if "test" in rows else {})


def make_pairs(image_h5: str | Path, audio_h5: str | Path, out_prefix: str | Path, *,
               seed: int = 0) -> dict:
    """Write saved_paired_{split}_paired_embeddings.h5 for every split of pairs."""
    summary: dict = {}
    config = {"image_h5": str(image_h5), "audio_h5": str(audio_h5), "seed": seed}
    with h5io.open_checked(image_h5, h5io.EMBEDDINGS_IMAGES) as fi, \
            h5io.open_checked(audio_h5, h5io.EMBEDDINGS_AUDIO) as fa:
        if fi.attrs["embedder_id"] != fa.attrs["embedder_id"]:
            raise EmotionError(f"{image_h5} and {audio_h5} were embedded by different embedders "
                               f"({fi.attrs['embedder_id']} vs {fa.attrs['embedder_id']}); "
                               "run extract_embeddings.py once for both")
        audio_splits = np.array(h5io.read_strings(fa["all/splits"]))
        audio_labels = fa["all/labels"][()].astype(np.int64)
        for s_i, (split, (image_split, rows)) in enumerate(image_sources(fi, seed).items()):
            in_split = np.flatnonzero(audio_splits == split)
            img_labels = fi[image_split]["labels"][()].astype(np.int64)[rows]
            ii, jj, dropped = pair_split(img_labels, audio_labels[in_split],
                                         np.random.default_rng([seed, s_i]))
            if len(ii) == 0:
                have = dict(Counter(ALL_LABELS[c] for c in img_labels))
                raise EmotionError(
                    f"split {split!r}: no pairs (images {have}, "
                    f"{len(in_split)} clips in this split); every split of the images needs "
                    "clips of the same emotions in the audio's split of that name")
            order = np.argsort(rows[ii], kind="stable")  # read images in file order
            ii, jj = rows[ii][order], in_split[jj][order]
            out = paired_path(out_prefix, split)
            counts = _write_split(out, fi[image_split], fa, ii, jj, split=split,
                                  config=config | {"image_split": image_split},
                                  dropped=dropped)
            clips = len(set(jj.tolist()))
            summary[split] = {"pairs": len(ii), "faces_from": image_split,
                              "counts": dict(sorted(counts.items())), "audio_clips": clips,
                              "dropped": dict(dropped), "path": str(out)}
            log.info("%s: %d pairs (faces of the %s split) from %d distinct clips; dropped %s",
                     split, len(ii), image_split, clips, dict(dropped) or "nothing")
    return summary


# --------------------------------------------------------------------------
# The command line (make_paired_h5_filtered.py)

USAGE = """Pair image and audio embeddings of the same emotion, per split.

    python make_paired_h5_filtered.py --image_h5 embeddings_images.h5 \
        --audio_h5 embeddings_audio.h5 --out_prefix saved_paired --seed 0

Writes saved_paired_{split}_paired_embeddings.h5. Audio is drawn only from the
image's split; classes outside the six emotions are dropped and counted.
"""

log = logging.getLogger("make_paired_h5_filtered")


def get_args_parser() -> argparse.ArgumentParser:
    p = cli.parser(USAGE)
    p.add_argument("--image_h5", default=str(DEFAULT.embeddings_images))
    p.add_argument("--audio_h5", default=str(DEFAULT.embeddings_audio))
    p.add_argument("--out_prefix", default=str(DEFAULT.paired_prefix))
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)

    def body() -> None:
        summary = make_pairs(args.image_h5, args.audio_h5, args.out_prefix, seed=args.seed)
        log.info("pairs: %s", json.dumps({s: v["pairs"] for s, v in summary.items()}))

    return cli.run(body, "make_paired_h5_filtered.py")
