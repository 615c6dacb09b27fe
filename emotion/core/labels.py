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
EMOVO_CODES = {"dis": "disgust", "gio": "happy", "neu": "neutral", "pau": "fear",
               "rab": "angry", "tri": "sad", "sor": "surprise"}

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
    """A clip's label, its speaker and its corpus. The speaker id carries the corpus
    (``ravdess_07``, ``crema_1001``, ``emovo_f1``): two corpora's actor 1 are two people,
    and no speaker-disjoint split can put one person on both sides."""

    label: str
    speaker: str
    corpus: str = ""


def corpus_speaker(corpus: str, speaker: str) -> str:
    """The corpus-prefixed speaker id (left as it is when it has the prefix already)."""
    speaker = speaker.strip()
    return speaker if speaker.startswith(f"{corpus}_") else f"{corpus}_{speaker}"


def corpus_of_speaker(speaker: str) -> str:
    """The corpus of a corpus-prefixed speaker id (its part before the first "_")."""
    return speaker.split("_", 1)[0] if "_" in speaker else ""


def corpus_name(text: str) -> str:
    """A folder's name as a corpus name: lower case, runs of other characters as "-"
    (so that "_" separates the corpus from the speaker only)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "corpus"


_CREMA_RE = re.compile(
    r"^(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emo>[A-Z]{3})_(?P<lvl>[A-Z]{1,2}|\d{1,2})$")
_RAVDESS_RE = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
_EMOVO_RE = re.compile(r"^(?P<emo>[a-z]{3})-(?P<spk>[fm]\d)-(?P<sentence>[a-z]\d)$")


def parse_crema(stem: str) -> ClipLabel | None:
    """`1001_DFA_ANG_XX` -> (angry, speaker crema_1001); None if not CREMA-D."""
    m = _CREMA_RE.match(stem)
    if not m or m["emo"] not in CREMA_CODES:
        return None
    return ClipLabel(CREMA_CODES[m["emo"]], f"crema_{m['actor']}", "crema")


def parse_ravdess(stem: str) -> ClipLabel | None:
    """`03-01-05-02-01-01-07` -> (angry, speaker ravdess_07); None if not RAVDESS."""
    m = _RAVDESS_RE.match(stem)
    if not m or m.group(3) not in RAVDESS_CODES:
        return None
    return ClipLabel(RAVDESS_CODES[m.group(3)], f"ravdess_{m.group(7)}", "ravdess")


def parse_emovo(stem: str) -> ClipLabel | None:
    """EMOVO's `EMO-SPK-SENTENCE`: `rab-f1-b1` -> (angry, speaker emovo_f1); None if not
    EMOVO (the case of the name does not matter)."""
    m = _EMOVO_RE.match(stem.lower())
    if not m or m["emo"] not in EMOVO_CODES:
        return None
    return ClipLabel(EMOVO_CODES[m["emo"]], f"emovo_{m['spk']}", "emovo")


# Every file naming convention, by corpus name; parse_clip_name tries them in order.
NAMINGS = {"crema": parse_crema, "ravdess": parse_ravdess, "emovo": parse_emovo}


def naming_of(stem: str) -> str | None:
    """The corpus whose naming convention `stem` follows, or None."""
    return next((name for name, parse in NAMINGS.items() if parse(stem) is not None), None)


def parse_clip_name(path: str | Path) -> ClipLabel:
    """Label, corpus-prefixed speaker and corpus from a CREMA-D, RAVDESS or EMOVO name."""
    stem = Path(path).stem
    for parse in NAMINGS.values():
        found = parse(stem)
        if found is not None:
            return found
    raise LabelError(
        f"cannot read a label from the name {Path(path).name!r}: expected CREMA-D "
        "(1001_DFA_ANG_XX.wav), RAVDESS (03-01-05-02-01-01-07.wav) or EMOVO "
        "(rab-f1-b1.wav); for other corpora put a labels.csv (path,label,speaker) in the "
        "audio folder"
    )


def read_labels_csv(csv_path: str | Path, *, corpus: str | None = None
                    ) -> dict[str, ClipLabel]:
    """Read a `path,label,speaker[,corpus]` manifest; paths are relative to its folder.

    A clip's corpus is its `corpus` column, else `corpus`, else the corpus whose naming
    convention every listed file follows (EMOVO's folder lists EMOVO names), else the
    folder's name. Speakers are prefixed with their corpus. Returns a map from the
    resolved path (str) to its ClipLabel.
    """
    csv_path = Path(csv_path)
    base = csv_path.parent
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"path", "label", "speaker"} - set(reader.fieldnames or ())
        if missing:
            raise LabelError(f"{csv_path} lacks the column(s) {sorted(missing)}; "
                             "expected a header line: path,label,speaker")
        rows = list(enumerate(reader, start=2))
    if corpus is None:
        namings = {naming_of(Path(row["path"] or "").stem) for _, row in rows}
        corpus = namings.pop() if len(namings) == 1 and None not in namings \
            else corpus_name(base.name)
    out: dict[str, ClipLabel] = {}
    for row_no, row in rows:
        try:
            label = canonical(row["label"] or "")
        except LabelError as e:
            raise LabelError(f"{csv_path}:{row_no}: {e}") from None
        speaker = (row["speaker"] or "").strip()
        if not speaker:
            raise LabelError(f"{csv_path}:{row_no}: empty speaker")
        own = corpus_name(row["corpus"]) if (row.get("corpus") or "").strip() else corpus
        out[str((base / row["path"]).resolve())] = ClipLabel(
            label, corpus_speaker(own, speaker), own)
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
