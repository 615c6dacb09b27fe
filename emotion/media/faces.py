"""The face policy: one function turns a picture into a face crop, or says there is none.

Training (preprocess_images.py) and serving (predict.py, the service) call the
same :class:`FaceFinder` with the same :class:`FacePolicy`, which the embedder
records, so a face is cut the same way wherever it is met. Chosen by
measurement (README, "Finding faces"):

1. Pictures smaller than ``upscale_below`` px are upscaled, and square pictures
   (face crops, as data sets hold them) are padded with grey on every side:
   detectors miss faces that touch the border.
2. The detector (BlazeFace by default; MTCNN or OpenCV's Haar cascade on request)
   proposes faces; the largest is kept if MTCNN's O-Net, the 48x48 face/non-face
   network, agrees that its square holds a face (probability >= ``confirm``).
3. When the detector finds none, the picture's centre square is the fallback, if
   O-Net gives it at least ``fallback``: a face filling the frame that the detector
   missed (a close-up, a tight crop). Its crop is used, marked ``detected=False``.
4. Otherwise there is no face: nothing is cropped. A blank, screen-shared or
   camera-off frame is not read as a face (0 of 325 such frames were, measured).

Every crop is the face's box squared, widened by ``margin`` and resized to the
crop size; parts outside the picture replicate its border.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from emotion.core.errors import EmotionError
from emotion.media.images import center_square, crop_square, iou, overlap, square_around

DETECTORS = ("blazeface", "mtcnn", "haar")
GREY = 128


@dataclass(frozen=True)
class FacePolicy:
    detector: str = "blazeface"
    min_score: float = 0.5        # the detector's own threshold (BlazeFace)
    confirm: float = 0.3          # O-Net on the detector's box; 0 keeps every box
    fallback: float | None = 0.9  # O-Net on the centre square; None: no fallback
    margin: float = 0.25          # context around the box, like a data set's face crop
    upscale_below: int = 160      # smaller pictures are upscaled (an integer factor)
    pad: float = 1 / 3            # square pictures get this share of their side as border

    def __post_init__(self) -> None:
        if self.detector not in (*DETECTORS, "none"):
            raise EmotionError(f"face detector {self.detector!r}: choose one of "
                               f"{', '.join(DETECTORS)}")

    def settings(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FaceCrop:
    image: np.ndarray | None  # (size, size, 3) uint8 RGB, or None when there is no face
    detected: bool            # the detector found it (else the verified centre square)
    box: tuple[float, float, float, float] | None = None  # the face in the picture's pixels

    @property
    def found(self) -> bool:
        return self.image is not None


class HaarDetector:
    """OpenCV's frontal-face cascade (the project's first detector; kept for comparison)."""

    def __init__(self) -> None:
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise EmotionError(f"OpenCV's Haar cascade is missing ({path}); "
                               "install opencv-python-headless<5 (5.x ships no cascades)")

    def detect(self, rgb: np.ndarray) -> np.ndarray:
        gray = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        found = self._cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5,
                                               minSize=(max(24, min(gray.shape) // 8),) * 2)
        if len(found) == 0:
            return np.zeros((0, 4), np.float32)
        xywh = np.asarray(found, np.float32)
        return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)


class BlazeDetector:
    def __init__(self, min_score: float) -> None:
        from emotion.media.blazeface import BlazeFace

        self._blaze = BlazeFace(min_score=min_score)

    def detect(self, rgb: np.ndarray, *, scan: bool = False) -> np.ndarray:
        return self._blaze.detect(rgb, scan=scan)[0]


class MtcnnDetector:
    def __init__(self) -> None:
        from emotion.media.mtcnn import MTCNN

        self._mtcnn = MTCNN(min_face_size=40)  # measured: 20's recall in half the time

    def detect(self, rgb: np.ndarray) -> np.ndarray:
        return self._mtcnn.detect(rgb).boxes


class NoDetector:
    """--face_crop 0: no detection; only the centre-square check."""

    def detect(self, rgb: np.ndarray) -> np.ndarray:
        return np.zeros((0, 4), np.float32)


def make_detector(policy: FacePolicy):
    """The policy's detector: an object whose detect(rgb) gives boxes (n, 4)."""
    if policy.detector == "none":
        return NoDetector()
    if policy.detector == "blazeface":
        return BlazeDetector(policy.min_score)
    if policy.detector == "mtcnn":
        return MtcnnDetector()
    return HaarDetector()


class FaceVerifier:
    """MTCNN's O-Net: the probability that a square of a picture holds a face."""

    def __init__(self) -> None:
        import torch

        from emotion.media.mtcnn_nets import build_network

        # channels_last: torch's max-pooling on a contiguous (NCHW) map is some 20 times
        # slower on the CPU; measured, O-Net takes 1.5 ms instead of 3.3 ms a crop.
        self._onet = build_network("onet").to(memory_format=torch.channels_last)

    def __call__(self, rgb: np.ndarray, box) -> float:
        import torch

        crop = crop_square(rgb, box, 48)
        x = torch.from_numpy((crop.astype(np.float32) - 127.5) / 128).permute(2, 0, 1)[None]
        with torch.inference_mode():
            return float(self._onet(x.contiguous(memory_format=torch.channels_last))[2][0, 1])


class SecondOpinion:
    """Does a face box hold a face, by a detector other than the one that found it?

    MTCNN's whole cascade (P-, R- and O-Net, :mod:`emotion.media.mtcnn`) looks at a
    square twice the box's side around it, resized to 160 px, and must find a face at
    least a fifth of the square wide, centred in the middle half of the square; or
    O-Net alone is sure of the box (at least ``sure``). A meeting's participant must
    pass once (:class:`emotion.media.tracks.FaceTracker`): on the composed dev and
    calibration meetings every person passed, and the two things BlazeFace and O-Net
    kept as faces for 12 and 6 frames (glare on a window beside a logo, a tile's edge)
    passed in none of their frames (README, "Participants"). A square of 1.5 times the
    box told them apart as well, but missed some of the drawn faces of the generated
    meetings that a wider view finds."""

    SIZE = 160
    CONTEXT = 1.0      # the square's side is the box's times 1 + CONTEXT

    def __init__(self, sure: float = 0.95) -> None:
        from emotion.media.mtcnn import MTCNN

        self.sure = sure
        self._mtcnn = MTCNN(min_face_size=20)
        self._onet = FaceVerifier()
        self._lock = threading.Lock()

    def __call__(self, rgb: np.ndarray, box) -> bool:
        with self._lock:
            if self._onet(rgb, square_around(box, 0.0)) >= self.sure:
                return True
            found = self._mtcnn.detect(crop_square(rgb, square_around(box, self.CONTEXT),
                                                   self.SIZE))
        lo, hi = self.SIZE / 4, self.SIZE * 3 / 4
        return any(lo <= (b[0] + b[2]) / 2 <= hi and lo <= (b[1] + b[3]) / 2 <= hi
                   and b[2] - b[0] >= self.SIZE / 5 for b in found.boxes)


def detection_view(rgb: np.ndarray, policy: FacePolicy) -> tuple[np.ndarray, float, float]:
    """(the picture the detector sees, its scale, its offset): small pictures upscaled,
    square ones padded with grey. A box b in the view is (b - offset) / scale in rgb."""
    h, w = rgb.shape[:2]
    scale = 1.0
    view = rgb
    if min(h, w) < policy.upscale_below:
        scale = float(int(np.ceil(policy.upscale_below / min(h, w))))
        view = cv2.resize(rgb, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_CUBIC)
    offset = 0.0
    if policy.pad and abs(h - w) <= 0.1 * max(h, w):
        offset = float(int(round(policy.pad * min(view.shape[:2]))))
        view = cv2.copyMakeBorder(view, *(int(offset),) * 4, cv2.BORDER_CONSTANT,
                                  value=(GREY, GREY, GREY))
    return view, scale, offset


class FaceFinder:
    """The largest face of a picture under a :class:`FacePolicy`, cropped to `size`."""

    def __init__(self, policy: FacePolicy, size: int):
        self.policy, self.size = policy, size
        self._detector = make_detector(policy)
        self._verifier = FaceVerifier()
        self._lock = threading.Lock()  # OpenCV's cascade and nets are not thread-safe

    def largest_face(self, rgb: np.ndarray) -> np.ndarray | None:
        """The detector's largest face (x1, y1, x2, y2) in rgb's pixels, confirmed; or None."""
        view, scale, offset = detection_view(rgb, self.policy)
        boxes = self._detector.detect(view)
        if len(boxes) == 0:
            return None
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        box = (boxes[int(np.argmax(areas))] - offset) / scale
        if self.policy.confirm > 0 and self._verifier(rgb, square_around(box, 0.0)) \
                < self.policy.confirm:
            return None
        return box

    def all_faces(self, rgb: np.ndarray, *, min_side: float = 0.0, scan: bool = True,
                  hints=()) -> list[FaceCrop]:
        """Every face of a picture under the policy, largest first: each detector box at
        least `min_side` px that O-Net confirms, cropped as :meth:`__call__` crops the
        largest; when none is confirmed, the verified centre square (as there).

        `scan` also looks at squares of half the picture's side (a gallery's small
        tiles; BlazeFace only); without it, each of the `hints` (boxes of faces found
        in a recent frame) that no box overlaps is kept if O-Net confirms a face there
        still: a tile's face is followed at the cost of one O-Net pass, not a scan."""
        with self._lock:
            view, scale, offset = detection_view(rgb, self.policy)
            if isinstance(self._detector, BlazeDetector):
                boxes = self._detector.detect(view, scan=scan)
            else:  # the others look at the whole picture at every scale already
                boxes = self._detector.detect(view)
            boxes = list((boxes - offset) / scale)
            confirmed = [False] * len(boxes)
            if not scan:
                for h in hints:
                    if all(iou(h, b) < 0.3 and overlap(h, b) < 0.5 for b in boxes):
                        boxes.append(np.asarray(h, np.float32))
                        confirmed.append(False)
            out = []
            areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]
            for i in np.argsort(-np.asarray(areas), kind="stable"):
                box = tuple(float(v) for v in boxes[i])
                if max(box[2] - box[0], box[3] - box[1]) < min_side or (
                        self.policy.confirm > 0 and not confirmed[i] and self._verifier(
                            rgb, square_around(box, 0.0)) < self.policy.confirm):
                    continue
                out.append(FaceCrop(crop_square(rgb, square_around(box, self.policy.margin),
                                                self.size), True, box))
            if not out and self.policy.fallback is not None:
                centre = center_square(rgb.shape[1], rgb.shape[0])
                if self._verifier(rgb, centre) >= self.policy.fallback:
                    out.append(FaceCrop(crop_square(rgb, centre, self.size), False, centre))
        return out

    def __call__(self, rgb: np.ndarray) -> FaceCrop:
        with self._lock:
            box = self.largest_face(rgb)
            if box is not None:
                return FaceCrop(crop_square(rgb, square_around(box, self.policy.margin),
                                            self.size), True, tuple(float(v) for v in box))
            centre = center_square(rgb.shape[1], rgb.shape[0])
            if self.policy.fallback is not None and \
                    self._verifier(rgb, centre) >= self.policy.fallback:
                return FaceCrop(crop_square(rgb, centre, self.size), False, centre)
        return FaceCrop(None, False)
