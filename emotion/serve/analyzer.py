"""The analysis core: media in, emotions over time and anomaly scores out.

predict.py and the service both call :class:`Analyzer`. It loads the three
artifacts once (embedder.pt, multimodal_best.pth, isolation_forest.joblib),
refuses a set that does not belong together, and embeds every input with the
same functions as training: the face policy and crop scale of preprocessing,
its clip preparation and speech gate, the embedder's image backbone and voice
branch (Whisper features and the fitted head).

Media with time is cut into windows of the training clip length. Per window:
a few frames through the face policy (the one preprocessing used), the mean
embedding of the faces found; the window's audio through the speech gate and
the voice branch; fusion; anomaly score. A window without a face takes the
audio-only path, one without speech the image-only path; one with neither is
marked ("none") and not guessed. A video is refused only when no window holds
a face or speech.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emotion.core.errors import ArtifactError, EmotionError, MediaError
from emotion.core.labels import EMOTIONS
from emotion.core.paths import DEFAULT
from emotion.media.decode import DENSE_FPS, FRAMES_PER_WINDOW, MAX_FRAME_SIDE, iter_windows, probe
from emotion.media.images import load_image
from emotion.media.tracks import frame_changed
from emotion.models.anomaly import AnomalyDetector, load_detector
from emotion.models.embedder import Embedder, settings_differ
from emotion.models.fusion import load_checkpoint, predict_proba
from emotion.models.image_backbone import IMAGE_DIM
from emotion.models.voice import EMBED_DIM as AUDIO_DIM
from emotion.models.voice import VoiceContext
from emotion.serve.meeting import Meeting, MeetingOptions, SpeakingCalibration

log = logging.getLogger(__name__)

# on_window(window, done, total): called as each window is scored (jobs show progress);
# total is estimated from the media's duration until the last window.
OnWindow = Callable[[dict, int, int], None]


@dataclass(frozen=True)
class Options:
    hop: float | None = None            # seconds between window starts; None: the window
    frames_per_window: int = FRAMES_PER_WINDOW
    max_duration: float | None = None   # refuse longer media (seconds)
    meeting: MeetingOptions = MeetingOptions()


def _mean_weighted(values: list[np.ndarray], weights: list[float]) -> np.ndarray:
    w = np.asarray(weights, np.float64)
    return (np.stack(values) * w[:, None]).sum(0) / w.sum()


class RecordingFaces:
    """A recording's face finding, window after window: one window in scan_every looks
    for new faces, and so does any after one with none found or whose picture changed
    since the last look (a reorder, speaker view, a joiner); the others follow the faces
    found before. Calling it with a window's frames gives Analyzer.faces_of's answer."""

    def __init__(self, analyzer: Analyzer):
        self.analyzer = analyzer
        self.hints: list = []
        self.looked: np.ndarray | None = None   # the first frame of the last window scanned
        self.windows = 0

    def __call__(self, frames: list[np.ndarray]) -> tuple[list[list], np.ndarray]:
        opts = self.analyzer.options.meeting
        scan = (not self.hints or self.windows % max(1, opts.scan_every) == 0
                or frame_changed(self.looked, frames[0], opts.rescan_change))
        if scan:
            self.looked = frames[0]
        faces, emb = self.analyzer.faces_of(frames, scan=scan, hints=self.hints)
        self.hints = [c.box for c in faces[-1] if c.detected]
        self.windows += 1
        return faces, emb


class Analyzer:
    def __init__(self, embedder: str | Path = DEFAULT.embedder,
                 multimodal: str | Path = DEFAULT.multimodal,
                 isolation: str | Path = DEFAULT.isolation, *, device: str = "cpu",
                 options: Options = Options()):
        self.paths = {"embedder": str(embedder), "multimodal": str(multimodal),
                      "isolation": str(isolation)}
        try:
            self.embedder = Embedder.load(embedder, device=device)
            self.model, self.ckpt = load_checkpoint(multimodal)
            self.detector: AnomalyDetector = load_detector(isolation)
        except EmotionError as e:
            raise ArtifactError(str(e)) from None
        self.options = options
        self._speaker_model = None
        self._second_opinion = None
        self._check_together()

    # ------------------------------------------------------------ set-up
    def _check_together(self) -> None:
        ours = self.embedder.settings()
        p = self.paths
        for what, path, theirs, redo in (
                ("trained", p["multimodal"], self.ckpt.get("embedder_settings", {}),
                 "retrain it from extract_embeddings.py on"),
                ("fitted", p["isolation"], self.detector.data.get("embedder_settings", {}),
                 "re-run train_anomaly.py on this embedder's pairs")):
            differ = settings_differ(ours, theirs)
            if differ:
                raise ArtifactError(
                    f"{path} was {what} on embeddings made otherwise than {p['embedder']} "
                    f"makes them ({'; '.join(differ[:3])}"
                    f"{f'; and {len(differ) - 3} more' if len(differ) > 3 else ''}): use the "
                    f"embedder.pt saved with it, or {redo}")
        cfg = self.ckpt["config"]
        if cfg["image_dim"] != IMAGE_DIM or cfg["audio_dim"] != AUDIO_DIM:
            raise ArtifactError(f"{p['multimodal']} takes {cfg['image_dim']}+{cfg['audio_dim']}"
                                f"-d inputs; the embedder gives {IMAGE_DIM}+{AUDIO_DIM}")
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
                "face_detector": e.image.face.detector, "face_policy": e.image.face.settings(),
                "image_size": e.image.input_size, "precision": e.precision,
                "voice_branch": {"encoder": "whisper-tiny.en", "blocks": list(e.voice.blocks),
                                 "speaker_norm": ("per participant (video), per file "
                                                  "(audio)" if e.speaker_norm else None)},
                "speech_gate": e.gate_settings(), "model_epoch": self.ckpt.get("epoch"),
                "window_seconds": self.window, "hop_seconds": self.hop,
                "active_speaker": {"network": "light-asd",
                                   "weights": self.speaker_weights,
                                   "seconds_per_window": self.options.meeting.asd_seconds,
                                   "precision": getattr(self._speaker_model, "precision",
                                                        "auto"),
                                   "min_face": self.options.meeting.min_face,
                                   "scan_every": self.options.meeting.scan_every},
                "label_names": list(EMOTIONS), "artifacts": dict(self.paths),
                "versions": {k: self.ckpt.get("versions", {}).get(k)
                             for k in ("torch", "torchvision", "scikit-learn")}}

    # ------------------------------------------------------------ embedding
    def image_embedding(self, frames: list[np.ndarray]) -> tuple[np.ndarray | None, bool]:
        """(mean embedding of the faces the face policy finds in the frames, or None;
        whether the detector found one, rather than the centre-square fallback)."""
        crops = [c for c in (self.embedder.face(f) for f in frames) if c.found]
        if not crops:
            return None, False
        return self.embedder.embed_faces(crops).mean(0), any(c.detected for c in crops)

    def faces_of(self, frames: list[np.ndarray], *, scan: bool = True,
                 hints: list = ()) -> tuple[list[list], np.ndarray]:
        """Every face of every frame (largest first) and their embeddings, one batch.
        With `scan`, the first frame is searched for every face, small ones included;
        else it follows `hints` (boxes found before). The other frames follow the first."""
        faces = []
        for k, f in enumerate(frames):
            faces.append(self.embedder.faces(f, min_side=self.options.meeting.min_face,
                                             scan=scan and k == 0, hints=hints))
            if k == 0:
                hints = [c.box for c in faces[0] if c.detected]
        return faces, self.embedder.embed_faces([c for fs in faces for c in fs])

    def recording_faces(self) -> RecordingFaces:
        """Face finding for one recording's windows, in order (see RecordingFaces)."""
        return RecordingFaces(self)

    @property
    def speaker_weights(self) -> str:
        """Light-ASD's weights: as asked, else those the speaking calibration was fitted on."""
        return self.options.meeting.asd_weights or SpeakingCalibration.load().weights

    @property
    def speaker_model(self):
        """The active-speaker network, loaded on first use (videos only)."""
        if self._speaker_model is None:
            from emotion.models.speaker import ActiveSpeakerModel

            self._speaker_model = ActiveSpeakerModel.load(weights=self.speaker_weights,
                                                          precision="auto")
        return self._speaker_model

    @property
    def second_opinion(self):
        """A second face detector's check of each new participant, loaded on first use."""
        if self._second_opinion is None:
            from emotion.media.faces import SecondOpinion

            self._second_opinion = SecondOpinion()
        return self._second_opinion

    def audio_embedding(self, y: np.ndarray | None, context: VoiceContext | None = None
                        ) -> np.ndarray | None:
        """The window's embedding, or None when the speech gate hears no one; read against
        `context` (the speaker's earlier windows) by a voice head with speaker norm."""
        return self.embedder.audio_embedding(y, self.embedder.audio_params.sample_rate,
                                             context)

    def window_voice(self, y: np.ndarray | None
                     ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """A video window's (voice features, embedding), both None when the speech gate
        hears no one: a meeting keeps the features to compare voices and to embed them
        again against each participant's own earlier windows."""
        voice = self.embedder.speech_features(y, self.embedder.audio_params.sample_rate)
        return voice, None if voice is None else self.embedder.embed_features(voice[None])[0]

    # ------------------------------------------------------------ scoring
    def _score(self, image: np.ndarray | None, audio: np.ndarray | None) -> dict:
        return self._score_many([(image, audio)])[0]

    def _score_many(self, pairs: list[tuple[np.ndarray | None, np.ndarray | None]]
                    ) -> list[dict]:
        """Emotion and anomaly of (image, audio) embedding pairs (either may be None),
        those with the same modalities in one batch: the networks and forests cost
        about as much for one row as for hundreds."""
        out: list[dict] = [{"emotion": None, "emotion_probs": None, "anomaly_score": None,
                            "anomaly_flag": None, "modalities": "none"} for _ in pairs]
        groups: dict[tuple[bool, bool], list[int]] = {}
        for k, (image, audio) in enumerate(pairs):
            if image is not None or audio is not None:
                groups.setdefault((image is not None, audio is not None), []).append(k)
        for (has_image, has_audio), rows in groups.items():
            image = np.stack([pairs[k][0] for k in rows]) if has_image else None
            audio = np.stack([pairs[k][1] for k in rows]) if has_audio else None
            probs = predict_proba(self.model, image, audio)
            scores, flags = self.detector.score(image, audio)
            modalities = ("both" if has_image and has_audio
                          else "image_only" if has_image else "audio_only")
            for k, p, sc, fl in zip(rows, probs, scores, flags, strict=True):
                out[k] = {"emotion": EMOTIONS[int(np.argmax(p))],
                          "emotion_probs": {n: float(v) for n, v in zip(EMOTIONS, p,
                                                                        strict=True)},
                          "anomaly_score": float(sc), "anomaly_flag": fl,
                          "modalities": modalities}
        return out

    def _window(self, w, image, audio, *, face_detected: bool) -> dict:
        out = {"start": round(w.start, 3), "end": round(w.end, 3),
               "face_found": image is not None, "face_detected": bool(face_detected),
               "speech_found": audio is not None}
        out.update(self._score(image, audio))
        return out

    def _summary(self, timeline: list[dict], kind: str, duration: float, started: float,
                 source: dict, warnings: list[str] = ()) -> dict:
        scored = [w for w in timeline if w["emotion_probs"] is not None]
        if not scored:
            raise MediaError("no window holds a face or speech: nothing to analyse")
        weights = [max(w["end"] - w["start"], 1e-3) for w in scored]
        probs = _mean_weighted([np.array([w["emotion_probs"][n] for n in EMOTIONS])
                                for w in scored], weights)
        score = float(np.average([w["anomaly_score"] for w in scored], weights=weights))
        faces, speech = any(w["face_found"] for w in timeline), \
            any(w["speech_found"] for w in timeline)
        return {
            "kind": kind, "source": source, "duration": round(duration, 3),
            "emotion": EMOTIONS[int(np.argmax(probs))],
            "emotion_probs": {n: float(p) for n, p in zip(EMOTIONS, probs, strict=True)},
            "anomaly_score": score,
            "anomaly_flag": "anomaly" if score > self.detector.threshold else "normal",
            "modalities": "both" if faces and speech else "image_only" if faces
            else "audio_only",
            "warnings": list(warnings),
            "timeline": timeline,
            "anomalies": [w for w in timeline if w["anomaly_flag"] == "anomaly"],
            "windows": {"total": len(timeline), "scored": len(scored),
                        "with_face": sum(w["face_found"] for w in timeline),
                        "with_face_detected": sum(w["face_detected"] for w in timeline),
                        "with_speech": sum(w["speech_found"] for w in timeline)},
            "used": self.used(),
            "processing_seconds": round(time.perf_counter() - started, 3),
        }

    # ------------------------------------------------------------ inputs
    def analyze_image(self, image: str | Path | bytes) -> dict:
        """One picture: its face under the face policy, image-only path."""
        started = time.perf_counter()
        emb, detected = self.image_embedding([load_image(image)])
        if emb is None:
            raise MediaError("no face found in the image")
        out = self._score(emb, None)
        out.update(kind="image", face_found=True, face_detected=detected, speech_found=False,
                   used=self.used(), processing_seconds=round(time.perf_counter() - started, 3))
        return out

    def _windows_of_audio(self, path: str | Path, image: np.ndarray | None,
                          detected: bool = False, on_window: OnWindow | None = None):
        """Timeline of an audio file, each window fused with `image` when given. The file
        is taken for one speaker: a voice head with speaker norm reads each window
        against the file's earlier ones."""
        timeline, end = [], 0.0
        total = self._expected_windows(path) if on_window else 0
        context = VoiceContext()
        for w in self._iter(path, use_video=False):
            timeline.append(self._window(w, image, self.audio_embedding(w.audio, context),
                                         face_detected=detected))
            end = w.end
            if on_window:
                on_window(timeline[-1], len(timeline), max(total, len(timeline)))
        if not timeline:
            raise MediaError(f"{Path(path).name}: holds no audio")
        return timeline, end

    def _iter(self, path: str | Path, *, use_video: bool):
        sr = self.embedder.audio_params.sample_rate
        return iter_windows(path, window=self.window, hop=self.hop, sample_rate=sr,
                            frames_per_window=self.options.frames_per_window,
                            use_video=use_video, max_duration=self.options.max_duration,
                            dense_fps=DENSE_FPS if use_video else None)

    def _expected_windows(self, path: str | Path) -> int:
        return max(1, math.ceil(probe(path).duration / self.hop - 1e-6))

    def analyze_audio(self, audio: str | Path, on_window: OnWindow | None = None) -> dict:
        started = time.perf_counter()
        self._check_audio(audio)
        timeline, end = self._windows_of_audio(audio, None, on_window=on_window)
        if not any(w["speech_found"] for w in timeline):
            raise MediaError(f"{Path(audio).name}: no speech found (the voice activity "
                             "detector hears no one: silence, hum or noise)")
        return self._summary(timeline, "audio", end, started, {"audio": str(audio)})

    def analyze_pair(self, image: str | Path | bytes, audio: str | Path) -> dict:
        """A picture and a clip: the face fused with each window of the clip."""
        started = time.perf_counter()
        emb, detected = self.image_embedding([load_image(image)])
        if emb is None:
            raise MediaError("no face found in the image")
        self._check_audio(audio)
        timeline, end = self._windows_of_audio(audio, emb, detected)
        return self._summary(timeline, "image+audio", end, started,
                             {"image": str(image) if not isinstance(image, bytes) else "bytes",
                              "audio": str(audio)})

    def analyze_video(self, video: str | Path, on_window: OnWindow | None = None) -> dict:
        """Every window's faces and voice. A video is answered whenever any window holds
        a face or speech: audio only when no frame shows a face, image only when nothing
        is heard; refused only when there is neither."""
        started = time.perf_counter()
        name = Path(video).name
        info = probe(video)
        if not info.has_video:
            raise MediaError(f"{name}: holds no video stream"
                             + (" (it is audio: analyse it as audio)" if info.has_audio else ""))
        side = max(info.width, info.height)
        meeting = Meeting(self.speaker_model, options=self.options.meeting,
                          verify=self.second_opinion,
                          frame_scale=side / MAX_FRAME_SIDE if side > MAX_FRAME_SIDE else 1.0)
        timeline, end = [], 0.0
        total = max(1, math.ceil(info.duration / self.hop - 1e-6))
        find_faces = self.recording_faces()
        for w in self._iter(video, use_video=True):
            faces, emb = find_faces(w.frames)
            # the window's own face, as before participants: each frame's largest
            rows = np.cumsum([0] + [len(fs) for fs in faces[:-1]])[[bool(fs) for fs in faces]]
            img = emb[rows].mean(0) if len(rows) else None
            voice, audio = self.window_voice(w.audio)
            timeline.append(self._window(w, img, audio, face_detected=any(
                fs[0].detected for fs in faces if fs)))
            meeting.observe(w, faces, emb, audio, voice)
            end = w.end
            if on_window:
                on_window(timeline[-1], len(timeline), max(total, len(timeline)))
        if end <= 0:
            raise MediaError(f"{name}: zero duration")
        faces = any(w["face_found"] for w in timeline)
        speech = any(w["speech_found"] for w in timeline)
        if not faces and not speech:
            raise MediaError(f"{name}: no face in any frame and no speech"
                             + ("" if info.has_audio else " (no audio track)")
                             + ": nothing to analyse")
        warnings = []
        if not faces:
            warnings.append("no face found in any frame: the timeline is audio only")
        if not info.has_audio:
            warnings.append("the video has no audio track: the timeline is image only")
        elif not speech:
            warnings.append("no speech heard: the timeline is image only")
        result = self._summary(timeline, "video", end, started, {"video": str(video)},
                               warnings)
        # a voice head with speaker norm reads each participant's speech against their own
        # earlier windows (the top-level timeline, one voice for the recording, does not)
        result.update(meeting.finish(
            self._score_many, hop=self.hop,
            embed_voice=self.embedder.embed_features if self.embedder.speaker_norm else None))
        result["processing_seconds"] = round(time.perf_counter() - started, 3)
        return result

    def _check_audio(self, audio: str | Path) -> None:
        info = probe(audio)
        if not info.has_audio:
            raise MediaError(f"{Path(audio).name}: holds no audio track")

    def analyze_file(self, path: str | Path, kind: str,
                     on_window: OnWindow | None = None) -> dict:
        """kind: audio or video (the service's `type`), judged again by content."""
        if kind == "audio":
            return self.analyze_audio(path, on_window)
        if kind == "video":
            return self.analyze_video(path, on_window)
        raise EmotionError(f"type {kind!r}: choose audio or video")
