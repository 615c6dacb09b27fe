"""Emotions over time, and how unusual the input looks, for media.

    python predict.py --video test.mp4 --multimodal saved_models/multimodal_best.pth \
        --isolation results/anomaly/isolation_forest.joblib
    python predict.py --image frame.jpg --audio clip.wav
    python predict.py --audio clip.wav          # or --image frame.jpg alone
    python predict.py --batch recordings/ --out results/batch --workers 2

Prints JSON: emotion_probs, anomaly_score (higher is more anomalous),
anomaly_flag, and for media with time a timeline of windows. A video's answer
also has `participants` (every person on screen: a timeline of their own, when
they speak, talk time, their emotions) and `unseen_speaker` (speech no face on
screen was credited with); --plot draws one row per participant. --batch takes a
folder or a list file of recordings through the job queue (emotion/serve/jobs/batch.py):
OUT/<name>.json per recording, a summary table, and a second run skips what is done.
"""

from __future__ import annotations

import argparse
import json
import logging

from emotion.core import cli
from emotion.core.atomic import write_json
from emotion.core.errors import EmotionError
from emotion.core.paths import DEFAULT
from emotion.serve.analyzer import (
    Analyzer,
    Options,
)
from emotion.serve.jobs.batch import run_batch
from emotion.serve.report import plot_timeline

log = logging.getLogger(__name__)

USAGE = __doc__


def get_args_parser() -> argparse.ArgumentParser:
    p = cli.parser(USAGE)
    p.add_argument("--video", help="a video file (mp4, mov, webm, avi, mkv)")
    p.add_argument("--image", help="a picture with a face")
    p.add_argument("--audio", help="an audio file (wav, flac, ogg, mp3, m4a)")
    p.add_argument("--embedder", default=str(DEFAULT.embedder))
    p.add_argument("--multimodal", default=str(DEFAULT.multimodal))
    p.add_argument("--isolation", default=str(DEFAULT.isolation))
    p.add_argument("--hop", type=float, default=None,
                   help="seconds between window starts (default: the window, 3 s)")
    p.add_argument("--frames_per_window", type=int, default=3)
    p.add_argument("--max_duration", type=float, default=None, help="refuse longer media (s)")
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    p.add_argument("--out", help="also write the JSON here (with --batch: the folder of results)")
    p.add_argument("--plot", help="draw the timeline to this PNG")
    b = p.add_argument_group("--batch: many recordings through the job queue")
    b.add_argument("--batch", metavar="DIR_OR_LIST",
                   help="a folder of recordings (searched recursively), or a file listing them")
    b.add_argument("--workers", type=int, default=1,
                   help="local worker processes to start (0: use workers already running)")
    b.add_argument("--jobs_dir", help="the queue's folder (default OUT/.jobs)")
    b.add_argument("--redis", help="a Redis queue instead (JOBS_REDIS_URL)")
    b.add_argument("--meeting_id", default="batch", help="the meeting_id of every result")
    return p


def run(args: argparse.Namespace) -> None:
    """The stage, for parsed arguments."""
    if args.batch:
        if args.video or args.image or args.audio or args.plot:
            raise EmotionError("give --batch alone (with --out), not --video, --image, "
                               "--audio or --plot")
        if not args.out:
            raise EmotionError("--batch needs --out: the folder of results")
        if run_batch(args):
            raise EmotionError("some recordings failed: see the table above")
        return
    if args.video and (args.image or args.audio):
        raise EmotionError("give --video alone, or --image and/or --audio")
    if not (args.video or args.image or args.audio):
        raise EmotionError("nothing to analyse: give --video, --image or --audio")
    if args.hop is not None and args.hop <= 0:
        raise EmotionError("--hop must be positive")
    if args.frames_per_window < 1:
        raise EmotionError("--frames_per_window must be at least 1")
    analyzer = Analyzer(args.embedder, args.multimodal, args.isolation, device=args.device,
                        options=Options(hop=args.hop,
                                        frames_per_window=args.frames_per_window,
                                        max_duration=args.max_duration))
    if args.video:
        result = analyzer.analyze_video(args.video)
    elif args.image and args.audio:
        result = analyzer.analyze_pair(args.image, args.audio)
    elif args.audio:
        result = analyzer.analyze_audio(args.audio)
    else:
        result = analyzer.analyze_image(args.image)
    print(json.dumps(result, indent=2))
    if args.out:
        write_json(args.out, result)
    if args.plot:
        if "timeline" not in result:
            raise EmotionError("--plot needs media with time (--video or --audio)")
        plot_timeline(result, args.plot)


def main(argv: list[str] | None = None) -> int:
    return cli.run_main(argv, get_args_parser, run, "predict.py")
