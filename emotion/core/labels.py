"""The emotion label list, and every convention that maps a file to a label.

The six emotions below, in this order, are the classes of every model the
project trains. Data sets carry other classes too (contempt, surprise, calm):
they are kept with their own names through preprocessing and dropped, and
counted, at pairing. Every HDF5 file and checkpoint stores the names it was
made with; consumers call :func:`check_label_names` instead of trusting an index.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from emotion.core.errors import LabelError

EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad")

# Classes seen in the supported corpora that are outside the six. Indices of
# ALL_LABELS below 6 are the six emotions, so a file's labels index the same
# names whatever extra classes it holds.
EXTRA_LABELS: tuple[str, ...] = ("calm", "contempt", "surprise")
ALL_LABELS: tuple[str, ...] = EMOTIONS + EXTRA_LABELS

# Spellings used by data sets and users, mapped onto the names above.
_SYNONYMS = {
    "anger": "angry",
    "disgusted": "disgust",
    "fearful": "fear",
    "scared": "fear",
    "happiness": "happy",
    "joy": "happy",
    "sadness": "sad",
    "surprised": "surprise",
}

CREMA_CODES = {"ANG": "angry", "DIS": "disgust", "FEA": "fear",
               "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
RAVDESS_CODES = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad",
                 "05": "angry", "06": "fear", "07": "disgust", "08": "surprise"}

# Numeric image class ids. "seed" follows the user's design notes ("0=angry") with the eight
# AffectNet classes in alphabetical order; "affectnet" is AffectNet's own order.
CLASS_MAP_PRESETS: dict[str, dict[int, str]] = {
    "seed": {0: "angry", 1: "contempt", 2: "disgust", 3: "fear",
             4: "happy", 5: "neutral", 6: "sad", 7: "surprise"},
    "affectnet": {0: "neutral", 1: "happy", 2: "sad", 3: "surprise",
                  4: "fear", 5: "disgust", 6: "angry", 7: "contempt"},
}
DEFAULT_CLASS_MAP = "seed"


def canonical(name: str) -> str:
    """Return the project's name for an emotion name, or raise LabelError."""
    key = name.strip().lower()
    key = _SYNONYMS.get(key, key)
    if key not in ALL_LABELS:
        raise LabelError(
            f"unknown emotion {name!r}; known names are {', '.join(ALL_LABELS)} "
            f"(and synonyms {', '.join(sorted(_SYNONYMS))})"
        )
    return key


def check_label_names(found: Sequence[str], expected: Sequence[str] = ALL_LABELS,
                      *, what: str = "file") -> None:
    """Refuse a file or checkpoint whose label names differ from ours."""
    if tuple(found) != tuple(expected):
        raise LabelError(
            f"{what} was made with labels {list(found)}, but this code uses "
            f"{list(expected)}; re-run the stage that made it with this version"
        )


# --------------------------------------------------------------------------
# Audio: a label and a speaker from a file name, or from a labels.csv manifest


@dataclass(frozen=True)
class ClipLabel:
    label: str
    speaker: str


_CREMA_RE = re.compile(
    r"^(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emo>[A-Z]{3})_(?P<lvl>[A-Z]{1,2}|\d{1,2})$")
_RAVDESS_RE = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")


def parse_crema(stem: str) -> ClipLabel | None:
    """`1001_DFA_ANG_XX` -> (angry, speaker 1001); None if not CREMA-D."""
    m = _CREMA_RE.match(stem)
    if not m or m["emo"] not in CREMA_CODES:
        return None
    return ClipLabel(CREMA_CODES[m["emo"]], m["actor"])


def parse_ravdess(stem: str) -> ClipLabel | None:
    """`03-01-05-02-01-01-07` -> (angry, speaker 07); None if not RAVDESS."""
    m = _RAVDESS_RE.match(stem)
    if not m or m.group(3) not in RAVDESS_CODES:
        return None
    return ClipLabel(RAVDESS_CODES[m.group(3)], f"ravdess_{m.group(7)}")


def parse_clip_name(path: str | Path) -> ClipLabel:
    """Label and speaker from a CREMA-D or RAVDESS file name."""
    stem = Path(path).stem
    for parse in (parse_crema, parse_ravdess):
        found = parse(stem)
        if found is not None:
            return found
    raise LabelError(
        f"cannot read a label from the name {Path(path).name!r}: expected CREMA-D "
        "(1001_DFA_ANG_XX.wav) or RAVDESS (03-01-05-02-01-01-07.wav); for other "
        "corpora put a labels.csv (path,label,speaker) in the audio folder"
    )


def read_labels_csv(csv_path: str | Path) -> dict[str, ClipLabel]:
    """Read a `path,label,speaker` manifest; paths are relative to its folder.

    Returns a map from the resolved path (str) to its ClipLabel.
    """
    csv_path = Path(csv_path)
    base = csv_path.parent
    out: dict[str, ClipLabel] = {}
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"path", "label", "speaker"} - set(reader.fieldnames or ())
        if missing:
            raise LabelError(f"{csv_path} lacks the column(s) {sorted(missing)}; "
                             "expected a header line: path,label,speaker")
        for row_no, row in enumerate(reader, start=2):
            try:
                label = canonical(row["label"] or "")
            except LabelError as e:
                raise LabelError(f"{csv_path}:{row_no}: {e}") from None
            speaker = (row["speaker"] or "").strip()
            if not speaker:
                raise LabelError(f"{csv_path}:{row_no}: empty speaker")
            out[str((base / row["path"]).resolve())] = ClipLabel(label, speaker)
    return out


# --------------------------------------------------------------------------
# Images: a class folder name (emotion name or numeric id) to a label


def load_class_map(spec: str | None) -> dict[int, str]:
    """A numeric class map from a preset name, a JSON file, or inline JSON.

    JSON is an object from id to emotion name, e.g. {"0": "neutral", "1": "happy"}.
    """
    spec = spec or DEFAULT_CLASS_MAP
    if spec in CLASS_MAP_PRESETS:
        return dict(CLASS_MAP_PRESETS[spec])
    text = spec
    if not spec.lstrip().startswith("{"):
        path = Path(spec)
        if not path.is_file():
            raise LabelError(
                f"--class_map {spec!r} is neither a preset ({', '.join(CLASS_MAP_PRESETS)}) "
                "nor a JSON file nor inline JSON"
            )
        text = path.read_text(encoding="utf-8")
    try:
        raw = json.loads(text)
        if not isinstance(raw, Mapping):
            raise ValueError("not an object")
        return {int(k): canonical(str(v)) for k, v in raw.items()}
    except (ValueError, TypeError) as e:
        raise LabelError(f"class map {spec!r} is not a JSON object of id -> emotion: {e}") from None


def folder_label(folder: str, class_map: Mapping[int, str]) -> str:
    """The label of an image class folder: a numeric id or an emotion name."""
    if folder.isdigit():
        try:
            return class_map[int(folder)]
        except KeyError:
            raise LabelError(f"class folder {folder!r} is not in the class map "
                             f"{dict(class_map)}; pass --class_map") from None
    return canonical(folder)
