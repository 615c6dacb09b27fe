"""The HTTP service: POST /analyze, GET /health, /ready and /openapi.json.

:func:`create_app` builds the Flask app and loads the three artifacts once
(an :class:`~emotion.analysis.Analyzer`, the same core predict.py uses); under
gunicorn each worker imports app.py and so builds its own (see gunicorn.conf.py).

A request to /analyze, in order:

1. takes one of the worker's MAX_CONCURRENT admission slots, or is answered
   503 with Retry-After at once (no queue grows without bound);
2. receives the upload straight into a private temporary file with a generated
   name (``UploadRequest``), removed when the request ends, whatever happens;
3. validates the form, judges the file by its content (PyAV), analyses it (one
   analysis at a time per worker: the analysis is CPU-bound, and OpenCV's face
   cascade is not safe to share between threads);
4. answers JSON and, when BACKEND_URL is set, forwards the result within a
   bounded time, saying in ``forwarded`` whether that worked.

Every error is JSON ``{"error", "detail"}``. Settings come from the environment
(:data:`SETTINGS`); ``create_app(config)`` overrides them, for tests.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from flask import Flask, Request, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from .analysis import DEFAULT_EMBEDDER, DEFAULT_ISOLATION, DEFAULT_MULTIMODAL, Analyzer, Options
from .errors import EmotionError, MediaError, MediaTooLongError, UndecodableMediaError
from .media import probe

log = logging.getLogger(__name__)

OPENAPI = Path(__file__).resolve().parents[1] / "openapi.json"
KINDS = ("audio", "video")
ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")          # meeting_id, participant_id
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")   # a client's X-Request-ID we keep
UPLOAD_PREFIX = "emotion-uploads-"

# name: (type, default). Every one can be set in the environment.
SETTINGS: dict[str, tuple[type, object]] = {
    "EMBEDDER_PATH": (str, DEFAULT_EMBEDDER),
    "MULTIMODAL_PATH": (str, DEFAULT_MULTIMODAL),
    "ISOLATION_PATH": (str, DEFAULT_ISOLATION),
    "DEVICE": (str, "cpu"),
    "TORCH_THREADS": (int, 0),          # 0: torch's default
    "MAX_UPLOAD_MB": (float, 200.0),
    "MAX_MEDIA_SECONDS": (float, 3600.0),
    "MAX_CONCURRENT": (int, 2),         # /analyze requests admitted per worker at once
    "RETRY_AFTER": (int, 5),            # seconds, in 503 answers
    "UPLOAD_DIR": (str, ""),            # '': the system's temporary folder
    "BACKEND_URL": (str, ""),
    "BACKEND_TIMEOUT": (float, 5.0),    # seconds per attempt
    "BACKEND_RETRIES": (int, 2),        # attempts after the first
    "BACKEND_DEADLINE": (float, 10.0),  # seconds for all attempts together
    "FLASK_CORS_ORIGINS": (str, ""),    # comma-separated; none when empty
}


class ServiceError(Exception):
    """An expected refusal: answered with `status` and {"error", "detail"}."""

    def __init__(self, status: int, error: str, detail: str, *, retry_after: int | None = None):
        super().__init__(detail)
        self.status, self.error, self.detail, self.retry_after = status, error, detail, retry_after


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
    for name in ("MAX_UPLOAD_MB", "MAX_MEDIA_SECONDS", "MAX_CONCURRENT", "BACKEND_TIMEOUT",
                 "BACKEND_DEADLINE"):
        if not float(out[name]) > 0:
            raise EmotionError(f"{name} must be positive, not {out[name]!r}")
    if int(out["BACKEND_RETRIES"]) < 0:
        raise EmotionError(f"BACKEND_RETRIES must be 0 or more, not {out['BACKEND_RETRIES']!r}")
    return out


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


# ----------------------------------------------------------------- forwarding
@dataclass(frozen=True)
class Forwarder:
    """POST results to a backend: bounded retries within a deadline; never raises."""

    url: str
    timeout: float = 5.0
    retries: int = 2
    deadline: float = 10.0
    backoff: float = 0.25

    def send(self, payload: dict, request_id: str) -> dict:
        """{"enabled", "ok", "attempts", "status", "error", "seconds"}, within `deadline`.

        The attempts run in a daemon thread that the request waits for at most
        `deadline` seconds: a backend that accepts the connection and then
        trickles its answer cannot hold the client past it either. ``ok`` false
        after the deadline means "not confirmed": the backend may still get it,
        and can tell repeats apart by the X-Request-ID header.
        """
        data = json.dumps(payload).encode()
        state = {"enabled": True, "ok": False, "attempts": 0, "status": None, "error": None}
        done = threading.Event()
        started = time.monotonic()
        threading.Thread(target=self._attempts, args=(data, request_id, state, done, started),
                         name="forward", daemon=True).start()
        confirmed = done.wait(self.deadline)
        out = dict(state)
        if not confirmed:
            out.update(ok=False, error=f"no answer from the backend within {self.deadline:g} s")
        out["seconds"] = round(time.monotonic() - started, 3)
        (log.info if out["ok"] else log.warning)(
            "forward %s: ok=%s attempts=%d status=%s error=%s", request_id, out["ok"],
            out["attempts"], out["status"], out["error"])
        return out

    def _attempts(self, data: bytes, request_id: str, state: dict, done: threading.Event,
                  started: float) -> None:
        import requests

        end = started + self.deadline
        headers = {"Content-Type": "application/json", "X-Request-ID": request_id}
        try:
            for attempt in range(1, self.retries + 2):
                left = end - time.monotonic()
                if left <= 0:
                    break
                state["attempts"] = attempt
                try:
                    t = min(self.timeout, left)
                    r = requests.post(self.url, data=data, headers=headers, timeout=(t, t),
                                      allow_redirects=False)
                    r.close()
                    state["status"] = r.status_code
                    if 200 <= r.status_code < 300:
                        state.update(ok=True, error=None)
                        return
                    state["error"] = f"the backend answered {r.status_code}"
                    if r.status_code < 500 and r.status_code not in (408, 429):
                        return  # the same request would be refused again
                except requests.RequestException as e:
                    # the class only: the message holds the backend's address
                    state["error"] = type(e).__name__
                    log.debug("forward %s attempt %d: %s", request_id, attempt, e)
                pause = min(self.backoff * 2 ** (attempt - 1), end - time.monotonic())
                if attempt <= self.retries and pause > 0:
                    time.sleep(pause)
        finally:
            done.set()


# ----------------------------------------------------------------- the app
@dataclass
class Service:
    """What lives as long as the worker: kept in app.extensions["emotion"]."""

    settings: dict
    analyzer: Analyzer | None
    upload_dir: str
    slots: threading.BoundedSemaphore
    analysis_lock: threading.Lock
    forwarder: Forwarder | None
    openapi: bytes


def create_app(config: dict | None = None, analyzer=None) -> Flask:
    """The service. `config` overrides the environment's SETTINGS and Flask's config.

    The artifacts load here, once; a missing or mismatched one raises
    ArtifactError. `analyzer` injects a ready one (tests); ``LOAD_MODELS=False``
    in `config` builds the app without models (/ready then answers 503).
    """
    config = dict(config or {})
    load_models = config.pop("LOAD_MODELS", True)
    settings = load_settings({k: v for k, v in config.items() if k in SETTINGS})
    app = Flask(__name__)
    app.request_class = UploadRequest
    app.json.sort_keys = False
    app.config.update({k: v for k, v in config.items() if k not in SETTINGS})
    app.config["MAX_CONTENT_LENGTH"] = int(float(settings["MAX_UPLOAD_MB"]) * 2**20)

    if analyzer is None and load_models:
        analyzer = _load_analyzer(settings)
    upload_dir = _private_upload_dir(settings["UPLOAD_DIR"] or None)
    app.extensions["emotion"] = Service(
        settings=settings, analyzer=analyzer, upload_dir=upload_dir,
        slots=threading.BoundedSemaphore(int(settings["MAX_CONCURRENT"])),
        analysis_lock=threading.Lock(),
        forwarder=Forwarder(settings["BACKEND_URL"], float(settings["BACKEND_TIMEOUT"]),
                            int(settings["BACKEND_RETRIES"]),
                            float(settings["BACKEND_DEADLINE"]))
        if settings["BACKEND_URL"] else None,
        openapi=OPENAPI.read_bytes())

    origins = [o.strip() for o in settings["FLASK_CORS_ORIGINS"].split(",") if o.strip()]
    if origins:
        from flask_cors import CORS

        CORS(app, origins=origins, expose_headers=["X-Request-ID", "Retry-After"])
    _register_request_log(app)
    _register_errors(app)
    _register_routes(app)
    log.info("service ready: models %s, uploads in %s, max %s MB, %s concurrent, backend %s",
             "loaded" if analyzer is not None else "not loaded", upload_dir,
             settings["MAX_UPLOAD_MB"], settings["MAX_CONCURRENT"],
             "on" if settings["BACKEND_URL"] else "off")
    return app


def _load_analyzer(settings: dict) -> Analyzer:
    from .analysis import ArtifactError

    if settings["TORCH_THREADS"]:
        import torch

        torch.set_num_threads(int(settings["TORCH_THREADS"]))
    started = time.perf_counter()
    try:
        analyzer = Analyzer(settings["EMBEDDER_PATH"], settings["MULTIMODAL_PATH"],
                            settings["ISOLATION_PATH"], device=settings["DEVICE"],
                            options=Options(max_duration=float(settings["MAX_MEDIA_SECONDS"])))
    except ArtifactError as e:
        raise ArtifactError(f"{e} (the service reads EMBEDDER_PATH, MULTIMODAL_PATH and "
                            "ISOLATION_PATH)") from None
    log.info("models loaded in %.1f s: embedder %s", time.perf_counter() - started,
             analyzer.embedder.embedder_id)
    return analyzer


def _private_upload_dir(parent: str | None) -> str:
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


def _service() -> Service:
    return current_app.extensions["emotion"]


def _register_request_log(app: Flask) -> None:
    @app.before_request
    def start() -> None:
        g.started = time.perf_counter()
        rid = request.headers.get("X-Request-ID", "")
        g.request_id = rid if REQUEST_ID_RE.fullmatch(rid) else uuid.uuid4().hex

    @app.after_request
    def finish(response):
        rid = g.get("request_id") or uuid.uuid4().hex
        response.headers["X-Request-ID"] = rid
        ms = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        path = re.sub(r"[^\x21-\x7e]", "?", request.path)[:200]
        log.info("request %s %s %s %d %.1f ms", rid, request.method, path,
                 response.status_code, ms)
        return response

    @app.teardown_request
    def remove_uploads(exc) -> None:
        for path in getattr(request, "upload_paths", ()):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _error(status: int, error: str, detail: str, headers=None):
    response = jsonify(error=error, detail=detail)
    response.status_code = status
    for k, v in headers or ():
        response.headers[k] = v
    return response


def _register_errors(app: Flask) -> None:
    @app.errorhandler(ServiceError)
    def service_error(e: ServiceError):
        headers = [("Retry-After", str(e.retry_after))] if e.retry_after is not None else []
        return _error(e.status, e.error, e.detail, headers)

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        code = e.code or 500
        if code == 413:
            mb = _service().settings["MAX_UPLOAD_MB"]
            return _error(413, "upload_too_large", f"the upload is larger than the limit "
                          f"of {mb:g} MB (MAX_UPLOAD_MB)")
        headers = [(k, v) for k, v in e.get_headers() if k.lower() != "content-type"]
        name = re.sub(r"[^a-z0-9]+", "_", (e.name or "error").lower()).strip("_")
        return _error(code, name, e.description or name, headers)

    @app.errorhandler(Exception)
    def unexpected(e: Exception):
        rid = g.get("request_id", "?")
        log.exception("request %s failed unexpectedly", rid)
        return _error(500, "internal_error", f"an unexpected error occurred; the server's log "
                      f"has it under request id {rid}")


def _register_routes(app: Flask) -> None:
    @app.get("/health")
    def health():
        return jsonify(status="ok")

    @app.get("/ready")
    def ready():
        svc = _service()
        if svc.analyzer is None:
            raise ServiceError(503, "not_ready", "the models are not loaded",
                               retry_after=int(svc.settings["RETRY_AFTER"]))
        return jsonify(status="ready", models=_models(svc.analyzer.used()))

    @app.get("/openapi.json")
    def openapi():
        return app.response_class(_service().openapi, mimetype="application/json")

    @app.post("/analyze")
    def analyze():
        svc = _service()
        retry = int(svc.settings["RETRY_AFTER"])
        if svc.analyzer is None:
            raise ServiceError(503, "not_ready", "the models are not loaded", retry_after=retry)
        if not svc.slots.acquire(blocking=False):
            raise ServiceError(503, "overloaded", f"this worker already has "
                               f"{svc.settings['MAX_CONCURRENT']} analyses in progress; "
                               f"retry after {retry} s", retry_after=retry)
        try:
            fields = _form()
            path = _upload()
            kind = fields["type"]
            _judge(path, kind, float(svc.settings["MAX_MEDIA_SECONDS"]))
            with svc.analysis_lock:
                result = _run(svc.analyzer, path, kind)
        finally:
            svc.slots.release()
        body = {"request_id": g.request_id, **fields, **_summary(result)}
        if svc.forwarder is not None:
            body["forwarded"] = svc.forwarder.send(body, g.request_id)
        else:
            body["forwarded"] = {"enabled": False, "ok": None, "attempts": 0, "status": None,
                                 "error": None, "seconds": 0.0}
        return jsonify(body)


# ----------------------------------------------------------------- /analyze steps
def _form() -> dict:
    out = {}
    for name in ("meeting_id", "participant_id"):
        value = request.form.get(name)
        if value is None or value == "":
            raise ServiceError(400, "invalid_request", f"{name} is required")
        if not ID_RE.fullmatch(value):
            raise ServiceError(400, "invalid_request", f"{name} must be 1 to 128 characters "
                               "among letters, digits and . _ : -")
        out[name] = value
    kind = request.form.get("type")
    if kind not in KINDS:
        raise ServiceError(400, "invalid_request", "type is required: audio or video")
    out["type"] = kind
    return out


def _upload() -> str:
    upload = request.files.get("file")
    if upload is None:
        raise ServiceError(400, "invalid_request", "file is required (a multipart file part "
                           "named 'file')")
    upload.stream.flush()
    path = upload.stream.name
    if os.path.getsize(path) == 0:
        raise ServiceError(400, "invalid_request", "file is empty")
    return path


def _judge(path: str, kind: str, max_seconds: float) -> None:
    """What the file is, by its content; refuse early what cannot be analysed."""
    try:
        info = probe(path)
    except MediaError:
        raise ServiceError(415, "unsupported_media", "unsupported or undecodable media: "
                           "send audio or video that FFmpeg can decode") from None
    if kind == "video" and not info.has_video:
        raise ServiceError(422, "unprocessable_media", "type is video but the file holds no "
                           "video stream" + (" (it is audio: send type=audio)"
                                             if info.has_audio else ""))
    if info.duration > max_seconds:
        raise ServiceError(413, "media_too_long", f"the media lasts {info.duration:.0f} s, "
                           f"longer than the maximum of {max_seconds:g} s")


def _run(analyzer, path: str, kind: str) -> dict:
    try:
        return analyzer.analyze_file(path, kind)
    except MediaError as e:
        # messages name the file by its base name only: a generated one, replaced here
        detail = str(e).replace(os.path.basename(path), "the upload")
        if isinstance(e, MediaTooLongError):
            raise ServiceError(413, "media_too_long", detail) from None
        if isinstance(e, UndecodableMediaError):
            raise ServiceError(415, "unsupported_media",
                               f"unsupported or undecodable media: {detail}") from None
        raise ServiceError(422, "unprocessable_media", detail) from None


def _models(used: dict) -> dict:
    """What the artifacts are, without where they are on this server."""
    return {k: v for k, v in used.items() if k != "artifacts"}


def _summary(result: dict) -> dict:
    return {
        "duration": result["duration"],
        "emotions": {"dominant": result["emotion"], "probabilities": result["emotion_probs"]},
        "anomaly": {"score": result["anomaly_score"], "flag": result["anomaly_flag"]},
        "timeline": result["timeline"],
        "anomalies": result["anomalies"],
        "windows": result["windows"],
        "models": _models(result["used"]),
        "processing_seconds": result["processing_seconds"],
    }
