"""Labelled speech clips -> preprocessed_audio.h5 (log-mels) and a CSV manifest.

`python preprocessing_audio.py --help` lists the flags;
the logic lives in emotion.stages.preprocess_audio.
"""

from emotion.stages.preprocess_audio import main

if __name__ == "__main__":
    raise SystemExit(main())
