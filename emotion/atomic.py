"""Writing a file so that no reader ever sees it half-written.

Everything a stage writes goes under a temporary name in the destination's
folder and is renamed onto the final name only when complete; an exception or
Ctrl-C removes the temporary file and leaves any previous file untouched.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

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


def save_atomic(obj: dict, path: str | Path) -> Path:
    """torch.save a plain-data artifact under a temporary name, renamed when whole."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def load_plain(path: str | Path, *, fmt: str, version: int, what: str, made_by: str) -> dict:
    """A plain-data torch artifact (weights_only), checked for its format and version.

    Every refusal is one line naming `made_by`, the stage that writes such a file.
    """
    import torch

    from .errors import SchemaError

    path = Path(path)
    hint = f"run {made_by} to make one, or give the path of the one it saved"
    if not path.is_file():
        raise SchemaError(f"{what} {path} does not exist; {hint}")
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same advice
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SchemaError(f"{path} is not a readable {what} ({first}); {hint}") from None
    if not isinstance(d, dict) or d.get("format") != fmt:
        raise SchemaError(f"{path} is not a {what} file; {hint}")
    if d.get("format_version") != version:
        raise SchemaError(f"{path} has {what} format {d.get('format_version')}, this code "
                          f"reads {version}; re-run {made_by}")
    return d
