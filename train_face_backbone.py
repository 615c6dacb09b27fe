"""Train the face backbone: ResNet18 on the preprocessed train faces, selected on val.

`python train_face_backbone.py --help` lists the flags;
the logic lives in emotion.stages.train_backbone.
"""

from emotion.stages.train_backbone import main

if __name__ == "__main__":
    raise SystemExit(main())
