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
from emotion.media.encode import write_video

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


# Formants (Hz) of five vowels, the synthesiser's syllable nuclei.
VOWELS = ((730, 1090, 2440), (530, 1840, 2480), (270, 2290, 3010), (570, 840, 2410),
          (300, 870, 2240))
BANDWIDTHS = (80, 100, 120)


def _resonate(x: np.ndarray, freq: float, bandwidth: float, sr: int) -> np.ndarray:
    """A two-pole resonator (one formant)."""
    from scipy.signal import lfilter

    r = np.exp(-np.pi * bandwidth / sr)
    return lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * freq / sr), r * r], x)


def _syllable(p: Prosody, f0: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A consonant (band-passed noise), then a vowel: a glottal pulse train whose pitch
    moves with the emotion's range and tremor, through three formants."""
    from scipy.signal import butter, lfilter

    consonant = lfilter(*butter(2, [2000 / (sr / 2), 6000 / (sr / 2)], "band"),
                        rng.standard_normal(int(rng.uniform(0.03, 0.08) * sr))) * 0.05
    n = int(rng.uniform(0.6, 1.0) / p.rate * sr)
    t = np.arange(n) / sr
    f = f0 * p.pitch * (1 + p.range * np.sin(2 * np.pi * rng.uniform(1.5, 3.0) * t
                                             + rng.uniform(0, 6.3))
                        + p.tremor * np.sin(2 * np.pi * 8.0 * t))
    pulses = np.zeros(n)
    pulses[np.flatnonzero(np.diff(np.floor(np.cumsum(f) / sr), prepend=0.0) > 0)] = 1.0
    # glottal tilt: a darker voice (higher rolloff) loses its high harmonics
    source = lfilter([1.0], [1.0, -min(0.995, 0.9 + 0.05 * p.rolloff)], pulses)
    source = source + p.breath * rng.standard_normal(n) * np.abs(source).max()
    vowel = source
    for formant, bw in zip(VOWELS[int(rng.integers(len(VOWELS)))], BANDWIDTHS, strict=True):
        vowel = _resonate(vowel, formant * rng.uniform(0.95, 1.05), bw, sr)
    vowel = vowel * np.sin(np.pi * np.arange(n) / n) ** 0.5 / (np.abs(vowel).max() + 1e-9)
    pause = np.zeros(int(rng.uniform(0.02, 0.1) * sr))
    return np.concatenate([consonant, vowel, pause])


def speech_like(emotion: str, *, f0: float = 150.0, duration: float = 2.5,
                sr: int = 16_000, rng: np.random.Generator | None = None) -> np.ndarray:
    """Syllables of a formant synthesiser whose prosody says `emotion`; float32 in [-1, 1].

    Voice activity detectors take it for speech (tests/test_vad.py checks), so it
    exercises the speech gate as real recordings do.
    """
    rng = rng or np.random.default_rng(0)
    p = PROSODY[emotion]
    f0 = f0 * rng.uniform(0.95, 1.05)
    parts, n = [], 0
    while n < duration * sr:
        parts.append(_syllable(p, f0, sr, rng))
        n += len(parts[-1])
    y = np.concatenate(parts)[: int(duration * sr)]
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


def _shade(img: np.ndarray, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    """Darken a face's edges, as light falls on a rounded face."""
    yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    d = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2
    shade = 1 - 0.25 * np.clip(d, 0, 1) ** 2
    return np.where((d < 1)[..., None], (img * shade[..., None]).astype(np.uint8), img)


def _eyes_and_brows(img, cx, cy, r, emotion, brow_colour, thick) -> None:
    tilt, brow_h, eye_open, _, _ = FACE[emotion]
    for side in (-1, 1):
        ex, ey = cx + side * r * 0.36, cy - r * 0.12
        cv2.ellipse(img, (int(ex), int(ey)), (int(r * 0.17), max(2, int(r * 0.09 * eye_open))),
                    0, 0, 360, (240, 240, 240), -1, cv2.LINE_AA)
        cv2.circle(img, (int(ex), int(ey)), max(2, int(r * 0.065)), (60, 40, 30), -1,
                   cv2.LINE_AA)
        cv2.circle(img, (int(ex), int(ey)), max(1, int(r * 0.03)), (25, 20, 20), -1,
                   cv2.LINE_AA)
        by = ey - r * (0.2 + brow_h)
        inner = (int(ex - side * r * 0.18), int(by + tilt * r * 0.1))
        outer = (int(ex + side * r * 0.2), int(by - tilt * r * 0.1))
        cv2.line(img, inner, outer, brow_colour, int(thick * 1.5), cv2.LINE_AA)


def _mouth(img, cx, cy, r, emotion, thick, talk: float | None = None) -> None:
    _, _, _, curve, opening = FACE[emotion]
    if talk is not None:  # a speaking mouth opens with the voice
        opening = max(opening, 0.2 + 0.8 * float(np.clip(talk, 0.0, 1.0)))
    my, mw = cy + r * 0.5, r * 0.32
    xs = np.linspace(-1, 1, 24)
    upper = np.stack([cx + xs * mw, my + curve * r * 0.15 * (1 - xs ** 2) - curve * r * 0.05], 1)
    if emotion == "disgust":
        upper[:, 1] += xs * r * 0.08  # a one-sided curl
    cv2.polylines(img, [upper.astype(np.int32)], False, (150, 60, 60), thick, cv2.LINE_AA)
    if opening > 0:
        cv2.ellipse(img, (int(cx), int(my + r * 0.05)), (int(mw * 0.6), int(r * 0.2 * opening)),
                    0, 0, 360, (60, 20, 30), -1, cv2.LINE_AA)


def draw_face(emotion: str, *, size: int = 128, rng: np.random.Generator | None = None,
              look: np.random.Generator | None = None, talk: float | None = None
              ) -> np.ndarray:
    """A drawn face showing `emotion`, (size, size, 3) uint8 RGB: skin tone, hair,
    shading, eyes, brows, nose and mouth, enough for a face detector to find it
    (BlazeFace finds all but about one in a hundred). `look` draws who it is (wall,
    skin, hair, face shape; `rng` when not given), `rng` the rest (tilt, noise): the
    same `look` seed draws the same person again. `talk` (0 to 1): a speaking mouth,
    open that much (the voice's loudness at that frame)."""
    rng = rng or np.random.default_rng(0)
    look = look or rng
    s = 4  # draw large, then shrink: anti-aliasing for free
    big = size * s
    img = np.empty((big, big, 3), np.uint8)
    img[:] = look.integers(30, 220, size=3)
    cx, cy = big / 2 + look.normal(0, big * 0.02), big / 2 + look.normal(0, big * 0.02)
    r = big * look.uniform(0.32, 0.38)
    tone = look.uniform(0.35, 1.0)
    skin = tuple(int(v) for v in np.array([225, 180, 150]) * tone + np.array([20, 10, 5]) *
                 (1 - tone))
    hair = tuple(int(v) for v in look.integers(10, 90, size=3))
    thick = max(2, int(r * 0.05))
    cv2.ellipse(img, (int(cx), int(cy - r * 0.12)), (int(r * 0.95), int(r * 1.08)), 0, 0, 360,
                hair, -1, cv2.LINE_AA)
    cv2.rectangle(img, (int(cx - r * 0.35), int(cy + r * 0.6)), (int(cx + r * 0.35), big),
                  tuple(int(v * 0.85) for v in skin), -1)
    cv2.ellipse(img, (int(cx), int(cy)), (int(r * 0.78), int(r)), 0, 0, 360, skin, -1,
                cv2.LINE_AA)
    cv2.ellipse(img, (int(cx), int(cy - r * 0.75)), (int(r * 0.8), int(r * 0.35)), 0, 180, 360,
                hair, -1, cv2.LINE_AA)
    img = _shade(img, cx, cy, r * 0.78, r)
    _eyes_and_brows(img, cx, cy, r, emotion, tuple(int(v * 0.8) for v in hair), thick)
    nose = np.array([[cx, cy - r * 0.05], [cx - r * 0.1, cy + r * 0.25],
                     [cx + r * 0.1, cy + r * 0.25]], np.int32)
    cv2.polylines(img, [nose], False, tuple(int(v * 0.7) for v in skin), max(2, thick // 2),
                  cv2.LINE_AA)
    _mouth(img, cx, cy, r, emotion, thick, talk)
    m = cv2.getRotationMatrix2D((big / 2, big / 2), rng.normal(0, 6), 1.0)
    img = cv2.warpAffine(img, m, (big, big), borderMode=cv2.BORDER_REPLICATE)
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return np.clip(img + rng.normal(0, 5, img.shape), 0, 255).astype(np.uint8)


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
    # val is large enough to lend half its faces to the fusion model's training
    per_class = images_per_class or {"train": 24, "val": 16, "test": 8}
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
    voice of emotion `voice` when one is given (a camera that sees no one). The
    video shows one person; each second their face is drawn anew (another tilt,
    other noise), so frames vary as in a real recording.
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
                face = (draw_face(emotion, size=size, rng=rng,
                                  look=np.random.default_rng([seed, 7])) if emotion
                        else np.full((size, size, 3), 128, np.uint8))
                faces[k] = in_frame(face, width, height)
            return faces[k]

        said = emotion or voice
        y = speech_like(said, f0=f0, duration=seconds, sr=sr, rng=rng) if said else None
        return frame_at, seconds, y

    return write_video(path, (segment(e, s) for e, s in segments), fps=fps, sr=sr, audio=audio)


def make_meeting(path: str | Path, turns: list[tuple[int | None, list[str], float]], *,
                 fps: int = 10, size: int = 128, frame_size: tuple[int, int] | None = None,
                 cols: int | None = None, sr: int = 16_000, seed: int = 0) -> Path:
    """An mp4 of a gallery-view meeting: participants in a grid of `cols` columns (one
    row by default), each a drawn face of `size` px that keeps its look (skin, hair,
    wall) and shows the turn's emotion. A turn is (who speaks: a participant's index,
    or None for silence; the emotion of each participant; seconds); the speaker's voice
    (their own pitch) says their emotion, and their mouth opens with it. frame_size
    (width, height) defaults to the grid of tiles 1.5 faces wide."""
    n = len(turns[0][1])
    cols = cols or n
    rows = -(-n // cols)
    width, height = frame_size or (cols * (size + size // 2), rows * (size + size // 2))
    tw, th = width // cols, height // rows
    pitch = [110.0 + 90.0 * (k % 3) + 15.0 * (k // 3) for k in range(n)]

    def face(k, e, talk=None):
        return draw_face(e, size=size, rng=np.random.default_rng([seed, k, len(e)]),
                         look=np.random.default_rng([seed, k]), talk=talk)

    def place(frame, k, img):
        y0 = (k // cols) * th + (th - size) // 2
        x0 = (k % cols) * tw + (tw - size) // 2
        frame[y0:y0 + size, x0:x0 + size] = img

    def turn(speaker, emotions, seconds):
        frame = np.full((height, width, 3), 100, np.uint8)
        for k, e in enumerate(emotions):
            place(frame, k, face(k, e))
        if speaker is None:
            return (lambda i: frame), seconds, None
        y = speech_like(emotions[speaker], f0=pitch[speaker], duration=seconds, sr=sr,
                        rng=np.random.default_rng([seed, 99, len(emotions), speaker]))
        # the speaker's mouth opens with their voice's loudness, frame by frame
        step = sr / fps
        loud = np.array([np.sqrt(np.mean(np.square(y[int(i * step):int((i + 1) * step)])))
                         if int(i * step) < len(y) else 0.0
                         for i in range(int(round(seconds * fps)))])
        loud = loud / max(float(loud.max()), 1e-9)

        def frame_at(i):
            out = frame.copy()
            talk = float(loud[min(i, len(loud) - 1)])
            place(out, speaker, face(speaker, emotions[speaker], talk))
            return out

        return frame_at, seconds, y

    return write_video(path, (turn(*t) for t in turns), fps=fps, sr=sr)


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
