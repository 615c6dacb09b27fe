"""Writing a file so that no reader ever sees it half-written.

Everything a stage writes goes under a temporary name in the destination's
folder and is renamed onto the final name only when complete; an exception or
Ctrl-C removes the temporary file and leaves any previous file untouched.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

PARTIAL_SUFFIX = ".partial"


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A new temporary path beside `path` (mode by the umask), renamed onto it on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}"
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_atomic(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """write(f) into a temporary file beside `path`, renamed onto it when whole."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)
    return Path(path)


def write_text_atomic(text: str, path: str | Path) -> Path:
    return write_atomic(path, lambda f: f.write(text.encode("utf-8")))


def write_json(path: str | Path, obj: object) -> Path:
    """`obj` as indented JSON, written atomically."""
    return write_text_atomic(json.dumps(obj, indent=2), path)


def write_npz(path: str | Path, arrays: dict[str, np.ndarray], *,
              compressed: bool = False) -> Path:
    """Plain arrays (no pickles: np.load needs no allow_pickle), written atomically."""
    save = np.savez_compressed if compressed else np.savez
    return write_atomic(path, lambda f: save(f, **arrays))


def save_atomic(obj: dict, path: str | Path) -> Path:
    """torch.save a plain-data artifact under a temporary name, renamed when whole."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def check_format(d: object, path: str | Path, *, fmt: str, version: int, what: str,
                 made_by: str) -> dict:
    """Refuse, in one line, a loaded artifact of another format or format version."""
    from emotion.core.errors import SchemaError

    hint = f"run {made_by} to make one, or give the path of the one it saved"
    if not isinstance(d, dict) or d.get("format") != fmt:
        article = "an" if what[:1].lower() in "aeiou" else "a"
        raise SchemaError(f"{path} is not {article} {what} file; {hint}")
    if d.get("format_version") != version:
        raise SchemaError(f"{path} has {what} format {d.get('format_version')}, this code "
                          f"reads {version}; re-run {made_by}")
    return d


def read_artifact(path: str | Path, load: Callable[[Path], object], *, what: str,
                  made_by: str) -> object:
    """`load(path)`, with a missing or unreadable file refused in one line."""
    from emotion.core.errors import SchemaError

    path = Path(path)
    hint = f"run {made_by} to make one, or give the path of the one it saved"
    if not path.is_file():
        raise SchemaError(f"{what} {path} does not exist; {hint}")
    try:
        return load(path)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same advice
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SchemaError(f"{path} is not a readable {what} ({first}); {hint}") from None


def torch_load(path: str | Path) -> object:
    """Plain data only (weights_only): loading runs no code from the file."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def load_plain(path: str | Path, *, fmt: str, version: int, what: str, made_by: str) -> dict:
    """A plain-data torch artifact, checked for its format and version.

    Every refusal is one line naming `made_by`, the stage that writes such a file.
    """
    d = read_artifact(path, torch_load, what=what, made_by=made_by)
    return check_format(d, path, fmt=fmt, version=version, what=what, made_by=made_by)
