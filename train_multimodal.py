"""Train the fusion classifier on paired embeddings.

`python train_multimodal.py --help` lists the flags; the logic lives in emotion.stages.train_fusion.
"""

from emotion.stages.train_fusion import main

if __name__ == "__main__":
    raise SystemExit(main())
