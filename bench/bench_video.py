"""Real-time factor, audio cost per window and peak memory of video analysis: this
version against another, side by side in one run.

    python bench/bench_video.py --artifacts results/real                 # this version
    python bench/bench_video.py --artifacts results/real \
        --baseline_code ../emotion-before --baseline_artifacts ../emotion-before/results/real

Generates a 30 s and a 5 min video (640x360, 25 fps; a drawn face and a voice whose
emotion changes every 6 s), and a 5 min gallery-view meeting of four participants
(2 x 2 tiles, one speaking at a time), then analyses each with

  project   this checkout's analysis (emotion.serve.analyzer) and --artifacts
  baseline  another checkout's (--baseline_code: a git worktree of an earlier commit,
            run with its own code on its own --baseline_artifacts)

each in a fresh subprocess (so peak memory is its own), alternating, --rounds times.
Reports the real-time factor (processing seconds per media second; below 1 is faster
than real time) of the process's first analysis (cold, as predict.py runs) and of a
second one of the same video (warm, as a service worker's later requests run), the
median milliseconds of one 3-s window's audio path (speech gate and audio embedding),
peak RSS, the number of participants found, and the ratios: project/baseline per
video, and for the project the gallery meeting over the one-face video of the same
length. The machine is shared and noisy: compare the ratios, not the absolute seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

FPS = 25
SEGMENT = 6.0
EMOTIONS_CYCLE = ("happy", "sad", "angry", "neutral", "fear", "disgust")
AUDIO_WINDOWS = 10


def make(path: Path, seconds: float) -> Path:
    from emotion.stages.sample_data import make_video

    if path.is_file():
        return path
    n = int(seconds // SEGMENT)
    segments = [(EMOTIONS_CYCLE[i % len(EMOTIONS_CYCLE)], SEGMENT) for i in range(n)]
    return make_video(path, segments, fps=FPS, size=160, frame_size=(640, 360), seed=3)


def make_gallery(path: Path, seconds: float) -> Path:
    """Four participants in a 2 x 2 gallery taking 6-s turns, emotions changing."""
    from emotion.stages.sample_data import make_meeting

    if path.is_file():
        return path
    n = int(seconds // SEGMENT)
    turns = [(i % 4, [EMOTIONS_CYCLE[(i + k) % len(EMOTIONS_CYCLE)] for k in range(4)],
              SEGMENT) for i in range(n)]
    return make_meeting(path, turns, fps=FPS, size=112, frame_size=(640, 360), cols=2, seed=3)


def _analysis():
    """(Analyzer, iter_windows) of whichever version is on the path."""
    try:
        from emotion.media.decode import iter_windows
        from emotion.serve.analyzer import Analyzer
    except ImportError:  # the layout before the redesign
        from emotion.analysis import Analyzer

        from emotion.media import iter_windows
    return Analyzer, iter_windows


def worker(video: str, artifacts: Path) -> dict:
    analyzer_class, iter_windows = _analysis()
    a = analyzer_class(artifacts / "saved_models" / "embedder.pt",
                       artifacts / "saved_models" / "multimodal_best.pth",
                       artifacts / "anomaly" / "isolation_forest.joblib")
    t = time.perf_counter()
    r = a.analyze_video(video)
    seconds = time.perf_counter() - t
    t = time.perf_counter()         # again, warm: what a service worker's later requests see
    a.analyze_video(video)
    warm = time.perf_counter() - t
    sr = a.embedder.audio_params.sample_rate
    audio = [w.audio for _, w in zip(range(AUDIO_WINDOWS), iter_windows(
        video, window=3.0, hop=3.0, sample_rate=sr, use_video=False), strict=False)]
    a.audio_embedding(audio[0])  # warm
    times = []
    for y in audio:
        t = time.perf_counter()
        a.audio_embedding(y)
        times.append(time.perf_counter() - t)
    return {"seconds": seconds, "duration": r["duration"], "rtf": seconds / r["duration"],
            "rtf_warm": warm / r["duration"],
            "audio_ms_per_window": 1000 * statistics.median(times),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "windows": r["windows"], "precision": r["used"]["precision"],
            "participants": len(r.get("participants", []))}


def run(video: Path, artifacts: Path, code: Path | None) -> dict:
    env = dict(os.environ)
    if code is not None:  # the other version's package first on the path
        env["PYTHONPATH"] = f"{code}{os.pathsep}{env.get('PYTHONPATH', '')}"
    out = subprocess.run([sys.executable, __file__, "--worker", "--video", str(video.resolve()),
                          "--artifacts", str(artifacts.resolve())], capture_output=True,
                         text=True, check=False, env=env, cwd=code or Path.cwd())
    if out.returncode:
        raise SystemExit(f"analysis of {video.name} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def median_run(runs: list[dict]) -> dict:
    out = dict(runs[0])
    for k in ("seconds", "rtf", "rtf_warm", "audio_ms_per_window", "peak_rss_mb"):
        out[k] = statistics.median(r[k] for r in runs)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifacts", default="results/demo", type=Path,
                   help="a folder with saved_models/ and anomaly/ (pipeline.py's --work)")
    p.add_argument("--baseline_code", type=Path, help="another checkout to compare with")
    p.add_argument("--baseline_artifacts", type=Path, help="that checkout's models")
    p.add_argument("--videos", default="results/bench", type=Path)
    p.add_argument("--lengths", default="30,300", help="seconds, comma-separated")
    p.add_argument("--gallery", type=float, default=300.0,
                   help="seconds of the four-participant meeting (0: none); compared with "
                        "the one-face video of this length, which --lengths must hold")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", default="results/bench/bench_video.json", type=Path)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--video", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.video, args.artifacts)))
        return 0
    if not (args.artifacts / "saved_models" / "embedder.pt").is_file():
        raise SystemExit(f"no artifacts in {args.artifacts}: run pipeline.py or make demo first")
    versions = {"project": (args.artifacts, None)}
    if args.baseline_code:
        versions["baseline"] = (args.baseline_artifacts or args.artifacts, args.baseline_code)
    results = {}
    plan = [(float(s), False) for s in args.lengths.split(",")]
    if args.gallery:
        plan.append((args.gallery, True))
    for seconds, gallery in plan:
        video = (make_gallery(args.videos / f"bench_gallery_{int(seconds)}s.mp4", seconds)
                 if gallery else make(args.videos / f"bench_{int(seconds)}s.mp4", seconds))
        runs: dict[str, list[dict]] = {m: [] for m in versions}
        for _ in range(args.rounds):
            for m, (artifacts, code) in versions.items():
                runs[m].append(run(video, artifacts, code))
        row = {m: median_run(r) for m, r in runs.items()}
        if "baseline" in row:
            row["rtf_ratio_project_over_baseline"] = row["project"]["rtf"] / row["baseline"]["rtf"]
            row["rtf_warm_ratio_project_over_baseline"] = (row["project"]["rtf_warm"]
                                                           / row["baseline"]["rtf_warm"])
            row["audio_ratio_project_over_baseline"] = (row["project"]["audio_ms_per_window"]
                                                        / row["baseline"]["audio_ms_per_window"])
        name = f"{'gallery_' if gallery else ''}{int(seconds)}s"
        one = results.get(f"{int(seconds)}s")
        if gallery and one:
            row["rtf_ratio_gallery_over_one_face"] = row["project"]["rtf"] / one["project"]["rtf"]
            row["rtf_warm_ratio_gallery_over_one_face"] = (row["project"]["rtf_warm"]
                                                           / one["project"]["rtf_warm"])
            print(f"{'':>12}gallery/one face (project): RTF "
                  f"x{row['rtf_ratio_gallery_over_one_face']:.2f}, warm "
                  f"x{row['rtf_warm_ratio_gallery_over_one_face']:.2f}")
        results[name] = row
        for m, r in row.items():
            if isinstance(r, dict):
                print(f"{name:>12} video  {m:<8} RTF {r['rtf']:.4f} ({r['seconds']:.1f} s)"
                      f" warm {r['rtf_warm']:.4f}"
                      f"  audio {r['audio_ms_per_window']:.1f} ms/window  peak RSS "
                      f"{r['peak_rss_mb']:.0f} MB  {r['precision']}  "
                      f"{r.get('participants', '-')} participants")
        if "baseline" in row:
            print(f"{'':>12}project/baseline: RTF x{row['rtf_ratio_project_over_baseline']:.2f},"
                  f" warm x{row['rtf_warm_ratio_project_over_baseline']:.2f},"
                  f" audio x{row['audio_ratio_project_over_baseline']:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
