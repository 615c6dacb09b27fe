"""The embedding stage: preprocessed files -> embeddings files and embedder.pt."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import audio_encoder as ae
from . import h5io
from .audio import AudioParams
from .backbone import load_state, resolve_device, state_sha256
from .embedder import Embedder, ImageSpec
from .errors import EmotionError
from .face_backbone import weights_input_size
from .labels import ALL_LABELS

log = logging.getLogger(__name__)

READ_BATCH = 256


def audio_params_of(f) -> AudioParams:
    return AudioParams(**{k: type(getattr(AudioParams(), k))(f.attrs[k])
                          for k in AudioParams().__dict__ if k in f.attrs})


def fit_audio_encoder(feats: np.ndarray, labels: np.ndarray, speakers: list[str], *,
                      train_cfg: ae.TrainConfig, folds: int, device: str
                      ) -> tuple[dict, np.ndarray]:
    """Train the final encoder on all train clips and the out-of-fold embeddings.

    Returns the encoder's plain state and the (N, 128) train embeddings.
    """
    present = sorted(set(labels.tolist()))
    if len(present) < 2:
        raise EmotionError(f"the audio train split holds {len(present)} emotion(s); the audio "
                           "encoder needs at least two (check the labels or the splits)")
    classes = [ALL_LABELS[i] for i in present]
    y = np.searchsorted(np.array(present), labels)
    log.info("training the audio encoder on %d train clips of %d speakers, classes %s",
             len(feats), len(set(speakers)), classes)
    final = ae.train_encoder(feats, y, len(classes), train=train_cfg, device=device)
    if folds >= 2:
        oof = ae.out_of_fold_embeddings(feats, y, speakers, final, len(classes), folds=folds,
                                        train=train_cfg, device=device)
    else:
        oof = ae.embed(final, feats, device=device)
    return ae.to_state(final, classes), oof


def extract(image_h5: str | Path, audio_h5: str | Path, out_image_h5: str | Path,
            out_audio_h5: str | Path, *, embedder_out: str | Path | None,
            embedder: str | Path | None = None, image_weights: str = "none",
            device: str = "cpu", precision: str = "auto", seed: int = 0,
            audio_epochs: int = 40, folds: int = 5) -> dict:
    timings: dict[str, float] = {}
    device = resolve_device(device)
    with h5io.open_checked(image_h5, h5io.PREPROCESSED_IMAGES) as fi, \
            h5io.open_checked(audio_h5, h5io.PREPROCESSED_AUDIO) as fa:
        size = int(fi.attrs["size"])
        params = audio_params_of(fa)
        splits = h5io.read_strings(fa["splits"])
        speakers = h5io.read_strings(fa["speakers"])
        labels = fa["labels"][()].astype(np.int64)
        feats = fa["features/fixed"]
        train = np.array([s == "train" for s in splits])
        t = time.perf_counter()
        oof = None
        if embedder:
            emb = Embedder.load(embedder, device=device, precision=precision)
            if emb.image.input_size != size:
                raise EmotionError(f"{image_h5} holds {size}px images, the embedder {embedder} "
                                   f"takes {emb.image.input_size}px: re-run preprocess_images.py "
                                   f"with --size {emb.image.input_size}")
            if emb.audio_params != params:
                raise EmotionError(f"{audio_h5} was made with {params}, the embedder with "
                                   f"{emb.audio_params}: re-run preprocessing_audio.py to match")
        else:
            if not train.any():
                raise EmotionError(f"{audio_h5} has no train clips to fit the audio encoder on "
                                   "(was it made with --split test?); pass --embedder PATH to "
                                   "reuse a trained one")
            state, desc = load_state(image_weights, seed=seed)
            spec = ImageSpec(desc, state_sha256(state), size, str(fi.attrs["detector"]),
                             net_size=weights_input_size(image_weights))
            audio_state, oof = fit_audio_encoder(
                feats[np.flatnonzero(train)], labels[train],
                [s for s, m in zip(speakers, train, strict=True) if m],
                train_cfg=ae.TrainConfig(epochs=audio_epochs, seed=seed), folds=folds,
                device=device)
            emb = Embedder(state, spec, audio_state, params, device=device, precision=precision,
                           extra={"audio_train_speakers": sorted({s for s, m in zip(
                               speakers, train, strict=True) if m}), "out_of_fold_folds": folds,
                               "audio_epochs": audio_epochs, "seed": seed})
            if embedder_out:
                emb.save(embedder_out)
                log.info("saved the embedder to %s (id %s)", embedder_out, emb.embedder_id)
        timings["audio_encoder_s"] = round(time.perf_counter() - t, 2)

        t = time.perf_counter()
        config = {"image_h5": str(image_h5), "audio_h5": str(audio_h5),
                  "embedder": str(embedder or embedder_out), "device": emb.device}
        counts: dict[str, int] = {}
        with h5io.create(out_image_h5, h5io.EMBEDDINGS_IMAGES, config=config) as fo:
            fo.attrs["embedder_id"] = emb.embedder_id
            fo.attrs["image_weights"] = emb.image.weights
            for split in h5io.splits_of(fi, h5io.PREPROCESSED_IMAGES):
                src = fi[split]
                n = len(src["labels"])
                out = h5io.Appender(fo.create_group(split), {
                    "embeddings": ((512,), np.float32), "labels": ((), np.int16),
                    "paths": ((), h5io.STR)})
                for i in tqdm(range(0, n, READ_BATCH), desc=f"images {split}", unit="batch",
                              mininterval=2.0):
                    sl = slice(i, min(n, i + READ_BATCH))
                    out.append(embeddings=emb.embed_images(h5io.read_images(src["images"], sl)),
                               labels=src["labels"][sl], paths=src["paths"][sl])
                counts[split] = n
            fo.attrs["precision"] = emb.precision
        timings["images_s"] = round(time.perf_counter() - t, 2)
        timings["images_per_s"] = round(sum(counts.values()) / max(timings["images_s"], 1e-9), 1)

        t = time.perf_counter()
        with h5io.create(out_audio_h5, h5io.EMBEDDINGS_AUDIO, config=config) as fo:
            fo.attrs["embedder_id"] = emb.embedder_id
            g = fo.create_group("all")
            n = len(labels)
            out = np.zeros((n, emb.audio_state["config"]["embed_dim"]), np.float32)
            for i in range(0, n, READ_BATCH):
                out[i:i + READ_BATCH] = emb.embed_mels(feats[i:i + READ_BATCH])
            is_oof = np.zeros(n, bool)
            if oof is not None:
                out[train] = oof
                is_oof[train] = True
            g.create_dataset("embeddings", data=out)
            g.create_dataset("labels", data=labels.astype(np.int16))
            g.create_dataset("out_of_fold", data=is_oof)
            for name, values in (("paths", h5io.read_strings(fa["paths"])),
                                 ("speakers", speakers), ("splits", splits)):
                h5io.write_strings(g, name, values)
        timings["audio_s"] = round(time.perf_counter() - t, 2)
    summary = {"embedder_id": emb.embedder_id, "images": counts, "audio_clips": len(labels),
               "precision": emb.precision, "timings": timings}
    log.info("embedding summary: %s", json.dumps(summary))
    return summary
