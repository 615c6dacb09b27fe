"""The image stages at scale: does memory stay flat and time grow linearly with N?

    python bench/bench_scale.py --n 200000 --work results/bench_scale        # the issue's size
    python bench/bench_scale.py --n 20000 --work results/bench_scale --workers 2

Generates a tree of N small face-like pictures (48 px grey PNGs, FER2013's kind:
drawn faces of the six emotions, shifted and noised; 80/10/10 train/val/test)
and a tree of N/10, then runs on each, as the user would, one after the other:

  preprocess_images.py   --size 48 (the crops FER gives), --workers W
  train_face_backbone.py one epoch at --net_size, from scratch
  extract_embeddings.py  the trained backbone, with a tiny audio file (its
                         voice branch is fitted on a handful of clips; the
                         images' own time is reported apart)

Each command's peak memory is sampled from /proc every 0.2 s: the largest
single process and the whole process tree (workers included). The report gives,
per stage, seconds, items per second and the two peaks for both sizes, and the
ratios large / small: memory should stay within 1.2x, time near 10x.
The machine may be shared: the two sizes run back to back, not interleaved,
so say what else ran.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SPLITS = {"train": 0.8, "val": 0.1, "test": 0.1}


# --------------------------------------------------------------------------
# The generated tree


def make_tree(root: Path, n: int, *, size: int = 48, seed: int = 0, pool: int = 48) -> Path:
    """root/{split}/{emotion}/NNNNNNN.png: n pictures, a pool of drawn faces varied."""
    import cv2

    sys.path.insert(0, str(ROOT))
    from emotion.core.labels import EMOTIONS
    from emotion.stages.sample_data import draw_face

    done = root / ".complete"
    if done.is_file() and int(done.read_text()) == n:
        return root
    rng = np.random.default_rng(seed)
    faces = {e: [cv2.cvtColor(draw_face(e, size=size, rng=rng), cv2.COLOR_RGB2GRAY)
                 for _ in range(pool)] for e in EMOTIONS}
    k = 0
    for split, share in SPLITS.items():
        for e in EMOTIONS:
            folder = root / split / e
            folder.mkdir(parents=True, exist_ok=True)
            for _ in range(int(round(n * share / len(EMOTIONS)))):
                img = faces[e][rng.integers(pool)]
                img = np.roll(img, tuple(rng.integers(-2, 3, 2)), axis=(0, 1))
                img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
                ok, buf = cv2.imencode(".png", img)
                (folder / f"{k:07d}.png").write_bytes(buf.tobytes())
                k += 1
    done.write_text(str(n))
    return root


def make_audio(root: Path) -> Path:
    """A tiny preprocessed audio file (extract_embeddings.py needs one)."""
    out = root / "audio.h5"
    if out.is_file():
        return out
    sys.path.insert(0, str(ROOT))
    from emotion.stages import preprocess_audio
    from emotion.stages.sample_data import make_sample_set

    audio, _ = make_sample_set(root / "sample", n_speakers=4, clips_per_emotion=1,
                               images_per_class={"train": 1}, image_size=48,
                               extra_class_images=0)
    assert preprocess_audio.main(["--audio_dir", str(audio), "--out_h5", str(out),
                                  "--workers", "1"]) == 0
    return out


# --------------------------------------------------------------------------
# Peak memory of a command and its children


def _rss_by_pid() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, resident bytes), for every readable process."""
    page = os.sysconf("SC_PAGE_SIZE")
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            out[int(d)] = (int(fields[1]), int(fields[21]) * page)
        except (OSError, ValueError, IndexError):
            continue
    return out


def run_measured(cmd: list[str], log: Path) -> dict:
    """Run `cmd`; wall seconds, peak RSS of its largest process and of its whole tree."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOG_LEVEL": "INFO"}
    peak = {"process": 0, "tree": 0}
    with log.open("w") as f:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                table = _rss_by_pid()
                tree, frontier = {proc.pid}, [proc.pid]
                while frontier:
                    kids = [p for p, (pp, _) in table.items() if pp in frontier]
                    frontier = [k for k in kids if k not in tree]
                    tree.update(frontier)
                rss = [table[p][1] for p in tree if p in table]
                if rss:
                    peak["process"] = max(peak["process"], max(rss))
                    peak["tree"] = max(peak["tree"], sum(rss))
                stop.wait(0.2)

        t = threading.Thread(target=sample, daemon=True)
        t.start()
        rc = proc.wait()
        stop.set()
        t.join()
        wall = time.perf_counter() - start
    if rc != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({rc}); see {log}")
    return {"seconds": round(wall, 1), "peak_process_mb": round(peak["process"] / 2**20),
            "peak_tree_mb": round(peak["tree"] / 2**20)}


def _summary_json(log: Path, marker: str) -> dict:
    for line in log.read_text().splitlines()[::-1]:
        if marker in line:
            return json.loads(line.split(marker, 1)[1])
    return {}


def run_size(tree: Path, audio: Path, work: Path, n: int, args) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    faces, weights = work / "faces.h5", work / "face.pt"
    res = {}
    res["preprocess"] = run_measured(
        [py, "preprocess_images.py", "--src", str(tree), "--out", str(faces), "--size", "48",
         "--workers", str(args.workers), "--face_crop", str(args.face_crop)],
        work / "preprocess.log")
    res["preprocess"]["files_per_s"] = round(n / res["preprocess"]["seconds"], 1)
    text = (work / "preprocess.log").read_text()
    m = re.findall(r"\(([\d.]+) files/s\)", text)
    if m:
        res["preprocess"]["stage_files_per_s"] = float(m[-1])
    res["train_epoch"] = run_measured(
        [py, "train_face_backbone.py", "--images_h5", str(faces), "--out", str(weights),
         "--epochs", "1", "--net_size", str(args.net_size), "--init", "scratch",
         "--device", "cpu", "--precision", args.precision, "--batch_size", "128"],
        work / "train.log")
    hist = __import__("torch").load(weights, weights_only=True)["history"][0]
    res["train_epoch"]["train_images_per_s"] = round(hist["train_images"] / hist["train_s"], 1)
    res["extract"] = run_measured(
        [py, "extract_embeddings.py", "--image_h5", str(faces), "--audio_h5", str(audio),
         "--out_image_h5", str(work / "emb_images.h5"),
         "--out_audio_h5", str(work / "emb_audio.h5"), "--embedder_out", str(work / "emb.pt"),
         "--image_weights", str(weights), "--folds", "1", "--device", "cpu",
         "--precision", args.precision], work / "extract.log")
    t = _summary_json(work / "extract.log", "embedding summary: ").get("timings", {})
    res["extract"].update({k: t[k] for k in ("images_s", "images_per_s") if k in t})
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--work", type=Path, default=Path("results/bench_scale"))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--face_crop", type=int, default=1, choices=(0, 1))
    p.add_argument("--net_size", type=int, default=64)
    p.add_argument("--precision", default="fp32", choices=("auto", "fp32", "bf16"))
    p.add_argument("--out", type=Path, default=None, help="also write the report here")
    args = p.parse_args()
    sizes = {"small": args.n // 10, "large": args.n}
    t = time.perf_counter()
    trees = {k: make_tree(args.work / f"tree_{n}", n) for k, n in sizes.items()}
    audio = make_audio(args.work)
    report = {"n": sizes, "settings": {k: v for k, v in vars(args).items() if k != "out"},
              "generate_s": round(time.perf_counter() - t, 1)}
    report["settings"]["work"] = str(args.work)
    for k, n in sizes.items():
        report[k] = run_size(trees[k], audio, args.work / f"run_{n}", n, args)
        print(k, json.dumps(report[k]), flush=True)
    ratios = {}
    for stage in report["small"]:
        a, b = report["small"][stage], report["large"][stage]
        ratios[stage] = {"time": round(b["seconds"] / a["seconds"], 2),
                         "peak_process": round(b["peak_process_mb"] / a["peak_process_mb"], 2),
                         "peak_tree": round(b["peak_tree_mb"] / a["peak_tree_mb"], 2)}
    report["ratios_large_over_small"] = ratios
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
