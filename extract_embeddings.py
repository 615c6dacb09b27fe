"""Preprocessed images and audio -> 512-d image and 128-d audio embeddings.

    python extract_embeddings.py                       # the seed's file names
    python extract_embeddings.py --image_weights imagenet
    python extract_embeddings.py --embedder saved_models/embedder.pt \
        --audio_h5 external_audio.h5 --out_audio_h5 external_embeddings_audio.h5

Without --embedder, the audio encoder is trained on the train split (train clips
get out-of-fold embeddings) and everything needed to embed new media the same
way is saved to --embedder_out.
"""

from __future__ import annotations

import argparse
import logging

from emotion import cli
from emotion.extract import extract

log = logging.getLogger("extract_embeddings")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image_h5", default="preprocessed_images.h5")
    p.add_argument("--audio_h5", default="preprocessed_audio.h5")
    p.add_argument("--out_image_h5", default="embeddings_images.h5")
    p.add_argument("--out_audio_h5", default="embeddings_audio.h5")
    p.add_argument("--embedder_out", default="saved_models/embedder.pt",
                   help="where the new embedder is saved")
    p.add_argument("--embedder", default=None,
                   help="reuse this embedder instead of training a new audio encoder")
    p.add_argument("--image_weights", default="imagenet",
                   help="imagenet (torch cache), none (random weights), or a ResNet18 "
                        "state dict such as saved_models/face_resnet18.pt")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="auto: bf16 where the hardware has it and it agrees with fp32")
    p.add_argument("--audio_epochs", type=int, default=40)
    p.add_argument("--folds", type=int, default=5,
                   help="speaker folds for out-of-fold train embeddings (0: none)")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)

    def body() -> None:
        s = extract(args.image_h5, args.audio_h5, args.out_image_h5, args.out_audio_h5,
                    embedder_out=None if args.embedder else args.embedder_out,
                    embedder=args.embedder, image_weights=args.image_weights,
                    device=args.device, precision=args.precision, seed=args.seed,
                    audio_epochs=args.audio_epochs, folds=args.folds)
        log.info("wrote %s and %s (embedder %s, %s)", args.out_image_h5, args.out_audio_h5,
                 s["embedder_id"], s["precision"])

    return cli.run(body, "extract_embeddings.py")


if __name__ == "__main__":
    raise SystemExit(main())
