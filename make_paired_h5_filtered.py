"""Pair image and audio embeddings of the same emotion, per split.

    python make_paired_h5_filtered.py --image_h5 embeddings_images.h5 \
        --audio_h5 embeddings_audio.h5 --out_prefix saved_paired --seed 0

Writes saved_paired_{split}_paired_embeddings.h5. Audio is drawn only from the
image's split; classes outside the six emotions are dropped and counted.
"""

from __future__ import annotations

import argparse
import json
import logging

from emotion import cli
from emotion.pairing import make_pairs

log = logging.getLogger("make_paired_h5_filtered")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image_h5", default="embeddings_images.h5")
    p.add_argument("--audio_h5", default="embeddings_audio.h5")
    p.add_argument("--out_prefix", default="saved_paired")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)

    def body() -> None:
        summary = make_pairs(args.image_h5, args.audio_h5, args.out_prefix, seed=args.seed)
        log.info("pairs: %s", json.dumps({s: v["pairs"] for s, v in summary.items()}))

    return cli.run(body, "make_paired_h5_filtered.py")


if __name__ == "__main__":
    raise SystemExit(main())
