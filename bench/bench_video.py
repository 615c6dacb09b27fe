"""Real-time factor and peak memory of video analysis: the project's path vs the naive one.

    python bench/bench_video.py --artifacts results/demo     # after `make demo`

Generates a 30 s and a 5 min video (640x360, 25 fps; a drawn face and a voice
whose emotion changes every 6 s), then analyses each, in this same run, with

  project  Analyzer.analyze_video: 3 frames per 3 s window, bf16 where it agrees
  naive    every frame decoded, its face found and embedded, in fp32

each in a fresh subprocess (so peak memory is its own), alternating. Reports
processing seconds per media second (the real-time factor; below 1 is faster
than real time) and peak RSS, and the naive/project ratios. The machine is
shared and noisy: compare the ratios, not the absolute seconds.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FPS = 25
SEGMENT = 6.0
EMOTIONS_CYCLE = ("happy", "sad", "angry", "neutral", "fear", "disgust")


def make(path: Path, seconds: float) -> Path:
    from emotion.stages.sample_data import make_video

    if path.is_file():
        return path
    n = int(seconds // SEGMENT)
    segments = [(EMOTIONS_CYCLE[i % len(EMOTIONS_CYCLE)], SEGMENT) for i in range(n)]
    return make_video(path, segments, fps=FPS, size=160, frame_size=(640, 360), seed=3)


def worker(mode: str, video: str, artifacts: Path) -> dict:
    from emotion.serve.analyzer import Analyzer, Options

    kw = {"precision": "fp32", "options": Options(frames_per_window=int(3 * FPS))} \
        if mode == "naive" else {}
    a = Analyzer(artifacts / "saved_models" / "embedder.pt",
                 artifacts / "saved_models" / "multimodal_best.pth",
                 artifacts / "anomaly" / "isolation_forest.joblib", **kw)
    t = time.perf_counter()
    r = a.analyze_video(video)
    seconds = time.perf_counter() - t
    return {"seconds": seconds, "duration": r["duration"], "rtf": seconds / r["duration"],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "windows": r["windows"], "precision": r["used"]["precision"]}


def run(mode: str, video: Path, artifacts: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", mode, "--video", str(video),
                          "--artifacts", str(artifacts)], capture_output=True, text=True,
                         check=False)
    if out.returncode:
        raise SystemExit(f"{mode} on {video.name} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifacts", default="results/demo", type=Path,
                   help="a folder with saved_models/ and anomaly/ (what `make demo` writes)")
    p.add_argument("--videos", default="results/bench", type=Path)
    p.add_argument("--lengths", default="30,300", help="seconds, comma-separated")
    p.add_argument("--out", default="results/bench/bench_video.json", type=Path)
    p.add_argument("--worker", choices=("project", "naive"), help=argparse.SUPPRESS)
    p.add_argument("--video", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.video, args.artifacts)))
        return 0
    if not (args.artifacts / "saved_models" / "embedder.pt").is_file():
        raise SystemExit(f"no artifacts in {args.artifacts}: run `make demo` first")
    results = {}
    for seconds in (float(s) for s in args.lengths.split(",")):
        video = make(args.videos / f"bench_{int(seconds)}s.mp4", seconds)
        row = {m: run(m, video, args.artifacts) for m in ("project", "naive")}
        row["rtf_ratio_naive_over_project"] = row["naive"]["rtf"] / row["project"]["rtf"]
        row["rss_ratio_naive_over_project"] = (row["naive"]["peak_rss_mb"]
                                               / row["project"]["peak_rss_mb"])
        results[f"{int(seconds)}s"] = row
        for m in ("project", "naive"):
            r = row[m]
            print(f"{int(seconds):>4} s video  {m:<8} RTF {r['rtf']:.4f}  "
                  f"({r['seconds']:.1f} s)  peak RSS {r['peak_rss_mb']:.0f} MB  {r['precision']}")
        print(f"{'':>12}naive/project: time x{row['rtf_ratio_naive_over_project']:.1f}, "
              f"memory x{row['rss_ratio_naive_over_project']:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
