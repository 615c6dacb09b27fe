"""Window accuracy on videos composed from real data (not part of the tests).

    python tools/video_accuracy.py --fer ../shared/data/fer2013/test \
        --audio_h5 preprocessed_audio.h5 --artifacts . --n_videos 5 --segments 8

Each video is a run of 3 s segments; a segment shows one face image of an
emotion (from the FER test split, upscaled in a 640x360 frame) while a speech
clip of the same emotion plays, from a speaker of the audio file's test split
(so neither the faces nor the voices were trained on). A window is correct
when the predicted emotion is the segment's. Prints accuracy overall and by
the path each window took (both, image only, audio only).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from emotion.core import h5io
from emotion.core.labels import ALL_LABELS, EMOTIONS, canonical
from emotion.media.audio import load_audio, resample, to_mono
from emotion.media.images import load_image
from emotion.serve.analyzer import Analyzer
from emotion.stages.sample_data import in_frame, write_video

SEGMENT = 3.0
FPS = 25


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fer", required=True, type=Path, help="folder of {emotion}/*.jpg")
    p.add_argument("--audio_h5", required=True, help="preprocessed_audio.h5 (for its splits)")
    p.add_argument("--artifacts", default=".", type=Path)
    p.add_argument("--out", default="results/video_accuracy", type=Path)
    p.add_argument("--n_videos", type=int, default=5)
    p.add_argument("--segments", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    with h5io.open_checked(args.audio_h5, h5io.PREPROCESSED_AUDIO) as f:
        clips = [(pth, ALL_LABELS[y]) for pth, y, s in zip(
            h5io.read_strings(f["paths"]), f["labels"][()], h5io.read_strings(f["splits"]),
            strict=True) if s == "test"]
    faces = {e: sorted((args.fer / d).glob("*.jpg")) for d in
             (x.name for x in args.fer.iterdir() if x.is_dir()) if (e := canonical(d)) in EMOTIONS}
    a = Analyzer(args.artifacts / "saved_models" / "embedder.pt",
                 args.artifacts / "saved_models" / "multimodal_best.pth",
                 args.artifacts / "anomaly" / "isolation_forest.joblib")
    sr = a.embedder.audio_params.sample_rate
    hits: Counter = Counter()
    totals: Counter = Counter()
    args.out.mkdir(parents=True, exist_ok=True)
    for v in range(args.n_videos):
        truth = [EMOTIONS[i] for i in rng.integers(0, len(EMOTIONS), args.segments)]

        def segment(emotion):
            face = load_image(faces[emotion][rng.integers(len(faces[emotion]))])
            face = cv2.resize(face, (192, 192), interpolation=cv2.INTER_CUBIC)
            frame = in_frame(face, 640, 360)
            pool = [c for c, e in clips if e == emotion]
            y, clip_sr = load_audio(pool[rng.integers(len(pool))])
            y = resample(to_mono(y), clip_sr, sr)
            return (lambda i, fr=frame: fr), SEGMENT, y

        video = write_video(args.out / f"composed_{v}.mp4", [segment(e) for e in truth],
                            fps=FPS, sr=sr)
        r = a.analyze_video(video)
        for w in r["timeline"]:
            k = int(w["start"] // SEGMENT)
            if k >= len(truth) or w["emotion"] is None:
                continue
            ok = w["emotion"] == truth[k]
            for key in ("all", w["modalities"]):
                hits[key] += ok
                totals[key] += 1
    report = {k: {"windows": totals[k], "accuracy": hits[k] / totals[k]} for k in totals}
    print(json.dumps(report, indent=2))
    (args.out / "video_accuracy.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
