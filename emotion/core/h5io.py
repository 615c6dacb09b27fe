"""Every HDF5 layout of the project, in one place.

Each stage writes through :func:`create` (a temporary file renamed into place
when complete, with the attributes the next stage needs) and reads through
:func:`open_checked` (which validates the file before the stage touches it).

Layouts, by ``schema`` attribute:

preprocessed_images  /{split}/images (N,H,W,C) uint8 (or float32 [0,1])
                     /{split}/labels (N,) int16 index into attrs label_names
                     /{split}/paths (N,) str, /{split}/face_detected (N,) bool
                     (False: the face policy's centre-square fallback)
                     /skipped/paths, /skipped/reasons (M,) str
preprocessed_audio   /features/fixed (N,n_mels,frames) float32 log-mel (dB)
                     /labels (N,) int16, /paths /speakers /splits (N,) str
                     /corpora (N,) str: each clip's corpus (ravdess, emovo, ...); its
                     speaker id starts with it (files made before it existed lack it:
                     read through corpora_of)
                     /durations (N,) float32 seconds before padding
                     /waveforms/start, /waveforms/length (N,) int64: clip i is
                     /waveforms/samples[start:start + length], float32 mono at
                     sample_rate, resampled but not trimmed (the voice branch's input)
                     /skipped/paths, /skipped/reasons
embeddings_images    /{split}/embeddings (N,512) float32, /{split}/labels, /{split}/paths
                     attrs embedder_id, embedder_settings (JSON), image_weights,
                     backbone_trained_on (the split the backbone learned, or "")
embeddings_audio     /all/embeddings (N,128) float32, /all/labels, /all/paths,
                     /all/speakers, /all/splits, /all/out_of_fold (N,) bool,
                     /all/corpora (N,) str
                     attrs embedder_id, embedder_settings (JSON)
paired_embeddings    /image_embeddings (N,512), /audio_embeddings (N,128) float32
                     /labels (N,) int16 index into EMOTIONS (label_names)
                     /image_paths, /audio_paths (N,) str
                     attrs split, image_split (where its faces come from), embedder_id,
                     embedder_settings (JSON), seed, dropped (JSON)

Labels index the file's own ``label_names`` attribute: ALL_LABELS up to the
embeddings, the six EMOTIONS from pairing on.
"""

from __future__ import annotations

import contextlib
import json
import platform
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np

from emotion.core.atomic import atomic_path
from emotion.core.errors import EmotionError, SchemaError
from emotion.core.labels import ALL_LABELS, EMOTIONS, check_label_names, corpus_of_speaker
from emotion.core.splits import SPLITS

SCHEMA_VERSION = 2
STR = h5py.string_dtype("utf-8")


@dataclass(frozen=True)
class Layout:
    """What a file of one schema must hold; `{split}` is any group of SPLITS."""

    schema: str
    made_by: str  # the stage script that writes it, for error messages
    per_split: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ()
    attrs: tuple[str, ...] = field(default=())
    ragged: tuple[str, ...] = ()  # datasets of their own length (the others share one)


PREPROCESSED_IMAGES = Layout(
    "preprocessed_images", "preprocess_images.py",
    per_split=("images", "labels", "paths", "face_detected"),
    attrs=("size", "value_scale", "class_map", "face_policy"),
)
PREPROCESSED_AUDIO = Layout(
    "preprocessed_audio", "preprocessing_audio.py",
    datasets=("features/fixed", "labels", "paths", "speakers", "splits", "durations",
              "waveforms/start", "waveforms/length"),
    attrs=("sample_rate", "n_mels", "n_fft", "hop_length", "fixed_duration"),
    ragged=("waveforms/samples",),
)
EMBEDDINGS_IMAGES = Layout(
    "embeddings_images", "extract_embeddings.py",
    per_split=("embeddings", "labels", "paths"),
    attrs=("embedder_id", "embedder_settings", "image_weights", "backbone_trained_on"),
)
EMBEDDINGS_AUDIO = Layout(
    "embeddings_audio", "extract_embeddings.py",
    datasets=("all/embeddings", "all/labels", "all/paths", "all/speakers", "all/splits",
              "all/out_of_fold"),
    attrs=("embedder_id", "embedder_settings"),
)
PAIRED = Layout(
    "paired_embeddings", "make_paired_h5_filtered.py",
    datasets=("image_embeddings", "audio_embeddings", "labels", "image_paths", "audio_paths"),
    attrs=("split", "image_split", "embedder_id", "embedder_settings", "seed", "dropped"),
)


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("numpy", "h5py", "torch", "torchvision", "librosa", "scikit-learn",
                 "opencv-python-headless", "Pillow", "av"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[name] = md.version(name)
    return out


@contextlib.contextmanager
def create(path: str | Path, layout: Layout, *, config: dict,
           label_names: Sequence[str] = ALL_LABELS) -> Iterator[h5py.File]:
    """Write an HDF5 file atomically: under a temporary name, renamed when whole.

    An exception (or Ctrl-C) inside the block removes the temporary file and
    leaves any previous file at `path` untouched.
    """
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["schema"] = layout.schema
        f.attrs["schema_version"] = SCHEMA_VERSION
        f.attrs["stage"] = layout.made_by
        f.attrs["label_names"] = json.dumps(list(label_names))
        f.attrs["config"] = json.dumps(config, default=str, sort_keys=True)
        f.attrs["versions"] = json.dumps(library_versions())
        f.attrs["created"] = datetime.now(UTC).isoformat(timespec="seconds")
        yield f


def open_checked(path: str | Path, layout: Layout,
                 label_names: Sequence[str] = ALL_LABELS) -> h5py.File:
    """Open a file for reading after checking it is a whole file of `layout`."""
    path = Path(path)
    hint = f"run {layout.made_by} first (or pass the right path)"
    if not path.is_file():
        raise SchemaError(f"{path} does not exist; {hint}")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise SchemaError(f"{path} is not a readable HDF5 file ({e}); {hint}") from None
    try:
        _validate(f, path, layout, label_names, hint)
    except Exception:
        f.close()
        raise
    return f


def _validate(f: h5py.File, path: Path, layout: Layout, label_names, hint: str) -> None:
    schema = f.attrs.get("schema")
    if schema != layout.schema:
        raise SchemaError(f"{path} holds {schema or 'no schema'!s}, not {layout.schema}; {hint}")
    version = int(f.attrs.get("schema_version", -1))
    if version != SCHEMA_VERSION:
        raise SchemaError(f"{path} has schema version {version}, this code reads "
                          f"{SCHEMA_VERSION}; re-run {layout.made_by}")
    check_label_names(json.loads(f.attrs["label_names"]), label_names, what=str(path))
    missing = [a for a in layout.attrs if a not in f.attrs]
    missing += [d for d in (*layout.datasets, *layout.ragged) if d not in f]
    for split in splits_of(f, layout):
        missing += [f"{split}/{d}" for d in layout.per_split if d not in f[split]]
    if missing:
        raise SchemaError(f"{path} lacks {', '.join(missing)}; {hint}")
    if layout.per_split and not splits_of(f, layout):
        raise SchemaError(f"{path} has no split group ({', '.join(SPLITS)}); {hint}")
    groups = [f[s] for s in splits_of(f, layout)] or [f]
    for g in groups:
        names = layout.per_split or layout.datasets
        lengths = {n: len(g[n]) for n in names}
        if len(set(lengths.values())) > 1:
            raise SchemaError(f"{path}: datasets of {g.name} differ in length {lengths}; {hint}")


def splits_of(f: h5py.File, layout: Layout) -> list[str]:
    """The split groups present in a per-split file, in train/val/test order."""
    if not layout.per_split:
        return []
    return [s for s in SPLITS if s in f]


def attr_json(f: h5py.File | h5py.Group, name: str):
    return json.loads(f.attrs[name])


# --------------------------------------------------------------------------
# Streaming writes: datasets that grow by appending batches


class Appender:
    """Append rows to resizable, chunked datasets of one group in lockstep."""

    CHUNK_BYTES = 1 << 20  # ~1 MiB chunks: large enough to stream, small enough to slice

    def __init__(self, group: h5py.Group, specs: dict[str, tuple[tuple[int, ...], object]], *,
                 max_chunk_rows: int = 4096):
        self.group = group
        self.n = 0
        for name, (row_shape, dtype) in specs.items():
            itemsize = 64 if dtype is STR else np.dtype(dtype).itemsize
            row_bytes = itemsize * int(np.prod(row_shape, dtype=np.int64))
            rows = int(min(max_chunk_rows, max(1, self.CHUNK_BYTES // row_bytes)))
            group.create_dataset(name, shape=(0, *row_shape), maxshape=(None, *row_shape),
                                 dtype=dtype, chunks=(rows, *row_shape))
        self.names = tuple(specs)

    def append(self, **columns: Sequence | np.ndarray) -> None:
        if set(columns) != set(self.names):
            raise ValueError(f"append needs exactly {self.names}, got {sorted(columns)}")
        k = {len(v) for v in columns.values()}
        if len(k) != 1:
            raise ValueError(f"columns differ in length: {k}")
        (k,) = k
        if k == 0:
            return
        for name, values in columns.items():
            ds = self.group[name]
            ds.resize(self.n + k, axis=0)
            ds[self.n:self.n + k] = values
        self.n += k


class RowBuffer:
    """Rows collected in memory and handed to `write` (a list of rows) every `batch` rows,
    so that a stage appends to its datasets in blocks while it streams."""

    def __init__(self, write, batch: int = 256):
        self.write, self.batch = write, batch
        self.rows: list = []

    def add(self, row) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.batch:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self.write(self.rows)
            self.rows = []


def write_strings(group: h5py.Group, name: str, values: Sequence[str]) -> None:
    group.create_dataset(name, data=np.asarray(list(values), dtype=object), dtype=STR)


def read_strings(ds: h5py.Dataset) -> list[str]:
    return [s.decode("utf-8") if isinstance(s, bytes) else str(s) for s in ds[()]]


def write_skipped(f: h5py.File, skipped: Sequence[tuple[str, str]], *, kept: int,
                  what: str) -> None:
    """Record the inputs a batch stage skipped, with their reasons; a run that kept
    none of its `what` is an error (and its output is not kept either)."""
    if kept == 0:
        first = skipped[0][1] if skipped else "none"
        raise EmotionError(f"every one of the {what} was skipped; first reason: {first}")
    g = f.create_group("skipped")
    write_strings(g, "paths", [p for p, _ in skipped])
    write_strings(g, "reasons", [r for _, r in skipped])


def read_skipped(f: h5py.File) -> list[tuple[str, str]]:
    if "skipped" not in f:
        return []
    return list(zip(read_strings(f["skipped/paths"]), read_strings(f["skipped/reasons"]),
                    strict=True))


def corpora_of(g: h5py.File | h5py.Group) -> list[str]:
    """Each clip's corpus: stored, or (a file made before corpora were stored) the part
    of its speaker id before the first "_" ("ravdess_07" -> ravdess), else ""."""
    if "corpora" in g:
        return read_strings(g["corpora"])
    return [corpus_of_speaker(s) for s in read_strings(g["speakers"])]


def read_waveform(f: h5py.File, i: int) -> np.ndarray:
    """Clip i of a preprocessed_audio file: mono float32 at its sample_rate."""
    start, length = int(f["waveforms/start"][i]), int(f["waveforms/length"][i])
    return f["waveforms/samples"][start:start + length]


# --------------------------------------------------------------------------
# Images are stored uint8 by default; every reader goes through this function.


def to_unit(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 in [0, 1]: how stored crops are read, stored as float32,
    and how a face found at serving time is scaled (one rounding everywhere)."""
    return pixels.astype(np.float32) * np.float32(1.0 / 255.0)


def read_images(ds: h5py.Dataset, index: slice | np.ndarray) -> np.ndarray:
    """Rows of an images dataset as float32 in [0, 1], whatever the stored dtype."""
    x = ds[index]
    if x.dtype == np.uint8:
        return to_unit(x)
    return x.astype(np.float32, copy=False)


# --------------------------------------------------------------------------
# Paired embeddings, read whole: the training, anomaly and evaluation stages' input


@dataclass(frozen=True)
class Paired:
    """One split's pairs, in memory (N x 640 floats: 420,000 pairs are ~1 GB)."""

    image: np.ndarray        # (N, 512) float32
    audio: np.ndarray        # (N, 128) float32
    labels: np.ndarray       # (N,) int64, index into EMOTIONS
    image_paths: list[str]
    audio_paths: list[str]
    split: str
    embedder_id: str
    path: str
    embedder_settings: dict = field(default_factory=dict)  # what made the embeddings


def load_paired(path: str | Path, *, what: str = "") -> Paired:
    """Read a paired file after validating it; an empty file is an error."""
    with open_checked(path, PAIRED, label_names=EMOTIONS) as f:
        n = len(f["labels"])
        if n == 0:
            raise EmotionError(f"{path}{' (' + what + ')' if what else ''} holds no pairs; "
                               "re-run make_paired_h5_filtered.py on data with that split")
        return Paired(f["image_embeddings"][()].astype(np.float32, copy=False),
                      f["audio_embeddings"][()].astype(np.float32, copy=False),
                      f["labels"][()].astype(np.int64), read_strings(f["image_paths"]),
                      read_strings(f["audio_paths"]), str(f.attrs["split"]),
                      str(f.attrs["embedder_id"]), str(path),
                      json.loads(f.attrs["embedder_settings"]))
