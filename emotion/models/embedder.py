"""saved_models/embedder.pt: everything that turns media into embeddings.

One artifact holds the image backbone (ResNet18 weights, their hash, the input
size and normalisation, the face detector and margin used in preprocessing) and
the audio side (the preprocessing parameters and the trained audio encoder).
extract_embeddings.py, predict.py and app.py all embed through :class:`Embedder`,
so a new input is embedded exactly as the training data was.

The file is plain data and loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emotion.core.atomic import load_plain, save_atomic
from emotion.core.errors import EmotionError, SchemaError
from emotion.core.h5io import library_versions
from emotion.media.audio import AudioParams, log_mel, prepare_clip
from emotion.media.faces import FACE_MARGIN, face_crop, make_detector
from emotion.models import audio_encoder as ae
from emotion.models.image_backbone import (
    IMAGE_DIM,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageEmbedder,
    make_backbone,
    resolve_device,
    state_sha256,
)

log = logging.getLogger(__name__)

FORMAT = "emotion-embedder"
FORMAT_VERSION = 1
AUDIO_DIM = ae.EMBED_DIM
BATCH = 64


@dataclass
class ImageSpec:
    weights: str          # resolved description: imagenet:..., none:random(...), file:...
    sha256: str           # of the backbone state dict
    input_size: int       # side of the square crop, as in preprocessed_images.h5
    detector: str         # haar | mtcnn | none
    face_margin: float = FACE_MARGIN
    net_size: int | None = None  # side the backbone takes (crops resized); None: input_size


class Embedder:
    """Image backbone + audio encoder + the parameters that feed them."""

    def __init__(self, image_state: dict, image: ImageSpec, audio_state: dict,
                 audio_params: AudioParams, *, device: str = "cpu", precision: str = "auto",
                 extra: dict | None = None):
        self.device = resolve_device(device)
        self.image = image
        self.image_state = image_state
        self.audio_state = audio_state
        self.audio_params = audio_params
        self.extra = extra or {}
        self._images = ImageEmbedder(make_backbone(image_state, self.device), self.device,
                                     input_size=image.net_size)
        self._wanted_precision = precision
        self._precision_chosen = False
        self._audio = ae.from_state(audio_state).to(self.device)
        self._detector = None
        self._detector_lock = threading.Lock()  # OpenCV's cascade is not thread-safe

    # ------------------------------------------------------------- identity
    @property
    def embedder_id(self) -> str:
        """Short hash naming this embedder; stored in every file embedded with it."""
        h = hashlib.sha256()
        h.update(self.image.sha256.encode())
        h.update(state_sha256(self.audio_state["state_dict"]).encode())
        h.update(json.dumps(self.audio_params.__dict__, sort_keys=True).encode())
        h.update(str(self.image.input_size).encode())
        if self.image.net_size not in (None, self.image.input_size):
            h.update(f"net_size={self.image.net_size}".encode())
        return h.hexdigest()[:16]

    # ------------------------------------------------------------- embedding
    def embed_images(self, images: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) floats in [0,1], S = input_size -> (N, 512)."""
        if images.ndim != 4 or images.shape[1:] != (self.image.input_size,) * 2 + (3,):
            raise EmotionError(f"images of shape {images.shape}; this embedder takes "
                               f"(N, {self.image.input_size}, {self.image.input_size}, 3)")
        if not self._precision_chosen:
            self._images.choose_precision(images[:BATCH], self._wanted_precision)
            self._precision_chosen = True
        out = [self._images(images[i:i + BATCH]) for i in range(0, len(images), BATCH)]
        return np.concatenate(out) if out else np.zeros((0, IMAGE_DIM), np.float32)

    @property
    def precision(self) -> str:
        return self._images.precision

    def embed_mels(self, mels: np.ndarray) -> np.ndarray:
        """(N, n_mels, frames) log-mels -> (N, 128)."""
        p = self.audio_params
        if mels.ndim != 3 or mels.shape[1:] != (p.n_mels, p.n_frames):
            raise EmotionError(f"log-mels of shape {mels.shape}; this embedder takes "
                               f"(N, {p.n_mels}, {p.n_frames})")
        return ae.embed(self._audio, mels, device=self.device)

    def face(self, rgb: np.ndarray):
        """A uint8 RGB picture -> FaceCrop at the input size, as preprocessing made it."""
        with self._detector_lock:
            if self._detector is None:
                self._detector = make_detector(self.image.detector)
            return face_crop(rgb, self._detector, self.image.input_size,
                             margin=self.image.face_margin)

    def mel(self, y: np.ndarray, sr: int) -> np.ndarray:
        """A waveform -> the fixed-length log-mel, as preprocessing made it."""
        clip, _ = prepare_clip(y, sr, self.audio_params)
        return log_mel(clip, self.audio_params)

    # ------------------------------------------------------------- file
    def to_dict(self) -> dict:
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "image": {"backbone": "resnet18", "dim": IMAGE_DIM, "weights": self.image.weights,
                      "sha256": self.image.sha256, "input_size": self.image.input_size,
                      "net_size": self.image.net_size,
                      "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
                      "detector": self.image.detector, "face_margin": self.image.face_margin,
                      "state_dict": self.image_state},
            "audio": {"dim": AUDIO_DIM, "params": dict(self.audio_params.__dict__),
                      "encoder": self.audio_state},
            "extra": self.extra, "versions": library_versions(),
        }

    def save(self, path: str | Path) -> Path:
        return save_atomic(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | Path, *, device: str = "cpu",
             precision: str = "auto") -> Embedder:
        d = load_plain(path, fmt=FORMAT, version=FORMAT_VERSION, what="embedder",
                       made_by="extract_embeddings.py")
        img = d["image"]
        spec = ImageSpec(img["weights"], img["sha256"], int(img["input_size"]),
                         img["detector"], float(img["face_margin"]), img.get("net_size"))
        if state_sha256(img["state_dict"]) != spec.sha256:
            raise SchemaError(f"{path}: image weights do not match their recorded hash; "
                              "the file is damaged: re-run extract_embeddings.py")
        return cls(img["state_dict"], spec, d["audio"]["encoder"],
                   AudioParams(**d["audio"]["params"]), device=device, precision=precision,
                   extra=d.get("extra", {}))
