"""The embedding stage: preprocessed files -> embeddings files and embedder.pt."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from emotion.core import cli, h5io
from emotion.core.errors import EmotionError
from emotion.core.labels import ALL_LABELS
from emotion.core.paths import DEFAULT
from emotion.media.audio import AudioParams
from emotion.models import audio_encoder as ae
from emotion.models.embedder import Embedder, ImageSpec
from emotion.models.image_backbone import (
    load_state,
    resolve_device,
    state_sha256,
    weights_input_size,
)

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


def reuse_embedder(path: str | Path, *, size: int, params: AudioParams, image_h5, audio_h5,
                   device: str, precision: str) -> Embedder:
    """A saved embedder, refused when the preprocessed files were made otherwise."""
    emb = Embedder.load(path, device=device, precision=precision)
    if emb.image.input_size != size:
        raise EmotionError(f"{image_h5} holds {size}px images, the embedder {path} "
                           f"takes {emb.image.input_size}px: re-run preprocess_images.py "
                           f"with --size {emb.image.input_size}")
    if emb.audio_params != params:
        raise EmotionError(f"{audio_h5} was made with {params}, the embedder with "
                           f"{emb.audio_params}: re-run preprocessing_audio.py to match")
    return emb


def new_embedder(fi, fa, *, image_weights: str, seed: int, audio_epochs: int, folds: int,
                 device: str, precision: str) -> tuple[Embedder, np.ndarray]:
    """The backbone of `image_weights` and an audio encoder trained on the train clips;
    also the train clips' out-of-fold embeddings."""
    splits = h5io.read_strings(fa["splits"])
    speakers = h5io.read_strings(fa["speakers"])
    train = np.array([s == "train" for s in splits])
    if not train.any():
        raise EmotionError(f"{fa.filename} has no train clips to fit the audio encoder on "
                           "(was it made with --split test?); pass --embedder PATH to "
                           "reuse a trained one")
    state, desc = load_state(image_weights, seed=seed)
    spec = ImageSpec(desc, state_sha256(state), int(fi.attrs["size"]),
                     str(fi.attrs["detector"]), net_size=weights_input_size(image_weights))
    train_speakers = [s for s, m in zip(speakers, train, strict=True) if m]
    audio_state, oof = fit_audio_encoder(
        fa["features/fixed"][np.flatnonzero(train)],
        fa["labels"][()].astype(np.int64)[train], train_speakers,
        train_cfg=ae.TrainConfig(epochs=audio_epochs, seed=seed), folds=folds, device=device)
    emb = Embedder(state, spec, audio_state, audio_params_of(fa), device=device,
                   precision=precision,
                   extra={"audio_train_speakers": sorted(set(train_speakers)),
                          "out_of_fold_folds": folds, "audio_epochs": audio_epochs,
                          "seed": seed})
    return emb, oof


def write_image_embeddings(emb: Embedder, fi, out: str | Path, config: dict) -> dict[str, int]:
    """Every split's crops through the image backbone, streamed; the count per split."""
    counts: dict[str, int] = {}
    with h5io.create(out, h5io.EMBEDDINGS_IMAGES, config=config) as fo:
        fo.attrs["embedder_id"] = emb.embedder_id
        fo.attrs["image_weights"] = emb.image.weights
        for split in h5io.splits_of(fi, h5io.PREPROCESSED_IMAGES):
            src = fi[split]
            n = len(src["labels"])
            rows = h5io.Appender(fo.create_group(split), {
                "embeddings": ((512,), np.float32), "labels": ((), np.int16),
                "paths": ((), h5io.STR)})
            for i in tqdm(range(0, n, READ_BATCH), desc=f"images {split}", unit="batch",
                          mininterval=2.0):
                sl = slice(i, min(n, i + READ_BATCH))
                rows.append(embeddings=emb.embed_images(h5io.read_images(src["images"], sl)),
                            labels=src["labels"][sl], paths=src["paths"][sl])
            counts[split] = n
        fo.attrs["precision"] = emb.precision
    return counts


def write_audio_embeddings(emb: Embedder, fa, out: str | Path, config: dict,
                           oof: np.ndarray | None) -> int:
    """Every clip's log-mel through the audio encoder; train clips take their
    out-of-fold embeddings when given. Returns the number of clips."""
    splits = h5io.read_strings(fa["splits"])
    labels = fa["labels"][()]
    feats = fa["features/fixed"]
    n = len(labels)
    with h5io.create(out, h5io.EMBEDDINGS_AUDIO, config=config) as fo:
        fo.attrs["embedder_id"] = emb.embedder_id
        g = fo.create_group("all")
        rows = np.zeros((n, emb.audio_state["config"]["embed_dim"]), np.float32)
        for i in range(0, n, READ_BATCH):
            rows[i:i + READ_BATCH] = emb.embed_mels(feats[i:i + READ_BATCH])
        is_oof = np.zeros(n, bool)
        if oof is not None:
            train = np.array([s == "train" for s in splits])
            rows[train] = oof
            is_oof[train] = True
        g.create_dataset("embeddings", data=rows)
        g.create_dataset("labels", data=labels.astype(np.int16))
        g.create_dataset("out_of_fold", data=is_oof)
        for name, values in (("paths", h5io.read_strings(fa["paths"])),
                             ("speakers", h5io.read_strings(fa["speakers"])),
                             ("splits", splits)):
            h5io.write_strings(g, name, values)
    return n


def extract(image_h5: str | Path, audio_h5: str | Path, out_image_h5: str | Path,
            out_audio_h5: str | Path, *, embedder_out: str | Path | None,
            embedder: str | Path | None = None, image_weights: str = "none",
            device: str = "cpu", precision: str = "auto", seed: int = 0,
            audio_epochs: int = 40, folds: int = 5) -> dict:
    """Run the stage: make (or reuse) the embedder, then embed every image and clip."""
    timings: dict[str, float] = {}
    device = resolve_device(device)
    with h5io.open_checked(image_h5, h5io.PREPROCESSED_IMAGES) as fi, \
            h5io.open_checked(audio_h5, h5io.PREPROCESSED_AUDIO) as fa:
        t = time.perf_counter()
        oof = None
        if embedder:
            emb = reuse_embedder(embedder, size=int(fi.attrs["size"]),
                                 params=audio_params_of(fa), image_h5=image_h5,
                                 audio_h5=audio_h5, device=device, precision=precision)
        else:
            emb, oof = new_embedder(fi, fa, image_weights=image_weights, seed=seed,
                                    audio_epochs=audio_epochs, folds=folds, device=device,
                                    precision=precision)
            if embedder_out:
                emb.save(embedder_out)
                log.info("saved the embedder to %s (id %s)", embedder_out, emb.embedder_id)
        timings["audio_encoder_s"] = round(time.perf_counter() - t, 2)
        config = {"image_h5": str(image_h5), "audio_h5": str(audio_h5),
                  "embedder": str(embedder or embedder_out), "device": emb.device}
        t = time.perf_counter()
        counts = write_image_embeddings(emb, fi, out_image_h5, config)
        timings["images_s"] = round(time.perf_counter() - t, 2)
        timings["images_per_s"] = round(sum(counts.values()) / max(timings["images_s"], 1e-9), 1)
        t = time.perf_counter()
        n_clips = write_audio_embeddings(emb, fa, out_audio_h5, config, oof)
        timings["audio_s"] = round(time.perf_counter() - t, 2)
    summary = {"embedder_id": emb.embedder_id, "images": counts, "audio_clips": n_clips,
               "precision": emb.precision, "timings": timings}
    log.info("embedding summary: %s", json.dumps(summary))
    return summary


# --------------------------------------------------------------------------
# The command line (extract_embeddings.py)

USAGE = """Preprocessed images and audio -> 512-d image and 128-d audio embeddings.

    python extract_embeddings.py                       # the seed's file names
    python extract_embeddings.py --image_weights imagenet
    python extract_embeddings.py --embedder saved_models/embedder.pt \
        --audio_h5 external_audio.h5 --out_audio_h5 external_embeddings_audio.h5

Without --embedder, the audio encoder is trained on the train split (train clips
get out-of-fold embeddings) and everything needed to embed new media the same
way is saved to --embedder_out.
"""


def get_args_parser() -> argparse.ArgumentParser:
    p = cli.parser(USAGE)
    p.add_argument("--image_h5", default=str(DEFAULT.preprocessed_images))
    p.add_argument("--audio_h5", default=str(DEFAULT.preprocessed_audio))
    p.add_argument("--out_image_h5", default=str(DEFAULT.embeddings_images))
    p.add_argument("--out_audio_h5", default=str(DEFAULT.embeddings_audio))
    p.add_argument("--embedder_out", default=str(DEFAULT.embedder),
                   help="where the new embedder is saved")
    p.add_argument("--embedder", default=None,
                   help="reuse this embedder instead of training a new audio encoder")
    p.add_argument("--image_weights", default="imagenet",
                   help="imagenet (torch cache), none (random weights), or a ResNet18 "
                        "state dict such as saved_models/face_resnet18.pt")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="auto: bf16 where the hardware has it and it agrees with fp32")
    p.add_argument("--audio_epochs", type=int, default=40)
    p.add_argument("--folds", type=int, default=5,
                   help="speaker folds for out-of-fold train embeddings (0: none)")
    p.add_argument("--seed", type=int, default=0)
    return p


def run(args: argparse.Namespace) -> None:
    """The stage, for parsed arguments."""
    s = extract(args.image_h5, args.audio_h5, args.out_image_h5, args.out_audio_h5,
                embedder_out=None if args.embedder else args.embedder_out,
                embedder=args.embedder, image_weights=args.image_weights,
                device=args.device, precision=args.precision, seed=args.seed,
                audio_epochs=args.audio_epochs, folds=args.folds)
    log.info("wrote %s and %s (embedder %s, %s)", args.out_image_h5, args.out_audio_h5,
             s["embedder_id"], s["precision"])


def main(argv: list[str] | None = None) -> int:
    return cli.run_main(argv, get_args_parser, run, "extract_embeddings.py")
