"""The main job on generated data: make the sample set, then run the stages.

    python demo.py --sample data/sample --out results/demo
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import preprocess_images
import preprocessing_audio
from emotion import cli
from emotion.synth import make_sample_set

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
    if not (sample / "audio").is_dir() or not (sample / "images").is_dir():
        log.info("[1/3] generating the sample set in %s", sample)
        make_sample_set(sample)
    else:
        log.info("[1/3] reusing the sample set in %s", sample)
    out.mkdir(parents=True, exist_ok=True)
    log.info("[2/3] preprocessing images")
    rc = preprocess_images.main(["--src", str(sample / "images"),
                                 "--out", str(out / "preprocessed_images.h5"),
                                 "--size", "112", "--workers", str(args.workers)])
    if rc:
        return rc
    log.info("[3/3] preprocessing audio")
    rc = preprocessing_audio.main(["--audio_dir", str(sample / "audio"),
                                   "--out_h5", str(out / "preprocessed_audio.h5"),
                                   "--workers", str(args.workers)])
    if rc:
        return rc
    log.info("done: outputs are in %s", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
