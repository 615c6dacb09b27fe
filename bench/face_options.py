"""Which face backbone? Train each named option on a preprocessed file and tabulate.

    python bench/face_options.py --images_h5 results/real/preprocessed_images.h5 \
        --work results/face_options --precision fp32                       # every option
    python bench/face_options.py --images_h5 ... --only today,lite0 --epochs 3 \
        --max_train_batches 60                                          # a quick ranking
    git worktree add ../before REV && python bench/face_options.py ... \
        --baseline_code ../before              # "today" trained by the code of REV

Every option runs train_face_backbone.py with the same file, seed, precision and
(unless it says otherwise) epochs; "today" is the setting shipped before issue 23
(ResNet18 from scratch at 64 px), "lite0-12" the one shipped first and "lite0-14-w0"
the one shipped now (no class weights, 14 epochs). The table
gives, per option, test accuracy (with the mirror where the option scores with it,
and of one view, as serving embeds) and macro-F1, the recall of every class (fear,
sad and disgust are where FER models fail), val macro-F1 (what the choice is made
on), the epoch kept and the training minutes. Choose on val; test is for the
report. Runs one after the other: on a shared machine say what else ran. Options
are re-used when their file exists.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The loss weights of every option measured before they became a choice: inverse class
# frequency (the only weights of the code before; dropped when it runs "today").
INVERSE = ["--class_weight_power", "1"]
LITE0 = ["--arch", "efficientnet_lite0", "--init", "imagenet"]

# name -> train_face_backbone.py flags beyond the common ones
OPTIONS: dict[str, list[str]] = {
    "today": ["--arch", "resnet18", "--net_size", "64", *INVERSE],
    "today+tta": ["--arch", "resnet18", "--net_size", "64", "--tta_flip", "1", *INVERSE],
    "r18-erase": ["--arch", "resnet18", "--net_size", "64", "--erase", "0.5", *INVERSE],
    "r18-mix": ["--arch", "resnet18", "--net_size", "64", "--mixup", "0.2", "--cutmix", "1.0",
                *INVERSE],
    "r18-96": ["--arch", "resnet18", "--net_size", "96", *INVERSE],
    "lite0": [*LITE0, "--net_size", "64", "--lr", "1e-3", *INVERSE],
    "lite0-lr3": [*LITE0, "--net_size", "64", "--lr", "3e-3", "--tta_flip", "1", *INVERSE],
    # the recipe shipped first (12 epochs, lr 3e-3, inverse-frequency weights, no mirror)
    "lite0-12": [*LITE0, "--net_size", "64", "--epochs", "12", *INVERSE],
    # no class weights; the mirror is scored beside the one view
    "lite0-12-w0": [*LITE0, "--net_size", "64", "--epochs", "12", "--class_weight_power", "0",
                    "--tta_flip", "1"],
    # the shipped recipe (pipeline.py's backbone: 14 epochs, lr 3e-3, no class weights)
    "lite0-14-w0": [*LITE0, "--net_size", "64", "--epochs", "14", "--class_weight_power", "0",
                    "--tta_flip", "1"],
    "lite0-12-w05": [*LITE0, "--net_size", "64", "--epochs", "12", "--class_weight_power",
                     "0.5", "--tta_flip", "1"],
    "lite0-all": [*LITE0, "--net_size", "64", "--erase", "0.5", "--mixup", "0.2", "--cutmix",
                  "1.0", "--tta_flip", "1", *INVERSE],
    "lite0-48": [*LITE0, "--net_size", "48", "--tta_flip", "1", *INVERSE],
    "lite0-96": [*LITE0, "--net_size", "96", *INVERSE],
    "lite0-96-all": [*LITE0, "--net_size", "96", "--erase", "0.5", "--mixup", "0.2",
                     "--cutmix", "1.0", "--tta_flip", "1", *INVERSE],
}
CLASSES = ("fear", "sad", "disgust", "angry", "happy", "neutral")


def run_option(name: str, flags: list[str], args) -> dict:
    out = args.work / f"{name}.pt"
    # "today" is the shipped setting; with --baseline_code, run by the code before this change
    root = args.baseline_code if name == "today" and args.baseline_code else ROOT
    if root != ROOT:  # the code before knows no --class_weight_power (it had INVERSE's)
        flags = flags[:-len(INVERSE)] if flags[-len(INVERSE):] == INVERSE else flags
    if not out.is_file():
        cmd = [sys.executable, str(root / "train_face_backbone.py"), "--images_h5",
               str(args.images_h5), "--out", str(out), "--epochs", str(args.epochs),
               "--precision", args.precision, "--device", args.device, "--seed", str(args.seed),
               *(["--max_train_batches", str(args.max_train_batches)]
                 if args.max_train_batches else []), *flags]
        env = {**os.environ, "PYTHONPATH": str(root)}
        with (args.work / f"{name}.log").open("w") as log:
            done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        if done.returncode != 0:
            return {"option": name, "error": f"exit {done.returncode}; see {name}.log"}
    import torch

    d = torch.load(out, weights_only=True)
    test, val = d["metrics"].get("test", {}), d["metrics"]["val"]
    one_view = one_view_test(d, args.images_h5) if d["config"].get("tta_flip") else test
    return {"option": name, "code": "baseline" if root != ROOT else "this tree",
            "flags": " ".join(flags), "test_accuracy": test.get("accuracy"),
            "test_accuracy_one_view": one_view.get("accuracy"),
            "test_macro_f1": test.get("macro_f1"), "val_macro_f1": val["macro_f1"],
            "recall": test.get("per_class_recall", {}), "epoch": d["epoch"],
            "epochs_run": len(d["history"]), "train_minutes": d.get("train_minutes"),
            "precision": d["config"]["precision"]}


def one_view_test(d: dict, images_h5: Path) -> dict:
    """Test scores of a saved backbone without the mirror (--tta_flip): what serving,
    which embeds one view of each face, gets."""
    import torch

    from emotion.core import h5io
    from emotion.models.image_backbone import FaceNet
    from emotion.stages.face_batches import SplitReader
    from emotion.stages.train_backbone import evaluate_backbone

    model = FaceNet(d["state_dict"]).to(memory_format=torch.channels_last)
    model.head.load_state_dict(d["head"])
    with h5io.open_checked(images_h5, h5io.PREPROCESSED_IMAGES) as f:
        return evaluate_backbone(model, SplitReader(f["test"]), size=d["input_size"],
                                 device="cpu", bf16=d["config"]["precision"] == "bf16",
                                 batch_size=128)


def table(rows: list[dict]) -> str:
    head = ("| option | test acc | test acc, one view | test macro-F1 | val macro-F1 | "
            + " | ".join(f"recall {c}" for c in CLASSES) + " | epoch kept | minutes |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['option']} | {r['error']} |")
            continue
        rec = " | ".join(f"{r['recall'].get(c, float('nan')):.3f}" for c in CLASSES)
        name = r["option"] + (" (code before)" if r.get("code") == "baseline" else "")
        lines.append(f"| {name} | {r['test_accuracy']:.3f} | "
                     f"{r['test_accuracy_one_view']:.3f} | {r['test_macro_f1']:.3f} | "
                     f"{r['val_macro_f1']:.3f} | {rec} | {r['epoch']}/{r['epochs_run']} | "
                     f"{r['train_minutes']} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images_h5", type=Path, required=True)
    p.add_argument("--work", type=Path, default=Path("results/face_options"))
    p.add_argument("--only", default=",".join(OPTIONS), help="comma-separated option names")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--max_train_batches", type=int, default=None)
    p.add_argument("--precision", default="fp32", choices=("auto", "fp32", "bf16"))
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--baseline_code", type=Path, default=None,
                   help="a checkout of the code before a change (git worktree add DIR REV): "
                        "the option 'today' runs with it")
    args = p.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(names) - set(OPTIONS)
    if unknown:
        p.error(f"unknown options {sorted(unknown)}; known: {', '.join(OPTIONS)}")
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in names:
        rows.append(run_option(name, OPTIONS[name], args))
        print(json.dumps(rows[-1]), flush=True)
    text = table(rows)
    (args.work / "table.md").write_text(text + "\n")
    (args.work / "table.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
