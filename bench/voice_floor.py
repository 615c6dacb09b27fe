"""The classic floor of the voice branch: hand-made prosodic and spectral statistics into
a standardised logistic regression (what bench/voice_cv.py compares the product with).

Per clip (the speech part of the prepared 3-s clip): MFCC 1-30 with their deltas and
delta-deltas (mean and std), RMS energy in dB (mean, std, 5-95 % range, max), zero
crossing rate, pitch by pYIN in semitones (mean, std, 5-95 % range, mean step) and the
voiced share, spectral centroid, and the speech duration: 194 values. The regression's
C is picked by an inner cross-validation grouped by speaker, on the training speakers.
"""

from __future__ import annotations

import numpy as np

SR = 16_000
N_MFCC = 30
C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


def _stats(x: np.ndarray) -> list[float]:
    return [float(np.mean(x)), float(np.std(x))]


def classic_features(clip: np.ndarray, duration: float) -> np.ndarray:
    import librosa

    y = clip[:max(int(round(duration * SR)), 2048)].astype(np.float32)
    mf = librosa.feature.mfcc(y=y, sr=SR, n_mfcc=N_MFCC, n_fft=400, hop_length=160, n_mels=64)
    width = max(3, min(9, mf.shape[1] - (1 - mf.shape[1] % 2)))
    width = width if width % 2 else width - 1
    feats: list[float] = []
    for m in (mf, librosa.feature.delta(mf, width=width, mode="nearest"),
              librosa.feature.delta(mf, order=2, width=width, mode="nearest")):
        feats += m.mean(1).tolist() + m.std(1).tolist()
    rms = 20 * np.log10(np.maximum(librosa.feature.rms(y=y, frame_length=400,
                                                       hop_length=160)[0], 1e-5))
    feats += _stats(rms) + [float(np.percentile(rms, 95) - np.percentile(rms, 5)),
                            float(rms.max())]
    feats += _stats(librosa.feature.zero_crossing_rate(y, frame_length=400, hop_length=160)[0])
    f0, voiced, _ = librosa.pyin(y, fmin=65.0, fmax=600.0, sr=SR, frame_length=1024,
                                 hop_length=320)
    f0 = f0[voiced & np.isfinite(f0)]
    if f0.size >= 2:
        st = 12 * np.log2(f0 / 55.0)
        feats += [float(st.mean()), float(st.std()),
                  float(np.percentile(st, 95) - np.percentile(st, 5)),
                  float(np.mean(np.abs(np.diff(st))))]
    else:
        feats += [0.0, 0.0, 0.0, 0.0]
    feats += [float(np.mean(voiced)), float(duration)]
    feats += _stats(librosa.feature.spectral_centroid(y=y, sr=SR, n_fft=400,
                                                      hop_length=160)[0] / 1000.0)
    return np.asarray(feats, np.float32)


class ClassicFloor:
    def __init__(self, *, seed: int = 0):
        self.seed = seed

    def features(self, prepared: list[tuple[np.ndarray, float]]) -> np.ndarray:
        return np.stack([classic_features(c, d) for c, d in prepared])

    def _model(self, c: float):
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LogisticRegression(
            C=c, class_weight="balanced", max_iter=3000))

    def fit(self, x: np.ndarray, y: np.ndarray, groups: np.ndarray):
        """The regression with the C that scores best over 3 speaker-grouped folds;
        returns its predict function."""
        from sklearn.model_selection import GroupKFold, cross_val_score

        scores = [cross_val_score(self._model(c), x, y, groups=groups,
                                  cv=GroupKFold(3)).mean() for c in C_GRID]
        model = self._model(C_GRID[int(np.argmax(scores))]).fit(x, y)
        return model.predict
