"""The image preprocessing stage: a `{split}/{class}/image` tree to one HDF5 file."""

from __future__ import annotations

import functools
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import h5io
from .errors import EmotionError, LabelError, MediaError
from .faces import face_crop, make_detector
from .images import IMAGE_EXTENSIONS, load_image
from .labels import ALL_LABELS, folder_label
from .parallel import ordered_map

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


_DETECTORS: dict[str, object] = {}


def _process(item: ImageItem, *, size: int, detector: str):
    """Worker: one file to (crop, face_found) or to the reason it is skipped."""
    try:
        if detector not in _DETECTORS:
            _DETECTORS[detector] = make_detector(detector)
        rgb = load_image(item.path)
        crop = face_crop(rgb, _DETECTORS[detector], size)
        return item, crop.image, crop.face_found, None
    except MediaError as e:
        return item, None, False, str(e)
    except Exception as e:  # noqa: BLE001 - one odd file must not end a 420,000-file run
        return item, None, False, f"unexpected {type(e).__name__}: {e}"


def preprocess_images(src: str | Path, out: str | Path, *, size: int = 224,
                      face_crop_on: bool = True, detector: str = "haar",
                      class_map: dict[int, str], dtype: str = "uint8",
                      workers: int = 4) -> dict:
    """Run the stage; returns a summary (counts, skipped, rate) that is also stored."""
    if dtype not in ("uint8", "float32"):
        raise EmotionError(f"--dtype {dtype!r}: choose uint8 or float32")
    if size < 16:
        raise EmotionError(f"--size {size} is too small; use at least 16 (224 is usual)")
    detector = detector if face_crop_on else "none"
    make_detector(detector)  # fail now, not in every worker, if it cannot be built
    items, skipped = scan_tree(src, class_map)
    if not items:
        raise EmotionError(f"no images found under {src} "
                           f"(extensions {', '.join(IMAGE_EXTENSIONS)})")
    log.info("class map used: %s", json.dumps({str(k): v for k, v in sorted(class_map.items())}))
    np_dtype = np.uint8 if dtype == "uint8" else np.float32
    config = {"src": str(src), "size": size, "face_crop": face_crop_on, "detector": detector,
              "dtype": dtype, "workers": workers}
    counts: dict[str, Counter] = {}
    no_face = Counter()
    start = time.perf_counter()
    with h5io.create(out, h5io.PREPROCESSED_IMAGES, config=config) as f:
        f.attrs["size"] = size
        f.attrs["value_scale"] = 1.0 / 255.0 if dtype == "uint8" else 1.0
        f.attrs["class_map"] = json.dumps({str(k): v for k, v in sorted(class_map.items())})
        f.attrs["detector"] = detector
        appenders: dict[str, h5io.Appender] = {}
        buffers: dict[str, list] = {}

        def flush(split: str) -> None:
            rows = buffers.pop(split, [])
            if rows:
                imgs = np.stack([r[0] for r in rows])
                if np_dtype is np.float32:
                    imgs = imgs.astype(np.float32) / 255.0
                appenders[split].append(images=imgs, labels=[r[1] for r in rows],
                                        paths=[r[2] for r in rows],
                                        face_found=[r[3] for r in rows])

        work = functools.partial(_process, size=size, detector=detector)
        results = ordered_map(work, items, workers=workers)
        for item, img, found, reason in tqdm(results, total=len(items), desc="images",
                                             unit="img", mininterval=1.0):
            if reason is not None:
                skipped.append((item.path, reason))
                continue
            if item.split not in appenders:
                appenders[item.split] = h5io.Appender(f.create_group(item.split), {
                    "images": ((size, size, 3), np_dtype), "labels": ((), np.int16),
                    "paths": ((), h5io.STR), "face_found": ((), bool)})
            buffers.setdefault(item.split, []).append((img, item.label, item.path, found))
            counts.setdefault(item.split, Counter())[ALL_LABELS[item.label]] += 1
            no_face[item.split] += not found
            if len(buffers[item.split]) >= WRITE_BATCH:
                flush(item.split)
        for split in list(buffers):
            flush(split)
        if not appenders:
            raise EmotionError(f"every one of the {len(items)} images under {src} was skipped; "
                               f"first reason: {skipped[0][1] if skipped else 'none'}")
        h5io.write_skipped(f, skipped)
        elapsed = time.perf_counter() - start
        summary = {
            "counts": {s: dict(sorted(c.items())) for s, c in counts.items()},
            "no_face": dict(no_face), "skipped": len(skipped),
            "skip_reasons": dict(Counter(r.split(" (")[0] for _, r in skipped).most_common(10)),
            "seconds": round(elapsed, 2), "files_per_second": round(len(items) / elapsed, 1),
        }
        f.attrs["summary"] = json.dumps(summary)
    return summary
