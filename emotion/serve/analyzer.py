"""The analysis core: media in, emotions over time and anomaly scores out.

predict.py and the service both call :class:`Analyzer`. It loads the three
artifacts once (embedder.pt, multimodal_best.pth, isolation_forest.joblib),
refuses a set that does not belong together, and embeds every input with the
same functions as training: the face detector and crop of preprocessing, the
log-mel of preprocessing, the embedder's backbone and audio encoder.

Media with time is cut into windows of the training clip length. Per window:
a few frames, the largest face in each, their mean image embedding; the
window's audio through the log-mel and the audio encoder; fusion; anomaly
score. A window without a face takes the audio-only path, a silent one the
image-only path; one with neither is marked ("none") and not guessed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emotion.core.errors import ArtifactError, EmotionError, MediaError
from emotion.core.labels import EMOTIONS
from emotion.core.paths import DEFAULT
from emotion.media.audio import has_speech
from emotion.media.decode import FRAMES_PER_WINDOW, iter_windows, probe
from emotion.media.images import load_image
from emotion.models.anomaly import AnomalyDetector, load_detector
from emotion.models.embedder import Embedder
from emotion.models.fusion import load_checkpoint, predict_proba

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Options:
    hop: float | None = None            # seconds between window starts; None: the window
    frames_per_window: int = FRAMES_PER_WINDOW
    max_duration: float | None = None   # refuse longer media (seconds)


def _mean_weighted(values: list[np.ndarray], weights: list[float]) -> np.ndarray:
    w = np.asarray(weights, np.float64)
    return (np.stack(values) * w[:, None]).sum(0) / w.sum()


class Analyzer:
    def __init__(self, embedder: str | Path = DEFAULT.embedder,
                 multimodal: str | Path = DEFAULT.multimodal,
                 isolation: str | Path = DEFAULT.isolation, *, device: str = "cpu",
                 precision: str = "auto", options: Options = Options()):
        self.paths = {"embedder": str(embedder), "multimodal": str(multimodal),
                      "isolation": str(isolation)}
        try:
            self.embedder = Embedder.load(embedder, device=device, precision=precision)
            self.model, self.ckpt = load_checkpoint(multimodal)
            self.detector: AnomalyDetector = load_detector(isolation)
        except EmotionError as e:
            raise ArtifactError(str(e)) from None
        self.options = options
        self._check_together()

    # ------------------------------------------------------------ set-up
    def _check_together(self) -> None:
        eid = self.embedder.embedder_id
        p = self.paths
        if self.ckpt.get("embedder_id") != eid:
            raise ArtifactError(
                f"{p['multimodal']} was trained on embeddings of embedder "
                f"{self.ckpt.get('embedder_id')}, but {p['embedder']} is embedder {eid}: use the "
                "embedder.pt saved with the model, or retrain from extract_embeddings.py on")
        if self.detector.embedder_id != eid:
            raise ArtifactError(
                f"{p['isolation']} was fitted on embeddings of embedder "
                f"{self.detector.embedder_id}, but {p['embedder']} is embedder {eid}: re-run "
                "train_anomaly.py on the pairs of this embedder")
        cfg = self.ckpt["config"]
        audio_dim = int(self.embedder.audio_state["config"]["embed_dim"])
        if cfg["image_dim"] != 512 or cfg["audio_dim"] != audio_dim:
            raise ArtifactError(f"{p['multimodal']} takes {cfg['image_dim']}+{cfg['audio_dim']}"
                                f"-d inputs; the embedder gives 512+{audio_dim}")
        dims = self.detector.data.get("feature_dims", {})
        if dims and (dims.get("image") != 512 or dims.get("audio") != audio_dim):
            raise ArtifactError(f"{p['isolation']} takes {dims}; the embedder gives "
                                f"image 512, audio {audio_dim}")
        names = self.detector.data.get("label_names")
        if names is not None and list(names) != list(EMOTIONS):
            raise ArtifactError(f"{p['isolation']} was made for labels {names}, not {EMOTIONS}")

    @property
    def window(self) -> float:
        return float(self.embedder.audio_params.fixed_duration)

    @property
    def hop(self) -> float:
        return float(self.options.hop or self.window)

    def used(self) -> dict:
        e = self.embedder
        return {"embedder_id": e.embedder_id, "image_weights": e.image.weights,
                "face_detector": e.image.detector, "image_size": e.image.input_size,
                "precision": e.precision, "model_epoch": self.ckpt.get("epoch"),
                "window_seconds": self.window, "hop_seconds": self.hop,
                "label_names": list(EMOTIONS), "artifacts": dict(self.paths),
                "versions": {k: self.ckpt.get("versions", {}).get(k)
                             for k in ("torch", "torchvision", "scikit-learn")}}

    # ------------------------------------------------------------ embedding
    def image_embedding(self, frames: list[np.ndarray]) -> np.ndarray | None:
        """Mean embedding of the largest face in each frame; None if no frame has one."""
        crops = [c.image for c in (self.embedder.face(f) for f in frames) if c.face_found]
        if not crops:
            return None
        x = np.stack(crops).astype(np.float32) * np.float32(1 / 255)
        return self.embedder.embed_images(x).mean(0)

    def audio_embedding(self, y: np.ndarray | None) -> np.ndarray | None:
        """The clip's embedding, or None when it holds no speech."""
        sr = self.embedder.audio_params.sample_rate
        if y is None or not has_speech(y, sr):
            return None
        try:
            mel = self.embedder.mel(y, sr)
        except MediaError:
            return None
        return self.embedder.embed_mels(mel[None])[0]

    # ------------------------------------------------------------ scoring
    def _score(self, image: np.ndarray | None, audio: np.ndarray | None) -> dict:
        if image is None and audio is None:
            return {"emotion": None, "emotion_probs": None, "anomaly_score": None,
                    "anomaly_flag": None, "modalities": "none"}
        probs = predict_proba(self.model, None if image is None else image[None],
                              None if audio is None else audio[None])[0]
        scores, flags = self.detector.score(None if image is None else image[None],
                                            None if audio is None else audio[None])
        modalities = ("both" if image is not None and audio is not None
                      else "image_only" if image is not None else "audio_only")
        return {"emotion": EMOTIONS[int(np.argmax(probs))],
                "emotion_probs": {n: float(p) for n, p in zip(EMOTIONS, probs, strict=True)},
                "anomaly_score": float(scores[0]), "anomaly_flag": flags[0],
                "modalities": modalities}

    def _summary(self, timeline: list[dict], kind: str, duration: float, started: float,
                 source: dict) -> dict:
        scored = [w for w in timeline if w["emotion_probs"] is not None]
        if not scored:
            raise MediaError("no window holds a face or speech: nothing to analyse")
        weights = [max(w["end"] - w["start"], 1e-3) for w in scored]
        probs = _mean_weighted([np.array([w["emotion_probs"][n] for n in EMOTIONS])
                                for w in scored], weights)
        score = float(np.average([w["anomaly_score"] for w in scored], weights=weights))
        return {
            "kind": kind, "source": source, "duration": round(duration, 3),
            "emotion": EMOTIONS[int(np.argmax(probs))],
            "emotion_probs": {n: float(p) for n, p in zip(EMOTIONS, probs, strict=True)},
            "anomaly_score": score,
            "anomaly_flag": "anomaly" if score > self.detector.threshold else "normal",
            "timeline": timeline,
            "anomalies": [w for w in timeline if w["anomaly_flag"] == "anomaly"],
            "windows": {"total": len(timeline), "scored": len(scored),
                        "with_face": sum(w["face_found"] for w in timeline),
                        "with_speech": sum(w["speech_found"] for w in timeline)},
            "used": self.used(),
            "processing_seconds": round(time.perf_counter() - started, 3),
        }

    # ------------------------------------------------------------ inputs
    def analyze_image(self, image: str | Path | bytes) -> dict:
        """One picture: the largest face, image-only path."""
        started = time.perf_counter()
        emb = self.image_embedding([load_image(image)])
        if emb is None:
            raise MediaError("no face found in the image")
        out = self._score(emb, None)
        out.update(kind="image", face_found=True, speech_found=False,
                   used=self.used(), processing_seconds=round(time.perf_counter() - started, 3))
        return out

    def _windows_of_audio(self, path: str | Path, image: np.ndarray | None):
        """Timeline of an audio file, each window fused with `image` when given."""
        timeline, end = [], 0.0
        for w in self._iter(path, use_video=False):
            a = self.audio_embedding(w.audio)
            timeline.append(self._window(w, image, a, face_found=image is not None))
            end = w.end
        if not timeline:
            raise MediaError(f"{Path(path).name}: holds no audio")
        return timeline, end

    def _iter(self, path: str | Path, *, use_video: bool):
        sr = self.embedder.audio_params.sample_rate
        return iter_windows(path, window=self.window, hop=self.hop, sample_rate=sr,
                            frames_per_window=self.options.frames_per_window,
                            use_video=use_video, max_duration=self.options.max_duration)

    def _window(self, w, image, audio, *, face_found: bool) -> dict:
        out = {"start": round(w.start, 3), "end": round(w.end, 3),
               "face_found": bool(face_found), "speech_found": audio is not None}
        out.update(self._score(image, audio))
        return out

    def analyze_audio(self, audio: str | Path) -> dict:
        started = time.perf_counter()
        self._check_audio(audio)
        timeline, end = self._windows_of_audio(audio, None)
        if not any(w["speech_found"] for w in timeline):
            raise MediaError(f"{Path(audio).name}: no speech found (silent or near-silent)")
        return self._summary(timeline, "audio", end, started, {"audio": str(audio)})

    def analyze_pair(self, image: str | Path | bytes, audio: str | Path) -> dict:
        """A picture and a clip: the face fused with each window of the clip."""
        started = time.perf_counter()
        emb = self.image_embedding([load_image(image)])
        if emb is None:
            raise MediaError("no face found in the image")
        self._check_audio(audio)
        timeline, end = self._windows_of_audio(audio, emb)
        return self._summary(timeline, "image+audio", end, started,
                             {"image": str(image) if not isinstance(image, bytes) else "bytes",
                              "audio": str(audio)})

    def analyze_video(self, video: str | Path) -> dict:
        started = time.perf_counter()
        info = probe(video)
        if not info.has_video:
            raise MediaError(f"{Path(video).name}: holds no video stream"
                             + (" (it is audio: analyse it as audio)" if info.has_audio else ""))
        if not info.has_audio:
            raise MediaError(f"{Path(video).name}: the video has no audio track")
        timeline, end = [], 0.0
        for w in self._iter(video, use_video=True):
            img = self.image_embedding(w.frames)
            a = self.audio_embedding(w.audio)
            timeline.append(self._window(w, img, a, face_found=img is not None))
            end = w.end
        if end <= 0:
            raise MediaError(f"{Path(video).name}: zero duration")
        if not any(w["face_found"] for w in timeline):
            raise MediaError(f"{Path(video).name}: no face found in any frame; to analyse the "
                             "voice alone, pass the file as audio")
        return self._summary(timeline, "video", end, started, {"video": str(video)})

    def _check_audio(self, audio: str | Path) -> None:
        info = probe(audio)
        if not info.has_audio:
            raise MediaError(f"{Path(audio).name}: holds no audio track")

    def analyze_file(self, path: str | Path, kind: str) -> dict:
        """kind: audio or video (the service's `type`), judged again by content."""
        if kind == "audio":
            return self.analyze_audio(path)
        if kind == "video":
            return self.analyze_video(path)
        raise EmotionError(f"type {kind!r}: choose audio or video")
