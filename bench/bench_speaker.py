"""The active-speaker network's cost per analysis window, on the CPU.

    PYTHONPATH=. python bench/bench_speaker.py [--weights ava] [--repeats 5]

For a 3-s window (75 frames at 25 fps, 300 MFCC frames), the median time of
`ActiveSpeakerModel.score` for 1 face and for 4 faces in one batch (sharing the
window's sound), and of `visual_only` for 4 faces, on 1 and on 2 torch threads;
the 4-face batch is also given as a ratio to 4 single-face calls run in the same
process, and to the same batch sent through the visual encoder all at once (the port
sends one face at a time: less memory traffic). The port runs the temporal (k,1,1)
convolutions as 2-D ones; the same window through plain Conv3d layers (the authors'
way) is timed beside it as the baseline.
Then the inputs' cost: the window's MFCCs, and 75 crops from 1280 x 720 frames.
Inputs are seeded random (the cost does not depend on the pixels).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time

import numpy as np
import torch

from emotion.media.speaker_inputs import asd_crop, mfcc
from emotion.models import speaker
from emotion.models.speaker import ActiveSpeakerModel

FRAMES = 75


def median_seconds(fn, repeats: int) -> float:
    return interleaved({"": fn}, repeats)[""]


def interleaved(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each function, run in turn `repeats` times after a warm-up
    round, so that a load that comes and goes falls on all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for round_ in range(repeats + 1):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if round_:
                times[name].append(time.perf_counter() - t0)
    return {name: float(np.median(t)) for name, t in times.items()}


@contextlib.contextmanager
def patched(name: str, value):
    old = getattr(speaker, name)
    setattr(speaker, name, value)
    try:
        yield
    finally:
        setattr(speaker, name, old)


def plain_conv3d(fn):
    """`fn` with the temporal convolutions run as the authors' Conv3d layers."""
    def run():
        with patched("_over_time", lambda conv, x: conv(x)):
            return fn()
    return run


def whole_batch(fn):
    """`fn` with all 4 faces' frames through the visual encoder at once."""
    def run():
        with patched("VISUAL_CHUNK", 4):
            return fn()
    return run


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default="ava", choices=("ava", "talkset"))
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    model = ActiveSpeakerModel.load(weights=args.weights)
    faces = rng.integers(0, 256, (4, FRAMES, 112, 112), dtype=np.uint8)
    audio = (0.1 * rng.standard_normal(FRAMES * 640 + 240)).astype(np.float32)
    feats = mfcc(audio)
    print(f"load average {os.getloadavg()[0]:.2f}; window {FRAMES} frames, "
          f"{len(feats)} MFCC frames; median of {args.repeats}, variants in turn")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        one = lambda: model.score(faces[0], feats)              # noqa: E731
        four = lambda: model.score(faces, feats)                # noqa: E731
        t = interleaved({"one": one, "plain": plain_conv3d(one), "four": four,
                         "whole": whole_batch(four),
                         "visual": lambda: model.visual_only(faces)}, args.repeats)
        print(f"{threads} thread(s): 1 face {t['one'] * 1e3:.0f} ms (plain Conv3d "
              f"{t['plain'] * 1e3:.0f} ms: {t['one'] / t['plain']:.2f} x); 4 faces in one call "
              f"{t['four'] * 1e3:.0f} ms ({t['four'] / (4 * t['one']):.2f} x four single "
              f"faces; through the visual encoder all at once {t['whole'] * 1e3:.0f} ms: "
              f"{t['four'] / t['whole']:.2f} x); visual-only 4 faces {t['visual'] * 1e3:.0f} ms")
    frame = rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    t_mfcc = median_seconds(lambda: mfcc(audio), args.repeats)
    t_crop = median_seconds(lambda: [asd_crop(frame, (500, 200, 700, 450))
                                     for _ in range(FRAMES)], args.repeats)
    print(f"inputs: MFCCs of 3 s {t_mfcc * 1e3:.1f} ms; {FRAMES} crops of a 250-px face "
          f"in 1280x720 frames {t_crop * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
