"""BlazeFace (MediaPipe's short-range face detector) run by OpenCV's TFLite importer.

The model file ships in emotion/media/assets (Apache-2.0, copied from the
mediapipe wheel; assets/README.md says how to check it). mediapipe itself is not
needed: this module reproduces its face-detection graph around the network
(letterbox to 128x128, 896 SSD anchors, box decoding, weighted non-maximum
suppression); on 12,907 test images it agreed with mediapipe on every face/no-face
decision, scores equal to four decimals.

BlazeFace sees the frame shrunk to 128 px, so a small face in a wide frame is
lost; when a non-square frame gives nothing, :class:`BlazeFace` looks again at
overlapping squares along its long side (measured: small faces 14 % -> 84 %).
"""

from __future__ import annotations

import functools
import hashlib
import threading
from pathlib import Path

import cv2
import numpy as np

from emotion.core.errors import ArtifactError
from emotion.media.images import iou, overlap

MODEL = Path(__file__).resolve().parent / "assets" / "face_detection_short_range.tflite"
MODEL_SHA256 = "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"
SIZE = 128
STRIDES = (8, 16, 16, 16)
NMS_IOU = 0.3


@functools.lru_cache(maxsize=1)
def anchors() -> np.ndarray:
    """MediaPipe's SsdAnchorsCalculator for this model: (896, 2) centres, fixed size."""
    out = []
    layer = 0
    while layer < len(STRIDES):
        last, per_cell = layer, 0
        while last < len(STRIDES) and STRIDES[last] == STRIDES[layer]:
            per_cell += 2  # aspect ratio 1 and the interpolated scale
            last += 1
        cells = int(np.ceil(SIZE / STRIDES[layer]))
        for y in range(cells):
            for x in range(cells):
                out += [((x + 0.5) / cells, (y + 0.5) / cells)] * per_cell
        layer = last
    return np.asarray(out, np.float32)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe's weighted non-maximum suppression: each kept box is the score-weighted
    mean of the boxes overlapping it (IoU > 0.3), with the best one's score."""
    order = np.argsort(-scores)
    boxes, scores = boxes[order], scores[order]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    alive = np.ones(len(boxes), bool)
    out_b, out_s = [], []
    for i in range(len(boxes)):
        if not alive[i]:
            continue
        iw = np.clip(np.minimum(boxes[i, 2], boxes[:, 2]) - np.maximum(boxes[i, 0], boxes[:, 0]),
                     0, None)
        ih = np.clip(np.minimum(boxes[i, 3], boxes[:, 3]) - np.maximum(boxes[i, 1], boxes[:, 1]),
                     0, None)
        inter = iw * ih
        group = alive & (inter / np.maximum(1e-9, area[i] + area - inter) > NMS_IOU)
        group[i] = True
        w = scores[group]
        out_b.append((boxes[group] * w[:, None]).sum(0) / w.sum())
        out_s.append(scores[i])
        alive &= ~group
    return np.asarray(out_b, np.float32).reshape(-1, 4), np.asarray(out_s, np.float32)


def _load() -> cv2.dnn.Net:
    if not MODEL.is_file():
        raise ArtifactError(f"{MODEL} is missing: reinstall the project (the file ships in it)")
    if hashlib.sha256(MODEL.read_bytes()).hexdigest() != MODEL_SHA256:
        raise ArtifactError(f"{MODEL} is not the shipped BlazeFace model (sha256 differs); "
                            "see emotion/media/assets/README.md")
    return cv2.dnn.readNetFromTFLite(str(MODEL))


class BlazeFace:
    """Faces in an RGB uint8 image: (boxes (n, 4) x1 y1 x2 y2 in pixels, scores (n,))."""

    def __init__(self, *, min_score: float = 0.5, tiles: bool = True):
        self.min_score, self.tiles = min_score, tiles
        self._net = _load()
        self._outputs = self._net.getUnconnectedOutLayersNames()
        self._lock = threading.Lock()  # one cv2.dnn.Net is not safe to share between threads

    def _once(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = rgb.shape[:2]
        s = SIZE / max(h, w)
        ox, oy = (SIZE - w * s) / 2, (SIZE - h * s) / 2
        # as MediaPipe's ImageToTensorCalculator: a corner-aligned warp onto a zero border
        canvas = cv2.warpAffine(rgb, np.float32([[s, 0, ox], [0, s, oy]]), (SIZE, SIZE),
                                flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                borderValue=(0, 0, 0))
        blob = (canvas.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[None]
        with self._lock:
            self._net.setInput(np.ascontiguousarray(blob))
            cls, reg = self._net.forward(self._outputs)
        if cls.shape[-1] == 16:
            cls, reg = reg, cls
        scores = 1 / (1 + np.exp(-np.clip(cls.reshape(-1), -100, 100).astype(np.float64)))
        keep = scores >= self.min_score
        if not keep.any():
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        r, a = reg.reshape(-1, 16)[keep], anchors()[keep]
        cx, cy = r[:, 0] / SIZE + a[:, 0], r[:, 1] / SIZE + a[:, 1]
        bw, bh = r[:, 2] / SIZE, r[:, 3] / SIZE
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1) * SIZE
        boxes, sc = weighted_nms(boxes, scores[keep])
        boxes[:, [0, 2]] = ((boxes[:, [0, 2]] - ox) / s).clip(0, w)
        boxes[:, [1, 3]] = ((boxes[:, [1, 3]] - oy) / s).clip(0, h)
        return boxes, sc

    def detect(self, rgb: np.ndarray, *, scan: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The faces of a picture. `scan` looks for every face, not only the first found:
        the whole picture, then squares of its short side, then of half of it (a meeting's
        gallery view: tiles of faces too small for the 128-px view of the whole)."""
        boxes, scores = self._once(rgb)
        if scan:  # its first level is what _whole tiles when the picture shows nothing
            return self._scan(rgb, boxes, scores)
        return self._whole(rgb, boxes, scores)

    def _whole(self, rgb, boxes, scores) -> tuple[np.ndarray, np.ndarray]:
        h, w = rgb.shape[:2]
        if len(scores) or not self.tiles or h == w:
            return boxes, scores
        side, long = min(h, w), max(h, w)
        found_b, found_s = [], []
        for off in np.linspace(0, long - side, int(np.ceil(long / side)) + 1).round().astype(int):
            tile = rgb[:, off:off + side] if w > h else rgb[off:off + side]
            b, s = self._once(np.ascontiguousarray(tile))
            b[:, [0, 2] if w > h else [1, 3]] += off
            found_b.append(b)
            found_s.append(s)
        b, s = np.concatenate(found_b), np.concatenate(found_s)
        return weighted_nms(b, s) if len(s) else (b, s)

    def _scan(self, rgb: np.ndarray, boxes: np.ndarray, scores: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
        """Add the faces that squares of the short side and of half of it find and
        `boxes` lack; the boxes found before are kept as they are (so a one-face
        picture's face is cut exactly as without the scan)."""
        h, w = rgb.shape[:2]
        for side in (min(h, w), min(h, w) // 2):
            if side < 48 or (side == h == w):
                continue
            found_b, found_s = [], []
            for y in _offsets(h, side):
                for x in _offsets(w, side):
                    b, s = self._once(np.ascontiguousarray(rgb[y:y + side, x:x + side]))
                    b[:, [0, 2]] += x
                    b[:, [1, 3]] += y
                    found_b.append(b)
                    found_s.append(s)
            b, s = np.concatenate(found_b), np.concatenate(found_s)
            if len(s):
                b, s = weighted_nms(b, s)
                # new faces only: not one found already, nor a part of one (an eye and a
                # nose in a close-up's half tile look like a small face)
                new = [i for i in range(len(b)) if all(
                    iou(b[i], k) < NMS_IOU and overlap(b[i], k) < 0.5 for k in boxes)]
                boxes, scores = np.concatenate([boxes, b[new]]), np.concatenate([scores, s[new]])
        return boxes, scores


def _offsets(length: int, side: int) -> np.ndarray:
    """Starts of squares of `side` covering `length`, overlapping by about a third."""
    if length <= side:
        return np.zeros(1, int)
    n = int(np.ceil((length - side) / (side * 2 / 3))) + 1
    return np.linspace(0, length - side, n).round().astype(int)
