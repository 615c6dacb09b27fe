"""Train the anomaly detector (Isolation Forests) on paired embeddings; judge it on probes.

`python train_anomaly.py --help` lists the flags; the logic lives in emotion.stages.train_anomaly.
"""

from emotion.stages.train_anomaly import main

if __name__ == "__main__":
    raise SystemExit(main())
