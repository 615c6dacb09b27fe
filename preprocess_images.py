"""Face images in {split}/{class}/image folders -> preprocessed_images.h5.

`python preprocess_images.py --help` lists the flags;
the logic lives in emotion.stages.preprocess_images.
"""

from emotion.stages.preprocess_images import main

if __name__ == "__main__":
    raise SystemExit(main())
