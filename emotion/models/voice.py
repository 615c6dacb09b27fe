"""The voice branch: a 3-s window of speech -> 128-d audio embedding.

Chosen by leave-speakers-out cross-validation on RAVDESS (bench/voice_cv.py;
README, "The voice branch"): frozen Whisper tiny.en encoder features generalise
to new speakers far better than a log-mel CNN trained on a few actors.

- Features: the prepared window (media.audio.prepare_clip: trimmed, peak-normalised,
  3 s) through Whisper's encoder on its own 300 mel frames; the outputs of blocks
  2 and 3, mean and standard deviation over the 150 encoder frames (1536 values).
- Head: standardised features into a logistic regression (C = 0.03, balanced class
  weights) over the six emotions, fitted on whole clips, their 3-s windows that
  hold speech (what serving sees), and speed 0.9 / 1.1 and 20 dB-noise copies.
- Embedding (the 128-d contract of the fusion model and the anomaly detector):
  the six logits, then the first 122 principal components of the standardised
  features (fitted without labels) for what the logits do not tell, such as how
  unusual a voice sounds.

:func:`fit_voice` fits the head on every labelled clip and gives each clip an
out-of-fold embedding: its logits come from a head fitted without its speaker's
fold, so everything trained downstream sees embeddings as a new speaker's would be.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from emotion.core.errors import EmotionError
from emotion.core.labels import ALL_LABELS, EMOTIONS
from emotion.core.splits import speaker_folds
from emotion.media.audio import AudioParams, prepare_clip, resample, split_windows
from emotion.media.augment import meeting_copy
from emotion.models import whisper

log = logging.getLogger(__name__)

EMBED_DIM = 128
N_LOGITS = len(EMOTIONS)
ABSENT_LOGIT = -10.0     # an emotion the head never saw in training
BATCH = 32


@dataclass(frozen=True)
class VoiceConfig:
    blocks: tuple[int, ...] = (2, 3)
    c: float = 0.03                           # inverse L2 strength of the regression
    speeds: tuple[float, ...] = (0.9, 1.1)    # speed-perturbed copies of each clip
    noise_snr_db: float | None = 20.0         # a white-noise copy at this SNR
    windows: bool = True                      # train on the clips' 3-s speech windows too
    folds: int = 4                            # speaker folds for out-of-fold embeddings
    seed: int = 0
    meeting_copies: int = 0                   # meeting-like copies (media.augment) per clip
    norm: str = "speaker"                      # none | instance: each block's pooled
    #                                           means and stds standardised per window |
    #                                           speaker: less the speaker's mean window
    shrink: float = 1.0                       # speaker norm: the training speakers' mean
    #                                           counts as this many windows of a new one
    balance: bool = False                     # every corpus weighs the same in the loss
    calibrate: bool = True                    # a temperature fitted on out-of-fold logits


# What embedders did before a setting existed: such a setting is recorded only when it
# departs from this, so that an embedder made before it keeps its settings and its id.
LEGACY = {"meeting_copies": 0, "norm": "none", "shrink": 1.0, "balance": False,
          "calibrate": False}
NORMS = ("none", "instance", "speaker")


class VoiceFeatures:
    """Prepared 3-s clips (N, n) -> pooled Whisper features (N, 768 * len(blocks))."""

    def __init__(self, blocks: tuple[int, ...] = VoiceConfig.blocks, norm: str = "none"):
        if norm not in NORMS:
            raise EmotionError(f"voice feature norm {norm!r}: one of {', '.join(NORMS)}")
        self.blocks, self.norm = tuple(blocks), norm
        self.encoder = whisper.load_encoder()

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        clips = np.asarray(clips, np.float32)
        if clips.ndim == 1:
            clips = clips[None]
        out = [whisper.pooled(self.encoder, clips[i:i + BATCH], self.blocks)
               for i in range(0, len(clips), BATCH)]
        x = np.concatenate(out) if out else np.zeros((0, 768 * len(self.blocks)), np.float32)
        return instance_norm(x) if self.norm == "instance" else x


def instance_norm(x: np.ndarray, width: int = 384) -> np.ndarray:
    """Each window's pooled means, and its stds, of each block standardised over their
    `width` values: what is left is the shape of the voice, not its overall level or
    spread, which differ between microphones and rooms."""
    z = x.reshape(len(x), -1, width)
    z = (z - z.mean(-1, keepdims=True)) / (z.std(-1, keepdims=True) + 1e-6)
    return z.reshape(len(x), -1).astype(np.float32)


class VoiceHead:
    """Standardise, then the regression's logits and the principal components."""

    def __init__(self, state: dict):
        t = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in state.items()
             if k in ("mean", "scale", "coef", "intercept", "pca_mean", "components",
                      "temperature", "prior", "shrink")}
        self.state = state
        self._t = t
        self.classes = [int(c) for c in state["classes"]]

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, cfg: VoiceConfig, *,
            pca_x: np.ndarray | None = None, groups: np.ndarray | None = None) -> VoiceHead:
        """x (N, F) features, y (N,) indices into EMOTIONS; PCA on `pca_x` (default x).
        Classes weigh the same; with `groups` (each row's corpus), so do the groups."""
        from sklearn.decomposition import PCA
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        if len(set(y.tolist())) < 2:
            raise EmotionError(f"the voice head needs clips of at least two emotions, got "
                               f"{sorted({EMOTIONS[i] for i in y.tolist()})}")
        scaler = StandardScaler().fit(x)
        if groups is None:
            lr = LogisticRegression(C=cfg.c, class_weight="balanced", max_iter=3000)
            lr.fit(scaler.transform(x), y)
        else:
            lr = LogisticRegression(C=cfg.c, max_iter=3000)
            lr.fit(scaler.transform(x), y, sample_weight=balanced_weights(y, groups))
        z = scaler.transform(x if pca_x is None else pca_x)
        k = min(EMBED_DIM - N_LOGITS, z.shape[0], z.shape[1])
        pca = PCA(n_components=k, random_state=cfg.seed).fit(z)
        return cls({"mean": scaler.mean_, "scale": scaler.scale_, "coef": lr.coef_,
                    "intercept": lr.intercept_, "classes": [int(c) for c in lr.classes_],
                    "pca_mean": pca.mean_, "components": pca.components_})

    def _z(self, x: np.ndarray, context: VoiceContext | None = None) -> torch.Tensor:
        x = torch.as_tensor(x, dtype=torch.float64)
        if "prior" in self._t:  # speaker norm: less the estimate of the speaker's mean
            k = self._t["shrink"]
            total, n = (context.total, context.n) if context is not None and context.n \
                else (torch.zeros_like(self._t["prior"]), 0)
            x = x - (torch.as_tensor(total, dtype=torch.float64) + x + k * self._t["prior"]) \
                / (n + 1 + k)
        return (x - self._t["mean"]) / self._t["scale"]

    def logits(self, x: np.ndarray, context: VoiceContext | None = None) -> np.ndarray:
        """(N, 6) in EMOTIONS order; an emotion not trained on gets ABSENT_LOGIT. With
        speaker norm, `context` holds the speaker's earlier windows (none: the window
        alone, pulled toward the training speakers' mean)."""
        z = self._z(x, context)
        scores = z @ self._t["coef"].T + self._t["intercept"]
        if "temperature" in self._t:
            scores = scores / self._t["temperature"]
        if scores.shape[1] == 1:  # sklearn's binary case: one score for classes[1]
            scores = torch.cat([-scores, scores], dim=1) / 2
        out = np.full((len(z), N_LOGITS), ABSENT_LOGIT, np.float64)
        out[:, self.classes] = scores.numpy()
        return out.astype(np.float32)

    def components(self, x: np.ndarray, context: VoiceContext | None = None) -> np.ndarray:
        """(N, 122): the principal components, zero-padded when fewer were fitted."""
        comp = ((self._z(x, context) - self._t["pca_mean"]) @ self._t["components"].T
                ).numpy()
        out = np.zeros((len(comp), EMBED_DIM - N_LOGITS), np.float32)
        out[:, :comp.shape[1]] = comp
        return out

    def with_temperature(self, t: float) -> VoiceHead:
        """The same head, its logits divided by `t` (calibrated log-probabilities)."""
        return VoiceHead({**self.state, "temperature": np.float64(t)})

    def embed(self, x: np.ndarray, context: VoiceContext | None = None) -> np.ndarray:
        return np.concatenate([self.logits(x, context), self.components(x, context)], axis=1)

    def with_speaker_norm(self, prior: np.ndarray, shrink: float) -> VoiceHead:
        """The same head, reading features less their speaker's estimated mean window."""
        return VoiceHead({**self.state, "prior": np.asarray(prior, np.float64),
                          "shrink": np.float64(shrink)})

    def sha256(self) -> str:
        h = hashlib.sha256(json.dumps(self.classes).encode())
        for k in sorted(self._t):
            h.update(k.encode())
            h.update(self._t[k].numpy().tobytes())
        return h.hexdigest()

    def to_state(self) -> dict:
        """Plain data (loads with torch.load(weights_only=True))."""
        return {k: (torch.as_tensor(v, dtype=torch.float64) if k != "classes" else list(v))
                for k, v in self.state.items()}


class VoiceContext:
    """One speaker's speech windows so far (the sum and count of their features), for a
    head with speaker norm: give the analysis of one participant one context, and each
    window's embedding is normalised by the mean of that participant's earlier windows
    (pulled toward the training speakers' mean while there are few)."""

    def __init__(self) -> None:
        self.total: np.ndarray | float = 0.0
        self.n = 0

    def add(self, x: np.ndarray) -> None:
        """Windows' features (N, F) heard from this speaker."""
        x = np.atleast_2d(np.asarray(x, np.float64))
        self.total = self.total + x.sum(0)
        self.n += len(x)


def speaker_means(x: np.ndarray, speakers: Sequence[str]) -> dict[str, np.ndarray]:
    """Each speaker's mean row of x."""
    spk = np.asarray(speakers)
    return {s: x[spk == s].mean(0) for s in sorted(set(spk.tolist()))}


def balanced_weights(y: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Sample weights under which every group (corpus) and, within it, every class
    weighs the same; they sum to len(y)."""
    w = np.zeros(len(y))
    cells = {(g, c) for g, c in zip(groups.tolist(), y.tolist(), strict=True)}
    n_groups = len(set(groups.tolist()))
    for g, c in cells:
        m = (groups == g) & (y == c)
        n_classes = len({cc for gg, cc in cells if gg == g})
        w[m] = len(y) / (n_groups * n_classes * m.sum())
    return w


def choose_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature that minimises the log-loss of softmax(logits / t) (a grid from
    0.25 to 8; Guo et al., 2017)."""
    grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 61))
    z = logits - logits.max(1, keepdims=True)
    losses = []
    for t in grid:
        zt = z / t
        logp = zt - np.log(np.exp(zt).sum(1, keepdims=True))
        losses.append(-float(np.mean(logp[np.arange(len(y)), y])))
    return float(grid[int(np.argmin(losses))])


# ----------------------------------------------------------------- training examples
def speed_copy(y: np.ndarray, sr: int, speed: float) -> np.ndarray:
    """Tempo and pitch together, as Kaldi's speed perturbation: resampled as if
    recorded at sr * speed."""
    return resample(y, int(round(sr * speed)), sr)


def noise_copy(y: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    power = float(np.mean(np.square(y, dtype=np.float64))) + 1e-12
    noise = rng.normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), y.shape)
    return (y + noise).astype(np.float32)


def extra_examples(y: np.ndarray, sr: int, params: AudioParams, detector, cfg: VoiceConfig,
                   rng: np.random.Generator) -> list[np.ndarray]:
    """A clip's training examples beyond the whole clip, each prepared as serving
    prepares a window: its 3-s windows that hold speech, and its perturbed copies."""
    out = []
    if cfg.windows:
        for w in split_windows(y, sr, params.fixed_duration):
            if detector.has_speech(resample(w, sr, params.sample_rate)):
                out.append(w)
    out += [speed_copy(y, sr, s) for s in cfg.speeds]
    if cfg.noise_snr_db is not None:
        out.append(noise_copy(y, cfg.noise_snr_db, rng))
    out += [meeting_copy(y, sr, rng) for _ in range(cfg.meeting_copies)]
    prepared = []
    for w in out:
        try:
            prepared.append(prepare_clip(w, sr, params)[0])
        except EmotionError:  # a window of digital silence: nothing to learn from
            continue
    return prepared


# ----------------------------------------------------------------- fitting
@dataclass
class VoiceData:
    """Every labelled clip's features, and its extra examples' features."""

    clips: np.ndarray          # (N, F) whole-clip features
    labels: np.ndarray         # (N,) indices into ALL_LABELS
    speakers: list[str]
    extra: np.ndarray          # (M, F) windows and perturbed copies
    extra_of: np.ndarray       # (M,) the clip each extra example comes from
    corpora: list[str] | None = None  # each clip's corpus (for a corpus-balanced head)


def collect(waveforms: Sequence[np.ndarray], sr: int, labels: np.ndarray,
            speakers: Sequence[str], *, params: AudioParams, detector,
            features: VoiceFeatures, cfg: VoiceConfig,
            corpora: Sequence[str] | None = None) -> VoiceData:
    """Features of every clip (prepared whole) and of its extra training examples."""
    rng = np.random.default_rng(cfg.seed)
    whole, extra, extra_of = [], [], []
    for i, y in enumerate(waveforms):
        whole.append(prepare_clip(y, sr, params)[0])
        more = extra_examples(y, sr, params, detector, cfg, rng)
        extra += more
        extra_of += [i] * len(more)
    log.info("voice branch: %d clips and %d windows and perturbed copies", len(whole),
             len(extra))
    x_extra = features(np.stack(extra)) if extra else np.zeros((0, 0), np.float32)
    return VoiceData(features(np.stack(whole)), np.asarray(labels), list(speakers), x_extra,
                     np.asarray(extra_of, np.int64), list(corpora) if corpora else None)


def _six(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mask of the labels among the six emotions, their index into EMOTIONS)."""
    names = [ALL_LABELS[int(i)] for i in labels]
    mask = np.array([n in EMOTIONS for n in names])
    return mask, np.array([EMOTIONS.index(n) if n in EMOTIONS else -1 for n in names])


def fit_head(data: VoiceData, clip_mask: np.ndarray, cfg: VoiceConfig) -> VoiceHead:
    """The head on the clips of `clip_mask` (six emotions only) and their extra examples;
    its principal components on every clip (no labels used)."""
    six, y = _six(data.labels)
    keep = clip_mask & six
    extra = keep[data.extra_of] if len(data.extra_of) else np.zeros(0, bool)
    x = np.concatenate([data.clips[keep], data.extra[extra]]) if extra.any() \
        else data.clips[keep]
    labels = np.concatenate([y[keep], y[data.extra_of[extra]]])
    groups = None
    if cfg.balance and data.corpora is not None:
        corpus = np.asarray(data.corpora)
        groups = np.concatenate([corpus[keep], corpus[data.extra_of[extra]]])
    if cfg.norm != "speaker":
        return VoiceHead.fit(x, labels, cfg, pca_x=data.clips, groups=groups)
    # speaker norm: each training example less its speaker's mean clip (all of them
    # known here); a new speaker's mean is estimated from their windows at serving
    means = speaker_means(data.clips, data.speakers)
    spk = np.asarray(data.speakers)
    rows_spk = np.concatenate([spk[keep], spk[data.extra_of[extra]]])
    centre = np.stack([means[s] for s in rows_spk])
    all_centre = np.stack([means[s] for s in spk])
    head = VoiceHead.fit(x - centre, labels, cfg, pca_x=data.clips - all_centre,
                         groups=groups)
    return head.with_speaker_norm(data.clips[keep].mean(0), cfg.shrink)


def fit_voice(data: VoiceData, cfg: VoiceConfig, fit: np.ndarray | None = None
              ) -> tuple[VoiceHead, np.ndarray]:
    """The head on every clip (or the clips of the mask `fit`), and each clip's
    out-of-fold embedding (N, 128).

    The principal components are the final head's for every clip (fitted without
    labels); the logits of a clip come from the head of its speaker fold, which
    also learns only from the clips of `fit`.
    """
    fit = np.ones(len(data.labels), bool) if fit is None else fit
    final = fit_head(data, fit, cfg)
    out = final.embed(data.clips)
    k = min(cfg.folds, len(set(data.speakers)))
    if k < 2:
        log.warning("one speaker: no out-of-fold voice embeddings; downstream training "
                    "sees the final head's (optimistic) logits")
        return final, out
    for i, held in enumerate(speaker_folds(data.speakers, k, cfg.seed)):
        head = fit_head(data, ~held & fit, cfg)
        out[held, :N_LOGITS] = head.logits(data.clips[held])
        log.info("voice fold %d/%d: %d held-out clips", i + 1, k, int(held.sum()))
    if cfg.calibrate:  # on the clips the head may learn from, out of fold
        six, y = _six(data.labels)
        t = choose_temperature(out[six & fit, :N_LOGITS], y[six & fit])
        final = final.with_temperature(t)
        out[:, :N_LOGITS] /= t
        log.info("voice head: temperature %.2f (chosen on out-of-fold logits)", t)
    return final, out


def config_dict(cfg: VoiceConfig) -> dict:
    d = asdict(cfg)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()
            if k not in LEGACY or v != LEGACY[k]}


def config_from(d: dict) -> VoiceConfig:
    return VoiceConfig(**(LEGACY | {k: tuple(v) if isinstance(v, list) else v
                                    for k, v in d.items()}))
