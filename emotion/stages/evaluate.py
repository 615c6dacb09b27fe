"""Evaluation of the fusion classifier: metrics, confusion matrices, plots, predictions.

Each split (val, test) is scored under each modality condition of
``fusion.CONDITIONS`` (image + audio, image only, audio only), because the
service meets all three. Outputs, in ``save_dir``:

metrics.json                 {split: {accuracy, macro_f1, per_class_f1 (the fused
                             condition), by_condition: {condition: {...}},
                             audio_only_per_clip: {...} (each clip once), n, ...}}
predictions.npz              {split}_{condition}_proba (N, 6) float32, {split}_labels,
                             {split}_image_paths, {split}_audio_paths, label_names,
                             conditions (plain arrays: np.load needs no pickle)
classification_report_{split}.txt     sklearn's report, one block per condition
confusion_{split}_raw.png, confusion_{split}_normalized.png   one panel per condition
accuracy_by_condition.png    accuracy and macro-F1 per condition, val next to test
per_class_f1.png             per-class F1 per condition, one panel per split

Metrics come from :mod:`emotion.core.metrics`, as in every other stage.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import classification_report

from emotion.core import cli
from emotion.core.atomic import write_json, write_npz, write_text_atomic
from emotion.core.errors import EmotionError
from emotion.core.h5io import Paired, load_paired
from emotion.core.labels import EMOTIONS
from emotion.core.metrics import classification_metrics, confusion_counts, normalise_rows
from emotion.core.paths import DEFAULT
from emotion.core.plots import figure, save_png
from emotion.models.fusion import CONDITIONS, FusionModel, load_checkpoint, predict_condition

log = logging.getLogger(__name__)

CONDITION_TITLES = {"both": "image + audio", "image_only": "image only",
                    "audio_only": "audio only"}


# ------------------------------------------------------------------ metrics

def predict_conditions(model: FusionModel, data: Paired) -> dict[str, np.ndarray]:
    """Class probabilities (N, 6) of one split under each modality condition."""
    return {c: predict_condition(model, data.image, data.audio, c) for c in CONDITIONS}


def split_metrics(labels: np.ndarray, proba: Mapping[str, np.ndarray],
                  label_names: Sequence[str] = EMOTIONS) -> dict:
    """One split's metrics.json entry: the fused condition on top, all in by_condition."""
    by_condition = {}
    for cond, p in proba.items():
        pred = p.argmax(1)
        m = classification_metrics(labels, pred, label_names)
        m["confusion_matrix"] = confusion_counts(labels, pred, len(label_names)).tolist()
        by_condition[cond] = m
    fused = by_condition["both"]
    return {"accuracy": fused["accuracy"], "macro_f1": fused["macro_f1"],
            "per_class_f1": dict(fused["per_class_f1"]), "by_condition": by_condition,
            "n": int(len(labels)), "label_names": list(label_names)}


def clip_metrics(labels: np.ndarray, proba: np.ndarray, audio_paths: Sequence[str],
                 label_names: Sequence[str] = EMOTIONS) -> dict:
    """Audio-only metrics counting each clip once: pairs repeat a clip with many faces,
    so per pair a clip weighs as often as it was drawn."""
    _, first = np.unique(np.asarray(audio_paths, dtype=str), return_index=True)
    return classification_metrics(labels[first], proba[first].argmax(1), label_names)


def report_text(labels: np.ndarray, proba: Mapping[str, np.ndarray], *, split: str,
                label_names: Sequence[str] = EMOTIONS) -> str:
    """sklearn's classification report for every condition of one split."""
    blocks = []
    for cond, p in proba.items():
        rep = classification_report(labels, p.argmax(1), labels=list(range(len(label_names))),
                                    target_names=list(label_names), digits=3, zero_division=0)
        blocks.append(f"== {split}: {CONDITION_TITLES.get(cond, cond)} ({cond}), "
                      f"n={len(labels)} ==\n{rep}")
    return "\n".join(blocks)


def format_table(metrics: Mapping[str, dict]) -> str:
    """A short text table: accuracy and macro-F1 per split and condition."""
    lines = [f"{'split':<6} {'condition':<11} {'n':>6} {'accuracy':>9} {'macro-F1':>9}  "
             "weakest class (F1)"]
    for split, m in metrics.items():
        rows = {**m["by_condition"], "audio/clip": m.get("audio_only_per_clip")}
        for cond, c in rows.items():
            if c is None:
                continue
            weak = min(c["per_class_f1"], key=c["per_class_f1"].get)
            lines.append(f"{split:<6} {cond:<11} {c['n']:>6} {c['accuracy']:>9.3f} "
                         f"{c['macro_f1']:>9.3f}  {weak} ({c['per_class_f1'][weak]:.2f})")
    return "\n".join(lines)


# ------------------------------------------------------------------ inputs

def check_compatible(data: Paired, ckpt: dict, model: FusionModel, *, model_path: str | Path,
                     what: str) -> None:
    """Refuse a paired file whose embeddings the model was not trained on."""
    trained_on = ckpt.get("embedder_id")
    if data.embedder_id != trained_on:
        raise EmotionError(
            f"{data.path} ({what}) holds embeddings of embedder {data.embedder_id}, but the "
            f"model {model_path} was trained on embedder {trained_on}; evaluate it on the "
            "paired files it was trained with, or re-train with train_multimodal.py")
    c = model.config
    dims = (data.image.shape[1], data.audio.shape[1])
    if dims != (c.image_dim, c.audio_dim):
        raise EmotionError(f"{data.path} ({what}) has embeddings of sizes {dims}, the model "
                           f"expects {(c.image_dim, c.audio_dim)}")


# ------------------------------------------------------------------ outputs

def save_predictions(path: str | Path, splits: Mapping[str, tuple[Paired, Mapping]],
                     label_names: Sequence[str] = EMOTIONS) -> Path:
    """predictions.npz: probabilities per split and condition, labels and paths."""
    arrays: dict[str, np.ndarray] = {"label_names": np.array(list(label_names), dtype=str),
                                     "conditions": np.array(list(CONDITIONS), dtype=str)}
    for split, (data, proba) in splits.items():
        arrays[f"{split}_labels"] = data.labels.astype(np.int64)
        arrays[f"{split}_image_paths"] = np.array(data.image_paths, dtype=str)
        arrays[f"{split}_audio_paths"] = np.array(data.audio_paths, dtype=str)
        for cond, p in proba.items():
            arrays[f"{split}_{cond}_proba"] = np.asarray(p, np.float32)
    return write_npz(path, arrays, compressed=True)


# ------------------------------------------------------------------ plots

def _unit_axis(ax, label: str) -> None:
    # Scores live in [0, 1]; the headroom above keeps the legend clear of the bars.
    ax.set_ylim(0, 1.3)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel(label)


def plot_confusion(cms: Mapping[str, np.ndarray], path: str | Path, *, split: str,
                   normalized: bool, label_names: Sequence[str] = EMOTIONS) -> Path:
    """One panel per condition; counts, or rows normalised to 1 (recall on the diagonal)."""
    from matplotlib.ticker import MaxNLocator

    k = len(label_names)
    fig = figure(5.4 * len(cms), 5.2)
    axes = fig.subplots(1, len(cms), squeeze=False)[0]
    for ax, (cond, cm) in zip(axes, cms.items(), strict=True):
        cm = np.asarray(cm)
        shown = normalise_rows(cm) if normalized else cm
        vmax = 1.0 if normalized else max(1, int(cm.max()))
        im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=vmax)
        for i in range(k):
            for j in range(k):
                v = shown[i, j]
                ax.text(j, i, f"{v:.2f}" if normalized else str(int(v)), ha="center",
                        va="center", fontsize=8, color="white" if v > vmax / 2 else "black")
        ax.set_xticks(range(k), list(label_names), rotation=45, ha="right")
        ax.set_yticks(range(k), list(label_names))
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        acc = np.trace(cm) / max(1, cm.sum())
        ax.set_title(f"{CONDITION_TITLES.get(cond, cond)} (accuracy {acc:.3f})")
        bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        if not normalized:
            bar.locator = MaxNLocator(integer=True)
            bar.update_ticks()
    kind = "row-normalised (recall on the diagonal)" if normalized else "counts"
    n = int(np.asarray(next(iter(cms.values()))).sum())
    fig.suptitle(f"{split}: confusion matrices, {kind}, n={n}")
    return save_png(fig, path)


def plot_by_condition(metrics: Mapping[str, dict], path: str | Path) -> Path:
    """Accuracy and macro-F1 per modality condition, the splits side by side."""
    conds = list(CONDITIONS)
    splits = list(metrics)
    fig = figure(11, 4.6)
    axes = fig.subplots(1, 2)
    width = 0.8 / len(splits)
    x = np.arange(len(conds))
    for ax, key, name in zip(axes, ("accuracy", "macro_f1"), ("accuracy", "macro-F1"),
                             strict=True):
        for s, split in enumerate(splits):
            vals = [metrics[split]["by_condition"][c][key] for c in conds]
            bars = ax.bar(x + (s - (len(splits) - 1) / 2) * width, vals, width,
                          label=f"{split} (n={metrics[split]['n']})")
            ax.bar_label(bars, fmt="%.3f", fontsize=8, padding=2)
        ax.axhline(1 / len(EMOTIONS), color="grey", linestyle="--", linewidth=1,
                   label="chance (1/6)")
        ax.set_xticks(x, [CONDITION_TITLES[c] for c in conds])
        _unit_axis(ax, name)
        ax.set_title(f"{name} by modality condition: {' vs '.join(splits)}")
        ax.legend(loc="upper center", fontsize=8, ncol=len(splits) + 1)
    return save_png(fig, path)


def plot_per_class_f1(metrics: Mapping[str, dict], path: str | Path,
                      label_names: Sequence[str] = EMOTIONS) -> Path:
    """Per-class F1, one bar per condition, one panel per split."""
    conds = list(CONDITIONS)
    fig = figure(12, 4.2 * len(metrics))
    axes = fig.subplots(len(metrics), 1, squeeze=False)[:, 0]
    width = 0.8 / len(conds)
    x = np.arange(len(label_names))
    for ax, (split, m) in zip(axes, metrics.items(), strict=True):
        for i, cond in enumerate(conds):
            f1 = m["by_condition"][cond]["per_class_f1"]
            bars = ax.bar(x + (i - (len(conds) - 1) / 2) * width, [f1[n] for n in label_names],
                          width, label=CONDITION_TITLES[cond])
            ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
        support = m["by_condition"]["both"]["support"]
        ax.set_xticks(x, [f"{n}\n(n={support[n]})" for n in label_names])
        _unit_axis(ax, "F1")
        ax.set_title(f"{split}: per-class F1 by modality condition")
        ax.legend(loc="upper center", fontsize=8, ncol=len(conds))
    return save_png(fig, path)


# ------------------------------------------------------------------ the stage

def evaluate_checkpoint(model_path: str | Path, split_paths: Mapping[str, str | Path],
                        save_dir: str | Path) -> dict:
    """Score a checkpoint on paired files ({split: path}); write every output; the metrics.

    Every input is loaded and checked before anything is written.
    """
    model, ckpt = load_checkpoint(model_path)
    names = list(ckpt["label_names"])
    results: dict[str, tuple[Paired, dict[str, np.ndarray]]] = {}
    for split, path in split_paths.items():
        data = load_paired(path, what=f"--{split}_h5")
        check_compatible(data, ckpt, model, model_path=model_path, what=f"--{split}_h5")
        if data.split != split:
            log.warning("%s was given as the %s split but holds the %r split", path, split,
                        data.split)
        results[split] = (data, predict_conditions(model, data))

    save_dir = Path(save_dir)
    try:
        save_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EmotionError(f"cannot create --save_dir {save_dir}: {e}") from None
    metrics: dict[str, dict] = {}
    for split, (data, proba) in results.items():
        m = split_metrics(data.labels, proba, names)
        m["audio_only_per_clip"] = clip_metrics(data.labels, proba["audio_only"],
                                                data.audio_paths, names)
        m.update(embedder_id=data.embedder_id, model_epoch=ckpt.get("epoch"), path=str(data.path))
        metrics[split] = m
        write_text_atomic(report_text(data.labels, proba, split=split, label_names=names),
                          save_dir / f"classification_report_{split}.txt")
        cms = {c: np.array(v["confusion_matrix"]) for c, v in m["by_condition"].items()}
        for normalized, suffix in ((False, "raw"), (True, "normalized")):
            plot_confusion(cms, save_dir / f"confusion_{split}_{suffix}.png", split=split,
                           normalized=normalized, label_names=names)
    plot_by_condition(metrics, save_dir / "accuracy_by_condition.png")
    plot_per_class_f1(metrics, save_dir / "per_class_f1.png", names)
    save_predictions(save_dir / "predictions.npz", results, names)
    write_json(save_dir / "metrics.json", metrics)
    log.info("wrote metrics.json, predictions.npz, reports and plots to %s", save_dir)
    return metrics


# --------------------------------------------------------------------------
# The command line (train_eval_plot.py)

USAGE = """Evaluate the fusion classifier on the val and test pairs; write metrics and plots.

    python train_eval_plot.py --model_path saved_models/multimodal_best.pth \
        --test_h5 saved_paired_test_paired_embeddings.h5 \
        --val_h5 saved_paired_val_paired_embeddings.h5 --save_dir results/plots

Scores each split with image + audio, image only and audio only. Writes
metrics.json, predictions.npz (probabilities, labels, paths),
classification_report_{split}.txt, confusion_{split}_{raw,normalized}.png,
accuracy_by_condition.png and per_class_f1.png to --save_dir, and prints a table.
"""


def get_args_parser() -> argparse.ArgumentParser:
    p = cli.parser(USAGE)
    p.add_argument("--model_path", default=str(DEFAULT.multimodal))
    p.add_argument("--test_h5", default=str(DEFAULT.paired("test")))
    p.add_argument("--val_h5", default=str(DEFAULT.paired("val")))
    p.add_argument("--save_dir", default=str(DEFAULT.plots))
    return p


def run(args: argparse.Namespace) -> None:
    """The stage, for parsed arguments."""
    metrics = evaluate_checkpoint(args.model_path, {"val": args.val_h5, "test": args.test_h5},
                                  args.save_dir)
    print(format_table(metrics))


def main(argv: list[str] | None = None) -> int:
    return cli.run_main(argv, get_args_parser, run, "train_eval_plot.py")
