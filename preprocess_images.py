"""Face images in {split}/{class}/image folders -> preprocessed_images.h5.

    python preprocess_images.py --src data/images --out preprocessed_images.h5 \
        --size 224 --face_crop 1 --workers 4
"""

from __future__ import annotations

import argparse
import json
import logging

from emotion import cli
from emotion.faces import DETECTORS
from emotion.image_prep import preprocess_images
from emotion.labels import CLASS_MAP_PRESETS, DEFAULT_CLASS_MAP, load_class_map

log = logging.getLogger("preprocess_images")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", default="data/images", help="folder with train/ val/ test/")
    p.add_argument("--out", default="preprocessed_images.h5")
    p.add_argument("--size", type=int, default=224, help="side of the square output")
    p.add_argument("--face_crop", type=int, choices=(0, 1), default=1)
    p.add_argument("--detector", choices=[d for d in DETECTORS if d != "none"], default="haar")
    p.add_argument("--class_map", default=DEFAULT_CLASS_MAP,
                   help=f"numeric class folders: a preset ({', '.join(CLASS_MAP_PRESETS)}), "
                        "a JSON file, or inline JSON such as '{\"0\": \"neutral\"}'")
    p.add_argument("--dtype", choices=("uint8", "float32"), default="uint8",
                   help="uint8 (scaled by 1/255 on read; 4x smaller) or float32 in [0,1]")
    p.add_argument("--workers", type=int, default=4)
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)

    def body() -> None:
        class_map = load_class_map(args.class_map)
        summary = preprocess_images(args.src, args.out, size=args.size,
                                    face_crop_on=bool(args.face_crop), detector=args.detector,
                                    class_map=class_map, dtype=args.dtype, workers=args.workers)
        log.info("counts per split and class: %s", json.dumps(summary["counts"]))
        log.info("no face found (centre crop): %s; skipped: %d %s", summary["no_face"],
                 summary["skipped"], summary["skip_reasons"] or "")
        log.info("wrote %s (%.1f files/s)", args.out, summary["files_per_second"])

    return cli.run(body, "preprocess_images.py")


if __name__ == "__main__":
    raise SystemExit(main())
