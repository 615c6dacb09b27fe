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
