"""The service's settings: every one from the environment, overridable for tests."""

from __future__ import annotations

import os

from emotion.core.errors import EmotionError
from emotion.core.paths import DEFAULT

# name: (type, default). Every one can be set in the environment.
SETTINGS: dict[str, tuple[type, object]] = {
    "EMBEDDER_PATH": (str, str(DEFAULT.embedder)),
    "MULTIMODAL_PATH": (str, str(DEFAULT.multimodal)),
    "ISOLATION_PATH": (str, str(DEFAULT.isolation)),
    "DEVICE": (str, "cpu"),
    "TORCH_THREADS": (int, 0),          # 0: torch's default
    "MAX_UPLOAD_MB": (float, 200.0),
    "MAX_MEDIA_SECONDS": (float, 3600.0),
    "MAX_CONCURRENT": (int, 2),         # /analyze requests admitted per worker at once
    "MAX_QUEUE": (int, 6),              # /analyze requests waiting for a slot, per worker
    "MAX_WAIT": (float, 30.0),          # seconds a request waits for a slot at most
    "RETRY_AFTER": (int, 5),            # seconds, in 503 answers
    "UPLOAD_DIR": (str, ""),            # '': the system's temporary folder
    "BACKEND_URL": (str, ""),
    "BACKEND_TIMEOUT": (float, 5.0),    # seconds per attempt
    "BACKEND_RETRIES": (int, 2),        # attempts after the first
    "BACKEND_DEADLINE": (float, 10.0),  # seconds for all attempts together
    "FLASK_CORS_ORIGINS": (str, ""),    # comma-separated; none when empty
    # jobs (emotion/serve/jobs): POST /jobs, the emotion-worker processes
    "JOBS_DIR": (str, ""),              # the SQLite queue and store, and queued media; "": no jobs
    "JOBS_REDIS_URL": (str, ""),        # redis://host:6379/0: queue and store there instead
    "JOBS_MAX_ATTEMPTS": (int, 3),      # runs of a job whose worker died, at most
    "JOBS_STALE_SECONDS": (float, 60.0),   # a running job unheard of this long is retried
    "JOBS_HEARTBEAT_SECONDS": (float, 5.0),  # how often a worker says it is alive
    "JOBS_RETENTION_HOURS": (float, 168.0),  # ended jobs and results are kept this long
    "JOBS_MEDIA_BUDGET_MB": (float, 10_000.0),  # queued media on disk, at most
    "JOBS_MAX_MEDIA_SECONDS": (float, 4 * 3600.0),  # longer media fails its job (413)
}


def load_settings(overrides: dict | None = None) -> dict:
    """SETTINGS from the environment, then `overrides`; a bad value is an EmotionError."""
    out: dict = {}
    for name, (kind, default) in SETTINGS.items():
        raw = os.environ.get(name)
        if raw is None or raw.strip() == "":
            out[name] = default
            continue
        try:
            out[name] = kind(raw.strip())
        except ValueError:
            raise EmotionError(f"{name}={raw!r}: expected {kind.__name__}") from None
    out.update(overrides or {})
    for name in ("MAX_UPLOAD_MB", "MAX_MEDIA_SECONDS", "MAX_CONCURRENT", "MAX_WAIT",
                 "BACKEND_TIMEOUT", "BACKEND_DEADLINE", "JOBS_MAX_ATTEMPTS",
                 "JOBS_STALE_SECONDS", "JOBS_HEARTBEAT_SECONDS", "JOBS_RETENTION_HOURS",
                 "JOBS_MEDIA_BUDGET_MB", "JOBS_MAX_MEDIA_SECONDS"):
        if not float(out[name]) > 0:
            raise EmotionError(f"{name} must be positive, not {out[name]!r}")
    for name in ("BACKEND_RETRIES", "MAX_QUEUE"):
        if int(out[name]) < 0:
            raise EmotionError(f"{name} must be 0 or more, not {out[name]!r}")
    return out


def threads_needed(settings: dict) -> int:
    """gunicorn threads a worker needs: one per slot and per queue place, and one more
    that answers /health, /ready and the quick 503s while all those are taken."""
    return int(settings["MAX_CONCURRENT"]) + int(settings["MAX_QUEUE"]) + 1
