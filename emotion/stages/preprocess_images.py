"""The image preprocessing stage: a `{split}/{class}/image` tree to one HDF5 file."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from emotion.core import cli, h5io
from emotion.core.errors import EmotionError, LabelError, MediaError
from emotion.core.labels import (
    ALL_LABELS,
    CLASS_MAP_PRESETS,
    DEFAULT_CLASS_MAP,
    folder_label,
    load_class_map,
)
from emotion.core.parallel import ordered_map
from emotion.core.paths import DEFAULT
from emotion.media.faces import DETECTORS, FaceFinder, FacePolicy
from emotion.media.images import IMAGE_EXTENSIONS, load_image

log = logging.getLogger(__name__)

SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val",
               "test": "test"}
WRITE_BATCH = 256


@dataclass(frozen=True)
class ImageItem:
    path: str
    split: str
    label: int  # index into ALL_LABELS


def scan_tree(src: str | Path, class_map: dict[int, str]
              ) -> tuple[list[ImageItem], list[tuple[str, str]]]:
    """Find the images of a `{split}/{class}/image` tree, sorted, and what was not usable."""
    src = Path(src)
    if not src.is_dir():
        raise EmotionError(f"--src {src} is not a folder")
    items: list[ImageItem] = []
    skipped: list[tuple[str, str]] = []
    split_dirs = sorted(d for d in src.iterdir() if d.is_dir())
    known = [d for d in split_dirs if d.name.lower() in SPLIT_NAMES]
    if not known:
        raise EmotionError(
            f"no split folder (train, val, test) in {src}; expected {src}/train/<class>/<image> "
            "where <class> is an emotion name or a numeric id "
            f"(found {[d.name for d in split_dirs][:5]})")
    for split_dir in known:
        split = SPLIT_NAMES[split_dir.name.lower()]
        for class_dir in sorted(d for d in split_dir.iterdir() if d.is_dir()):
            files = sorted(p for p in class_dir.rglob("*") if p.is_file())
            try:
                label = ALL_LABELS.index(folder_label(class_dir.name, class_map))
            except LabelError as e:
                skipped += [(str(p), f"unknown class folder: {e}") for p in files]
                continue
            for p in files:
                if p.suffix.lower() in IMAGE_EXTENSIONS:
                    items.append(ImageItem(str(p), split, label))
                else:
                    skipped.append((str(p), f"not an image extension ({p.suffix or 'none'})"))
    return items, skipped


NO_FACE = "no face (neither the detector nor the centre-square check found one)"
_FINDERS: dict[tuple, FaceFinder] = {}  # one per worker process and policy


def _process(item: ImageItem, *, size: int, policy: FacePolicy):
    """Worker: one file to (crop, face detected) or to the reason it is skipped."""
    try:
        key = (policy, size)
        if key not in _FINDERS:
            _FINDERS[key] = FaceFinder(policy, size)
        crop = _FINDERS[key](load_image(item.path))
        if not crop.found:
            return item, None, False, NO_FACE
        return item, crop.image, crop.detected, None
    except MediaError as e:
        return item, None, False, str(e)
    except Exception as e:  # noqa: BLE001 - one odd file must not end a 420,000-file run
        return item, None, False, f"unexpected {type(e).__name__}: {e}"


class _CropWriter:
    """Each split's crops appended to its group in blocks, the group made on first use."""

    def __init__(self, f, size: int, np_dtype):
        self.f, self.size, self.np_dtype = f, size, np_dtype
        self.buffers: dict[str, h5io.RowBuffer] = {}

    def add(self, split: str, img: np.ndarray, label: int, path: str, found: bool) -> None:
        if split not in self.buffers:
            rows = h5io.Appender(self.f.create_group(split), {
                "images": ((self.size, self.size, 3), self.np_dtype), "labels": ((), np.int16),
                "paths": ((), h5io.STR), "face_detected": ((), bool)})

            def write(batch: list, rows=rows) -> None:
                imgs = np.stack([r[0] for r in batch])
                if self.np_dtype is np.float32:
                    imgs = h5io.to_unit(imgs)
                rows.append(images=imgs, labels=[r[1] for r in batch],
                            paths=[r[2] for r in batch],
                            face_detected=[r[3] for r in batch])

            self.buffers[split] = h5io.RowBuffer(write, WRITE_BATCH)
        self.buffers[split].add((img, label, path, found))

    def flush(self) -> None:
        for b in self.buffers.values():
            b.flush()


def preprocess_images(src: str | Path, out: str | Path, *, size: int = 224,
                      policy: FacePolicy = FacePolicy(), class_map: dict[int, str],
                      dtype: str = "uint8", workers: int = 4) -> dict:
    """Run the stage; returns a summary (counts, skipped, rate) that is also stored.

    Each image goes through the face policy that serving uses: a picture in which
    it finds no face is skipped and counted, as a frame without one gives no face
    to the analysis.
    """
    items, skipped = _scan(src, class_map, size=size, policy=policy, dtype=dtype)
    log.info("class map used: %s", json.dumps({str(k): v for k, v in sorted(class_map.items())}))
    config = {"src": str(src), "size": size, "face_policy": policy.settings(),
              "dtype": dtype, "workers": workers}
    counts: dict[str, Counter] = {}
    fallback = Counter()
    start = time.perf_counter()
    with h5io.create(out, h5io.PREPROCESSED_IMAGES, config=config) as f:
        f.attrs["size"] = size
        f.attrs["value_scale"] = 1.0 / 255.0 if dtype == "uint8" else 1.0
        f.attrs["class_map"] = json.dumps({str(k): v for k, v in sorted(class_map.items())})
        f.attrs["face_policy"] = json.dumps(policy.settings(), sort_keys=True)
        writer = _CropWriter(f, size, np.uint8 if dtype == "uint8" else np.float32)
        work = functools.partial(_process, size=size, policy=policy)
        results = ordered_map(work, items, workers=workers)
        for item, img, detected, reason in tqdm(results, total=len(items), desc="images",
                                                unit="img", mininterval=1.0):
            if reason is not None:
                skipped.append((item.path, reason))
                continue
            writer.add(item.split, img, item.label, item.path, detected)
            counts.setdefault(item.split, Counter())[ALL_LABELS[item.label]] += 1
            fallback[item.split] += not detected
        writer.flush()
        h5io.write_skipped(f, skipped, kept=sum(sum(c.values()) for c in counts.values()),
                           what=f"{len(items)} images under {src}")
        summary = _summary(counts, fallback, skipped, len(items), time.perf_counter() - start)
        f.attrs["summary"] = json.dumps(summary)
    return summary


def _scan(src, class_map, *, size: int, policy: FacePolicy, dtype: str):
    """The settings checked and the images listed, before anything is written."""
    if dtype not in ("uint8", "float32"):
        raise EmotionError(f"--dtype {dtype!r}: choose uint8 or float32")
    if size < 16:
        raise EmotionError(f"--size {size} is too small; use at least 16 (224 is usual)")
    FaceFinder(policy, size)  # fail now, not in every worker, if it cannot be built
    items, skipped = scan_tree(src, class_map)
    if not items:
        raise EmotionError(f"no images found under {src} "
                           f"(extensions {', '.join(IMAGE_EXTENSIONS)})")
    return items, skipped


def _summary(counts: dict[str, Counter], fallback: Counter, skipped: list, n_items: int,
             elapsed: float) -> dict:
    return {
        "counts": {s: dict(sorted(c.items())) for s, c in counts.items()},
        "centre_square_fallback": dict(fallback), "skipped": len(skipped),
        "no_face": sum(r == NO_FACE for _, r in skipped),
        "skip_reasons": dict(Counter(r.split(" (")[0] for _, r in skipped).most_common(10)),
        "seconds": round(elapsed, 2), "files_per_second": round(n_items / elapsed, 1),
    }


# --------------------------------------------------------------------------
# The command line (preprocess_images.py)

USAGE = """Face images in {split}/{class}/image folders -> preprocessed_images.h5.

    python preprocess_images.py --src data/images --out preprocessed_images.h5 \
        --size 224 --face_crop 1 --workers 4
"""


def get_args_parser() -> argparse.ArgumentParser:
    p = cli.parser(USAGE)
    p.add_argument("--src", default="data/images", help="folder with train/ val/ test/")
    p.add_argument("--out", default=str(DEFAULT.preprocessed_images))
    p.add_argument("--size", type=int, default=224, help="side of the square output")
    p.add_argument("--face_crop", type=int, choices=(0, 1), default=1,
                   help="0: no detector, only the centre-square check")
    p.add_argument("--detector", choices=DETECTORS, default="blazeface",
                   help="blazeface (measured best: README), mtcnn or haar")
    p.add_argument("--class_map", default=DEFAULT_CLASS_MAP,
                   help=f"numeric class folders: a preset ({', '.join(CLASS_MAP_PRESETS)}), "
                        "a JSON file, or inline JSON such as '{\"0\": \"neutral\"}'")
    p.add_argument("--dtype", choices=("uint8", "float32"), default="uint8",
                   help="uint8 (scaled by 1/255 on read; 4x smaller) or float32 in [0,1]")
    p.add_argument("--workers", type=int, default=4)
    return p


def run(args: argparse.Namespace) -> None:
    """The stage, for parsed arguments."""
    class_map = load_class_map(args.class_map)
    policy = FacePolicy(detector=args.detector if args.face_crop else "none")
    summary = preprocess_images(args.src, args.out, size=args.size, policy=policy,
                                class_map=class_map, dtype=args.dtype, workers=args.workers)
    log.info("counts per split and class: %s", json.dumps(summary["counts"]))
    log.info("face from the centre-square check (the detector missed it): %s; no face at "
             "all: %d; skipped in all: %d %s", summary["centre_square_fallback"],
             summary["no_face"], summary["skipped"], summary["skip_reasons"] or "")
    log.info("wrote %s (%.1f files/s)", args.out, summary["files_per_second"])


def main(argv: list[str] | None = None) -> int:
    return cli.run_main(argv, get_args_parser, run, "preprocess_images.py")
