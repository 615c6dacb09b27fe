"""Out-of-distribution probes for the anomaly detector, made the way production inputs are.

Every probe goes through the project's own path (:class:`Embedder`): waveforms
through ``emb.audio_embedding`` (the speech gate, then the voice branch), frames
through ``emb.face`` (the face policy) and ``emb.embed_images``. A probe that
path refuses before any model sees it (noise the speech gate hears no one in, a
texture the face policy finds no face in) is counted as rejected with the
reason: that is the refusal a user's input gets, before the anomaly detector.

Only one half of a probe pair is out of distribution: an audio probe is paired
with a real test image embedding and an image probe with a real test audio
embedding. "mismatched" pairs join a test face of one emotion with a test clip of
another, both in distribution on their own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from emotion.core.metrics import auroc
from emotion.models.anomaly import KNNDistance, Mahalanobis
from emotion.models.embedder import AUDIO_DIM

log = logging.getLogger(__name__)

SPEECH_RMS_DBFS = -20.0   # a loud-ish recording
ROOM_TONE_DBFS = -60.0    # an empty, quiet room
HUM_HZ = 50.0             # mains hum heard in room tone


# ----------------------------------------------------------------- waveforms
def _at_rms(y: np.ndarray, dbfs: float) -> np.ndarray:
    y = y - y.mean()
    y = y * (10.0 ** (dbfs / 20.0) / max(float(np.sqrt(np.mean(y ** 2))), 1e-12))
    return np.clip(y, -1.0, 1.0).astype(np.float32)


def white_noise(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    return _at_rms(rng.standard_normal(n), SPEECH_RMS_DBFS)


def _pink(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f power: white noise shaped by 1/sqrt(f) in the frequency domain."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    f[0] = f[1]
    return np.fft.irfft(spec / np.sqrt(f), n)


def pink_noise(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    return _at_rms(_pink(n, rng), SPEECH_RMS_DBFS)


def room_tone(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Very quiet pink noise with a faint mains hum: a microphone left open, no one talking.

    It passes the silence check (its peak is far above -80 dBFS), and the peak
    normalisation of the preprocessing then brings it up to speech level.
    """
    t = np.arange(n) / sr
    hum = _at_rms(np.sin(2 * np.pi * HUM_HZ * t + rng.uniform(0, 2 * np.pi)), ROOM_TONE_DBFS - 6)
    return (_at_rms(_pink(n, rng), ROOM_TONE_DBFS) + hum).astype(np.float32)


def digital_silence(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    return np.zeros(n, np.float32)


AUDIO_PROBES: dict[str, Callable[[int, int, np.random.Generator], np.ndarray]] = {
    "white_noise": white_noise,
    "pink_noise": pink_noise,
    "room_tone": room_tone,
    "digital_silence": digital_silence,
}


# ----------------------------------------------------------------- frames
def _two_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return rng.integers(0, 256, 3).astype(np.float32), rng.integers(0, 256, 3).astype(np.float32)


def texture_frame(h: int, w: int, rng: np.random.Generator, i: int) -> np.ndarray:
    """Random noise, a checkerboard, stripes or a smooth gradient (i picks which)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    kind = i % 4
    if kind == 0:
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    a, b = _two_colours(rng)
    if kind == 1:
        period = int(rng.integers(4, max(5, h // 4)))
        mask = ((yy // period + xx // period) % 2)[..., None]
    elif kind == 2:
        angle, period = rng.uniform(0, np.pi), rng.uniform(4, max(5, h / 4))
        phase = (xx * np.cos(angle) + yy * np.sin(angle)) / period
        mask = (np.floor(phase) % 2)[..., None]
    else:
        angle = rng.uniform(0, 2 * np.pi)
        ramp = xx * np.cos(angle) + yy * np.sin(angle)
        mask = ((ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6))[..., None]
    return np.clip(a * (1 - mask) + b * mask, 0, 255).astype(np.uint8)


def blank_frame(h: int, w: int, rng: np.random.Generator, i: int) -> np.ndarray:
    """Black, white, mid grey or one random colour: a covered or dead camera."""
    colour = [np.zeros(3), np.full(3, 255), np.full(3, 128), rng.integers(0, 256, 3)][i % 4]
    return np.broadcast_to(np.asarray(colour, np.uint8), (h, w, 3)).copy()


IMAGE_PROBES: dict[str, Callable[[int, int, np.random.Generator, int], np.ndarray]] = {
    "texture": texture_frame,
    "blank": blank_frame,
}


# ----------------------------------------------------------------- probe sets
@dataclass
class ProbeSet:
    """n probe pairs, embedded; ``rejected`` inputs the preprocessing refused."""

    kind: str
    modality: str            # the out-of-distribution half: audio | image | pair
    image: np.ndarray        # (n, 512)
    audio: np.ndarray        # (n, 128)
    rejected: int = 0
    reason: str = ""         # why the first rejected one was refused
    faces_found: int | None = None

    def __len__(self) -> int:
        return len(self.image)


def embed_audio_probes(emb, kind: str, n: int, rng: np.random.Generator
                       ) -> tuple[np.ndarray, int, str]:
    """n waveforms of a kind -> (embeddings (m, 128), rejected count, first reason)."""
    p = emb.audio_params
    rows, rejected = [], 0
    for _ in range(n):
        e = emb.audio_embedding(AUDIO_PROBES[kind](p.n_samples, p.sample_rate, rng),
                                p.sample_rate)
        if e is None:
            rejected += 1
        else:
            rows.append(e)
    reason = "no speech (the speech gate)" if rejected else ""
    return (np.stack(rows) if rows else np.zeros((0, AUDIO_DIM), np.float32)), rejected, reason


def embed_image_probes(emb, kind: str, n: int, rng: np.random.Generator
                       ) -> tuple[np.ndarray, int]:
    """n frames of a kind (4:3, twice the crop size) -> (embeddings (m, 512) of those the
    face policy took for a face, how many it took)."""
    s = emb.image.input_size
    h, w = 2 * s, (8 * s) // 3
    crops = [c for c in (emb.face(IMAGE_PROBES[kind](h, w, rng, i)) for i in range(n))
             if c.found]
    return emb.embed_faces(crops), len(crops)


def mismatched(image: np.ndarray, audio: np.ndarray, labels: np.ndarray, n: int,
               rng: np.random.Generator) -> ProbeSet | None:
    """A test face of one emotion with a test clip of another; None if one emotion only."""
    if len(np.unique(labels)) < 2:
        return None
    rows = np.resize(rng.permutation(len(labels)), n)
    other = [int(rng.choice(np.flatnonzero(labels != labels[i]))) for i in rows]
    return ProbeSet("mismatched", "pair", image[rows], audio[other])


def make_probes(emb, test, *, n: int, seed: int = 0) -> dict[str, ProbeSet]:
    """Every probe kind, n of each, seeded; ``test`` is a Paired split (the real halves)."""
    out: dict[str, ProbeSet] = {}
    n_test = len(test.labels)
    for k, kind in enumerate(AUDIO_PROBES):
        rng = np.random.default_rng([seed, 1, k])
        audio, rejected, reason = embed_audio_probes(emb, kind, n, rng)
        image = test.image[rng.integers(0, n_test, len(audio))]
        out[kind] = ProbeSet(kind, "audio", image, audio, rejected, reason)
    for k, kind in enumerate(IMAGE_PROBES):
        rng = np.random.default_rng([seed, 2, k])
        image, faces = embed_image_probes(emb, kind, n, rng)
        audio = test.audio[rng.integers(0, n_test, len(image))]
        out[kind] = ProbeSet(kind, "image", image, audio, n - faces,
                             "no face (the face policy)" if faces < n else "", faces)
    pairs = mismatched(test.image, test.audio, test.labels, n, np.random.default_rng([seed, 3]))
    if pairs is None:
        log.warning("the test split holds one emotion only: no mismatched-emotion probes")
    else:
        out["mismatched"] = pairs
    for p in out.values():
        log.info("probe %-15s %3d embedded%s%s", p.kind, len(p),
                 f", {p.rejected} rejected by preprocessing ({p.reason})" if p.rejected else "",
                 f", face found in {p.faces_found}" if p.faces_found else "")
    return out


# ----------------------------------------------------------------- evaluation
def _single_modality(det, train, test, probes: dict[str, ProbeSet], kinds: list[str]
                     ) -> tuple[dict, dict]:
    """The forest fitted on one modality, on the probe's out-of-distribution half alone:
    (AUROC per probe, flag rates), for image and audio."""
    def flagged(v: np.ndarray) -> float:
        return float(np.mean(v > det.threshold))

    single: dict[str, dict] = {}
    single_flags: dict[str, dict] = {}
    for m in ("image", "audio"):
        neg = det.score(**{m: getattr(test, m)})[0]
        rates = {"train": flagged(det.score(**{m: getattr(train, m)})[0]), "test": flagged(neg)}
        single[f"{m}_only"] = {}
        for k in (k for k in kinds if probes[k].modality == m):
            pos = det.score(**{m: getattr(probes[k], m)})[0]
            single[f"{m}_only"][k], rates[k] = auroc(neg, pos), flagged(pos)
        single_flags[f"{m}_only"] = rates
    return single, single_flags


def _other_detectors(det, train, test, probes: dict[str, ProbeSet], kinds: list[str], *,
                     seed: int) -> dict:
    """kNN distance and Mahalanobis on the same scaled fused embeddings, for comparison."""
    z_train = det.transform(train.image, train.audio)[1]
    z_test = det.transform(test.image, test.audio)[1]
    others = {"knn_mean_distance": KNNDistance(5, seed=seed),
              "mahalanobis_ledoit_wolf": Mahalanobis(seed=seed)}
    out = {}
    for name, other in others.items():
        other.fit(z_train)
        neg = other.score(z_test)
        out[name] = {k: auroc(neg, other.score(det.transform(probes[k].image,
                                                             probes[k].audio)[1]))
                     if k in kinds else None for k in probes}
    return out


def score_probes(det, train, test, probes: dict[str, ProbeSet], *, seed: int = 0
                 ) -> tuple[dict, dict[str, np.ndarray]]:
    """(metrics, scores): AUROC of each probe kind against the in-distribution test pairs.

    ``det`` is an :class:`~emotion.models.anomaly.AnomalyDetector`; train and test
    are Paired splits. The served score is judged, and next to it the 640-d forest
    alone, the single-modality forest on the probe's out-of-distribution half, and
    two other detectors on the same scaled fused embeddings (kNN distance, Mahalanobis).
    """
    kinds = [k for k, p in probes.items() if len(p)]
    scores = {"train": det.score(train.image, train.audio)[0],
              "test": det.score(test.image, test.audio)[0]}
    scores |= {k: det.score(probes[k].image, probes[k].audio)[0] for k in kinds}
    metrics: dict = {"auroc": {k: auroc(scores["test"], scores.get(k, [])) for k in probes}}
    # the 640-d forest alone, without the single-modality forests' votes
    fused = {"test": det.score(test.image, test.audio, combine=False)[0]}
    fused |= {k: det.score(probes[k].image, probes[k].audio, combine=False)[0] for k in kinds}
    metrics["auroc_fused_forest_only"] = {k: auroc(fused["test"], fused[k]) if k in kinds
                                          else None for k in probes}
    metrics["flag_rate_fused_forest_only"] = {k: float(np.mean(v > det.threshold))
                                              for k, v in fused.items()}
    metrics["auroc_single_modality"], single_flags = _single_modality(det, train, test,
                                                                      probes, kinds)
    metrics["other_detectors"] = _other_detectors(det, train, test, probes, kinds, seed=seed)
    metrics["flag_rate"] = {k: float(np.mean(v > det.threshold)) for k, v in scores.items()}
    metrics["flag_rate_single_modality"] = single_flags
    metrics["counts"] = {k: len(v) for k, v in scores.items()}
    metrics["rejected_probes"] = {k: {"rejected": p.rejected, "reason": p.reason}
                                  for k, p in probes.items() if p.rejected}
    metrics["faces_found"] = {k: p.faces_found for k, p in probes.items()
                              if p.faces_found is not None}
    return metrics, scores


def log_table(metrics: dict) -> None:
    """One line per probe kind: the AUROC of every detector."""
    def fmt(v: float | None) -> str:
        return "  n/a" if v is None else f"{v:.3f}"

    single = {k: v for d in metrics["auroc_single_modality"].values() for k, v in d.items()}
    fused = metrics["auroc_fused_forest_only"]
    others = metrics["other_detectors"]
    log.info("AUROC vs test pairs: %-15s %s | %s | %s | %s", "probe", "served (max of 3 IF)",
             "IF 640-d", "IF one-modality", " | ".join(others))
    for k, v in metrics["auroc"].items():
        rejected = metrics["rejected_probes"].get(k)
        note = f"  (rejected by preprocessing: {rejected['reason']})" if rejected else ""
        log.info("AUROC vs test pairs: %-15s %20s | %8s | %15s | %s%s", k, fmt(v),
                 fmt(fused.get(k)), fmt(single.get(k)),
                 " | ".join(f"{fmt(o[k]):>{len(n)}}" for n, o in others.items()), note)
