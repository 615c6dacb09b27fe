"""train_face_backbone.py under torchrun: shards, summed scores, two gloo processes
against one, and only rank 0 writing the checkpoint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from emotion.core import distributed as dist
from emotion.core.labels import EMOTIONS
from emotion.core.metrics import classification_metrics, confusion_counts
from emotion.models.image_backbone import read_weights
from emotion.stages import preprocess_images
from emotion.stages.face_batches import SplitReader
from emotion.stages.sample_data import make_sample_set
from emotion.stages.train_backbone import metrics_from_confusion

ROOT = Path(__file__).resolve().parents[1]


def test_blocks_are_shared_out_whole_and_once():
    for n, block, world in ((0, 4, 2), (37, 4, 3), (64, 32, 2), (5, 8, 4)):
        starts = [dist.shard_blocks(n, block, r, world) for r in range(world)]
        rows = np.concatenate([np.arange(s, min(s + block, n)) for st in starts for s in st]
                              or [np.zeros(0, int)])
        assert sorted(rows.tolist()) == list(range(n))
        sizes = [sum(min(block, n - s) for s in st) for st in starts]
        assert max(sizes) - min(sizes) <= block


def test_one_process_context_needs_no_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = dist.start("cpu")
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.distributed) == (0, 1, True, False)
    assert dist.all_sum(ctx, np.array([2.0, 3.0])).tolist() == [2.0, 3.0]
    assert dist.all_min(ctx, 4) == 4


def test_shards_of_a_split_partition_its_rows(tmp_path):
    labels = np.array([0, 1, 7, 2, 3, 4, 5, 6, 0, 1] * 7)  # 7, 6: outside the six
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f["train/images"] = np.zeros((len(labels), 4, 4, 3), np.uint8)
        f["train/labels"] = labels
        whole = SplitReader(f["train"], block=4)
        parts = [SplitReader(f["train"], block=4, shard=(r, 3)) for r in range(3)]
        rows = np.concatenate([p.rows for p in parts])
        assert sorted(rows.tolist()) == whole.rows.tolist()
        assert all(p.counts() == whole.counts() for p in parts)  # counts: the whole split
        assert sum(len(p) for p in parts) == len(whole)


def test_scores_from_summed_confusion_counts_match_the_direct_ones(rng):
    y = rng.integers(0, len(EMOTIONS), 200)
    pred = np.where(rng.random(200) < 0.6, y, rng.integers(0, len(EMOTIONS), 200))
    halves = confusion_counts(y[:90], pred[:90]) + confusion_counts(y[90:], pred[90:])
    m, direct = metrics_from_confusion(halves), classification_metrics(y, pred)
    assert m["accuracy"] == pytest.approx(direct["accuracy"])
    assert m["macro_f1"] == pytest.approx(direct["macro_f1"])
    recall = {e: float(np.mean(pred[y == i] == i)) for i, e in enumerate(EMOTIONS)}
    assert m["per_class_recall"] == pytest.approx(recall)


@pytest.fixture(scope="module")
def faces_h5(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    _, images = make_sample_set(root, n_speakers=1, clips_per_emotion=1,
                                images_per_class={"train": 40, "val": 16, "test": 16},
                                image_size=48, extra_class_images=0, seed=3)
    out = root / "faces.h5"
    assert preprocess_images.main(["--src", str(images), "--out", str(out), "--size", "48",
                                   "--workers", "1"]) == 0
    return out


def _train(h5: Path, out: Path, nproc: int) -> dict:
    args = ["--images_h5", str(h5), "--out", str(out), "--epochs", "4", "--batch_size", "32",
            "--lr", "0.003", "--net_size", "32", "--init", "scratch", "--arch", "resnet18",
            "--device", "cpu", "--precision", "fp32", "--seed", "0"]
    launch = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}"] if nproc > 1 else [sys.executable])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*launch, str(ROOT / "train_face_backbone.py"), *args], env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return read_weights(out)


@pytest.mark.slow
def test_two_gloo_processes_train_like_one(faces_h5, tmp_path):
    one = _train(faces_h5, tmp_path / "one" / "face.pt", 1)
    two = _train(faces_h5, tmp_path / "two" / "face.pt", 2)
    assert two["config"]["world_size"] == 2 and one["config"]["world_size"] == 1
    assert [p.name for p in (tmp_path / "two").iterdir()] == ["face.pt"]  # rank 0, atomically
    assert torch.load(tmp_path / "two" / "face.pt", weights_only=True)["sha256"] == two["sha256"]
    # the shards together cover the train split (less at most a batch a rank)
    n_train = sum(two["counts"]["train"].values())
    assert n_train - 2 * 16 <= two["history"][0]["train_images"] <= n_train
    # same start, same summed loss: the first epoch's loss agrees closely, both learn,
    # and the selected epochs score alike on test (a few of 96 faces apart)
    l1, l2 = (np.array([h["loss"] for h in d["history"]]) for d in (one, two))
    assert abs(l1[0] - l2[0]) < 0.05 * l1[0]
    assert l1[-1] < l1[0] and l2[-1] < l2[0]
    chance = 1 / len(EMOTIONS)
    a1, a2 = one["metrics"]["test"]["accuracy"], two["metrics"]["test"]["accuracy"]
    assert a1 > chance and a2 > chance
    assert abs(a1 - a2) < 0.2
