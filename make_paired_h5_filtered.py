"""Pair image and audio embeddings of the same emotion, per split.

`python make_paired_h5_filtered.py --help` lists the flags; the logic lives in emotion.stages.pair.
"""

from emotion.stages.pair import main

if __name__ == "__main__":
    raise SystemExit(main())
