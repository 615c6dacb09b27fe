"""The emotion service over HTTP: POST /analyze, GET /health, /ready, /openapi.json.

    python app.py                              # Flask's server on 0.0.0.0:5002 (HOST, PORT)
    gunicorn -w 4 app:app                      # production; reads ./gunicorn.conf.py

    curl -F meeting_id=m1 -F participant_id=p1 -F type=video -F file=@talk.mp4 \
        http://localhost:5002/analyze

The artifacts come from EMBEDDER_PATH, MULTIMODAL_PATH and ISOLATION_PATH
(default: the paths the stages write: saved_models/embedder.pt,
saved_models/multimodal_best.pth, results/anomaly/isolation_forest.joblib); a
missing or mismatched one stops start-up with a one-line reason. The other
settings (limits, CORS, forwarding to BACKEND_URL, LOG_LEVEL) are listed in
emotion/service.py; the API is described in openapi.json.

Importing this module builds nothing: the app is built on first access to
``app.app``, which gunicorn makes once in each worker after the fork.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

from emotion import cli
from emotion.errors import EmotionError
from emotion.service import create_app

log = logging.getLogger("app")

WORKER_BOOT_ERROR = 3  # gunicorn stops the whole server when a worker exits with it


def __getattr__(name: str):
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    cli.setup_logging()
    try:
        built = create_app()
    except EmotionError as e:
        log.critical("cannot start the service: %s", e)
        raise SystemExit(WORKER_BOOT_ERROR) from None
    globals()["app"] = built
    return built


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
