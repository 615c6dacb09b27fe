"""Labelled videos composed from test faces and voices, analysed as predict.py does.

`python evaluate_videos.py --help` lists the flags;
the logic lives in emotion.stages.video_eval.
"""

from emotion.stages.video_eval import main

if __name__ == "__main__":
    raise SystemExit(main())
