"""Train the face backbone: ResNet18 on the preprocessed train faces, selected on val.

    python train_face_backbone.py --images_h5 preprocessed_images.h5 \
        --out saved_models/face_resnet18.pt --epochs 30 --batch_size 128 --lr 0.001 \
        --size 112 --device auto --seed 0
    python extract_embeddings.py --image_weights saved_models/face_resnet18.pt

Starts from ImageNet weights when torchvision's cache has them (--init auto, the
default, says which), else from scratch; --init PATH starts from a state dict.
Classes outside the six are dropped and counted. The crops are resized to --size
(a smaller side such as 112 or 96 costs a fraction of 224), and the saved file
records it. The epoch with the best val macro-F1 is kept; --patience stops early.
"""

from __future__ import annotations

import argparse
import json
import logging

from emotion import cli
from emotion.face_backbone import FaceTrainConfig, train_face_backbone

log = logging.getLogger("train_face_backbone")


def get_args_parser() -> argparse.ArgumentParser:
    d = FaceTrainConfig()
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images_h5", default="preprocessed_images.h5")
    p.add_argument("--out", default="saved_models/face_resnet18.pt")
    p.add_argument("--init", default="auto",
                   help="auto (ImageNet if in the torch cache, else scratch), imagenet, "
                        "scratch, or the path of a ResNet18 state dict")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch_size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr, help="peak of the OneCycle schedule")
    p.add_argument("--weight_decay", type=float, default=d.weight_decay)
    p.add_argument("--size", type=int, default=d.size,
                   help="side the network sees; the crops are resized to it")
    p.add_argument("--patience", type=int, default=d.patience,
                   help="early stopping: epochs without a better val macro-F1")
    p.add_argument("--label_smoothing", type=float, default=d.label_smoothing)
    p.add_argument("--augment", type=int, default=1, choices=(0, 1),
                   help="flip, small rotation, zoom and shift, brightness and contrast")
    p.add_argument("--max_train_batches", type=int, default=None,
                   help="stop each epoch after this many batches (quick runs, timing)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="auto: bf16 autocast where the hardware has it")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)

    def body() -> None:
        cfg = FaceTrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                              weight_decay=args.weight_decay, size=args.size,
                              patience=args.patience, label_smoothing=args.label_smoothing,
                              augment=bool(args.augment),
                              max_train_batches=args.max_train_batches, seed=args.seed)
        s = train_face_backbone(args.images_h5, args.out, cfg, init=args.init,
                                device=args.device, precision=args.precision)
        for split in ("val", "test"):
            if split in s["metrics"]:
                m = s["metrics"][split]
                log.info("%s (epoch %d): accuracy %.3f, macro-F1 %.3f, per class %s", split,
                         s["epoch"], m["accuracy"], m["macro_f1"],
                         json.dumps({k: round(v, 3) for k, v in m["per_class_f1"].items()}))
        log.info("saved %s (init %s, sha256 %s); embed with: python extract_embeddings.py "
                 "--image_weights %s", s["out"], s["init"], s["sha256"][:16], s["out"])

    return cli.run(body, "train_face_backbone.py")


if __name__ == "__main__":
    raise SystemExit(main())
