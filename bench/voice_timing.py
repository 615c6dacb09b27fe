"""What the voice branch costs, today's recipe against the new one, side by side.

    python bench/voice_timing.py --audio ../shared/data/ravdess_16k \
        --audio ../shared/data/emovo_16k --n 40 --out results/voice_timing

- fitting (what extract_embeddings.py spends on the voice branch): the features of n
  clips per corpus and of their windows and copies, then the final head and its speaker
  folds; seconds per clip, for today's recipe (the speech gate without slowed hearings,
  today's copies) and the new one (emotion.models.voice.VoiceConfig(), the shipped gate);
- serving: one 3-s window's audio path (the speech gate, then for speech the prepared
  window through Whisper and the head), milliseconds, median of --repeat, for a window
  of speech, of noise and of silence; one thread.

The machine is shared: the two recipes are timed alternately and the ratios are what to
compare. Writes {out}/voice_timing.json.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from emotion.core import cli
from emotion.core.atomic import write_json
from emotion.core.labels import ALL_LABELS
from emotion.media.audio import AudioParams, prepare_clip
from emotion.media.vad import SpeechDetector
from emotion.models.voice import VoiceConfig, VoiceFeatures, collect, fit_voice

sys.path.insert(0, str(Path(__file__).parent))
from voice_cache import load_corpora  # noqa: E402  (bench/, beside this script)

log = logging.getLogger("voice_timing")
SR = 16_000
TODAY = VoiceConfig(blocks=(2, 3), c=0.03, meeting_copies=0, norm="none", balance=False,
                    calibrate=False)


def recipes() -> dict[str, tuple[VoiceConfig, SpeechDetector]]:
    return {"today": (TODAY, SpeechDetector(slowed_views=())),
            "new": (VoiceConfig(), SpeechDetector())}


def fit_seconds(data: dict, cfg: VoiceConfig, gate: SpeechDetector, params: AudioParams
                ) -> float:
    t = time.perf_counter()
    features = VoiceFeatures(cfg.blocks, cfg.norm)
    labels = np.array([ALL_LABELS.index(("angry", "disgust", "fear", "happy", "neutral",
                                         "sad")[i]) for i in data["labels"]])
    voice = collect(data["waves"], SR, labels, data["speakers"], params=params,
                    detector=gate, features=features, cfg=replace(cfg, folds=4),
                    corpora=data["corpora"])
    fit_voice(voice, replace(cfg, folds=4))
    return time.perf_counter() - t


def window_ms(paths: dict, y: np.ndarray, repeat: int) -> dict[str, float]:
    """Median milliseconds of each path on y, the paths interleaved and their order
    swapped every round (a loaded machine's drift falls on both alike)."""
    names = list(paths)
    times: dict[str, list[float]] = {k: [] for k in names}
    for k in names:
        paths[k](y)
    for i in range(repeat):
        for k in names if i % 2 == 0 else names[::-1]:
            t = time.perf_counter()
            paths[k](y)
            times[k].append(time.perf_counter() - t)
    return {k: round(1000 * statistics.median(v), 1) for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--audio", action="append", required=True)
    p.add_argument("--n", type=int, default=40,
                   help="clips per corpus for the fit (0: time the windows only)")
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--out", default="results/voice_timing", type=Path)
    args = p.parse_args(argv)
    cli.setup_logging()
    torch.set_num_threads(1)
    params, rng = AudioParams(), np.random.default_rng(0)
    # with --n 0 only the first folder is read (its first clip is the speech window)
    data = load_corpora(args.audio if args.n else args.audio[:1])
    keep = []
    for c in sorted(set(data["corpora"])):
        idx = [i for i, k in enumerate(data["corpora"]) if k == c]
        keep += sorted(rng.choice(idx, min(args.n, len(idx)), replace=False).tolist())
    sub = {k: ([v[i] for i in keep] if isinstance(v, list) else v[keep])
           for k, v in data.items()}
    both = recipes()
    result: dict = {"clips": len(keep), "fit_seconds": {}, "window_ms": {}}
    if args.n:
        fit_seconds(sub, *both["today"], params)  # warm-up: the encoder's first load
    for _ in range(2 if args.n else 0):  # in turn, the best of two
        for name, (cfg, gate) in both.items():
            took = round(fit_seconds(sub, cfg, gate, params), 1)
            result["fit_seconds"][name] = min(took, result["fit_seconds"].get(name, took))
            log.info("%s: fit %.1f s", name, took)
    speech = prepare_clip(data["waves"][0], SR, params)[0]
    signals = {"speech": speech,
               "noise": (0.1 * rng.normal(size=3 * SR)).astype(np.float32),
               "silence": np.zeros(3 * SR, np.float32)}
    paths = {}
    for name, (cfg, gate) in both.items():
        features = VoiceFeatures(cfg.blocks, cfg.norm)

        def path(y, gate=gate, features=features):
            if gate.has_speech(y):
                features(prepare_clip(y, SR, params)[0][None])
        paths[name] = path
    for kind, y in signals.items():
        result["window_ms"][kind] = window_ms(paths, y, args.repeat)
    for v in result["window_ms"].values():
        v["ratio"] = round(v["new"] / v["today"], 2)
    if args.n:
        result["fit_ratio"] = round(result["fit_seconds"]["new"]
                                    / result["fit_seconds"]["today"], 2)
    print(result)
    write_json(args.out / "voice_timing.json", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
