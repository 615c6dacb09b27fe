"""Features of every clip of several corpora, and of its windows and copies, computed once
and kept on disk, so that bench/voice_cv.py can compare many recipes of the voice branch
on the same examples without running Whisper again.

    python bench/voice_cache.py --audio ../shared/data/ravdess_16k \
        --audio ../shared/data/emovo_16k --out results/voice_cache

For each clip of the six emotions (its waveform at 16 kHz), the examples:

- ``clip``: the clip prepared whole, as preprocessing_audio.py prepares it;
- ``window``: each 3-s window serving cuts from it, prepared as serving prepares one,
  with the speech seconds the speech gate hears in it (levelled silero-vad);
- ``speed0.9``, ``speed1.1``, ``noise20``: today's perturbed copies;
- ``meeting0``, ``meeting1``: meeting-like copies (emotion.media.augment.meeting_copy:
  a generated room, noise at 5-20 dB, a telephone line, another level).

Each example's features: the outputs of Whisper tiny.en's four encoder blocks, mean and
standard deviation over time (4 x 768 values; --part whisper, {out}/whisper.npz and
{out}/examples.json), and for clips and windows the classic floor's 194 values
(bench/voice_floor.py; --part classic, {out}/classic.npz). A cache made from other
folders or by another version is refused.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from emotion.core import cli
from emotion.core.atomic import atomic_path, write_json
from emotion.core.errors import MediaError
from emotion.core.labels import EMOTIONS
from emotion.media.audio import AudioParams, load_audio, prepare_clip, resample, split_windows
from emotion.media.augment import meeting_copy
from emotion.media.vad import SpeechDetector
from emotion.models import whisper
from emotion.models.voice import noise_copy, speed_copy
from emotion.stages.preprocess_audio import scan_clips

log = logging.getLogger("voice_cache")
SR = 16_000
BLOCKS = (1, 2, 3, 4)
KINDS = ("clip", "window", "speed0.9", "speed1.1", "noise20", "meeting0", "meeting1")
VERSION = 1


def load_corpora(dirs: list[str]) -> dict:
    """Every labelled clip of the six emotions under `dirs`: waveforms at 16 kHz,
    labels (index into EMOTIONS), corpus-prefixed speakers, corpora and paths."""
    waves, labels, speakers, corpora, paths = [], [], [], [], []
    for d in dirs:
        found, _ = scan_clips(d)
        for path, c in found:
            if c.label not in EMOTIONS:
                continue
            y, sr = load_audio(path)
            waves.append(resample(y, sr, SR))
            labels.append(EMOTIONS.index(c.label))
            speakers.append(c.speaker)
            corpora.append(c.corpus)
            paths.append(path)
    return {"waves": waves, "labels": np.array(labels), "speakers": speakers,
            "corpora": corpora, "paths": paths}


def examples_of(y: np.ndarray, rng: np.random.Generator, params: AudioParams):
    """(kind, prepared 3-s clip or None, the raw signal it was prepared from) per example."""
    raw = [("clip", y)] + [("window", w) for w in split_windows(y, SR, params.fixed_duration)]
    raw += [("speed0.9", speed_copy(y, SR, 0.9)), ("speed1.1", speed_copy(y, SR, 1.1)),
            ("noise20", noise_copy(y, 20.0, rng))]
    raw += [(f"meeting{i}", meeting_copy(y, SR, rng)) for i in range(2)]
    out = []
    for kind, signal in raw:
        try:
            prepared = prepare_clip(signal, SR, params)
        except MediaError:
            prepared = None
        out.append((kind, prepared, signal))
    return out


def build(dirs: list[str], out: Path, *, seed: int = 0) -> None:
    """Whisper features of every example, and examples.json."""
    torch.set_num_threads(1)
    params = AudioParams()
    data = load_corpora(dirs)
    log.info("%d clips of %d speakers in %s", len(data["waves"]), len(set(data["speakers"])),
             sorted(set(data["corpora"])))
    rng = np.random.default_rng(seed)
    gate = SpeechDetector()
    encoder = whisper.load_encoder()
    meta, batch, feats = [], [], []
    t = time.perf_counter()

    def flush():
        if batch:
            feats.append(whisper.pooled(encoder, np.stack(batch), BLOCKS).astype(np.float16))
            batch.clear()

    for i, y in enumerate(data["waves"]):
        for kind, prepared, signal in examples_of(y, rng, params):
            meta.append({"clip": i, "kind": kind, "ok": prepared is not None,
                         "speech_s": gate.speech_seconds(signal),
                         "seconds": round(signal.size / SR, 3)})
            batch.append(prepared[0] if prepared else np.zeros(params.n_samples, np.float32))
            if len(batch) >= 32:
                flush()
        if i % 100 == 0:
            log.info("clip %d/%d, %.0f s", i, len(data["waves"]), time.perf_counter() - t)
    flush()
    out.mkdir(parents=True, exist_ok=True)
    _save(out / "whisper.npz", whisper=np.concatenate(feats), labels=data["labels"])
    write_json(out / "examples.json", {
        "version": VERSION, "dirs": [str(Path(d).resolve()) for d in dirs], "seed": seed,
        "blocks": list(BLOCKS), "examples": meta, "speakers": data["speakers"],
        "corpora": data["corpora"], "paths": data["paths"],
        "seconds": round(time.perf_counter() - t, 1)})
    log.info("wrote %d examples to %s in %.0f s", len(meta), out, time.perf_counter() - t)


def build_classic(dirs: list[str], out: Path, *, seed: int = 0, windows: bool = True) -> None:
    """The classic floor's features of every clip and window (rows of examples.json whose
    kind is clip or window, in order; zeros where the example has no usable signal).
    windows=False: of the clips only (pYIN costs about 0.17 s a clip on one core)."""
    from voice_floor import ClassicFloor  # bench/, beside this script

    params, floor = AudioParams(), ClassicFloor(seed=seed)
    data = load_corpora(dirs)
    rows, t = [], time.perf_counter()
    for i, y in enumerate(data["waves"]):
        for signal in [y, *(split_windows(y, SR, params.fixed_duration) if windows else [])]:
            try:
                rows.append(floor.features([prepare_clip(signal, SR, params)])[0])
            except MediaError:
                rows.append(None)
        if i % 100 == 0:
            log.info("classic: clip %d/%d, %.0f s", i, len(data["waves"]),
                     time.perf_counter() - t)
    width = next(len(r) for r in rows if r is not None)
    _save(out / "classic.npz", windows=np.array(windows), classic=np.stack(
        [r if r is not None else np.zeros(width, np.float32) for r in rows]).astype(np.float32))


def _save(path: Path, **arrays) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def load(out: Path, dirs: list[str] | None = None, *, arrays: bool = True
         ) -> tuple[dict, dict]:
    """(examples.json, the arrays) of a cache; refused when made from other folders."""
    meta = json.loads((out / "examples.json").read_text())
    if meta.get("version") != VERSION:
        raise SystemExit(f"{out}: made by another version of voice_cache.py; rebuild it")
    if dirs is not None and meta["dirs"] != [str(Path(d).resolve()) for d in dirs]:
        raise SystemExit(f"{out} was made from {meta['dirs']}; rebuild it for {dirs}")
    found: dict = {}
    for name in ("whisper.npz", "classic.npz") if arrays else ():
        if (out / name).is_file():
            with np.load(out / name) as z:
                found.update({k: z[k] for k in z.files})
    return meta, found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--audio", action="append", required=True, help="repeat for each corpus")
    p.add_argument("--out", default="results/voice_cache", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--part", choices=("whisper", "classic", "classic_clips"),
                   default="whisper",
                   help="whisper (writes examples.json), classic (the floor's features of "
                        "clips and windows) or classic_clips (of clips only: cheaper)")
    args = p.parse_args(argv)
    cli.setup_logging()
    if args.part == "whisper":
        build(args.audio, args.out, seed=args.seed)
    else:
        build_classic(args.audio, args.out, seed=args.seed, windows=args.part == "classic")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
