"""A small generated, labelled data set for the tests and the demo.

Speech-like clips whose prosody (pitch level and range, tempo, loudness,
brightness, tremor, breathiness) depends on the emotion, named as CREMA-D
names them; and drawn faces whose brows, eyes and mouth depend on the
emotion, in AffectNet-style `{split}/{class_id}/` folders (ids of the "seed"
class map). No one would mistake them for people: they exercise the pipeline
end to end and carry a learnable signal, nothing more.

    python -m emotion.stages.sample_data --out data/sample
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf

from emotion.core.labels import CLASS_MAP_PRESETS, CREMA_CODES, EMOTIONS

_CLASS_IDS = {v: k for k, v in CLASS_MAP_PRESETS["seed"].items()}
_CREMA = {v: k for k, v in CREMA_CODES.items()}
SENTENCES = ("DFA", "IEO", "TIE", "ITS")


@dataclass(frozen=True)
class Prosody:
    pitch: float     # times the speaker's f0
    range: float     # relative pitch excursion
    rate: float      # syllables per second
    level: float     # peak amplitude
    rolloff: float   # harmonic amplitude ~ k ** -rolloff (higher is darker)
    tremor: float    # depth of an 8 Hz pitch tremor
    breath: float    # noise mixed into the voice


PROSODY = {
    "angry": Prosody(1.15, 0.18, 5.5, 0.9, 0.7, 0.00, 0.10),
    "disgust": Prosody(0.90, 0.10, 3.0, 0.5, 1.3, 0.00, 0.25),
    "fear": Prosody(1.40, 0.08, 6.0, 0.5, 1.1, 0.06, 0.05),
    "happy": Prosody(1.30, 0.28, 5.0, 0.7, 0.9, 0.00, 0.02),
    "neutral": Prosody(1.00, 0.05, 4.0, 0.5, 1.2, 0.00, 0.02),
    "sad": Prosody(0.85, 0.03, 2.5, 0.3, 1.8, 0.00, 0.05),
    "surprise": Prosody(1.50, 0.35, 4.5, 0.7, 1.0, 0.00, 0.02),
}


def speech_like(emotion: str, *, f0: float = 150.0, duration: float = 2.5,
                sr: int = 16_000, rng: np.random.Generator | None = None) -> np.ndarray:
    """A voiced, syllabic signal whose prosody says `emotion`; float32 in [-1, 1]."""
    rng = rng or np.random.default_rng(0)
    p = PROSODY[emotion]
    n = int(duration * sr)
    t = np.arange(n) / sr
    wobble = p.range * np.sin(2 * np.pi * rng.uniform(0.3, 0.8) * t + rng.uniform(0, 6.3))
    tremor = p.tremor * np.sin(2 * np.pi * 8.0 * t)
    f = f0 * p.pitch * (1 + wobble + tremor) * rng.uniform(0.95, 1.05)
    phase = 2 * np.pi * np.cumsum(f) / sr
    voice = sum(np.sin(k * phase) * k ** -p.rolloff for k in range(1, 16) if k * f.max() < sr / 2)
    voice = voice + p.breath * rng.standard_normal(n) * 3
    rate = p.rate * rng.uniform(0.9, 1.1)
    envelope = np.clip(np.sin(np.pi * rate * t + rng.uniform(0, 3)), 0, None) ** 0.7
    y = voice * envelope
    y = p.level * y / (np.abs(y).max() + 1e-9) * rng.uniform(0.8, 1.0)
    lead = np.zeros(int(rng.uniform(0.1, 0.4) * sr))  # silence that trimming removes
    return np.concatenate([lead, y, lead[: len(lead) // 2]]).astype(np.float32)


# Face geometry per emotion: brow tilt (+ is inner end down), brow height,
# eye openness, mouth curve (+ smile), mouth opening.
FACE = {
    "angry": (0.9, 0.00, 0.55, -0.1, 0.0),
    "disgust": (0.4, -0.03, 0.5, -0.45, 0.05),
    "fear": (-0.6, 0.07, 1.3, -0.15, 0.35),
    "happy": (0.0, 0.02, 0.7, 0.9, 0.1),
    "neutral": (0.0, 0.0, 0.9, 0.0, 0.0),
    "sad": (-0.9, 0.02, 0.7, -0.8, 0.0),
    "surprise": (0.0, 0.12, 1.5, 0.0, 0.8),
}


def draw_face(emotion: str, *, size: int = 128,
              rng: np.random.Generator | None = None) -> np.ndarray:
    """A cartoon face showing `emotion`, (size, size, 3) uint8 RGB."""
    rng = rng or np.random.default_rng(0)
    tilt, brow_h, eye_open, curve, opening = FACE[emotion]
    s = 4  # draw large, then shrink: anti-aliasing for free
    big = size * s
    bg = rng.integers(30, 220, size=3)
    img = np.empty((big, big, 3), np.uint8)
    img[:] = bg
    cx = big / 2 + rng.normal(0, big * 0.03)
    cy = big / 2 + rng.normal(0, big * 0.03)
    r = big * rng.uniform(0.30, 0.38)
    skin = tuple(int(v) for v in rng.integers(90, 240, size=3))
    ink = (25, 20, 20)
    thick = max(2, int(r * 0.05))
    cv2.ellipse(img, (int(cx), int(cy)), (int(r * 0.82), int(r)), 0, 0, 360, skin, -1, cv2.LINE_AA)
    for side in (-1, 1):
        ex, ey = cx + side * r * 0.38, cy - r * 0.2
        cv2.ellipse(img, (int(ex), int(ey)), (int(r * 0.16), max(2, int(r * 0.1 * eye_open))),
                    0, 0, 360, (245, 245, 245), -1, cv2.LINE_AA)
        cv2.circle(img, (int(ex), int(ey)), max(2, int(r * 0.06)), ink, -1, cv2.LINE_AA)
        by = ey - r * (0.22 + brow_h)
        inner = (ex - side * r * 0.18, by + tilt * r * 0.1)
        outer = (ex + side * r * 0.18, by - tilt * r * 0.1)
        cv2.line(img, tuple(int(v) for v in inner), tuple(int(v) for v in outer), ink, thick,
                 cv2.LINE_AA)
    my, mw = cy + r * 0.45, r * 0.35
    xs = np.linspace(-1, 1, 24)
    upper = np.stack([cx + xs * mw, my + curve * r * 0.15 * (1 - xs ** 2) - curve * r * 0.05], 1)
    if emotion == "disgust":
        upper[:, 1] += xs * r * 0.08  # a one-sided curl
    cv2.polylines(img, [upper.astype(np.int32)], False, ink, thick, cv2.LINE_AA)
    if opening > 0:
        cv2.ellipse(img, (int(cx), int(my + r * 0.05)), (int(mw * 0.6), int(r * 0.2 * opening)),
                    0, 0, 360, (60, 20, 30), -1, cv2.LINE_AA)
    angle = rng.normal(0, 6)
    m = cv2.getRotationMatrix2D((big / 2, big / 2), angle, 1.0)
    img = cv2.warpAffine(img, m, (big, big), borderMode=cv2.BORDER_REPLICATE)
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    noise = rng.normal(0, 6, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def make_sample_set(root: str | Path, *, n_speakers: int = 8, clips_per_emotion: int = 3,
                    images_per_class: dict[str, int] | None = None, image_size: int = 96,
                    extra_class_images: int = 3, seed: int = 0) -> tuple[Path, Path]:
    """Write root/audio (CREMA-D names) and root/images ({split}/{class_id}/).

    Also writes a few images of a class outside the six (surprise) in train,
    which the pipeline must count and drop. Returns (audio_dir, images_dir).
    """
    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(seed)
    audio_dir, image_dir = root / "audio", root / "images"
    audio_dir.mkdir(parents=True, exist_ok=True)
    for s in range(n_speakers):
        actor = 1001 + s
        f0 = 110.0 if s % 2 == 0 else 200.0
        f0 *= rng.uniform(0.9, 1.1)
        for emotion in EMOTIONS:
            for k in range(clips_per_emotion):
                sentence = SENTENCES[k % len(SENTENCES)]
                level = ("LO", "MD", "HI", "XX")[k % 4]
                y = speech_like(emotion, f0=f0, duration=rng.uniform(1.5, 3.2), rng=rng)
                sf.write(audio_dir / f"{actor}_{sentence}_{_CREMA[emotion]}_{level}.wav", y,
                         16_000, subtype="PCM_16")
    per_class = images_per_class or {"train": 24, "val": 8, "test": 8}
    for split, n in per_class.items():
        classes = list(EMOTIONS) + (["surprise"] if split == "train" and extra_class_images else [])
        for emotion in classes:
            folder = image_dir / split / str(_CLASS_IDS[emotion])
            folder.mkdir(parents=True, exist_ok=True)
            count = extra_class_images if emotion == "surprise" else n
            for k in range(count):
                face = draw_face(emotion, size=image_size, rng=rng)
                Image.fromarray(face).save(folder / f"{emotion}_{k:04d}.png")
    return audio_dir, image_dir


def write_video(path: str | Path, segments, *, fps: int, sr: int = 16_000,
                audio: bool = True) -> Path:
    """Encode an mp4 (h264 + aac) from segments (frame_at, seconds, waveform or None).

    frame_at(i) gives the segment's i-th RGB frame (all frames one size, even
    sides); the waveform (mono float32 at `sr`) is padded or cut to the segment.
    Segments are encoded one after the other: nothing is held but the current one.
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        vs = as_ = None
        for frame_at, seconds, y in segments:
            n = int(round(seconds * fps))
            for i in range(n):
                rgb = frame_at(i)
                if vs is None:
                    vs = out.add_stream("libx264", rate=fps)
                    vs.height, vs.width = rgb.shape[:2]
                    vs.pix_fmt = "yuv420p"
                    vs.options = {"preset": "ultrafast"}
                    if audio:
                        as_ = out.add_stream("aac", rate=sr, layout="mono")
                for packet in vs.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                    out.mux(packet)
            if as_ is not None:
                k = int(round(seconds * sr))
                y = np.zeros(k, np.float32) if y is None else np.asarray(y, np.float32)
                y = np.pad(y, (0, max(0, k - len(y))))[:k]
                for i in range(0, k, 1024):
                    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(y[None, i:i + 1024]),
                                                       format="flt", layout="mono")
                    frame.sample_rate = sr
                    for packet in as_.encode(frame):
                        out.mux(packet)
        for stream in (vs, as_):
            if stream is not None:
                for packet in stream.encode():
                    out.mux(packet)
    return path


def in_frame(face: np.ndarray, width: int, height: int, grey: int = 100) -> np.ndarray:
    """A face picture placed in the middle of a (height, width) frame."""
    frame = np.full((height, width, 3), grey, np.uint8)
    h, w = face.shape[:2]
    y0, x0 = (height - h) // 2, (width - w) // 2
    frame[y0:y0 + h, x0:x0 + w] = face
    return frame


def make_video(path: str | Path, segments: list[tuple[str | None, float]], *, fps: int = 10,
               size: int = 128, frame_size: tuple[int, int] | None = None, sr: int = 16_000,
               f0: float = 150.0, audio: bool = True, voice: str | None = None,
               seed: int = 0) -> Path:
    """An mp4 of segments (emotion, seconds): the drawn face and voice of each.

    An emotion of None gives a segment with a blank frame and silence, or the
    voice of emotion `voice` when one is given (a camera that sees no one). Each
    second shows a newly drawn face, so frames vary as in a real recording.
    frame_size (width, height) places the face in a larger frame.
    """
    rng = np.random.default_rng(seed)
    width, height = frame_size or (size, size)

    def segment(emotion, seconds):
        faces: dict[int, np.ndarray] = {}

        def frame_at(i: int) -> np.ndarray:
            k = i // fps
            if k not in faces:
                faces.clear()
                face = (draw_face(emotion, size=size, rng=rng) if emotion
                        else np.full((size, size, 3), 128, np.uint8))
                faces[k] = in_frame(face, width, height)
            return faces[k]

        said = emotion or voice
        y = speech_like(said, f0=f0, duration=seconds, sr=sr, rng=rng) if said else None
        return frame_at, seconds, y

    return write_video(path, (segment(e, s) for e, s in segments), fps=fps, sr=sr, audio=audio)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="data/sample")
    p.add_argument("--speakers", type=int, default=8)
    p.add_argument("--clips_per_emotion", type=int, default=3)
    p.add_argument("--train_images", type=int, default=24, help="per class")
    p.add_argument("--eval_images", type=int, default=8, help="per class, for val and test")
    p.add_argument("--image_size", type=int, default=96)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    audio, images = make_sample_set(
        a.out, n_speakers=a.speakers, clips_per_emotion=a.clips_per_emotion,
        images_per_class={"train": a.train_images, "val": a.eval_images, "test": a.eval_images},
        image_size=a.image_size, seed=a.seed)
    print(f"wrote {audio} and {images}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
