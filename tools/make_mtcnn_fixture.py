"""Make tests/fixtures/mtcnn_reference.json with the real ``mtcnn`` package and TensorFlow.

TensorFlow is never a dependency of the project, so this runs in a venv of its own:

    python3 -m venv .tfenv    # a venv of its own, beside the project's .venv
    .tfenv/bin/pip install tensorflow mtcnn==1.0.0 scikit-image torch==2.14.1 \\
        "opencv-python-headless<5" joblib lz4
    .tfenv/bin/python tools/make_mtcnn_fixture.py --fer_dir ../shared/data/fer2013

It writes two public-domain images as small JPEGs (scikit-image's ``astronaut`` and, with
no face, ``coffee`` at half size), runs ``mtcnn.MTCNN().detect_faces`` on them and on a few
variants made from the decoded JPEGs, and stores boxes, scores and landmarks, plus the
three networks' outputs on seeded random input, in the JSON fixture. It then compares the
PyTorch port (emotion/media/mtcnn.py) with the package on those images and on a few FER2013 test
faces, and prints agreement and timing. FER images are only read, never written: their
licence does not allow committing them.

tests/test_mtcnn.py imports ``load_variants`` and ``random_inputs`` from here (this module
imports TensorFlow only inside ``main``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
REFERENCE = "mtcnn_reference.json"
COMMAND = ".tfenv/bin/python tools/make_mtcnn_fixture.py --fer_dir ../shared/data/fer2013"
KEYPOINTS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
NETWORK_SEED = 0

# name -> (committed JPEG, transform). Transforms are plain numpy so that they are the
# same in any environment; "gray" is given to the port as HxW and to the package as HxWx3.
VARIANTS = {
    "astronaut": ("astronaut.jpg", "none"),
    "astronaut_half": ("astronaut.jpg", "half"),
    "astronaut_flip": ("astronaut.jpg", "flip"),
    "astronaut_crop": ("astronaut.jpg", "crop"),
    "astronaut_gray": ("astronaut.jpg", "gray"),
    "coffee": ("coffee.jpg", "none"),
}


def decode(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(path)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def half(rgb: np.ndarray) -> np.ndarray:
    """2x2 block mean, rounded half up."""
    h, w = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
    blocks = rgb[:h, :w].astype(np.uint32).reshape(h // 2, 2, w // 2, 2, -1)
    return ((blocks.sum(axis=(1, 3)) + 2) // 4).astype(np.uint8)


def transform(rgb: np.ndarray, kind: str) -> np.ndarray:
    if kind == "none":
        return rgb
    if kind == "half":
        return half(rgb)
    if kind == "flip":
        return np.ascontiguousarray(rgb[:, ::-1])
    if kind == "crop":  # not square, so that the pyramid's two sides differ
        return np.ascontiguousarray(rgb[32:432, 96:400])
    if kind == "gray":  # ITU-R 601 luma in integers
        weights = np.array([299, 587, 114], np.uint32)
        return ((rgb.astype(np.uint32) @ weights + 500) // 1000).astype(np.uint8)
    raise ValueError(kind)


def load_variants(fixtures: Path = FIXTURES) -> dict[str, np.ndarray]:
    """The fixture's images as the port receives them (gray ones as HxW)."""
    return {name: transform(decode(fixtures / source), kind)
            for name, (source, kind) in VARIANTS.items()}


def three_channels(image: np.ndarray) -> np.ndarray:
    return np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image


def md5(image: np.ndarray) -> str:
    return hashlib.md5(np.ascontiguousarray(image).tobytes()).hexdigest()


def random_inputs(seed: int = NETWORK_SEED) -> dict[str, np.ndarray]:
    """NHWC float32 inputs in [-1, 1] for P-Net, R-Net and O-Net, drawn in this order."""
    rng = np.random.default_rng(seed)
    shapes = {"pnet": (1, 15, 17, 3), "rnet": (3, 24, 24, 3), "onet": (3, 48, 48, 3)}
    return {name: rng.uniform(-1, 1, shape).astype(np.float32) for name, shape in shapes.items()}


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


def agreement(ref: np.ndarray, got) -> list[tuple[float, float, float, float]]:
    """(IoU, max box corner diff px, max landmark distance px, |score diff|) per reference
    face, matched by IoU.

    ref: the package's numpy rows (image id, x1, y1, x2, y2, score, 5 x, 5 y).
    """
    rows = []
    for face in ref:
        if not len(got):
            rows.append((0.0, float("inf"), float("inf"), float("inf")))
            continue
        ious = [box_iou(face[1:5], box) for box in got.boxes]
        k = int(np.argmax(ious))
        marks = np.stack([face[6:11], face[11:16]], axis=1)
        lm = float(np.linalg.norm(marks - got.landmarks[k], axis=1).max())
        box = float(np.abs(face[1:5] - got.boxes[k]).max())
        rows.append((ious[k], box, lm, abs(float(face[5]) - float(got.scores[k]))))
    return rows


def mean_ms(fn: Callable[[np.ndarray], object], images: list[np.ndarray], repeats: int) -> float:
    for image in images:  # warm-up: first calls trace / allocate
        fn(image)
    start = time.perf_counter()
    for _ in range(repeats):
        for image in images:
            fn(image)
    return (time.perf_counter() - start) * 1000 / (repeats * len(images))


def fer_images(fer_dir: Path, count: int, size: int) -> dict[str, np.ndarray]:
    """``count`` test faces, round-robin over the sorted classes, upscaled to RGB."""
    classes = sorted(p for p in (fer_dir / "test").iterdir() if p.is_dir())
    files = {c: sorted(c.glob("*.[jp][pn]g")) for c in classes}
    out: dict[str, np.ndarray] = {}
    for k in range(count):
        cls = classes[k % len(classes)]
        path = files[cls][k // len(classes)]
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        big = cv2.resize(gray, (size, size), interpolation=cv2.INTER_CUBIC)
        out[f"{cls.name}/{path.name}"] = cv2.cvtColor(big, cv2.COLOR_GRAY2RGB)
    return out


def report(title: str, images: dict[str, np.ndarray], tf_detect, pt_detect,
           repeats: int) -> None:
    print(f"\n== {title}: {len(images)} images")
    print(f"{'image':34s} {'tf':>3s} {'pt':>3s} {'IoU':>9s} {'box px':>8s} {'lm px':>8s} "
          f"{'|dscore|':>9s}")
    all_rows = []
    for name, image in images.items():
        ref, got = tf_detect(three_channels(image)), pt_detect(image)
        rows = agreement(ref, got)
        all_rows += rows
        cells = "  ".join(f"{i:.7f} {b:8.5f} {lm:8.5f} {s:9.2e}" for i, b, lm, s in rows)
        cells = cells or "(no face)"
        print(f"{name:34s} {len(ref):3d} {len(got):3d} {cells}")
    if all_rows:
        iou, box, lm, sc = (np.array(c) for c in zip(*all_rows, strict=True))
        print(f"{len(iou)} faces: IoU min {iou.min():.7f} mean {iou.mean():.7f}; max box diff "
              f"{box.max():.5f} px; max landmark diff {lm.max():.5f} px; max score diff "
              f"{sc.max():.2e}")
    listed = [three_channels(im) for im in images.values()]
    tf_ms = mean_ms(tf_detect, listed, repeats)
    pt_ms = mean_ms(pt_detect, list(images.values()), repeats)
    print(f"CPU time per image ({repeats} rounds after a warm-up): TensorFlow mtcnn "
          f"{tf_ms:.1f} ms, PyTorch port {pt_ms:.1f} ms ({tf_ms / pt_ms:.1f}x)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fer_dir", type=Path, required=True,
                        help="FER2013 root with test/<class>/*.jpg (read only, never copied)")
    parser.add_argument("--fer_count", type=int, default=8)
    parser.add_argument("--fer_size", type=int, default=192)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=FIXTURES)
    args = parser.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import skimage
    import tensorflow as tf
    import torch
    from mtcnn import MTCNN as TfMTCNN
    from skimage import data

    from emotion.media.mtcnn import MTCNN

    args.out.mkdir(parents=True, exist_ok=True)
    # Public-domain sources, written once as JPEGs; every variant comes from the decoded files.
    jpeg = [cv2.IMWRITE_JPEG_QUALITY, 90]
    cv2.imwrite(str(args.out / "astronaut.jpg"), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR),
                jpeg)
    cv2.imwrite(str(args.out / "coffee.jpg"), cv2.cvtColor(half(data.coffee()), cv2.COLOR_RGB2BGR),
                jpeg)
    images = load_variants(args.out)

    tf_mtcnn = TfMTCNN(device="CPU:0")

    def tf_detect(image: np.ndarray) -> np.ndarray:
        return tf_mtcnn.detect_faces(image, box_format="xyxy", output_type="numpy")

    entries = {}
    for name, image in images.items():
        rows = tf_detect(three_channels(image))
        # The default JSON output is these values rounded: check we read the columns right.
        for face, row in zip(tf_mtcnn.detect_faces(three_channels(image)), rows, strict=True):
            x1, y1, x2, y2 = row[1:5]
            assert face["box"] == np.round([x1, y1, x2 - x1, y2 - y1]).astype(int).tolist()
            assert face["keypoints"]["right_eye"] == np.round(row[[7, 12]]).astype(int).tolist()
        source, kind = VARIANTS[name]
        entries[name] = {
            "source": source, "transform": kind, "shape": list(image.shape), "md5": md5(image),
            "faces": [{"box": [round(float(v), 4) for v in row[1:5]],
                       "score": round(float(row[5]), 7),
                       "keypoints": {k: [round(float(row[6 + i]), 4), round(float(row[11 + i]), 4)]
                                     for i, k in enumerate(KEYPOINTS)}}
                      for row in rows],
        }

    networks = {}
    for (name, x), stage in zip(random_inputs().items(), tf_mtcnn.stages, strict=True):
        outs = [np.asarray(o) for o in stage.model(tf.constant(x))]
        networks[name] = {"input_shape_nhwc": list(x.shape),
                          "outputs_nhwc": [[float(f"{v:.8g}") for v in o.ravel()] for o in outs],
                          "output_shapes_nhwc": [list(o.shape) for o in outs]}

    fixture = {
        "about": "mtcnn 1.0.0 + TensorFlow reference for emotion/media/mtcnn.py "
                 "(tests/test_mtcnn.py)",
        "command": COMMAND,
        "call": "mtcnn.MTCNN().detect_faces(rgb_uint8_hxwx3, box_format='xyxy', "
                "output_type='numpy'); boxes are x1, y1, x2, y2 in pixels",
        "versions": {"python": platform.python_version(), "tensorflow": tf.__version__,
                     "keras": version("keras"), "mtcnn": version("mtcnn"),
                     "numpy": np.__version__, "opencv": cv2.__version__,
                     "scikit-image": skimage.__version__, "torch": torch.__version__},
        "images": entries,
        "networks": {"seed": NETWORK_SEED, "input": "np.random.default_rng(seed).uniform("
                     "-1, 1, shape).astype(float32) for pnet, rnet, onet in turn", **networks},
    }
    text = json.dumps(fixture, indent=1)
    # One line per list of numbers keeps the file short and still readable.
    text = re.sub(r"\[\s+([-+0-9.eE,\s]+?)\s+\]",
                  lambda m: "[" + re.sub(r"\s+", " ", m.group(1)) + "]", text)
    (args.out / REFERENCE).write_text(text + "\n")
    print(f"wrote {args.out / REFERENCE}, astronaut.jpg, coffee.jpg")

    port = MTCNN(device="cpu")
    print(f"threads: TensorFlow intra-op {tf.config.threading.get_intra_op_parallelism_threads()}"
          f" (0 = all cores), torch {torch.get_num_threads()}; cpu count {os.cpu_count()}")
    report("astronaut variants + coffee (committed fixtures)", images, tf_detect, port.detect,
           args.repeats)
    fer = fer_images(args.fer_dir, args.fer_count, args.fer_size)
    report(f"FER2013 test faces, 48 px -> {args.fer_size} px INTER_CUBIC (not stored)", fer,
           tf_detect, port.detect, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
