"""The whole pipeline on real data folders, every stage in order.

    python pipeline.py --images data/images --audio data/audio --work results/real
    python pipeline.py --images ../shared/data/fer2013 --audio ../shared/data/ravdess_16k \
        --work results/real --size 112 --workers 2

--images holds {split}/{class}/image (AffectNet-style, FER2013's folders work as
they are); --audio holds CREMA-D or RAVDESS named WAVs, or a labels.csv. Every
output goes under --work, with the file names of the stage scripts. Run again,
a stage whose settings and inputs have not changed is reused (--force redoes all).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import extract_embeddings
import make_paired_h5_filtered
import predict
import preprocess_images
import preprocessing_audio
import train_anomaly
import train_eval_plot
import train_face_backbone
import train_multimodal
from emotion import cli
from emotion.pipeline import Stage, run_stages

log = logging.getLogger("pipeline")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", required=True, help="folder of {split}/{class}/images")
    p.add_argument("--audio", required=True, help="folder of labelled speech clips")
    p.add_argument("--work", default="results/real", help="where every output goes")
    p.add_argument("--size", type=int, default=112, help="face crop side in pixels")
    p.add_argument("--detector", default="haar", choices=("haar", "mtcnn"))
    p.add_argument("--class_map", default="seed", help="for numeric class folders")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--image_weights", default="none",
                   help="imagenet, none, or a ResNet18 state dict; ignored with --face_epochs")
    p.add_argument("--face_epochs", type=int, default=20,
                   help="train the face backbone this long first (0: use --image_weights)")
    p.add_argument("--face_size", type=int, default=64, help="side the face backbone sees")
    p.add_argument("--face_init", default="auto", help="auto, imagenet, scratch or a PATH")
    p.add_argument("--audio_epochs", type=int, default=40)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--n_probes", type=int, default=64)
    p.add_argument("--video", default=None, help="analyse this video at the end")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="redo every stage")
    return p


def stages(args) -> list[Stage]:
    w = Path(args.work)
    models, anomaly, plots = w / "saved_models", w / "anomaly", w / "plots"
    pre_i, pre_a = w / "preprocessed_images.h5", w / "preprocessed_audio.h5"
    emb_i, emb_a, embedder = w / "embeddings_images.h5", w / "embeddings_audio.h5", \
        models / "embedder.pt"
    prefix = w / "saved_paired"
    tr, va, te = (w / f"saved_paired_{s}_paired_embeddings.h5" for s in ("train", "val", "test"))
    model, forest = models / "multimodal_best.pth", anomaly / "isolation_forest.joblib"
    seed = ["--seed", str(args.seed)]
    face = models / "face_resnet18.pt"
    weights = str(face) if args.face_epochs > 0 else args.image_weights
    weights_inputs = [weights] if args.face_epochs > 0 or Path(weights).is_file() else []
    out = [
        Stage("preprocess_images.py", preprocess_images.main,
              ["--src", str(args.images), "--out", str(pre_i), "--size", str(args.size),
               "--detector", args.detector, "--class_map", args.class_map,
               "--workers", str(args.workers)], [args.images], [pre_i]),
        Stage("preprocessing_audio.py", preprocessing_audio.main,
              ["--audio_dir", str(args.audio), "--out_h5", str(pre_a),
               "--workers", str(args.workers), *seed], [args.audio], [pre_a]),
        Stage("train_face_backbone.py", train_face_backbone.main,
              ["--images_h5", str(pre_i), "--out", str(face), "--epochs", str(args.face_epochs),
               "--size", str(args.face_size), "--init", args.face_init, *seed],
              [pre_i], [face]),
        Stage("extract_embeddings.py", extract_embeddings.main,
              ["--image_h5", str(pre_i), "--audio_h5", str(pre_a), "--out_image_h5", str(emb_i),
               "--out_audio_h5", str(emb_a), "--embedder_out", str(embedder),
               "--image_weights", weights, "--audio_epochs", str(args.audio_epochs),
               "--folds", str(args.folds), *seed],
              [pre_i, pre_a, *weights_inputs], [emb_i, emb_a, embedder]),
        Stage("make_paired_h5_filtered.py", make_paired_h5_filtered.main,
              ["--image_h5", str(emb_i), "--audio_h5", str(emb_a), "--out_prefix", str(prefix),
               *seed], [emb_i, emb_a], [tr, va, te]),
        Stage("train_multimodal.py", train_multimodal.main,
              ["--train_h5", str(tr), "--val_h5", str(va), "--test_h5", str(te),
               "--epochs", str(args.epochs), "--batch_size", str(args.batch_size),
               "--lr", str(args.lr), "--save_dir", str(models), *seed], [tr, va, te], [model]),
        Stage("train_anomaly.py", train_anomaly.main,
              ["--train_h5", str(tr), "--test_h5", str(te), "--save_dir", str(anomaly),
               "--embedder", str(embedder), "--n_probes", str(args.n_probes), *seed],
              [tr, te, embedder], [forest]),
        Stage("train_eval_plot.py", train_eval_plot.main,
              ["--model_path", str(model), "--test_h5", str(te), "--val_h5", str(va),
               "--save_dir", str(plots)], [model, te, va], [plots / "metrics.json"]),
    ]
    if args.face_epochs <= 0:
        out = [s for s in out if s.name != "train_face_backbone.py"]
    if args.video:
        out.append(Stage("predict.py", predict.main,
                         ["--video", str(args.video), "--embedder", str(embedder),
                          "--multimodal", str(model), "--isolation", str(forest),
                          "--out", str(w / "prediction.json"),
                          "--plot", str(w / "prediction.png")],
                         [args.video, embedder, model, forest], always=True))
    return out


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    cli.setup_logging()
    rc = run_stages(stages(args), args.work, force=args.force)
    if rc == 0:
        log.info("done: every output is under %s (plots in %s, %s)", args.work,
                 Path(args.work) / "plots", Path(args.work) / "anomaly")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
