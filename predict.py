"""Emotions over time, and how unusual the input looks, for media.

`python predict.py --help` lists the flags; the logic lives in emotion.serve.predict.
"""

from emotion.serve.predict import main

if __name__ == "__main__":
    raise SystemExit(main())
