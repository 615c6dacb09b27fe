"""The face backbone: ResNet18 trained on the preprocessed train faces, selected on val.

Random and ImageNet features carry little expression information. Training the
backbone as a six-way classifier of the train faces keeps the 512-d contract
(ResNet18's pooled features) with a much better image branch; the classifier
head is kept for reference only. ``extract_embeddings.py --image_weights PATH``
embeds with the saved backbone.

Images are read from the HDF5 file in blocks of contiguous rows, shuffled by
block and then within a buffer of blocks: memory stays bounded (about two
buffers of BLOCK * BUFFER_BLOCKS images) however many images the file holds.

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

import logging
import math
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from . import h5io
from .atomic import save_atomic
from .backbone import (
    IMAGE_DIM,
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_resnet18,
    cpu_supports_bf16,
    imagenet_file,
    load_state,
    resize_batch,
    resolve_device,
    state_sha256,
)
from .errors import EmotionError, SchemaError
from .labels import ALL_LABELS, EMOTIONS, check_label_names
from .training import class_weights

log = logging.getLogger(__name__)

FORMAT = "emotion-face-backbone"
FORMAT_VERSION = 1
MIN_SIZE = 32           # ResNet18 downsamples 32x: smaller inputs leave no spatial map
BLOCK = 32              # rows read with one slice
BUFFER_BLOCKS = 16      # blocks whose rows are shuffled together
# Augmentation: the crops are upright, centred faces, so only small moves.
ROTATE_DEG = 10.0
SCALE = 0.10            # zoom 0.9 to 1.1
SHIFT = 0.08            # of the side
PCT_START = 0.3         # share of the one-cycle schedule spent raising the learning rate
BRIGHTNESS = 0.2
CONTRAST = 0.2


@dataclass(frozen=True)
class FaceTrainConfig:
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    size: int = 112              # side the network sees; crops are resized to it
    patience: int = 8            # epochs without a better val macro-F1
    label_smoothing: float = 0.1
    augment: bool = True
    max_train_batches: int | None = None  # per epoch, for quick runs
    seed: int = 0


# --------------------------------------------------------------------------
# Reading: bounded memory, shuffled by block


class SplitReader:
    """One split's images of the six emotions, in batches; other classes are dropped."""

    def __init__(self, group: h5py.Group, *, block: int = BLOCK,
                 buffer_blocks: int = BUFFER_BLOCKS):
        self.images = group["images"]
        labels = group["labels"][()].astype(np.int64)
        keep = (labels >= 0) & (labels < len(EMOTIONS))
        self.rows = np.flatnonzero(keep)
        self.labels = labels[self.rows]  # ALL_LABELS starts with EMOTIONS: same index
        self.dropped = dict(sorted(Counter(
            ALL_LABELS[i] if 0 <= i < len(ALL_LABELS) else str(i) for i in labels[~keep]
        ).items()))
        self.block, self.buffer_blocks = block, buffer_blocks

    def __len__(self) -> int:
        return len(self.rows)

    def counts(self) -> dict[str, int]:
        c = np.bincount(self.labels, minlength=len(EMOTIONS))
        return {name: int(n) for name, n in zip(EMOTIONS, c, strict=True)}

    def _read(self, rows: np.ndarray) -> np.ndarray:
        lo, hi = int(rows[0]), int(rows[-1]) + 1
        if hi - lo <= 2 * len(rows):  # one slice, then drop the other classes' rows
            return h5io.read_images(self.images, slice(lo, hi))[rows - lo]
        return h5io.read_images(self.images, rows)  # a wide gap: sorted fancy index

    def batches(self, batch_size: int, *, generator: torch.Generator | None = None,
                min_batch: int = 1) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(images (n, S, S, 3) in [0,1], labels (n,) index into EMOTIONS).

        With a generator the order is shuffled: blocks in random order, rows
        shuffled within each buffer of blocks. Every batch but the last is full;
        a last batch smaller than `min_batch` is left out.
        """
        starts = np.arange(0, len(self.rows), self.block)
        if generator is not None:
            starts = starts[torch.randperm(len(starts), generator=generator).numpy()]
        x_left = np.zeros((0, *self.images.shape[1:]), np.float32)
        y_left = np.zeros(0, np.int64)
        for g in range(0, len(starts), self.buffer_blocks):
            group = sorted(starts[g:g + self.buffer_blocks])  # sorted: file order reads
            x = np.concatenate([x_left] + [self._read(self.rows[s:s + self.block])
                                           for s in group])
            y = np.concatenate([y_left] + [self.labels[s:s + self.block] for s in group])
            order = (torch.randperm(len(y), generator=generator).numpy()
                     if generator is not None else np.arange(len(y)))
            full = len(y) // batch_size * batch_size
            for i in range(0, full, batch_size):
                idx = order[i:i + batch_size]
                yield x[idx], y[idx]
            x_left, y_left = x[order[full:]], y[order[full:]]
            del x
        if len(y_left) >= max(min_batch, 1):
            yield x_left, y_left


def n_batches(n: int, batch_size: int, min_batch: int = 1) -> int:
    """How many batches SplitReader.batches yields for n rows."""
    return n // batch_size + (1 if n % batch_size >= max(min_batch, 1) else 0)


# --------------------------------------------------------------------------
# Images to network input: resize, augment (training only), normalise


def to_network_size(images: np.ndarray, size: int, device: str = "cpu") -> torch.Tensor:
    """[0,1] (N, S, S, 3) -> [0,1] (N, 3, size, size) float32 on device, via resize_batch."""
    x = torch.as_tensor(np.ascontiguousarray(images), dtype=torch.float32).permute(0, 3, 1, 2)
    return resize_batch(x.to(device), size)


def normalise(x: torch.Tensor) -> torch.Tensor:
    """ImageNet mean and std, channels_last: what ImageEmbedder._prepare does."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random flip, rotation, zoom and shift (one affine warp), brightness and contrast.

    x: [0,1] (N, 3, H, W). The random numbers come from the CPU generator, so a
    seed gives the same augmentation on any device.
    """
    n = len(x)
    u = torch.rand(n, 7, generator=generator) * 2 - 1  # uniform in [-1, 1]
    flip = torch.where(u[:, 0] < 0, -1.0, 1.0)
    angle = u[:, 1] * math.radians(ROTATE_DEG)
    zoom = 1 + u[:, 2] * SCALE
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    shift = u[:, 3:5] * 2 * SHIFT  # affine_grid spans [-1, 1]: the side is 2 long
    theta = torch.stack([torch.stack([cos * flip, -sin, shift[:, 0]], 1),
                         torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1).to(x.device)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    contrast = (1 + u[:, 5] * CONTRAST).view(n, 1, 1, 1).to(x.device)
    brightness = (1 + u[:, 6] * BRIGHTNESS).view(n, 1, 1, 1).to(x.device)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (((x - mean) * contrast + mean) * brightness).clamp_(0.0, 1.0)


# --------------------------------------------------------------------------
# The network and its initial weights


class FaceNet(nn.Module):
    """ResNet18 (fc = Identity, 512-d) and a linear six-way head."""

    def __init__(self, backbone_state: dict[str, torch.Tensor]):
        super().__init__()
        self.backbone = build_resnet18()
        self.backbone.load_state_dict(backbone_state)
        self.head = nn.Linear(IMAGE_DIM, len(EMOTIONS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def check_state(state: object, what: str) -> None:
    """Refuse, in one line, a state dict that does not fit ResNet18 (fc aside)."""
    if not isinstance(state, dict):
        raise SchemaError(f"{what}: the weights are not a state dict")
    with torch.device("meta"):  # shapes only, nothing allocated
        ref = build_resnet18().state_dict()
    missing = [k for k in ref if k not in state]
    unexpected = [k for k in state if k not in ref and not k.startswith("fc.")]
    wrong = [f"{k} {tuple(getattr(state[k], 'shape', ()))} instead of {tuple(ref[k].shape)}"
             for k in ref if k in state and (not isinstance(state[k], torch.Tensor)
                                             or state[k].shape != ref[k].shape)]
    problems = [f"{len(v)} {name} ({', '.join(v[:2])}{', ...' if len(v) > 2 else ''})"
                for name, v in (("missing", missing), ("unexpected", unexpected),
                                ("of the wrong shape", wrong)) if v]
    if problems:
        raise SchemaError(f"{what}: the weights do not fit ResNet18: {'; '.join(problems)}")


def initial_state(init: str, seed: int = 0) -> tuple[dict[str, torch.Tensor], str]:
    """Starting weights for --init auto | imagenet | scratch | PATH, and what they are."""
    if init in ("auto", "imagenet"):
        cached, url = imagenet_file()
        if cached.is_file():
            log.info("starting from ImageNet weights (%s)", cached)
            return load_state("imagenet")[0], "imagenet"
        if init == "imagenet":
            raise EmotionError(
                f"--init imagenet: ResNet18's ImageNet weights are not in the torch cache "
                f"({cached}) and this machine cannot download them; copy {cached.name} (from "
                f"{url}) there, or pass --init PATH to a copy, or --init scratch")
        log.warning("ImageNet weights are not in the torch cache (%s): training from SCRATCH. "
                    "To start from them, copy %s (from %s) there or pass --init PATH",
                    cached, cached.name, url)
        init = "scratch"
    if init == "scratch":
        return load_state("none", seed=seed)[0], "scratch"
    if not Path(init).is_file():
        raise EmotionError(f"--init {init!r}: choose auto, imagenet, scratch, or the path of "
                           "a ResNet18 state dict")
    state, desc = load_state(init)
    check_state(state, init)
    log.info("starting from the weights in %s", init)
    return state, desc


# --------------------------------------------------------------------------
# Training and evaluation


def use_bf16(precision: str, device: str) -> bool:
    """bf16 autocast: 'auto' where the hardware has it, 'fp32' never, 'bf16' or an error."""
    has = cpu_supports_bf16() if device == "cpu" else torch.cuda.is_bf16_supported()
    if precision not in ("auto", "fp32", "bf16"):
        raise EmotionError(f"--precision {precision!r}: choose auto, fp32 or bf16")
    if precision == "bf16" and not has:
        raise EmotionError(f"--precision bf16: this {device} has no bf16; use auto or fp32")
    return precision == "bf16" or (precision == "auto" and has)


def metrics(y: np.ndarray, pred: np.ndarray) -> dict:
    six = list(range(len(EMOTIONS)))
    per_class = f1_score(y, pred, labels=six, average=None, zero_division=0)
    return {"n": len(y), "accuracy": float(accuracy_score(y, pred)) if len(y) else 0.0,
            "macro_f1": float(f1_score(y, pred, labels=six, average="macro", zero_division=0)),
            "per_class_f1": {n: float(f) for n, f in zip(EMOTIONS, per_class, strict=True)}}


@torch.inference_mode()
def evaluate(model: FaceNet, reader: SplitReader, *, size: int, device: str, bf16: bool,
             batch_size: int) -> dict:
    """Accuracy, macro-F1 and per-class F1 over the split, streamed in file order."""
    model.eval()
    ys, preds = [], []
    for x, y in reader.batches(batch_size):
        with torch.autocast("cuda" if device == "cuda" else "cpu", torch.bfloat16,
                            enabled=bf16):
            logits = model(normalise(to_network_size(x, size, device)))
        preds.append(logits.float().argmax(1).cpu().numpy())
        ys.append(y)
    return metrics(np.concatenate(ys), np.concatenate(preds))


def fit(train: SplitReader, val: SplitReader, state: dict[str, torch.Tensor],
        cfg: FaceTrainConfig = FaceTrainConfig(), *, device: str = "cpu", bf16: bool = False,
        progress: bool = True) -> tuple[dict, list[dict]]:
    """Train; returns the best epoch (weights on the CPU, val metrics) and the history."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = FaceNet(state).to(device).to(memory_format=torch.channels_last)
    weights = class_weights(train.labels).to(device)
    steps = n_batches(len(train), cfg.batch_size, min_batch=2)
    steps = min(steps, cfg.max_train_batches or steps)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, epochs=cfg.epochs,
                                                steps_per_epoch=steps, pct_start=PCT_START)
    autocast = "cuda" if device == "cuda" else "cpu"
    best: dict = {}
    since, history = 0, []
    warmup = int(np.ceil(PCT_START * cfg.epochs))
    for epoch in range(1, cfg.epochs + 1):
        start = time.perf_counter()
        model.train()
        total, seen = 0.0, 0
        bar = tqdm(total=steps, desc=f"epoch {epoch}/{cfg.epochs}", unit="batch",
                   disable=not progress, mininterval=1.0)
        batches = train.batches(cfg.batch_size, generator=gen, min_batch=2)
        for _, (x, y) in zip(range(steps), batches, strict=False):
            xb = to_network_size(x, cfg.size, device)
            xb = normalise(augment(xb, gen) if cfg.augment else xb)
            with torch.autocast(autocast, torch.bfloat16, enabled=bf16):
                logits = model(xb)
            loss = F.cross_entropy(logits.float(), torch.as_tensor(y, device=device),
                                   weight=weights, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total, seen = total + loss.item() * len(y), seen + len(y)
            bar.update()
            bar.set_postfix(loss=f"{total / seen:.3f}", refresh=False)
        train_s = time.perf_counter() - start
        val_m = evaluate(model, val, size=cfg.size, device=device, bf16=bf16,
                         batch_size=cfg.batch_size)
        improved = val_m["macro_f1"] > best.get("val", {}).get("macro_f1", -1.0)
        if improved:
            best = {"epoch": epoch, "val": val_m,
                    "backbone": {k: v.detach().cpu().clone()
                                 for k, v in model.backbone.state_dict().items()},
                    "head": {k: v.detach().cpu().clone()
                             for k, v in model.head.state_dict().items()}}
        bar.set_postfix(loss=f"{total / seen:.3f}", val_f1=f"{val_m['macro_f1']:.3f}",
                        best=f"{best['val']['macro_f1']:.3f}")
        bar.close()
        history.append({"epoch": epoch, "loss": total / seen, "lr": sched.get_last_lr()[0],
                        "train_images": seen, "train_s": round(train_s, 2),
                        "epoch_s": round(time.perf_counter() - start, 2), "val": val_m})
        log.info("epoch %d: loss %.4f, val accuracy %.3f, macro-F1 %.3f (best %.3f, epoch %d), "
                 "%.0f s", epoch, total / seen, val_m["accuracy"], val_m["macro_f1"],
                 best["val"]["macro_f1"], best["epoch"], history[-1]["epoch_s"])
        since = 0 if improved else since + 1
        # No early stop while the one-cycle learning rate still rises: val scores are
        # noisy there, and the best epochs come as it anneals.
        if since >= cfg.patience and epoch > warmup:
            log.info("early stop after epoch %d: no better val macro-F1 in %d epochs",
                     epoch, cfg.patience)
            break
    return best, history


def _check_config(cfg: FaceTrainConfig) -> None:
    if cfg.size < MIN_SIZE:
        raise EmotionError(f"--size {cfg.size}: at least {MIN_SIZE} (ResNet18 downsamples 32x)")
    if cfg.epochs < 1 or cfg.batch_size < 2 or cfg.lr <= 0 or cfg.patience < 1:
        raise EmotionError("--epochs and --patience must be at least 1, --batch_size at least 2, "
                           "--lr positive")
    if cfg.max_train_batches is not None and cfg.max_train_batches < 1:
        raise EmotionError("--max_train_batches must be at least 1 (or left out)")
    if not 0 <= cfg.label_smoothing < 1:
        raise EmotionError("--label_smoothing must be in [0, 1)")


def train_face_backbone(images_h5: str | Path, out: str | Path,
                        cfg: FaceTrainConfig = FaceTrainConfig(), *, init: str = "auto",
                        device: str = "auto", precision: str = "auto",
                        progress: bool = True) -> dict:
    """Train on the train split, select on val, save the backbone to `out`; a summary."""
    _check_config(cfg)
    device = resolve_device(device)
    bf16 = use_bf16(precision, device)
    layout = h5io.PREPROCESSED_IMAGES
    with h5io.open_checked(images_h5, layout) as f:
        source_size = int(f.attrs["size"])
        readers = {s: SplitReader(f[s]) for s in h5io.splits_of(f, layout)}
        for split in ("train", "val"):
            if not len(readers.get(split, ())):
                raise EmotionError(f"{images_h5} has no {split} images of the six emotions; "
                                   "the face backbone trains on train and selects on val")
        for split, r in readers.items():
            log.info("%s: %d images (%s); dropped %d outside the six %s", split, len(r),
                     ", ".join(f"{k} {v}" for k, v in r.counts().items()),
                     sum(r.dropped.values()), r.dropped or "")
        present = [k for k, v in readers["train"].counts().items() if v]
        if len(present) < 2:
            raise EmotionError(f"the train split holds {len(present)} of the six emotions "
                               f"({', '.join(present) or 'none'}); training needs at least two")
        if cfg.size > source_size:
            log.warning("--size %d is larger than the stored %d px crops: they are upsampled",
                        cfg.size, source_size)
        state, init_desc = initial_state(init, cfg.seed)
        log.info("training ResNet18 at %d px (crops %d px) on %s, %s", cfg.size, source_size,
                 device, "bf16 autocast" if bf16 else "fp32")
        best, history = fit(readers["train"], readers["val"], state, cfg, device=device,
                            bf16=bf16, progress=progress)
        model = FaceNet(best["backbone"]).to(device).to(memory_format=torch.channels_last)
        model.head.load_state_dict(best["head"])
        scores = {"val": best["val"], "selection": "val macro-F1 over the six emotions"}
        if len(readers.get("test", ())):
            scores["test"] = evaluate(model, readers["test"], size=cfg.size, device=device,
                                      bf16=bf16, batch_size=cfg.batch_size)
        counts = {s: r.counts() for s, r in readers.items()}
        dropped = {s: r.dropped for s, r in readers.items()}
    obj = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "arch": "resnet18",
        "state_dict": best["backbone"], "sha256": state_sha256(best["backbone"]),
        "head": best["head"], "input_size": cfg.size, "source_size": source_size,
        "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
        "label_names": list(EMOTIONS), "init": init_desc, "metrics": scores,
        "epoch": best["epoch"], "history": history, "counts": counts, "dropped": dropped,
        "config": {**asdict(cfg), "images_h5": str(images_h5), "init": init,
                   "device": device, "precision": "bf16" if bf16 else "fp32"},
        "versions": h5io.library_versions(),
    }
    save_atomic(obj, out)
    summary = {"out": str(out), "init": init_desc, "epoch": best["epoch"],
               "epochs_run": len(history), "sha256": obj["sha256"], "metrics": scores}
    return summary


# --------------------------------------------------------------------------
# Reading the file back


_FIELDS = ("arch", "state_dict", "sha256", "head", "input_size", "mean", "std", "label_names")


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:160]


def check_weights(d: object, path: str | Path) -> dict:
    """Validate a loaded face backbone file; every refusal is one line."""
    hint = "make one with train_face_backbone.py"
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise SchemaError(f"{path} is not a face backbone file (format {FORMAT!r}); {hint}")
    if d.get("format_version") != FORMAT_VERSION:
        raise SchemaError(f"{path} has face backbone format {d.get('format_version')}, this "
                          f"code reads {FORMAT_VERSION}; re-run train_face_backbone.py")
    missing = [k for k in _FIELDS if k not in d]
    if missing:
        raise SchemaError(f"{path} lacks {', '.join(missing)}; the file is damaged: {hint}")
    if d["arch"] != "resnet18":
        raise SchemaError(f"{path} holds a {d['arch']} backbone; the embedder uses resnet18")
    check_label_names(d["label_names"], EMOTIONS, what=str(path))
    if tuple(d["mean"]) != IMAGENET_MEAN or tuple(d["std"]) != IMAGENET_STD:
        raise SchemaError(f"{path} was trained with mean {d['mean']} and std {d['std']}; the "
                          f"embedder normalises with ImageNet's {list(IMAGENET_MEAN)}, "
                          f"{list(IMAGENET_STD)}")
    if not isinstance(d["input_size"], int) or d["input_size"] < MIN_SIZE:
        raise SchemaError(f"{path}: input size {d['input_size']!r} is not a side of at least "
                          f"{MIN_SIZE} px; the file is damaged: {hint}")
    check_state(d["state_dict"], str(path))
    if state_sha256(d["state_dict"]) != d["sha256"]:
        raise SchemaError(f"{path}: the weights do not match their recorded hash; the file is "
                          f"damaged: {hint}")
    head = d["head"]
    if not (isinstance(head, dict) and getattr(head.get("weight"), "shape", None)
            == (len(EMOTIONS), IMAGE_DIM) and getattr(head.get("bias"), "shape", None)
            == (len(EMOTIONS),)):
        raise SchemaError(f"{path}: the head is not a ({len(EMOTIONS)}, {IMAGE_DIM}) linear "
                          f"layer; the file is damaged: {hint}")
    return d


def _load(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same advice
        raise SchemaError(f"{path} is not a readable torch file ({_first_line(e)}); it may be "
                          "truncated or not a checkpoint: make one with "
                          "train_face_backbone.py") from None


def read_weights(path: str | Path) -> dict:
    """A face backbone file, validated (format, fields, shapes, hash, normalisation)."""
    path = Path(path)
    if not path.is_file():
        raise SchemaError(f"face backbone {path} does not exist; make one with "
                          "train_face_backbone.py")
    return check_weights(_load(path), path)


def weights_input_size(spec: str) -> int | None:
    """The side a weights spec was trained at: a face backbone file's, else None.

    None means "the crops' own size" (imagenet, none, plain state dicts, whose
    problems backbone.load_state reports). A face backbone file is validated.
    """
    if spec in ("imagenet", "none") or not Path(spec).is_file():
        return None
    try:
        d = torch.load(spec, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - backbone.load_state gives the message
        return None
    if isinstance(d, dict) and d.get("format") == FORMAT:
        return int(check_weights(d, spec)["input_size"])
    return None
