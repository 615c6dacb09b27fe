"""The main job on generated data: every stage, then a prediction on a video.

`python demo.py --help` lists the flags; the logic lives in emotion.stages.demo.
"""

from emotion.stages.demo import main

if __name__ == "__main__":
    raise SystemExit(main())
