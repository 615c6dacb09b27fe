"""The whole pipeline on real data folders, every stage in order.

`python pipeline.py --help` lists the flags; the logic lives in emotion.stages.run_all.
"""

from emotion.stages.run_all import main

if __name__ == "__main__":
    raise SystemExit(main())
