"""Images: safe decoding to RGB uint8, square crops and resizing.

Every image, at training or inference, is decoded by :func:`load_image` (or
:func:`to_rgb` for frames already in memory) and cut by :func:`crop_square`.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from emotion.core.errors import MediaError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# A decompression bomb (a small file that decodes to gigapixels) is refused by
# its header, before any pixel is decoded. 40 MP is a large phone photo.
MAX_PIXELS = 40_000_000


def load_image(src: str | Path | bytes) -> np.ndarray:
    """Decode an image file (or bytes) to an (H, W, 3) uint8 RGB array.

    Handles EXIF rotation, grayscale, palette, alpha, CMYK and 16-bit images;
    raises MediaError with the reason for anything it cannot use.
    """
    fp = io.BytesIO(src) if isinstance(src, bytes) else src
    try:
        if not isinstance(src, bytes) and Path(src).stat().st_size == 0:
            raise MediaError("empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(fp) as img:
                w, h = img.size
                if w * h > MAX_PIXELS:
                    raise MediaError(f"image is {w}x{h}, over the {MAX_PIXELS:,} pixel limit "
                                     "(a decompression bomb or an oversized photo)")
                if w < 1 or h < 1:
                    raise MediaError(f"image has no pixels ({w}x{h})")
                img.load()
                img = ImageOps.exif_transpose(img)
                return to_rgb(img)
    except MediaError:
        raise
    except FileNotFoundError:
        raise MediaError(f"no such file: {src}") from None
    except UnidentifiedImageError:
        raise MediaError("not an image, or a format Pillow cannot read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise MediaError(f"decompression bomb refused ({e})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise MediaError(f"corrupt or truncated image ({e})") from None


def to_rgb(img: Image.Image | np.ndarray) -> np.ndarray:
    """Any PIL image or array (HxW, HxWx1/3/4, uint8 or 16-bit) -> HxWx3 uint8 RGB."""
    if isinstance(img, Image.Image):
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(img)
            # 16-bit PNG: scale to 8 bits instead of letting convert() clip at 255.
            arr = (arr.astype(np.float64) * (255.0 / max(int(arr.max()), 255))).round()
            return _gray_to_rgb(arr.astype(np.uint8))
        if img.mode == "F":
            arr = np.nan_to_num(np.asarray(img, dtype=np.float32))
            return _gray_to_rgb(np.clip(arr * (255.0 if arr.max() <= 1 else 1), 0, 255)
                                .astype(np.uint8))
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            # Transparent pixels become white, not whatever colour they hide.
            rgba = img.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            img = Image.alpha_composite(background, rgba)
        return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))
    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        raise MediaError(f"expected a uint8 array, got {arr.dtype}")
    if arr.ndim == 2:
        return _gray_to_rgb(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        return _gray_to_rgb(arr[:, :, 0])
    if arr.ndim == 3 and arr.shape[2] == 4:
        return np.ascontiguousarray(arr[:, :, :3])
    if arr.ndim == 3 and arr.shape[2] == 3:
        return np.ascontiguousarray(arr)
    raise MediaError(f"cannot use an array of shape {arr.shape} as an image")


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))


def center_square(width: int, height: int) -> tuple[float, float, float, float]:
    """The largest centred square box (x1, y1, x2, y2)."""
    side = min(width, height)
    x1, y1 = (width - side) / 2, (height - side) / 2
    return x1, y1, x1 + side, y1 + side


def square_around(box, margin: float) -> tuple[float, float, float, float]:
    """A square box centred on `box`, its side the longer edge times (1 + margin)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    half = max(x2 - x1, y2 - y1) * (1.0 + margin) / 2
    return cx - half, cy - half, cx + half, cy + half


def iou(a, b) -> float:
    """Intersection over union of two boxes (x1, y1, x2, y2)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return float(ix * iy / union) if union > 0 else 0.0


def overlap(a, b) -> float:
    """Intersection over the smaller of two boxes: 1 when one holds the other."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return float(ix * iy / small) if small > 0 else 0.0


def crop_square(rgb: np.ndarray, box, size: int) -> np.ndarray:
    """Cut `box` (x1, y1, x2, y2; may reach outside) and resize to size x size.

    Parts of the box outside the image are filled by replicating the border,
    so a face at the frame's edge keeps its place in the crop.
    """
    h, w = rgb.shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    if x2 <= x1 or y2 <= y1:
        raise MediaError(f"empty crop box {box}")
    pad = max(0, -x1, -y1, x2 - w, y2 - h)
    if pad:
        rgb = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x1, y1, x2, y2 = x1 + pad, y1 + pad, x2 + pad, y2 + pad
    crop = rgb[y1:y2, x1:x2]
    shrinking = (x2 - x1) > size
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    return cv2.resize(crop, (size, size), interpolation=interp)
