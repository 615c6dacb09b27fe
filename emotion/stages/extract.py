"""The embedding stage: preprocessed files -> embeddings files and embedder.pt.

Images: the backbone of --image_weights (the face backbone trained on the train
faces, by pipeline.py) embeds every stored face crop.

Audio: the voice branch (emotion.models.voice) is fitted on every labelled clip of
the audio file, whatever its split: its head, chosen by leave-speakers-out
cross-validation, takes no early stopping, so no speaker needs holding out for
it, and new users get the most voices. Every clip's stored embedding is out of
fold (speaker folds): its logits come from a head that never heard its speaker,
so the fusion model, the anomaly detector and the dev test figures all see
embeddings as a new speaker's would be. The head fitted on all clips is saved
for inference.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from emotion.core import cli, h5io
from emotion.core.errors import EmotionError
from emotion.core.paths import DEFAULT
from emotion.core.splits import SPLITS
from emotion.media.audio import AudioParams, prepare_clip
from emotion.media.faces import FacePolicy
from emotion.media.vad import SpeechDetector
from emotion.models.embedder import Embedder, ImageSpec
from emotion.models.image_backbone import (
    load_state,
    resolve_device,
    state_sha256,
    weights_input_size,
)
from emotion.models.voice import VoiceConfig, VoiceFeatures, collect, config_dict, fit_voice

log = logging.getLogger(__name__)

READ_BATCH = 256
BATCH_PRECISION = 64  # training faces bf16 must agree on before it is chosen


def audio_params_of(f) -> AudioParams:
    return AudioParams(**{k: type(getattr(AudioParams(), k))(f.attrs[k])
                          for k in AudioParams().__dict__ if k in f.attrs})


def face_policy_of(f) -> FacePolicy:
    return FacePolicy(**json.loads(f.attrs["face_policy"]))


def waveforms(fa) -> list[np.ndarray]:
    return [h5io.read_waveform(fa, i) for i in range(len(fa["labels"]))]


def reuse_embedder(path: str | Path, fi, fa, *, device: str) -> Embedder:
    """A saved embedder, refused when the preprocessed files were made otherwise."""
    emb = Embedder.load(path, device=device)
    size, params, policy = int(fi.attrs["size"]), audio_params_of(fa), face_policy_of(fi)
    if emb.image.input_size != size:
        raise EmotionError(f"{fi.filename} holds {size}px images, the embedder {path} "
                           f"takes {emb.image.input_size}px: re-run preprocess_images.py "
                           f"with --size {emb.image.input_size}")
    if emb.image.face != policy:
        raise EmotionError(f"{fi.filename} was cut with face policy {policy.settings()}, the "
                           f"embedder {path} with {emb.image.face.settings()}: re-run "
                           "preprocess_images.py with the embedder's detector")
    if emb.audio_params != params:
        raise EmotionError(f"{fa.filename} was made with {params}, the embedder with "
                           f"{emb.audio_params}: re-run preprocessing_audio.py to match")
    return emb


def new_embedder(fi, fa, *, image_weights: str, seed: int, folds: int, device: str,
                 precision: str, voice_splits: Sequence[str] = SPLITS
                 ) -> tuple[Embedder, np.ndarray]:
    """The backbone of `image_weights` and the voice branch fitted on every clip of
    `voice_splits`; also every clip's out-of-fold audio embedding."""
    state, desc = load_state(image_weights, seed=seed)
    spec = ImageSpec(desc, state_sha256(state), int(fi.attrs["size"]), face_policy_of(fi),
                     net_size=weights_input_size(image_weights),
                     trained_on="train" if weights_input_size(image_weights) else None)
    params, cfg = audio_params_of(fa), VoiceConfig(folds=folds, seed=seed)
    speakers, splits = h5io.read_strings(fa["speakers"]), h5io.read_strings(fa["splits"])
    if "train" not in splits:
        raise EmotionError(f"{fa.filename} has no train clips: it looks like an external test "
                           "set (made with --split test); pass --embedder PATH to embed it with "
                           "a trained embedder instead of fitting a new one on it")
    features, gate = VoiceFeatures(cfg.blocks, cfg.norm), SpeechDetector()
    data = collect(waveforms(fa), params.sample_rate, fa["labels"][()].astype(np.int64),
                   speakers, params=params, detector=gate, features=features, cfg=cfg,
                   corpora=h5io.corpora_of(fa))
    fit = np.isin(splits, list(voice_splits))
    head, oof = fit_voice(data, cfg, fit)
    heard = [s for s, used in zip(speakers, fit, strict=True) if used]
    corpora = [c for c, used in zip(h5io.corpora_of(fa), fit, strict=True) if used]
    extra = {"voice_speakers": sorted(set(heard)), "voice_clips": len(heard),
             "voice_corpora": {c: corpora.count(c) for c in sorted(set(corpora))},
             "voice_splits": sorted(voice_splits),
             "voice_examples": len(data.clips) + len(data.extra),
             "voice_config": config_dict(cfg), "seed": seed}
    emb = Embedder(state, spec, head.to_state(), cfg, params, speech_gate=gate.settings(),
                   device=device, extra=extra)
    emb._gate = gate  # the detector is loaded already
    first = h5io.splits_of(fi, h5io.PREPROCESSED_IMAGES)[0]
    sample = h5io.read_images(fi[first]["images"], slice(0, BATCH_PRECISION))
    emb = emb.with_precision(emb._images.choose_precision(sample, precision))
    emb._voice = features  # the encoder is loaded already
    return emb, oof


def write_image_embeddings(emb: Embedder, fi, out: str | Path, config: dict) -> dict[str, int]:
    """Every split's crops through the image backbone, streamed; the count per split."""
    counts: dict[str, int] = {}
    with h5io.create(out, h5io.EMBEDDINGS_IMAGES, config=config) as fo:
        fo.attrs["embedder_id"] = emb.embedder_id
        fo.attrs["embedder_settings"] = json.dumps(emb.settings(), sort_keys=True)
        fo.attrs["image_weights"] = emb.image.weights
        fo.attrs["backbone_trained_on"] = emb.image.trained_on or ""
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
    """Every clip's audio embedding: the out-of-fold ones when given, else the
    embedder's own (an external set). Returns the number of clips."""
    labels = fa["labels"][()]
    n = len(labels)
    if oof is None:
        params = emb.audio_params
        rows = np.concatenate([emb.embed_clips(np.stack([
            prepare_clip(y, params.sample_rate, params)[0] for y in part]))
            for part in _chunks(waveforms(fa), READ_BATCH)]) if n else np.zeros((0, 128))
    else:
        rows = oof
    with h5io.create(out, h5io.EMBEDDINGS_AUDIO, config=config) as fo:
        fo.attrs["embedder_id"] = emb.embedder_id
        fo.attrs["embedder_settings"] = json.dumps(emb.settings(), sort_keys=True)
        g = fo.create_group("all")
        g.create_dataset("embeddings", data=rows.astype(np.float32))
        g.create_dataset("labels", data=labels.astype(np.int16))
        g.create_dataset("out_of_fold", data=np.full(n, oof is not None and emb.voice.folds > 1))
        for name in ("paths", "speakers", "splits"):
            h5io.write_strings(g, name, h5io.read_strings(fa[name]))
        h5io.write_strings(g, "corpora", h5io.corpora_of(fa))
    return n


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def extract(image_h5: str | Path, audio_h5: str | Path, out_image_h5: str | Path,
            out_audio_h5: str | Path, *, embedder_out: str | Path | None,
            embedder: str | Path | None = None, image_weights: str = "none",
            device: str = "cpu", precision: str = "auto", seed: int = 0,
            folds: int = 4, voice_splits: Sequence[str] = SPLITS) -> dict:
    """Run the stage: make (or reuse) the embedder, then embed every image and clip."""
    timings: dict[str, float] = {}
    device = resolve_device(device)
    with h5io.open_checked(image_h5, h5io.PREPROCESSED_IMAGES) as fi, \
            h5io.open_checked(audio_h5, h5io.PREPROCESSED_AUDIO) as fa:
        t = time.perf_counter()
        oof = None
        if embedder:
            emb = reuse_embedder(embedder, fi, fa, device=device)
        else:
            emb, oof = new_embedder(fi, fa, image_weights=image_weights, seed=seed,
                                    folds=folds, device=device, precision=precision,
                                    voice_splits=voice_splits)
            if embedder_out:
                emb.save(embedder_out)
                log.info("saved the embedder to %s (id %s)", embedder_out, emb.embedder_id)
        timings["voice_branch_s"] = round(time.perf_counter() - t, 2)
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

Without --embedder, the voice branch is fitted on every labelled clip (each clip's
stored embedding is out of fold: from a head fitted without its speaker), and
everything needed to embed new media the same way is saved to --embedder_out.
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
                   help="reuse this embedder (an external test set) instead of fitting one")
    p.add_argument("--image_weights", default="imagenet",
                   help="imagenet (torch cache), none (random weights), or a ResNet18 "
                        "state dict such as saved_models/face_backbone.pt")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="auto: bf16 where the hardware has it and it agrees with fp32")
    p.add_argument("--folds", type=int, default=4,
                   help="speaker folds for out-of-fold audio embeddings (1: none)")
    p.add_argument("--voice_splits", default=",".join(SPLITS), type=_splits,
                   help="the splits whose clips the voice head learns from (default all; "
                        "train,val keeps the test speakers unheard, for evaluate_videos.py)")
    p.add_argument("--seed", type=int, default=0)
    return p


def _splits(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if "train" not in names or set(names) - set(SPLITS):
        raise argparse.ArgumentTypeError(f"{text!r}: a comma-separated list of {', '.join(SPLITS)} "
                                         "that holds train")
    return names


def run(args: argparse.Namespace) -> None:
    """The stage, for parsed arguments."""
    s = extract(args.image_h5, args.audio_h5, args.out_image_h5, args.out_audio_h5,
                embedder_out=None if args.embedder else args.embedder_out,
                embedder=args.embedder, image_weights=args.image_weights,
                device=args.device, precision=args.precision, seed=args.seed,
                folds=args.folds, voice_splits=args.voice_splits)
    log.info("wrote %s and %s (embedder %s, %s)", args.out_image_h5, args.out_audio_h5,
             s["embedder_id"], s["precision"])


def main(argv: list[str] | None = None) -> int:
    return cli.run_main(argv, get_args_parser, run, "extract_embeddings.py")
