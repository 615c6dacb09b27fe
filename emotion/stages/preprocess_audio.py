"""The audio preprocessing stage: a folder of labelled clips to one HDF5 file
and a CSV manifest beside it."""

from __future__ import annotations

import argparse
import csv
import functools
import io
import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from emotion.core import cli, h5io
from emotion.core.atomic import write_text_atomic
from emotion.core.errors import EmotionError, LabelError, MediaError
from emotion.core.labels import ALL_LABELS, ClipLabel, parse_clip_name, read_labels_csv
from emotion.core.parallel import ordered_map
from emotion.core.paths import DEFAULT, manifest_path
from emotion.core.splits import SPLITS, assign_speakers
from emotion.media.audio import (
    AUDIO_EXTENSIONS,
    AudioParams,
    load_audio,
    log_mel,
    prepare_clip,
    resample,
    to_mono,
)
from emotion.media.vad import SpeechDetector

log = logging.getLogger(__name__)
MANIFEST_FIELDS = ("path", "label", "speaker", "corpus", "duration", "split", "status",
                   "reason")
WRITE_BATCH = 256


@dataclass(frozen=True)
class Clip:
    path: str
    label: str
    speaker: str   # corpus-prefixed (emotion.core.labels.ClipLabel)
    split: str
    corpus: str


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
    table = read_labels_csv(labels_csv) if labels_csv else None  # else each file's name
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


_DETECTOR: list[SpeechDetector] = []  # one per worker process, made on first use


def featurise(y: np.ndarray, sr: int, params: AudioParams
              ) -> tuple[np.ndarray, float, np.ndarray]:
    """A recording -> (its fixed-length log-mel, speech seconds, the recording at the
    training rate); a recording in which the speech gate hears no one is refused."""
    if not _DETECTOR:
        _DETECTOR.append(SpeechDetector())
    y = resample(to_mono(y), sr, params.sample_rate) if y.size else y
    clip, duration = prepare_clip(y, params.sample_rate, params)
    if not _DETECTOR[0].has_speech(y):
        raise MediaError("no speech (the voice activity detector hears no one)")
    return log_mel(clip, params), duration, y


def _featurise(clip: Clip, *, params: AudioParams):
    try:
        feats, duration, y = featurise(*load_audio(clip.path), params)
        return clip, feats, duration, y, None
    except MediaError as e:
        return clip, None, 0.0, None, str(e)
    except Exception as e:  # noqa: BLE001 - one odd file must not end the run
        return clip, None, 0.0, None, f"unexpected {type(e).__name__}: {e}"


def speaker_splits(labelled: list[tuple[str, ClipLabel]], split: str, *, seed: int,
                   val_fraction: float, test_fraction: float) -> dict[str, str]:
    """Each speaker's split: assigned by speaker within each corpus, seeded (auto), or
    all in one split. Splitting each corpus on its own puts every corpus into val and
    test (reports per corpus), and a corpus alone is split as it was before there were
    several; speaker ids carry their corpus, so no speaker is on two sides."""
    if split != "auto" and split not in SPLITS:
        raise EmotionError(f"--split {split!r}: choose auto, {', '.join(SPLITS)}")
    if split != "auto":
        return {c.speaker: split for _, c in labelled}
    by_corpus: dict[str, set[str]] = {}
    for _, c in labelled:
        by_corpus.setdefault(c.corpus, set()).add(c.speaker)
    out: dict[str, str] = {}
    for corpus, speakers in sorted(by_corpus.items()):
        if len(speakers) < 3 and len(by_corpus) > 1:
            log.warning("corpus %s has %d speaker(s), too few to split: all in train",
                        corpus, len(speakers))
            out.update({s: "train" for s in speakers})
            continue
        out.update(assign_speakers(speakers, seed=seed, val_fraction=val_fraction,
                                   test_fraction=test_fraction))
    return out


def _clip_writer(f, params: AudioParams) -> h5io.RowBuffer:
    """Rows (clip, log-mel, duration, waveform) appended to the file's datasets in blocks."""
    feats = h5io.Appender(f.require_group("features"),
                          {"fixed": ((params.n_mels, params.n_frames), np.float32)})
    meta = h5io.Appender(f["/"], {"labels": ((), np.int16), "paths": ((), h5io.STR),
                                  "speakers": ((), h5io.STR), "splits": ((), h5io.STR),
                                  "corpora": ((), h5io.STR), "durations": ((), np.float32)})
    waves = f.require_group("waveforms")
    index = h5io.Appender(waves, {"start": ((), np.int64), "length": ((), np.int64)})
    samples = h5io.Appender(waves, {"samples": ((), np.float32)}, max_chunk_rows=1 << 18)

    def write(rows: list) -> None:
        feats.append(fixed=np.stack([r[1] for r in rows]))
        meta.append(labels=[ALL_LABELS.index(r[0].label) for r in rows],
                    paths=[r[0].path for r in rows], speakers=[r[0].speaker for r in rows],
                    splits=[r[0].split for r in rows], corpora=[r[0].corpus for r in rows],
                    durations=[r[2] for r in rows])
        lengths = np.array([len(r[3]) for r in rows], np.int64)
        index.append(start=samples.n + np.concatenate([[0], np.cumsum(lengths)[:-1]]),
                     length=lengths)
        samples.append(samples=np.concatenate([r[3] for r in rows]))

    return h5io.RowBuffer(write, WRITE_BATCH)


def _manifest_row(clip: Clip, duration: float, reason: str | None) -> dict:
    ok = reason is None
    return dict(path=clip.path, label=clip.label, speaker=clip.speaker, corpus=clip.corpus,
                duration=f"{duration:.3f}" if ok else "", split=clip.split,
                status="ok" if ok else "skipped", reason=reason or "")


def preprocess_audio(audio_dir: str | Path | Sequence[str | Path], out_h5: str | Path, *,
                     params: AudioParams = AudioParams(), split: str = "auto", seed: int = 0,
                     val_fraction: float = 0.2, test_fraction: float = 0.2,
                     labels_csv: str | Path | None = None, workers: int = 4) -> dict:
    """Run the stage on one folder or several (each read with its own naming); returns a
    summary that is also stored in the file."""
    dirs = [audio_dir] if isinstance(audio_dir, str | Path) else list(audio_dir)
    clips, by_speaker, skipped = _clips(dirs, labels_csv, params, split, seed=seed,
                                        val_fraction=val_fraction, test_fraction=test_fraction)
    manifest = [dict(path=p, label="", speaker="", corpus="", duration="", split="",
                     status="skipped", reason=r) for p, r in skipped]
    where = " ".join(str(d) for d in dirs)
    config = {"audio_dir": str(dirs[0]) if len(dirs) == 1 else [str(d) for d in dirs],
              "split": split, "seed": seed,
              "val_fraction": val_fraction, "test_fraction": test_fraction,
              "params": params.__dict__, "workers": workers}
    counts: dict[str, Counter] = {}
    per_corpus: Counter = Counter()
    start = time.perf_counter()
    with h5io.create(out_h5, h5io.PREPROCESSED_AUDIO, config=config) as f:
        for k, v in params.__dict__.items():
            f.attrs[k] = v
        f.attrs["speaker_splits"] = json.dumps(by_speaker, sort_keys=True)
        rows = _clip_writer(f, params)
        work = functools.partial(_featurise, params=params)
        for clip, x, duration, y, reason in tqdm(ordered_map(work, clips, workers=workers),
                                              total=len(clips), desc="audio", unit="clip",
                                              mininterval=1.0):
            manifest.append(_manifest_row(clip, duration, reason))
            if reason is not None:
                skipped.append((clip.path, reason))
                continue
            counts.setdefault(clip.split, Counter())[clip.label] += 1
            per_corpus[clip.corpus] += 1
            rows.add((clip, x, duration, y))
        rows.flush()
        h5io.write_skipped(f, skipped, kept=sum(sum(c.values()) for c in counts.values()),
                           what=f"{len(clips)} clips under {where}")
        elapsed = time.perf_counter() - start
        summary = {"counts": {s: dict(sorted(c.items())) for s, c in sorted(counts.items())},
                   "speakers": {s: sorted(k for k, v in by_speaker.items() if v == s)
                                for s in SPLITS},
                   "corpora": dict(sorted(per_corpus.items())),
                   "refused_by_corpus": _refused(clips, skipped),
                   "skipped": len(skipped), "seconds": round(elapsed, 2),
                   "clips_per_second": round(len(clips) / elapsed, 1)}
        f.attrs["summary"] = json.dumps(summary)
        _write_manifest(manifest_path(out_h5), manifest)
    return summary


def _clips(dirs: list, labels_csv, params: AudioParams, split: str, *, seed: int,
           val_fraction: float, test_fraction: float):
    """(the labelled clips with their split, speaker -> split, [(path, why skipped)])."""
    if params.fixed_duration <= 0 or params.fixed_duration > 60:
        raise EmotionError(f"--fixed_duration {params.fixed_duration}: use a value in (0, 60]")
    if labels_csv is not None and len(dirs) > 1:
        raise EmotionError("--labels_csv names one folder's manifest: with several "
                           "--audio_dir, put each folder's labels.csv inside it")
    labelled, skipped = [], []
    for d in dirs:
        found, unlabelled = scan_clips(d, labels_csv)
        if not found:
            raise EmotionError(f"no clip under {d} has a label; first reason: "
                               f"{unlabelled[0][1]}")
        labelled += found
        skipped += unlabelled
    by_speaker = speaker_splits(labelled, split, seed=seed, val_fraction=val_fraction,
                                test_fraction=test_fraction)
    return ([Clip(p, c.label, c.speaker, by_speaker[c.speaker], c.corpus)
             for p, c in labelled], by_speaker, skipped)


def _refused(clips: list[Clip], skipped: list[tuple[str, str]]) -> dict[str, int]:
    """Clips the speech gate refused, per corpus (0 where it refused none)."""
    corpus_of = {c.path: c.corpus for c in clips}
    out = Counter({c: 0 for c in corpus_of.values()})
    out.update(corpus_of[p] for p, r in skipped if p in corpus_of and r.startswith("no speech"))
    return dict(sorted(out.items()))


def _write_manifest(path: Path, rows: list[dict]) -> None:
    text = io.StringIO(newline="")
    w = csv.DictWriter(text, fieldnames=MANIFEST_FIELDS)
    w.writeheader()
    w.writerows(rows)
    write_text_atomic(text.getvalue(), path)


# --------------------------------------------------------------------------
# The command line (preprocessing_audio.py)

USAGE = """Labelled speech clips -> preprocessed_audio.h5 (log-mels) and a CSV manifest.

    python preprocessing_audio.py --audio_dir data/audio --out_h5 preprocessed_audio.h5 \
        --fixed_duration 3.0 --workers 6
    python preprocessing_audio.py --audio_dir ../shared/data/ravdess_16k \
        --audio_dir ../shared/data/emovo_16k        # several corpora in one file

Labels come from CREMA-D names (1001_DFA_ANG_XX.wav), RAVDESS names
(03-01-05-02-01-01-07.wav), EMOVO names (rab-f1-b1.wav) or a labels.csv
(path,label,speaker[,corpus]) in the folder, each folder read on its own. Speaker ids
carry their corpus (ravdess_07, emovo_f1), and each corpus is split by speaker.
"""


def get_args_parser() -> argparse.ArgumentParser:
    p = cli.parser(USAGE)
    p.add_argument("--audio_dir", action="append", default=None,
                   help="a folder of labelled clips; repeat for several corpora "
                        "(default data/audio)")
    p.add_argument("--out_h5", default=str(DEFAULT.preprocessed_audio))
    p.add_argument("--fixed_duration", type=float, default=3.0, help="seconds per clip")
    p.add_argument("--workers", type=int, default=6)
    p.add_argument("--split", default="auto",
                   help="auto: split by speaker, seeded; or train|val|test to put every clip "
                        "in that split (an external test set)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val_fraction", type=float, default=0.2, help="of speakers")
    p.add_argument("--test_fraction", type=float, default=0.2, help="of speakers")
    p.add_argument("--labels_csv", default=None,
                   help="path,label,speaker manifest (default: labels.csv in --audio_dir if any)")
    return p


def run(args: argparse.Namespace) -> None:
    """The stage, for parsed arguments."""
    summary = preprocess_audio(
        args.audio_dir or ["data/audio"], args.out_h5,
        params=AudioParams(fixed_duration=args.fixed_duration),
        split=args.split, seed=args.seed, val_fraction=args.val_fraction,
        test_fraction=args.test_fraction, labels_csv=args.labels_csv, workers=args.workers)
    log.info("clips per split and label: %s", json.dumps(summary["counts"]))
    log.info("speakers per split: %s", json.dumps(summary["speakers"]))
    log.info("clips per corpus: %s; refused by the speech gate: %s",
             json.dumps(summary["corpora"]), json.dumps(summary["refused_by_corpus"]))
    log.info("skipped: %d (reasons in %s)", summary["skipped"], manifest_path(args.out_h5))
    log.info("wrote %s (%.1f clips/s)", args.out_h5, summary["clips_per_second"])


def main(argv: list[str] | None = None) -> int:
    return cli.run_main(argv, get_args_parser, run, "preprocessing_audio.py")
