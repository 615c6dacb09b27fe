"""The active-speaker network's inputs: lip-area face crops and MFCCs.

Light-ASD (:mod:`emotion.models.speaker`) was trained on inputs made one exact way
by its authors' code; this module makes them the same way:

- per video frame (25 a second), a grey 112 x 112 crop around the face box,
  cut by :func:`asd_crop` from boxes smoothed over the track by :func:`smooth_boxes`;
- 13 MFCCs at 100 frames a second, by :func:`mfcc` (python-speech-features, the
  authors' own feature code, on 16-bit sample values).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import python_speech_features
from scipy.ndimage import median_filter

from emotion.core.errors import MediaError

SAMPLE_RATE = 16_000
VIDEO_FPS = 25               # the frame rate the network was trained at
MFCC_RATE = 100              # MFCC frames a second: 4 per video frame
N_MFCC = 13
CROP_SCALE = 0.4             # context around the face, as a share of the box's half-size
GREY_FILL = 110              # the authors' padding value outside the frame
CROP_SIZE = 112              # the centre 112 x 112 of the crop resized to 224 x 224
SMOOTH_FRAMES = 13           # median filter over a track's boxes


def mfcc(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(N, 13) float32 MFCCs of 16 kHz mono audio, 10 ms apart, 25 ms windows.

    `audio`: int16 samples, or floats in [-1, 1], which are quantised to int16 as an
    audio decoder writing a 16-bit file would (the network saw 16-bit sample values;
    the scale changes the first coefficient, the log energy). The features are
    ``python_speech_features.mfcc(audio, 16000, numcep=13, winlen=0.025,
    winstep=0.010)``: 26 mel filters, nfft 512, pre-emphasis 0.97, lifter 22.
    N = 1 + ceil((len(audio) - 400) / 160), so 3 s of audio gives 299 frames:
    74 video frames' worth, not 75 (see :func:`emotion.models.speaker.common_length`).
    """
    if sample_rate != SAMPLE_RATE:
        raise MediaError(f"MFCCs for active-speaker detection need {SAMPLE_RATE} Hz audio, "
                         f"got {sample_rate} Hz; resample it first (emotion.media.audio.resample)")
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise MediaError(f"MFCCs need mono audio (one channel), got shape {audio.shape}")
    if audio.size == 0:
        raise MediaError("no audio samples to compute MFCCs from")
    if audio.dtype.kind == "f":
        if not np.isfinite(audio).all():
            raise MediaError("audio holds NaN or infinite samples")
        audio = np.clip(np.rint(audio * 32768.0), -32768, 32767).astype(np.int16)
    elif audio.dtype != np.int16:
        raise MediaError(f"audio must be int16 or float samples, got {audio.dtype}")
    feats = python_speech_features.mfcc(audio, SAMPLE_RATE, numcep=N_MFCC, winlen=0.025,
                                        winstep=0.010)
    return feats.astype(np.float32)


def smooth_boxes(boxes: np.ndarray, kernel: int = SMOOTH_FRAMES) -> np.ndarray:
    """A track's per-frame (x1, y1, x2, y2) boxes, median-filtered over `kernel` frames.

    As the authors' code does, the filter runs over each box's centre and half-size
    s = max(w, h) / 2, and the result is the square of side 2s around the smoothed
    centre, which :func:`asd_crop` turns into the same crop. At a track's ends the
    filter repeats the end box (the authors' ``scipy.signal.medfilt`` pads with zeros,
    which pulls the first and last 6 boxes towards the frame's corner and empties
    them on tracks under 7 frames)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or len(boxes) == 0:
        raise MediaError(f"boxes must be (N, 4) x1, y1, x2, y2 rows, got shape {boxes.shape}")
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    s = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) / 2
    cx, cy, s = (median_filter(v, size=kernel, mode="nearest") for v in (cx, cy, s))
    return np.stack([cx - s, cy - s, cx + s, cy + s], axis=1)


def asd_crop(frame_rgb: np.ndarray, box: Sequence[float], *,
             scale: float = CROP_SCALE) -> np.ndarray:
    """The network's (112, 112) uint8 grey input for one face box (x1, y1, x2, y2).

    With s = max(w, h) / 2 and (cx, cy) the box's centre: rows cy - s to
    cy + s (1 + 2 scale), columns cx - s (1 + scale) to cx + s (1 + scale) (the mouth
    sits low in the crop), grey 110 outside the frame, resized to 224 x 224, made grey,
    and the centre 112 x 112 kept (a grey frame, as video decoding gives for every
    frame, is cut the same way; resizing and making grey commute up to rounding).
    Indices are truncated as the authors' code does
    on the frame padded by s (1 + 2 scale)."""
    frame = np.asarray(frame_rgb)
    grey_in = frame.ndim == 2
    if not (grey_in or (frame.ndim == 3 and frame.shape[2] == 3)) or frame.dtype != np.uint8:
        raise MediaError(f"frame must be (H, W, 3) uint8 RGB or (H, W) uint8 grey, got "
                         f"{frame.shape} {frame.dtype}")
    x1, y1, x2, y2 = (float(v) for v in box)
    s = max(x2 - x1, y2 - y1) / 2
    if not np.isfinite([x1, y1, x2, y2]).all() or s < 1:
        raise MediaError(f"face box {tuple(box)} is empty or not finite")
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    pad = int(s * (1 + 2 * scale))
    # The window in the padded frame's coordinates (where int() is the authors' floor),
    # then shifted back by the padding: the frame itself is never padded.
    r0, r1 = int(cy + pad - s) - pad, int(cy + pad + s * (1 + 2 * scale)) - pad
    c0, c1 = int(cx + pad - s * (1 + scale)) - pad, int(cx + pad + s * (1 + scale)) - pad
    crop = np.full((r1 - r0, c1 - c0) + frame.shape[2:], GREY_FILL, dtype=np.uint8)
    h, w = frame.shape[:2]
    fr0, fr1, fc0, fc1 = max(r0, 0), min(r1, h), max(c0, 0), min(c1, w)
    if fr0 < fr1 and fc0 < fc1:
        crop[fr0 - r0:fr1 - r0, fc0 - c0:fc1 - c0] = frame[fr0:fr1, fc0:fc1]
    big = cv2.resize(crop, (2 * CROP_SIZE, 2 * CROP_SIZE))
    grey = big if grey_in else cv2.cvtColor(big, cv2.COLOR_RGB2GRAY)
    lo = CROP_SIZE // 2
    return np.ascontiguousarray(grey[lo:lo + CROP_SIZE, lo:lo + CROP_SIZE])


def track_crops(frames_rgb: Sequence[np.ndarray], boxes: np.ndarray, *,
                smooth: bool = True) -> np.ndarray:
    """(T, 112, 112) uint8: one face track's crops, frame t cut at box t (smoothed over
    the track first unless `smooth` is False)."""
    if len(frames_rgb) != len(boxes):
        raise MediaError(f"{len(frames_rgb)} frames but {len(boxes)} boxes")
    boxes = smooth_boxes(boxes) if smooth else np.asarray(boxes, dtype=np.float64)
    return np.stack([asd_crop(f, b) for f, b in zip(frames_rgb, boxes, strict=True)])


# Lip sync: does a face's mouth move with the sound? Light-ASD barely tells a face that
# talks along with someone else's voice (a muted talker, someone mouthing) from the
# speaker; the mouth's motion rising and falling with the sound's loudness does.
SYNC_LEAD = 0.04             # seconds the lips lead the sound by (a frame at 25 a second)
MOUTH = (-0.4, 0.2, 0.4, 0.75)   # mouth area: x from cx - 0.4 s to cx + 0.4 s, y from
#                               cy + 0.2 s to cy + 0.75 s (s: half the box's larger side)
MOUTH_SIZE = (32, 22)        # (w, h) the mouth area is resized to before differencing
MIN_SYNC_FRAMES = 10
# Motion above this many times its median over the window's changed frames counts as
# that much: one jump (a head turn, a layout change, a cut) would otherwise decide the
# correlation. 1.5 to 2 fitted best on the calibration meetings (3 and 5 less well, no
# cap worst; README).
MOTION_CAP = 2.0


def mouth_motion(frames_grey: Sequence[np.ndarray], boxes: np.ndarray) -> np.ndarray:
    """(T,) float32: per frame, the mean absolute change of the mouth area's grey levels
    since the frame before (0 for the first), the area cut at each frame's (x1, y1, x2,
    y2) box and resized to MOUTH_SIZE, so that a face's size does not matter."""
    boxes = np.asarray(boxes, dtype=np.float64)
    if len(frames_grey) != len(boxes):
        raise MediaError(f"{len(frames_grey)} frames but {len(boxes)} boxes")
    areas = []
    for frame, (x1, y1, x2, y2) in zip(frames_grey, boxes, strict=True):
        s = max(x2 - x1, y2 - y1) / 2
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        h, w = frame.shape[:2]
        c0, c1 = max(int(cx + MOUTH[0] * s), 0), min(int(cx + MOUTH[2] * s), w)
        r0, r1 = max(int(cy + MOUTH[1] * s), 0), min(int(cy + MOUTH[3] * s), h)
        if c1 - c0 < 2 or r1 - r0 < 2:
            areas.append(np.full(MOUTH_SIZE[::-1], np.nan, np.float32))
            continue
        areas.append(cv2.resize(frame[r0:r1, c0:c1], MOUTH_SIZE,
                                interpolation=cv2.INTER_AREA).astype(np.float32))
    if not areas:
        return np.zeros(0, np.float32)
    stack = np.stack(areas)
    return np.r_[0.0, np.abs(np.diff(stack, axis=0)).mean(axis=(1, 2))].astype(np.float32)


def loudness(audio: np.ndarray, offsets: np.ndarray, sample_rate: int = SAMPLE_RATE,
             span: float = 1 / VIDEO_FPS) -> np.ndarray:
    """Log mean power of `audio` in `span` seconds centred at each of `offsets` (seconds
    from the audio's start); NaN where that stretch holds no sample."""
    power = np.r_[0.0, np.cumsum(np.square(np.asarray(audio, np.float64)))]
    half = int(round(span * sample_rate / 2))
    centre = np.round(np.asarray(offsets, np.float64) * sample_rate).astype(int)
    lo = np.clip(centre - half, 0, len(audio))
    hi = np.clip(centre + half, 0, len(audio))
    n = hi - lo
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n > 0, np.log((power[hi] - power[lo]) / np.maximum(n, 1) + 1e-8),
                        np.nan)


def lip_sync(motion: np.ndarray, loud: np.ndarray) -> float | None:
    """Pearson correlation of a face's mouth motion (:func:`mouth_motion`, capped at
    MOTION_CAP times its median over the frames that changed) with the sound's
    loudness (:func:`loudness`, measured SYNC_LEAD after each frame): about 0.4 for a
    speaker's face on composed meetings, about 0 for a face that talks along with
    another voice or keeps still. None when fewer than MIN_SYNC_FRAMES frames count or
    changed, or either is flat."""
    motion, loud = np.asarray(motion, np.float64), np.asarray(loud, np.float64)
    if len(motion) != len(loud):
        raise MediaError(f"{len(motion)} motion values but {len(loud)} loudness values")
    ok = np.isfinite(motion) & np.isfinite(loud)
    if ok.sum() < MIN_SYNC_FRAMES:
        return None
    x, y = motion[ok], loud[ok]
    moving = x[x > 0]          # frames identical to the one before (a still picture) aside
    if moving.size < MIN_SYNC_FRAMES:
        return None
    x = np.minimum(x, MOTION_CAP * float(np.median(moving)))
    if x.std() < 1e-6 or y.std() < 1e-6:
        return None
    return float(np.corrcoef(x, y)[0, 1])
