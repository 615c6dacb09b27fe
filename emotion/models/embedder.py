"""saved_models/embedder.pt: everything that turns media into embeddings.

One artifact holds what shapes an input on its way to an embedding, and the
weights that embed it:

- images: the face policy (detector and its settings, O-Net checks, margin,
  fallback), the crop size, the network's input size and normalisation, the
  numeric precision, and the ResNet18 backbone (weights and hash);
- audio: the clip parameters (sample rate, trimming, the 3-s window), the speech
  gate (silero-vad and its thresholds), and the voice branch (Whisper tiny.en's
  file hash, its blocks and pooling, the fitted head).

extract_embeddings.py, predict.py and app.py all embed through :class:`Embedder`,
so a new input goes through exactly the functions the training data went
through. :meth:`Embedder.settings` lists every one of those settings; the
embedder id is their hash, and every later artifact records the settings it was
made with, so a mismatch is refused naming the setting that differs.

The file is plain data and loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from emotion.core.atomic import load_plain, save_atomic
from emotion.core.errors import EmotionError, MediaError, SchemaError
from emotion.core.h5io import library_versions, to_unit
from emotion.media.audio import AudioParams, prepare_clip, resample, to_mono
from emotion.media.faces import FaceCrop, FaceFinder, FacePolicy
from emotion.models import whisper
from emotion.models.image_backbone import (
    IMAGE_DIM,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageEmbedder,
    arch_of,
    cpu_supports_bf16,
    make_backbone,
    resolve_device,
    state_sha256,
)
from emotion.models.voice import EMBED_DIM as AUDIO_DIM
from emotion.models.voice import (
    VoiceConfig,
    VoiceContext,
    VoiceFeatures,
    VoiceHead,
    config_dict,
    config_from,
)

log = logging.getLogger(__name__)

FORMAT = "emotion-embedder"
FORMAT_VERSION = 2
BATCH = 64


@dataclass(frozen=True)
class ImageSpec:
    weights: str                 # resolved description: imagenet:..., none:random(...), file:...
    sha256: str                  # of the backbone state dict
    input_size: int              # side of the face crops, as in preprocessed_images.h5
    face: FacePolicy = FacePolicy()
    net_size: int | None = None  # side the backbone takes (crops resized); None: input_size
    precision: str = "fp32"      # bf16 or fp32, chosen once on the training images
    trained_on: str | None = None  # the image split the backbone learned from, if any


def flat(settings: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}: settings compared key by key."""
    out = {}
    for k, v in settings.items():
        if isinstance(v, dict):
            out |= flat(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def settings_differ(ours: dict, theirs: dict) -> list[str]:
    """The settings (dotted names) whose values differ, with both values."""
    a, b = flat(ours), flat(theirs)
    return [f"{k}: {b.get(k)!r} there, {a.get(k)!r} here" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k)]


class Embedder:
    """Face policy, image backbone, speech gate and voice branch, and their settings."""

    def __init__(self, image_state: dict, image: ImageSpec, voice_state: dict,
                 voice: VoiceConfig, audio_params: AudioParams, *, speech_gate: dict | None = None,
                 device: str = "cpu", extra: dict | None = None):
        from emotion.media import vad

        self.device = resolve_device(device)
        self.image_state = image_state
        self.voice_state, self.voice, self.audio_params = voice_state, voice, audio_params
        # a gate recorded before levelling (or slowed hearings, or the pitch opinion)
        # existed did none of them
        self.speech_gate = {"level_normalised": False, "slowed_views": [],
                            "pitch_opinion": False, **speech_gate} \
            if speech_gate else {
                "threshold": vad.THRESHOLD, "min_speech_seconds": vad.MIN_SPEECH_SECONDS,
                "level_normalised": vad.LEVEL_NORMALISED,
                "slowed_views": list(vad.SLOWED_VIEWS), "pitch_opinion": vad.PITCH_OPINION}
        self.extra = extra or {}
        precision = image.precision
        if precision == "bf16" and self.device == "cpu" and not cpu_supports_bf16():
            log.warning("this embedder embeds faces in bf16 but this CPU has none: fp32 here "
                        "(embeddings agree to a cosine of 0.99 or better)")
            precision = "fp32"
        self.image = image
        self._images = ImageEmbedder(make_backbone(image_state, self.device), self.device,
                                     precision=precision, input_size=image.net_size)
        self._head = VoiceHead(voice_state)
        self._faces: FaceFinder | None = None
        self._voice: VoiceFeatures | None = None
        self._gate = None

    # ------------------------------------------------------------- identity
    def settings(self) -> dict:
        """Every setting that shapes an input on its way to an embedding, and the weights."""
        return {
            "image": {"backbone": arch_of(self.image_state), "weights_sha256": self.image.sha256,
                      "crop_size": self.image.input_size, "net_size": self.image.net_size,
                      "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
                      "precision": self.image.precision, "trained_on": self.image.trained_on,
                      "face": self.image.face.settings()},
            "audio": {**self.audio_params.__dict__, "window_seconds":
                      self.audio_params.fixed_duration, "speech_gate": self.gate_settings()},
            "voice": {**config_dict(self.voice), "encoder": "whisper-tiny.en",
                      "encoder_sha256": whisper.MODEL_SHA256,
                      "head_sha256": self._head.sha256()},
        }

    def gate_settings(self) -> dict:
        # no slowed hearings (no pitch opinion) is recorded as before they existed: old
        # embedders keep their id
        return {"kind": "silero-vad", **{k: v for k, v in self.speech_gate.items()
                                         if k not in ("slowed_views", "pitch_opinion") or v}}

    @property
    def embedder_id(self) -> str:
        """Short hash naming this embedder; stored in every file embedded with it."""
        text = json.dumps(self.settings(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def precision(self) -> str:
        return self._images.precision

    # ------------------------------------------------------------- images
    def face(self, rgb: np.ndarray) -> FaceCrop:
        """A uint8 RGB picture -> its face crop under the face policy (image None: no face)."""
        if self._faces is None:
            self._faces = FaceFinder(self.image.face, self.image.input_size)
        return self._faces(rgb)

    def faces(self, rgb: np.ndarray, *, min_side: float = 0.0, scan: bool = True,
              hints=()) -> list[FaceCrop]:
        """Every face of a picture under the face policy, largest first (a meeting's
        participants); the first is the one :meth:`face` gives
        (:meth:`FaceFinder.all_faces`)."""
        if self._faces is None:
            self._faces = FaceFinder(self.image.face, self.image.input_size)
        return self._faces.all_faces(rgb, min_side=min_side, scan=scan, hints=hints)

    def embed_images(self, images: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) floats in [0,1], S = the crop size -> (N, 512)."""
        if images.ndim != 4 or images.shape[1:] != (self.image.input_size,) * 2 + (3,):
            raise EmotionError(f"images of shape {images.shape}; this embedder takes "
                               f"(N, {self.image.input_size}, {self.image.input_size}, 3)")
        out = [self._images(images[i:i + BATCH]) for i in range(0, len(images), BATCH)]
        return np.concatenate(out) if out else np.zeros((0, IMAGE_DIM), np.float32)

    def embed_faces(self, crops: list[FaceCrop]) -> np.ndarray:
        """Crops from :meth:`face` -> (N, 512), scaled as the stored training crops are."""
        if not crops:
            return np.zeros((0, IMAGE_DIM), np.float32)
        return self.embed_images(to_unit(np.stack([c.image for c in crops])))

    # ------------------------------------------------------------- audio
    def has_speech(self, y: np.ndarray | None) -> bool:
        """The speech gate, on audio at the training sample rate."""
        if self._gate is None:
            from emotion.media.vad import SpeechDetector

            self._gate = SpeechDetector(**self.speech_gate)
        return self._gate.has_speech(y)

    @property
    def voice_features(self) -> VoiceFeatures:
        if self._voice is None:
            self._voice = VoiceFeatures(self.voice.blocks, self.voice.norm)
        return self._voice

    def embed_clips(self, clips: np.ndarray, context: VoiceContext | None = None
                    ) -> np.ndarray:
        """Prepared clips (N, n_samples) -> (N, 128) audio embeddings. `context`: the
        speaker's earlier windows, for a voice head with speaker norm; the clips are
        added to it after they are embedded."""
        if len(clips) == 0:
            return np.zeros((0, AUDIO_DIM), np.float32)
        return self.embed_features(self.voice_features(clips), context)

    def embed_features(self, x: np.ndarray, context: VoiceContext | None = None
                       ) -> np.ndarray:
        """Voice features (N, F) -> (N, 128) embeddings, read against `context` (the
        speaker's earlier windows) when the head has speaker norm; x joins it after."""
        out = self._head.embed(x, context)
        if context is not None:
            context.add(x)
        return out

    @property
    def speaker_norm(self) -> bool:
        """Whether the voice head reads a window against its speaker's earlier ones."""
        return "prior" in self.voice_state

    def speech_features(self, y: np.ndarray | None, sr: int) -> np.ndarray | None:
        """A window's audio at any rate -> its voice features (F,), before the head, or
        None when the speech gate hears no one. Brought to the training rate first, as
        preprocessing does."""
        if y is None or y.size == 0:
            return None
        rate = self.audio_params.sample_rate
        y = resample(to_mono(y), sr, rate)
        if not self.has_speech(y):
            return None
        try:
            clip, _ = prepare_clip(y, rate, self.audio_params)
        except MediaError:
            return None
        return self.voice_features(clip[None])[0]

    def audio_embedding(self, y: np.ndarray | None, sr: int,
                        context: VoiceContext | None = None) -> np.ndarray | None:
        """A window's audio at any rate -> its embedding, or None when the speech gate
        hears no one. Pass one VoiceContext per speaker (participant) and analysis: a
        head with speaker norm then reads each window against that speaker's earlier
        windows."""
        x = self.speech_features(y, sr)
        return None if x is None else self.embed_features(x[None], context)[0]

    # ------------------------------------------------------------- file
    def to_dict(self) -> dict:
        img = self.image
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "image": {"backbone": arch_of(self.image_state), "dim": IMAGE_DIM,
                      "weights": img.weights,
                      "sha256": img.sha256, "input_size": img.input_size,
                      "net_size": img.net_size, "precision": img.precision,
                      "trained_on": img.trained_on,
                      "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
                      "face": img.face.settings(), "state_dict": self.image_state},
            "audio": {"dim": AUDIO_DIM, "params": dict(self.audio_params.__dict__),
                      "speech_gate": dict(self.speech_gate), "voice": config_dict(self.voice),
                      "head": self._head.to_state()},
            "settings": self.settings(), "extra": self.extra, "versions": library_versions(),
        }

    def save(self, path: str | Path) -> Path:
        return save_atomic(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | Path, *, device: str = "cpu") -> Embedder:
        d = load_plain(path, fmt=FORMAT, version=FORMAT_VERSION, what="embedder",
                       made_by="extract_embeddings.py")
        img = d["image"]
        spec = ImageSpec(img["weights"], img["sha256"], int(img["input_size"]),
                         FacePolicy(**img["face"]), img.get("net_size"), img["precision"],
                         img.get("trained_on"))
        if state_sha256(img["state_dict"]) != spec.sha256:
            raise SchemaError(f"{path}: image weights do not match their recorded hash; "
                              "the file is damaged: re-run extract_embeddings.py")
        a = d["audio"]
        emb = cls(img["state_dict"], spec, a["head"], config_from(a["voice"]),
                  AudioParams(**a["params"]), speech_gate=a["speech_gate"], device=device,
                  extra=d.get("extra", {}))
        differ = settings_differ(emb.settings(), d["settings"])
        if differ:
            raise SchemaError(f"{path} was made by another version of this code (its "
                              f"settings differ: {'; '.join(differ[:3])}); re-run "
                              "extract_embeddings.py")
        return emb

    def with_precision(self, precision: str) -> Embedder:
        """The same embedder, embedding faces in `precision` (chosen once, at training)."""
        return Embedder(self.image_state, replace(self.image, precision=precision),
                        self.voice_state, self.voice, self.audio_params,
                        speech_gate=self.speech_gate, device=self.device, extra=self.extra)
