"""Throughput of the stages, each against its baseline, side by side in one run.

    python bench/bench_stages.py                       # generated data
    python bench/bench_stages.py --images ../shared/data/fer2013/test/happy \
        --audio ../shared/data/ravdess_16k --n 300

  images     the face policy (detector, O-Net checks, crop), files/s per worker, and the
             share of images it finds a face in: BlazeFace (the default), MTCNN, Haar
  audio      WAV -> 64-band log-mel, clips/s per worker: plain librosa (load at 16 kHz,
             trim, melspectrogram, power_to_db) vs the project's path
             (soundfile, soxr, the speech gate, torch.stft with librosa's filterbank)
  embedding  ResNet18 images/s at 112 and 224 px: eager fp32 vs the project's
             path (channels_last, bf16 autocast where it agrees with fp32), and
             the agreement of the two (minimum cosine)
  fusion     train_multimodal's fit(): seconds per epoch on 20,000 pairs

The machine is shared and noisy: each pair is timed alternately, several
rounds, and the median is reported; compare the ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def alternate(fns: dict, rounds: int) -> dict[str, float]:
    """Median seconds of each function, run in turn `rounds` times."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_images(paths: list[Path], rounds: int) -> dict:
    from emotion.media.faces import FaceFinder, FacePolicy
    from emotion.media.images import load_image

    images = [load_image(p) for p in paths]
    finders = {name: FaceFinder(FacePolicy(detector=name), 112)
               for name in ("blazeface", "mtcnn", "haar")}
    found = {k: sum(f(im).found for im in images) / len(images) for k, f in finders.items()}

    def run(name):
        for im in images:
            finders[name](im)

    t = alternate({k: (lambda k=k: run(k)) for k in finders}, rounds)
    rate = {k: len(paths) / v for k, v in t.items()}
    return {"files": len(paths), "files_per_s": rate, "face_found_share": found,
            "ratio_blazeface_over_haar": rate["blazeface"] / rate["haar"]}


def bench_audio(paths: list[Path], rounds: int) -> dict:
    import librosa

    from emotion.media.audio import AudioParams, load_audio
    from emotion.stages.preprocess_audio import featurise

    p = AudioParams()

    def plain():
        for f in paths:
            y, _ = librosa.load(f, sr=p.sample_rate)
            y, _ = librosa.effects.trim(y, top_db=p.top_db_trim)
            y = librosa.util.fix_length(y / max(np.abs(y).max(), 1e-4), size=p.n_samples)
            m = librosa.feature.melspectrogram(y=y, sr=p.sample_rate, n_fft=p.n_fft,
                                               hop_length=p.hop_length, n_mels=p.n_mels)
            librosa.power_to_db(m, ref=np.max, top_db=p.top_db_mel)

    def project():  # the stage's path: the speech gate (silero-vad) included
        for f in paths:
            featurise(*load_audio(f), p)

    t = alternate({"librosa": plain, "project": project}, rounds)
    rate = {k: len(paths) / v for k, v in t.items()}
    return {"clips": len(paths), "clips_per_s": rate,
            "ratio_project_over_librosa": rate["project"] / rate["librosa"]}


def bench_embedding(rounds: int, n: int = 64) -> dict:
    import torch

    from emotion.models.image_backbone import (
        ImageEmbedder,
        build_resnet18,
        load_state,
        make_backbone,
    )

    state, _ = load_state("none", seed=0)
    eager = build_resnet18()
    eager.load_state_dict(state, strict=False)
    eager.eval()
    project = ImageEmbedder(make_backbone(state))
    out = {}
    rng = np.random.default_rng(0)
    for size in (112, 224):
        x = rng.random((n, size, size, 3), dtype=np.float32)
        xt = project._prepare(x).contiguous()  # same normalisation, NCHW

        def run_eager(xt=xt):
            with torch.inference_mode():
                return eager(xt).numpy()

        chosen = project.choose_precision(x[:16], "auto")
        t = alternate({"eager_fp32": run_eager, "project": lambda x=x: project(x)}, rounds)
        a, b = run_eager(), project(x)
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        rate = {k: n / v for k, v in t.items()}
        out[f"{size}px"] = {"images_per_s": rate, "precision": chosen,
                            "ratio_project_over_eager": rate["project"] / rate["eager_fp32"],
                            "min_cosine": float(cos.min())}
    return out


def bench_fusion(n: int = 20_000) -> dict:
    from emotion.core.h5io import Paired
    from emotion.stages.train_fusion import FitConfig, fit

    rng = np.random.default_rng(0)
    y = rng.integers(0, 6, n)

    def paired(k):
        img = (rng.normal(size=(k, 512)) + y[:k, None] * 0.05).astype(np.float32)
        aud = (rng.normal(size=(k, 128)) + y[:k, None] * 0.05).astype(np.float32)
        return Paired(img, aud, y[:k], [""] * k, [""] * k, "train", "bench", "")

    train, val = paired(n), paired(2000)
    t = time.perf_counter()
    epochs = 3
    fit(train, val, FitConfig(epochs=epochs, patience=99), progress=False)
    return {"pairs": n, "seconds_per_epoch": (time.perf_counter() - t) / epochs}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=Path, help="a folder of face images (default: generated)")
    p.add_argument("--audio", type=Path, help="a folder of WAVs (default: generated)")
    p.add_argument("--n", type=int, default=100, help="files per measurement")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--only", default="images,audio,embedding,fusion")
    p.add_argument("--out", type=Path, default=Path("results/bench/bench_stages.json"))
    args = p.parse_args()
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    tmp = Path(tempfile.mkdtemp(prefix="bench_"))
    if args.images is None or args.audio is None:
        from emotion.stages.sample_data import make_sample_set

        audio_dir, image_dir = make_sample_set(tmp, n_speakers=6, clips_per_emotion=3,
                                               images_per_class={"train": 20},
                                               extra_class_images=0)
        args.images = args.images or image_dir
        args.audio = args.audio or audio_dir
    images = sorted(f for f in args.images.rglob("*") if f.suffix.lower() in
                    (".jpg", ".jpeg", ".png"))[:args.n]
    clips = sorted(args.audio.rglob("*.wav"))[:args.n]
    results: dict = {"machine": {"cpus": __import__("os").cpu_count(),
                                 "torch_threads": torch.get_num_threads()}}
    only = set(args.only.split(","))
    threads = torch.get_num_threads()
    # The preprocessing stages run these in worker processes of one thread each:
    # measure them the same way (per worker; --workers N gives about N times).
    from emotion.core.parallel import _init_worker

    _init_worker()
    if "images" in only:
        results["images"] = bench_images(images, args.rounds)
    if "audio" in only:
        results["audio"] = bench_audio(clips, args.rounds)
    torch.set_num_threads(threads)
    if "embedding" in only:
        results["embedding"] = bench_embedding(args.rounds)
    if "fusion" in only:
        results["fusion"] = bench_fusion()
    print(json.dumps(results, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
