"""The HTTP service: POST /analyze, GET /health, /ready and /openapi.json.

:func:`create_app` builds the Flask app and loads the three artifacts once
(an :class:`~emotion.serve.analyzer.Analyzer`, the same core predict.py uses); under
gunicorn each worker imports app.py and so builds its own (see gunicorn.conf.py).

A request to /analyze, in order:

1. is refused with 413 at once when its Content-Length is over MAX_UPLOAD_MB;
2. takes one of the worker's MAX_CONCURRENT admission slots, waiting for one
   (first come, first served) while at most MAX_QUEUE others wait and for at
   most MAX_WAIT seconds, else is answered 503 with Retry-After
   (:mod:`emotion.serve.admission`); the body is not read while it waits;
3. receives the upload straight into a private temporary file with a generated
   name (``UploadRequest``; a chunked body is cut at MAX_UPLOAD_MB), removed
   when the request ends, whatever happens;
4. validates the form, judges the file by its content (PyAV), analyses it (one
   analysis at a time per worker: the analysis is CPU-bound, and OpenCV's face
   cascade is not safe to share between threads);
5. when BACKEND_URL is set, forwards the result within BACKEND_DEADLINE,
   saying in ``forwarded`` whether that worked, and gives its slot back;
6. answers JSON, with ``queue_seconds``: the time it waited for its slot and
   for the analysis (also in the request's log line).

A body left unread by a refusal is read and dropped after the answer
(``discard_unread_body``), so that the client gets the answer, not a reset.

Every error is JSON ``{"error", "detail"}``. Settings come from the environment
(:data:`SETTINGS`); ``create_app(config)`` overrides them, for tests.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from flask import Flask, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from emotion.core.errors import ArtifactError
from emotion.serve.admission import Admission, Refused
from emotion.serve.analyzer import (
    Analyzer,
    Options,
)
from emotion.serve.answers import ServiceError
from emotion.serve.answers import judge as _judge
from emotion.serve.answers import public_models as _models
from emotion.serve.answers import read_form as _form
from emotion.serve.answers import run_analysis as _run
from emotion.serve.answers import summary as _summary
from emotion.serve.answers import uploaded_file as _upload
from emotion.serve.forwarder import Forwarder
from emotion.serve.jobs.routes import register_jobs
from emotion.serve.page import register_page
from emotion.serve.settings import SETTINGS, load_settings
from emotion.serve.uploads import (
    DRAIN_FACTOR,
    UploadRequest,
    discard_unread_body,
    private_upload_dir,
)

log = logging.getLogger(__name__)

OPENAPI = Path(__file__).resolve().parent / "openapi.json"
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")   # a client's X-Request-ID we keep


# ----------------------------------------------------------------- the app
@dataclass
class Service:
    """What lives as long as the worker: kept in app.extensions["emotion"]."""

    settings: dict
    analyzer: Analyzer | None
    upload_dir: str
    admission: Admission
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
    upload_dir = private_upload_dir(settings["UPLOAD_DIR"] or None)
    app.extensions["emotion"] = Service(
        settings=settings, analyzer=analyzer, upload_dir=upload_dir,
        admission=Admission(int(settings["MAX_CONCURRENT"]), int(settings["MAX_QUEUE"]),
                            float(settings["MAX_WAIT"])),
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
    register_page(app)  # GET /: the page for people (emotion/serve/page.py)
    register_jobs(app, settings)  # /jobs, when JOBS_DIR is set (emotion/serve/jobs)
    log.info("service ready: models %s, uploads in %s, max %s MB, %s concurrent, %s waiting "
             "at most %s s, backend %s", "loaded" if analyzer is not None else "not loaded",
             upload_dir, settings["MAX_UPLOAD_MB"], settings["MAX_CONCURRENT"],
             settings["MAX_QUEUE"], settings["MAX_WAIT"],
             "on" if settings["BACKEND_URL"] else "off")
    return app


def _load_analyzer(settings: dict) -> Analyzer:
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
        queued = f" queue {g.queue_seconds:.3f} s" if "queue_seconds" in g else ""
        log.info("request %s %s %s %d %.1f ms%s", rid, request.method, path,
                 response.status_code, ms, queued)
        if request.content_length or request.headers.get("Transfer-Encoding"):
            # after the answer is sent: what a refusal left unread (nothing otherwise)
            most = DRAIN_FACTOR * current_app.config["MAX_CONTENT_LENGTH"]
            response.call_on_close(partial(discard_unread_body, request.environ, most))
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
        length = request.content_length
        if length is not None and length > current_app.config["MAX_CONTENT_LENGTH"]:
            raise RequestEntityTooLarge()  # before waiting, and without reading the body
        g.queue_seconds = _admit(svc.admission, retry)
        try:
            fields = _form()
            path = _upload()
            kind = fields["type"]
            _judge(path, kind, float(svc.settings["MAX_MEDIA_SECONDS"]))
            waited = time.perf_counter()
            with svc.analysis_lock:
                g.queue_seconds += time.perf_counter() - waited
                result = _run(svc.analyzer, path, kind)
            body = {"request_id": g.request_id, **fields, **_summary(result),
                    "queue_seconds": round(g.queue_seconds, 3)}
            body["forwarded"] = _forward(svc.forwarder, body)
        finally:
            svc.admission.release()
        return jsonify(body)


# ----------------------------------------------------------------- /analyze steps
def _admit(admission: Admission, retry: int) -> float:
    """A slot for this request (the seconds waited for it), or a 503 with Retry-After."""
    try:
        return admission.acquire()
    except Refused as e:
        log.warning("request %s refused: %s", g.request_id, e)
        raise ServiceError(503, "overloaded", f"{e}; retry after {retry} s",
                           retry_after=retry) from None


def _forward(forwarder: Forwarder | None, body: dict) -> dict:
    """Within BACKEND_DEADLINE (the slot is held until then, never longer)."""
    if forwarder is None:
        return {"enabled": False, "ok": None, "attempts": 0, "status": None, "error": None,
                "seconds": 0.0}
    return forwarder.send(body, g.request_id)
