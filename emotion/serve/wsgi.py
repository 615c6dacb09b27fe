"""The service's process entry points: the app gunicorn serves, and `python app.py`.

Importing this module builds nothing: :func:`worker_app` builds the app on
first use, which gunicorn does once in each worker, after the fork (app.py
exposes it as ``app:app``).
"""


from __future__ import annotations

import logging
import os
import signal
import sys

from flask import Flask

from emotion.core import cli
from emotion.core.errors import EmotionError
from emotion.serve.app import create_app

log = logging.getLogger(__name__)

WORKER_BOOT_ERROR = 3  # gunicorn stops the whole server when a worker exits with it


_built: list[Flask] = []


def worker_app() -> Flask:
    """The app of this process, built on first use; a worker that cannot load the
    models exits with gunicorn's boot-error code, which stops the whole server."""
    if not _built:
        cli.setup_logging()
        try:
            _built.append(create_app())
        except EmotionError as e:
            log.critical("cannot start the service: %s", e)
            raise SystemExit(WORKER_BOOT_ERROR) from None
    return _built[0]


def main() -> int:
    cli.setup_logging()
    try:
        service = create_app()
    except EmotionError as e:
        print(f"app.py: error: {e}", file=sys.stderr)
        return 2
    # a normal exit on SIGTERM, so that the upload folder is removed (atexit)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    service.run(host=os.environ.get("HOST", "0.0.0.0"), port=int(os.environ.get("PORT", "5002")),
                threaded=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
