"""MTCNN face detector in PyTorch, fed with the weights the ``mtcnn`` pip package ships.

A port of ``mtcnn==1.0.0`` (Iván de Paz Centeno, MIT licence) that needs no TensorFlow: the
package is installed only for its ``assets/weights/*.lz4`` files, which are read without
importing it (its ``__init__`` imports TensorFlow). Every pipeline step copies the package's
``MTCNN().detect_faces`` with its default arguments, quirks included, so that the outputs
agree (tests/test_mtcnn.py checks this against a fixture made with the real package):

* pyramid: ``round(-(log(min_dim / 12) / log(f) + 1))`` scales of ``12 / min_face_size * f**k``;
  each level is ``tf.image.resize(..., method=AREA)`` of the whole image to the truncated size;
* P-Net cells: ``(2x + 1, 2y + 1, 2x + 12, 2y + 12)`` plus 11 px times the regression;
* NMS keeps a box when no higher-scored box overlaps it, suppressed or not (not greedy NMS),
  with areas and IoU computed without the classic ``+ 1``;
* R-Net / O-Net crops are ``tf.image.crop_and_resize`` (bilinear, 0 outside the image) of
  boxes normalised by the image size but sampled on a ``size - 1`` grid;
* box refinement and landmarks use ``width + 1``; boxes are clipped to the image, landmarks not.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from emotion.core.errors import EmotionError
from emotion.media.mtcnn_nets import (
    MtcnnWeightsError,
    ONet,
    PNet,
    RNet,
    build_network,
    load_state_dict,
)


class MtcnnInputError(EmotionError, ValueError):
    """An image the detector cannot use."""


__all__ = ["MTCNN", "Detections", "MtcnnInputError", "MtcnnWeightsError", "ONet", "PNet",
           "RNet", "load_state_dict"]

MIN_SIZE = 12          # P-Net's receptive field, the package's ``min_size``
NMS_PNET_SCALE = 0.5   # per pyramid level (``nms_pnet1``)
NMS_PNET_ALL = 0.7     # across levels (``nms_pnet2``)
NMS_RNET = 0.7
NMS_ONET = 0.7         # with IoU over the smaller box ("min")


# --------------------------------------------------------------------------- image ops

@functools.lru_cache(maxsize=256)
def _area_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """TF's ResizeArea along one axis as (out, taps) source indices and weights.

    Copies the kernel's float32 arithmetic (weights not yet divided by the scale).
    """
    scale = np.float32(in_size) / np.float32(out_size)
    rows: list[list[tuple[int, np.float32]]] = []
    for o in range(out_size):
        lo, hi = np.float32(o) * scale, np.float32(o + 1) * scale
        taps = []
        for i in range(math.floor(lo), math.ceil(hi)):
            if i < lo:
                weight = scale if i + 1 > hi else np.float32(i + 1) - lo
            else:
                weight = hi - np.float32(i) if i + 1 > hi else np.float32(1.0)
            taps.append((min(max(i, 0), in_size - 1), np.float32(weight)))
        rows.append(taps)
    width = max(len(t) for t in rows)
    index = np.zeros((out_size, width), np.int64)
    weight = np.zeros((out_size, width), np.float32)
    for o, taps in enumerate(rows):
        for k, (i, w) in enumerate(taps):
            index[o, k], weight[o, k] = i, w
    return index, weight


def resize_area(image: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """``tf.image.resize(image, (out_h, out_w), method="area")`` of a (3, H, W) float image."""
    _, h, w = image.shape
    iy, wy = (torch.from_numpy(a).to(image.device) for a in _area_taps(h, out_h))
    ix, wx = (torch.from_numpy(a).to(image.device) for a in _area_taps(w, out_w))
    rows = (image[:, iy, :] * wy[None, :, :, None]).sum(2)   # (3, out_h, W)
    out = (rows[:, :, ix] * wx[None, None]).sum(3)           # (3, out_h, out_w)
    sy, sx = np.float32(h) / np.float32(out_h), np.float32(w) / np.float32(out_w)
    return out * float(np.float32(1.0 / float(sy * sx)))


def crop_and_resize(image: torch.Tensor, boxes: np.ndarray, size: int) -> torch.Tensor:
    """``tf.image.crop_and_resize`` (bilinear, 0 outside) of (x1, y1, x2, y2) pixel boxes
    normalised by the image size as the package does, from an (H, W, 3) image: (N, 3, S, S)."""
    h, w, _ = image.shape
    dev = image.device
    # The package divides by (H, W) in float64; TF then takes the boxes as float32.
    norm = torch.from_numpy((boxes[:, [1, 0, 3, 2]] / np.array([h, w, h, w])).astype(np.float32))
    y1, x1, y2, x2 = norm.to(dev).unbind(1)
    steps = torch.arange(size, dtype=torch.float32, device=dev)
    in_y = y1[:, None] * (h - 1) + steps * ((y2 - y1) * (h - 1) / (size - 1))[:, None]
    in_x = x1[:, None] * (w - 1) + steps * ((x2 - x1) * (w - 1) / (size - 1))[:, None]
    inside = ((in_y >= 0) & (in_y <= h - 1))[:, :, None] & ((in_x >= 0) & (in_x <= w - 1))[:, None]
    top, left = in_y.floor(), in_x.floor()
    y_lerp, x_lerp = (in_y - top)[:, :, None, None], (in_x - left)[:, None, :, None]
    t, b = top.clamp(0, h - 1).long()[:, :, None], in_y.ceil().clamp(0, h - 1).long()[:, :, None]
    lt, r = left.clamp(0, w - 1).long()[:, None], in_x.ceil().clamp(0, w - 1).long()[:, None]
    top_row = image[t, lt] + (image[t, r] - image[t, lt]) * x_lerp
    bottom_row = image[b, lt] + (image[b, r] - image[b, lt]) * x_lerp
    crops = top_row + (bottom_row - top_row) * y_lerp
    return (crops * inside[..., None]).permute(0, 3, 1, 2).contiguous()


# --------------------------------------------------------------------------- box ops
# Boxes are float64 arrays whose columns 0-3 are x1, y1, x2, y2 and column 4 the score,
# as in the package (which also carries an image index we do not need).

def _overlap(a: np.ndarray, b: np.ndarray, method: str) -> np.ndarray:
    """(len(a), len(b)) IoU ("union") or intersection over the smaller area ("min")."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    iw = np.maximum(0, np.minimum(a[:, None, 2], b[None, :, 2])
                    - np.maximum(a[:, None, 0], b[None, :, 0]))
    ih = np.maximum(0, np.minimum(a[:, None, 3], b[None, :, 3])
                    - np.maximum(a[:, None, 1], b[None, :, 1]))
    inter = iw * ih
    if method == "union":
        denom = area_a[:, None] + area_b[None, :] - inter
    else:
        denom = np.minimum(area_a[:, None], area_b[None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / denom


def _sort_desc(boxes: np.ndarray) -> np.ndarray:
    # Same call as the package (argsort, reversed) so that ties break the same way.
    return boxes[np.argsort(boxes[:, 4])[::-1]]


def nms(boxes: np.ndarray, threshold: float, method: str = "union",
        sort: bool = True, block: int = 1024) -> np.ndarray:
    """The package's NMS: drop a box if any earlier box overlaps it by more than threshold.

    Unlike greedy NMS, earlier boxes count even when they were dropped themselves. Columns
    of the overlap matrix are computed in blocks to bound memory on busy images.
    """
    if sort:
        boxes = _sort_desc(boxes)
    n = len(boxes)
    dropped = np.zeros(n, bool)
    for start in range(0, n, block):
        stop = min(n, start + block)
        over = _overlap(boxes[:stop], boxes[start:stop], method) > threshold
        earlier = np.arange(stop)[:, None] < np.arange(start, stop)[None, :]
        dropped[start:stop] = (over & earlier).any(axis=0)
    return boxes[~dropped]


def _square(boxes: np.ndarray) -> np.ndarray:
    """Grow the shorter side to the longer one about the centre (package's resize_to_square)."""
    boxes = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    boxes[:, 0] += w * 0.5 - side * 0.5
    boxes[:, 1] += h * 0.5 - side * 0.5
    boxes[:, 2] = boxes[:, 0] + side
    boxes[:, 3] = boxes[:, 1] + side
    return boxes


def _refine(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Apply regressed offsets in units of the (+1) box size (package's adjust_bboxes)."""
    boxes = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
    boxes[:, :4] += offsets * np.stack([w, h, w, h], axis=1)
    return boxes


def pyramid_scales(height: int, width: int, min_face_size: int,
                   scale_factor: float) -> np.ndarray:
    """The package's build_scale_pyramid (its count ignores min_face_size: kept as is)."""
    min_dim = min(width, height)
    count = round(-((np.log(min_dim / MIN_SIZE) / np.log(scale_factor)) + 1))
    return (MIN_SIZE / min_face_size) * scale_factor ** np.arange(count)


# --------------------------------------------------------------------------- detector

@dataclass
class Detections:
    """Faces found in one image, best score first."""

    boxes: np.ndarray      # (N, 4) float32: x1, y1, x2, y2 in pixels, clipped to the image
    scores: np.ndarray     # (N,) float32: O-Net's face probability
    landmarks: np.ndarray  # (N, 5, 2) float32 (x, y): left eye, right eye, nose,
    #                        mouth left, mouth right (the package's keypoints; not clipped)

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                   np.zeros((0, 5, 2), np.float32))


def as_rgb(image: np.ndarray) -> np.ndarray:
    """An (H, W, 3) array from RGB, RGBA (alpha dropped), grayscale (H, W) or (H, W, 1)."""
    if not isinstance(image, np.ndarray):
        raise MtcnnInputError(f"expected a numpy image, got {type(image).__name__}")
    if image.dtype == bool or not np.issubdtype(image.dtype, np.number) \
            or np.issubdtype(image.dtype, np.complexfloating):
        raise MtcnnInputError(f"expected uint8 pixel values, got dtype {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise MtcnnInputError(f"expected an HxWx3 RGB image (or HxW gray, HxWx4 RGBA), "
                              f"got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise MtcnnInputError(f"empty image of shape {image.shape}")
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return image[:, :, :3]


class MTCNN:
    """Face detector matching ``mtcnn.MTCNN().detect_faces`` (mtcnn 1.0.0 defaults).

    ``thresholds`` are P-Net, R-Net and O-Net's (the package's threshold_pnet, threshold_rnet,
    threshold_onet: 0.6, 0.7, 0.8).
    """

    def __init__(self, *, min_face_size: int = 20, scale_factor: float = 0.709,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.8),
                 device: str = "cpu") -> None:
        if min_face_size <= 0 or not 0 < scale_factor < 1 or len(thresholds) != 3:
            raise ValueError("need min_face_size > 0, 0 < scale_factor < 1 and 3 thresholds")
        self.min_face_size = min_face_size
        self.scale_factor = scale_factor
        self.thresholds = tuple(float(t) for t in thresholds)
        self.device = torch.device(device)
        self.pnet, self.rnet, self.onet = (build_network(n, self.device)
                                           for n in ("pnet", "rnet", "onet"))

    @torch.inference_mode()
    def detect(self, image: np.ndarray) -> Detections:
        """Faces in an (H, W, 3) uint8 RGB image (gray and RGBA are converted)."""
        rgb = as_rgb(image)
        height, width = rgb.shape[:2]
        # (x - 127.5) / 128 is exact in float32 for 0..255 values.
        hwc = torch.from_numpy((rgb.astype(np.float32) - 127.5) / 128).to(self.device)

        boxes = self._stage_pnet(hwc.permute(2, 0, 1))
        if len(boxes):
            boxes = self._stage_rnet(hwc, boxes)
        if not len(boxes):
            return Detections.empty()
        boxes, landmarks = self._stage_onet(hwc, boxes)
        if not len(boxes):
            return Detections.empty()
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width - 1)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height - 1)
        return Detections(boxes[:, :4].astype(np.float32), boxes[:, 4].astype(np.float32),
                          landmarks.astype(np.float32))

    def _stage_pnet(self, chw: torch.Tensor) -> np.ndarray:
        _, height, width = chw.shape
        found = []
        for scale in pyramid_scales(height, width, self.min_face_size, self.scale_factor):
            # TF casts the float size to int32, i.e. truncates.
            out_h, out_w = (np.asarray([height, width]) * scale).astype(np.int32)
            if min(out_h, out_w) < MIN_SIZE:
                # P-Net cannot run on it: the package raises (Keras ValueError) here, which
                # happens from min_face_size ~30 up; skipping the level keeps the others.
                continue
            level = chw if (out_h, out_w) == (height, width) else resize_area(chw, out_h, out_w)
            reg, prob = self.pnet(level[None])
            reg, prob = reg[0].cpu().numpy(), prob[0, 1].cpu().numpy()
            ys, xs = np.nonzero(prob > self.thresholds[0])
            if not len(ys):
                continue
            dx1, dy1, dx2, dy2 = reg[:, ys, xs].astype(np.float64)
            x0, y0 = xs * 2 + 1, ys * 2 + 1          # cell corners, 11 px apart
            cells = np.stack([x0 + dx1 * 11, y0 + dy1 * 11,
                              xs * 2 + 12 + dx2 * 11, ys * 2 + 12 + dy2 * 11,
                              prob[ys, xs].astype(np.float64)], axis=1)
            cells = _sort_desc(cells)
            cells[:, :4] /= scale
            found.append(nms(cells, NMS_PNET_SCALE, sort=False))
        if not found:
            return np.zeros((0, 5))
        return _square(nms(np.concatenate(found), NMS_PNET_ALL))

    def _stage_rnet(self, hwc: torch.Tensor, boxes: np.ndarray) -> np.ndarray:
        reg, prob = self.rnet(crop_and_resize(hwc, boxes, 24))
        boxes = boxes.copy()
        boxes[:, 4] = prob[:, 1].cpu().numpy()
        boxes = _refine(boxes, reg.cpu().numpy())
        boxes = boxes[boxes[:, 4] > self.thresholds[1]]
        return _square(nms(boxes, NMS_RNET))

    def _stage_onet(self, hwc: torch.Tensor,
                    boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        reg, marks, prob = (t.cpu().numpy() for t in self.onet(crop_and_resize(hwc, boxes, 48)))
        # Landmarks are relative to the (+1 sized) input box, shifted by -1, as in the package.
        size = boxes[:, 2:4] - boxes[:, 0:2] + 1
        landmarks = np.stack([marks[:, :5], marks[:, 5:]], axis=2) * size[:, None, :] \
            + boxes[:, None, 0:2] - 1
        boxes = boxes.copy()
        boxes[:, 4] = prob[:, 1]
        boxes = _refine(boxes, reg)
        keep = boxes[:, 4] > self.thresholds[2]
        boxes, landmarks = boxes[keep], landmarks[keep]
        # NMS with landmarks carried along as extra columns.
        both = nms(np.concatenate([boxes, landmarks.reshape(-1, 10)], axis=1), NMS_ONET,
                   method="min")
        return both[:, :5], both[:, 5:].reshape(-1, 5, 2)
