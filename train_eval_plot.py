"""Evaluate the fusion classifier on the val and test pairs; write metrics and plots.

`python train_eval_plot.py --help` lists the flags; the logic lives in emotion.stages.evaluate.
"""

from emotion.stages.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
