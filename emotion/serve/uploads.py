"""Uploads: straight into private temporary files, removed whatever happens.

Each worker process has its own 0700 folder (:func:`private_upload_dir`); a
request's files get generated names in it (:class:`UploadRequest`) and are
removed at the request's teardown. Folders left by dead processes are swept
when a new one starts.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

from flask import Request, current_app

UPLOAD_PREFIX = "emotion-uploads-"


class UploadRequest(Request):
    """Uploaded files go straight into private temporary files with generated names.

    The client's file name is never used (nor trusted: the content decides what
    a file is). The paths are kept on the request and removed at its teardown.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.upload_paths: list[str] = []

    def _get_file_stream(self, total_content_length, content_type, filename=None,
                         content_length=None):
        fd, path = tempfile.mkstemp(prefix="upload-", dir=current_app.extensions["emotion"]
                                    .upload_dir)
        self.upload_paths.append(path)
        f = open(path, "w+b")  # noqa: SIM115 - werkzeug owns it; closed with the request
        os.close(fd)
        return f


def private_upload_dir(parent: str | None) -> str:
    """A 0700 folder of this process's own; folders of dead processes are swept."""
    if parent:
        Path(parent).mkdir(parents=True, exist_ok=True)
    root = Path(parent or tempfile.gettempdir())
    for old in root.glob(f"{UPLOAD_PREFIX}*-*"):
        pid = old.name[len(UPLOAD_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    path = tempfile.mkdtemp(prefix=f"{UPLOAD_PREFIX}{os.getpid()}-", dir=root)
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
