"""Labelled speech clips -> preprocessed_audio.h5 (log-mels) and a CSV manifest.

    python preprocessing_audio.py --audio_dir data/audio --out_h5 preprocessed_audio.h5 \
        --fixed_duration 3.0 --workers 6

Labels come from CREMA-D names (1001_DFA_ANG_XX.wav), RAVDESS names
(03-01-05-02-01-01-07.wav) or a labels.csv (path,label,speaker) in the folder.
"""

from __future__ import annotations

import argparse
import json
import logging

from emotion import cli
from emotion.audio import AudioParams
from emotion.audio_prep import manifest_path, preprocess_audio

log = logging.getLogger("preprocessing_audio")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--audio_dir", default="data/audio")
    p.add_argument("--out_h5", default="preprocessed_audio.h5")
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


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)

    def body() -> None:
        summary = preprocess_audio(
            args.audio_dir, args.out_h5, params=AudioParams(fixed_duration=args.fixed_duration),
            split=args.split, seed=args.seed, val_fraction=args.val_fraction,
            test_fraction=args.test_fraction, labels_csv=args.labels_csv, workers=args.workers)
        log.info("clips per split and label: %s", json.dumps(summary["counts"]))
        log.info("speakers per split: %s", json.dumps(summary["speakers"]))
        log.info("skipped: %d (reasons in %s)", summary["skipped"], manifest_path(args.out_h5))
        log.info("wrote %s (%.1f clips/s)", args.out_h5, summary["clips_per_second"])

    return cli.run(body, "preprocessing_audio.py")


if __name__ == "__main__":
    raise SystemExit(main())
