"""Participant tracking variants on composed meetings: participant count and id switches.

    python bench/tracking.py --meetings results/meeting_eval/meetings --artifacts results/real

Runs the analysis' face finding once per sampled frame of every composed meeting
(emotion.stages.meeting_eval's truth says who sits in which tile when), then links
the faces with each tracker setting and scores it as evaluate_videos.py does:

  position    boxes linked by overlap alone (a SORT-like tracker without motion
              model: what norfair or motpy would add for static tiles is a Kalman
              prediction, and no way to find a person who moved to another tile)
  appearance  the colour signature alone (any place, no overlap)
  both        the shipped tracker: overlap and signature, merged look-alikes
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from emotion.core.paths import work_dir
from emotion.media.decode import MAX_FRAME_SIDE
from emotion.media.tracks import FaceTracker, TrackerSettings
from emotion.serve.analyzer import Analyzer
from emotion.stages import meeting_eval

VARIANTS = {
    "position": TrackerSettings(same_look=9.0, near_look=-9.0, merge_look=9.0),
    "appearance": TrackerSettings(same_place=9.0, min_iou=9.0),
    "both": TrackerSettings(),
}


def detections(analyzer: Analyzer, video: Path) -> list[tuple[float, np.ndarray, list]]:
    out = []
    find_faces = analyzer.recording_faces()
    for w in analyzer._iter(video, use_video=True):
        faces, _ = find_faces(w.frames)
        out += [(t, f, [c.box for c in fs]) for t, f, fs in zip(w.times, w.frames, faces,
                                                                strict=True)]
    return out


def score(m: dict, frames: list, settings: TrackerSettings) -> dict:
    tracker = FaceTracker(settings)
    scale = meeting_eval.SIZE[0] / MAX_FRAME_SIDE
    seen = []  # (time, raw id, truth id)
    for t, rgb, boxes in frames:
        turn = meeting_eval._turn_at(m, t)
        for pid, box in zip(tracker.update(t, rgb, boxes), boxes, strict=True):
            who = None if turn is None else next(
                (p for p, sh in turn["shown"].items()
                 if meeting_eval._inside(np.asarray(box) * scale, sh["rect"])), None)
            seen.append((t, pid, who))
    final = tracker.finish()
    truth = {p for turn in m["turns"] for p in turn["shown"]}
    predicted = {v for v in final.values() if v is not None}
    switches, last = 0, {}
    for _, pid, who in seen:
        k = final.get(pid)
        if who is None or k is None:
            continue
        if last.get(who) not in (None, k):
            switches += 1
        last[who] = k
    minutes = sum((turn["end"] - turn["start"]) * len(turn["shown"]) for turn in m["turns"]) / 60
    return {"right": len(predicted) == len(truth), "switches": switches, "minutes": minutes}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--meetings", required=True, type=Path, help="evaluate_videos' meetings/")
    p.add_argument("--artifacts", required=True)
    p.add_argument("--out", default="results/bench/tracking.json", type=Path)
    args = p.parse_args()
    manifest = json.loads((args.meetings / "meetings.json").read_text())
    a = work_dir(args.artifacts)
    analyzer = Analyzer(a.embedder, a.multimodal, a.isolation)
    totals = {v: {"right": 0, "switches": 0, "minutes": 0.0} for v in VARIANTS}
    for m in manifest:
        frames = detections(analyzer, args.meetings / m["video"])
        for name, settings in VARIANTS.items():
            r = score(m, frames, settings)
            for k in r:
                totals[name][k] += r[k]
    report = {name: {"participant_count_right": t["right"] / len(manifest),
                     "id_switches_per_participant_minute": t["switches"] / t["minutes"]}
              for name, t in totals.items()}
    for name, r in report.items():
        print(f"{name:<11} count right {100 * r['participant_count_right']:.0f} %, id switches "
              f"{r['id_switches_per_participant_minute']:.3f} per participant-minute")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"videos": len(manifest), **report}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
