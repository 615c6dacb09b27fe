"""The audio preprocessing stage: a folder of labelled clips to one HDF5 file
and a CSV manifest beside it."""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import logging
import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import h5io
from .audio import AUDIO_EXTENSIONS, AudioParams, features_from_file
from .errors import EmotionError, LabelError, MediaError
from .labels import ALL_LABELS, ClipLabel, parse_clip_name, read_labels_csv
from .parallel import ordered_map
from .splits import SPLITS, assign_speakers

log = logging.getLogger(__name__)
MANIFEST_FIELDS = ("path", "label", "speaker", "duration", "split", "status", "reason")
WRITE_BATCH = 256


@dataclass(frozen=True)
class Clip:
    path: str
    label: str
    speaker: str
    split: str


def scan_clips(audio_dir: str | Path, labels_csv: str | Path | None = None
               ) -> tuple[list[tuple[str, ClipLabel]], list[tuple[str, str]]]:
    """Audio files under `audio_dir` with their labels, and those without one."""
    audio_dir = Path(audio_dir)
    if not audio_dir.is_dir():
        raise EmotionError(f"--audio_dir {audio_dir} is not a folder")
    files = sorted(p for p in audio_dir.rglob("*")
                   if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        raise EmotionError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) under {audio_dir}")
    if labels_csv is None and (audio_dir / "labels.csv").is_file():
        labels_csv = audio_dir / "labels.csv"
    table = read_labels_csv(labels_csv) if labels_csv else None
    found, unlabelled = [], []
    for p in files:
        key = str(p.resolve())
        if table is not None:
            if key in table:
                found.append((key, table[key]))
            else:
                unlabelled.append((key, f"not listed in {labels_csv}"))
            continue
        try:
            found.append((key, parse_clip_name(p)))
        except LabelError as e:
            unlabelled.append((key, str(e)))
    return found, unlabelled


def _featurise(clip: Clip, *, params: AudioParams):
    try:
        feats, duration = features_from_file(clip.path, params)
        return clip, feats, duration, None
    except MediaError as e:
        return clip, None, 0.0, str(e)
    except Exception as e:  # noqa: BLE001 - one odd file must not end the run
        return clip, None, 0.0, f"unexpected {type(e).__name__}: {e}"


def preprocess_audio(audio_dir: str | Path, out_h5: str | Path, *,
                     params: AudioParams = AudioParams(), split: str = "auto", seed: int = 0,
                     val_fraction: float = 0.2, test_fraction: float = 0.2,
                     labels_csv: str | Path | None = None, workers: int = 4) -> dict:
    """Run the stage; returns a summary that is also stored in the file."""
    if split != "auto" and split not in SPLITS:
        raise EmotionError(f"--split {split!r}: choose auto, {', '.join(SPLITS)}")
    if params.fixed_duration <= 0 or params.fixed_duration > 60:
        raise EmotionError(f"--fixed_duration {params.fixed_duration}: use a value in (0, 60]")
    labelled, skipped = scan_clips(audio_dir, labels_csv)
    if not labelled:
        raise EmotionError(f"no clip under {audio_dir} has a label; first reason: {skipped[0][1]}")
    if split == "auto":
        by_speaker = assign_speakers((c.speaker for _, c in labelled), seed=seed,
                                     val_fraction=val_fraction, test_fraction=test_fraction)
    else:
        by_speaker = {c.speaker: split for _, c in labelled}
    clips = [Clip(p, c.label, c.speaker, by_speaker[c.speaker]) for p, c in labelled]
    manifest = [dict(path=p, label="", speaker="", duration="", split="", status="skipped",
                     reason=r) for p, r in skipped]
    config = {"audio_dir": str(audio_dir), "split": split, "seed": seed,
              "val_fraction": val_fraction, "test_fraction": test_fraction,
              "params": params.__dict__, "workers": workers}
    out_h5 = Path(out_h5)
    counts: dict[str, Counter] = {}
    start = time.perf_counter()
    with h5io.create(out_h5, h5io.PREPROCESSED_AUDIO, config=config) as f:
        for k, v in params.__dict__.items():
            f.attrs[k] = v
        f.attrs["speaker_splits"] = json.dumps(by_speaker, sort_keys=True)
        feats = h5io.Appender(f.require_group("features"),
                              {"fixed": ((params.n_mels, params.n_frames), np.float32)})
        meta = h5io.Appender(f["/"], {"labels": ((), np.int16), "paths": ((), h5io.STR),
                                      "speakers": ((), h5io.STR), "splits": ((), h5io.STR),
                                      "durations": ((), np.float32)})
        rows: list = []

        def flush() -> None:
            if rows:
                feats.append(fixed=np.stack([r[1] for r in rows]))
                meta.append(labels=[ALL_LABELS.index(r[0].label) for r in rows],
                            paths=[r[0].path for r in rows],
                            speakers=[r[0].speaker for r in rows],
                            splits=[r[0].split for r in rows],
                            durations=[r[2] for r in rows])
                rows.clear()

        work = functools.partial(_featurise, params=params)
        for clip, x, duration, reason in tqdm(ordered_map(work, clips, workers=workers),
                                              total=len(clips), desc="audio", unit="clip",
                                              mininterval=1.0):
            ok = reason is None
            manifest.append(dict(path=clip.path, label=clip.label, speaker=clip.speaker,
                                 duration=f"{duration:.3f}" if ok else "", split=clip.split,
                                 status="ok" if ok else "skipped", reason=reason or ""))
            if not ok:
                skipped.append((clip.path, reason))
                continue
            counts.setdefault(clip.split, Counter())[clip.label] += 1
            rows.append((clip, x, duration))
            if len(rows) >= WRITE_BATCH:
                flush()
        flush()
        if meta.n == 0:
            raise EmotionError(f"every clip under {audio_dir} was skipped; "
                               f"first reason: {skipped[0][1]}")
        h5io.write_skipped(f, skipped)
        elapsed = time.perf_counter() - start
        summary = {"counts": {s: dict(sorted(c.items())) for s, c in sorted(counts.items())},
                   "speakers": {s: sorted(k for k, v in by_speaker.items() if v == s)
                                for s in SPLITS},
                   "skipped": len(skipped), "seconds": round(elapsed, 2),
                   "clips_per_second": round(len(clips) / elapsed, 1)}
        f.attrs["summary"] = json.dumps(summary)
        _write_manifest(manifest_path(out_h5), manifest)
    return summary


def manifest_path(out_h5: str | Path) -> Path:
    return Path(out_h5).with_suffix(".csv")


def _write_manifest(path: Path, rows: list[dict]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=MANIFEST_FIELDS)
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
