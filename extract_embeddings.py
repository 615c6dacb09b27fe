"""Preprocessed images and audio -> 512-d image and 128-d audio embeddings.

`python extract_embeddings.py --help` lists the flags; the logic lives in emotion.stages.extract.
"""

from emotion.stages.extract import main

if __name__ == "__main__":
    raise SystemExit(main())
