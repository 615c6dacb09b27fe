"""Uploads: straight into private temporary files, removed whatever happens.

Each worker process has its own 0700 folder (:func:`private_upload_dir`); a
request's files get generated names in it (:class:`UploadRequest`) and are
removed at the request's teardown. Folders left by dead processes are swept
when a new one starts (a worker killed mid-request leaves its folder behind).

A request refused before its body was read (413, 503) has the rest of the body
read and dropped after the answer is sent (:func:`discard_unread_body`): a
server that closes a connection with unread data makes the kernel reset it, and
a client that reads the answer only after sending everything would see a
"connection reset" instead of the JSON error.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
import time
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


DRAIN_SECONDS = 5.0   # at most this long reading and dropping a refused body
DRAIN_FACTOR = 4      # and at most this many times MAX_UPLOAD_MB


def discard_unread_body(environ: dict, max_bytes: int, seconds: float = DRAIN_SECONDS) -> int:
    """Read what is left of the request's body and drop it; return how many bytes.

    Stops at `max_bytes` or after `seconds` (the server then closes the
    connection). Only where the server ends the body stream itself
    (``wsgi.input_terminated``: gunicorn, and Werkzeug for chunked bodies):
    elsewhere a read past the body could wait for the next request.
    """
    stream = environ.get("wsgi.input")
    if stream is None or not environ.get("wsgi.input_terminated"):
        return 0
    sock = environ.get("gunicorn.socket")   # to bound each read by the time left
    prior = sock.gettimeout() if sock is not None else None
    end, dropped = time.monotonic() + seconds, 0
    try:
        while dropped < max_bytes and (left := end - time.monotonic()) > 0:
            if sock is not None:
                sock.settimeout(left)
            chunk = stream.read(min(1 << 16, max_bytes - dropped))
            if not chunk:
                break
            dropped += len(chunk)
    except Exception:  # noqa: BLE001 - a timeout, a reset, a bad chunk: the server closes it
        pass
    finally:
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.settimeout(prior)
    return dropped
