"""Face detection and the face crop shared by training and inference.

Two detectors: OpenCV's Haar cascade (fast) and MTCNN (more accurate; the
PyTorch port in :mod:`emotion.media.mtcnn`). The largest face wins; with no face the
image is centre-cropped, and the caller records that no face was found.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from emotion.core.errors import EmotionError
from emotion.media.images import center_square, crop_square, square_around

DETECTORS = ("haar", "mtcnn", "none")
FACE_MARGIN = 0.25   # context around the detector's box, like a data set's face crop
MIN_DETECT_SIDE = 160  # small images (48 px FER faces) are upscaled before detection


class HaarDetector:
    name = "haar"

    def __init__(self) -> None:
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise EmotionError(f"OpenCV's Haar cascade is missing ({path}); "
                               "install opencv-python-headless<5 (5.x ships no cascades)")

    def detect(self, rgb: np.ndarray) -> np.ndarray:
        gray = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        side = min(gray.shape)
        found = self._cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5,
                                               minSize=(max(24, side // 8),) * 2)
        if len(found) == 0:
            return np.zeros((0, 4), np.float32)
        xywh = np.asarray(found, np.float32)
        return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)


class MtcnnDetector:
    name = "mtcnn"

    def __init__(self, device: str = "cpu") -> None:
        from emotion.media.mtcnn import MTCNN

        self._mtcnn = MTCNN(device=device)

    def detect(self, rgb: np.ndarray) -> np.ndarray:
        return self._mtcnn.detect(rgb).boxes


class NoDetector:
    """--face_crop 0: every image is centre-cropped."""

    name = "none"

    def detect(self, rgb: np.ndarray) -> np.ndarray:
        return np.zeros((0, 4), np.float32)


def make_detector(name: str):
    if name == "haar":
        return HaarDetector()
    if name == "mtcnn":
        return MtcnnDetector()
    if name == "none":
        return NoDetector()
    raise EmotionError(f"unknown face detector {name!r}; choose one of {', '.join(DETECTORS)}")


def largest_face(rgb: np.ndarray, detector) -> np.ndarray | None:
    """The box (x1, y1, x2, y2) of the largest face, in the image's pixels, or None."""
    h, w = rgb.shape[:2]
    scale = 1.0
    view = rgb
    if min(h, w) < MIN_DETECT_SIDE:
        scale = float(int(np.ceil(MIN_DETECT_SIDE / min(h, w))))
        view = cv2.resize(rgb, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_CUBIC)
    boxes = detector.detect(view)
    if len(boxes) == 0:
        return None
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return boxes[int(np.argmax(areas))] / scale


@dataclass(frozen=True)
class FaceCrop:
    image: np.ndarray  # (size, size, 3) uint8 RGB
    face_found: bool


def face_crop(rgb: np.ndarray, detector, size: int, *, margin: float = FACE_MARGIN) -> FaceCrop:
    """The largest face, squared with a margin and resized; else the centre square."""
    box = largest_face(rgb, detector)
    if box is None:
        return FaceCrop(crop_square(rgb, center_square(rgb.shape[1], rgb.shape[0]), size), False)
    return FaceCrop(crop_square(rgb, square_around(box, margin), size), True)
