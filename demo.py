"""The main job on generated data: every stage, then a prediction on a video.

    python demo.py --sample data/sample --out results/demo

Generates the sample set (unless it is there), then runs, as a user would:
preprocess_images.py, preprocessing_audio.py, extract_embeddings.py (random
image weights: this machine cannot download ImageNet's), make_paired_h5_filtered.py,
train_multimodal.py, train_anomaly.py, train_eval_plot.py, and predict.py on a
generated video whose emotion changes every 6 seconds. Every output is in --out.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import extract_embeddings
import make_paired_h5_filtered
import predict
import preprocess_images
import preprocessing_audio
import train_anomaly
import train_eval_plot
import train_multimodal
from emotion import cli
from emotion.synth import make_sample_set, make_video

log = logging.getLogger("demo")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sample", default="data/sample", help="where the generated set goes")
    p.add_argument("--out", default="results/demo", help="where every stage writes")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    cli.setup_logging()
    sample, out = Path(args.sample), Path(args.out)
    models, paired = out / "saved_models", out / "saved_paired"
    if not (sample / "audio").is_dir() or not (sample / "images").is_dir():
        log.info("generating the sample set in %s", sample)
        make_sample_set(sample)
    else:
        log.info("reusing the sample set in %s", sample)
    out.mkdir(parents=True, exist_ok=True)
    video = make_video(out / "meeting.mp4", [("happy", 6.0), ("sad", 6.0), ("angry", 6.0),
                                             ("neutral", 6.0)], frame_size=(320, 240), seed=11)
    split = [f"{paired}_{s}_paired_embeddings.h5" for s in ("train", "val", "test")]
    stages = [
        (preprocess_images, ["--src", str(sample / "images"),
                             "--out", str(out / "preprocessed_images.h5"),
                             "--size", "112", "--workers", str(args.workers)]),
        (preprocessing_audio, ["--audio_dir", str(sample / "audio"),
                               "--out_h5", str(out / "preprocessed_audio.h5"),
                               "--workers", str(args.workers)]),
        (extract_embeddings, ["--image_h5", str(out / "preprocessed_images.h5"),
                              "--audio_h5", str(out / "preprocessed_audio.h5"),
                              "--out_image_h5", str(out / "embeddings_images.h5"),
                              "--out_audio_h5", str(out / "embeddings_audio.h5"),
                              "--embedder_out", str(models / "embedder.pt"),
                              "--image_weights", "none", "--audio_epochs", "20",
                              "--folds", "3"]),
        (make_paired_h5_filtered, ["--image_h5", str(out / "embeddings_images.h5"),
                                   "--audio_h5", str(out / "embeddings_audio.h5"),
                                   "--out_prefix", str(paired)]),
        (train_multimodal, ["--train_h5", split[0], "--val_h5", split[1], "--test_h5", split[2],
                            "--epochs", "40", "--batch_size", "32", "--lr", "0.003",
                            "--save_dir", str(models)]),
        (train_anomaly, ["--train_h5", split[0], "--test_h5", split[2],
                         "--save_dir", str(out / "anomaly"),
                         "--embedder", str(models / "embedder.pt"), "--n_probes", "16"]),
        (train_eval_plot, ["--model_path", str(models / "multimodal_best.pth"),
                           "--test_h5", split[2], "--val_h5", split[1],
                           "--save_dir", str(out / "plots")]),
        (predict, ["--video", str(video), "--embedder", str(models / "embedder.pt"),
                   "--multimodal", str(models / "multimodal_best.pth"),
                   "--isolation", str(out / "anomaly" / "isolation_forest.joblib"),
                   "--out", str(out / "meeting.json"), "--plot", str(out / "meeting.png")]),
    ]
    for i, (stage, stage_argv) in enumerate(stages, 1):
        name = stage.__name__ + ".py"
        log.info("[%d/%d] %s", i, len(stages), name)
        t = time.perf_counter()
        rc = stage.main(stage_argv)
        if rc:
            log.error("%s failed (exit %d); the outputs so far are in %s", name, rc, out)
            return rc
        log.info("[%d/%d] %s took %.1f s", i, len(stages), name, time.perf_counter() - t)
    log.info("done: outputs are in %s; the video's timeline is %s", out, out / "meeting.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
