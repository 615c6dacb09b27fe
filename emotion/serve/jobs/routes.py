"""/jobs in the Flask app: submit, follow, cancel and list jobs; workers do the analysis.

- ``POST /jobs``: what /analyze takes; 202 with the job's id and ``status_url``.
  The upload goes into the job's media folder (JOBS_DIR/media), refused with 507
  when the queued media would pass JOBS_MEDIA_BUDGET_MB;
- ``GET /jobs/<id>``: state, progress, time left, the windows finished so far
  (from ``?windows_from=N`` on), and when done ``result``: the JSON /analyze gives;
- ``DELETE /jobs/<id>``: cancel (a queued job at once, a running one at its next window);
- ``GET /jobs``: recent jobs, newest first (``?limit=``, ``?state=``).

With JOBS_DIR unset the routes answer 503 ``jobs_disabled`` (the app's tests and
a plain ``gunicorn app:app`` run without a queue; ``make serve`` sets it).
"""

from __future__ import annotations

import os
import re
import shutil

from flask import Blueprint, Flask, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from emotion.serve.answers import ServiceError, read_form, uploaded_file
from emotion.serve.jobs.queue import JobQueue
from emotion.serve.jobs.store import STATES, new_job_id, public

JOB_ID_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")
LOOK_AHEAD = 64         # windows a status read looks past the saved count for
LIST_LIMIT = 500

jobs = Blueprint("jobs", __name__)


def register_jobs(app: Flask, settings: dict) -> JobQueue | None:
    """The /jobs routes, and the queue they submit to when JOBS_DIR is set."""
    queue = JobQueue(settings) if settings["JOBS_DIR"] else None
    app.extensions["emotion_jobs"] = queue
    app.register_blueprint(jobs)
    return queue


def _queue() -> JobQueue:
    queue = current_app.extensions.get("emotion_jobs")
    if queue is None:
        raise ServiceError(503, "jobs_disabled", "this service runs no job queue (set JOBS_DIR; "
                           "make serve does)", retry_after=60)
    return queue


def _record(job_id: str) -> dict:
    record = _queue().store.get(job_id) if JOB_ID_RE.fullmatch(job_id) else None
    if record is None:
        raise ServiceError(404, "not_found", "no job with this id (unknown, or removed "
                           "after JOBS_RETENTION_HOURS)")
    return record


def _over_budget(queue: JobQueue, incoming: int) -> None:
    budget = float(queue.settings["JOBS_MEDIA_BUDGET_MB"])
    queued = queue.media_bytes()
    if queued + incoming > budget * 2**20:
        raise ServiceError(507, "media_budget_full",
                           f"the queued media take {queued / 2**20:.0f} MB and this upload "
                           f"{incoming / 2**20:.1f} MB, over the budget of {budget:g} MB "
                           f"(JOBS_MEDIA_BUDGET_MB): retry when queued jobs have ended",
                           retry_after=int(queue.settings["RETRY_AFTER"]))


@jobs.post("/jobs")
def submit():
    queue = _queue()
    length = request.content_length
    if length is not None and length > current_app.config["MAX_CONTENT_LENGTH"]:
        raise RequestEntityTooLarge()          # before reading the body
    if length:
        _over_budget(queue, length)
    fields = read_form()
    path = uploaded_file()
    size = os.path.getsize(path)
    _over_budget(queue, size)                  # a chunked body's real size
    job_id = new_job_id()
    media = queue.media_dir / job_id
    shutil.move(path, media)                   # a rename when on one file system
    record = queue.submit(job_id, fields, media)
    response = jsonify(public(record))
    response.status_code = 202
    response.headers["Location"] = f"/jobs/{job_id}"
    return response


@jobs.get("/jobs/<job_id>")
def status(job_id: str):
    queue = _queue()
    record = _record(job_id)
    try:
        start = max(0, int(request.args.get("windows_from", "0")))
    except ValueError:
        raise ServiceError(400, "invalid_request", "windows_from must be a whole number "
                           "of windows") from None
    out = public(record)
    out["windows_from"] = start
    if record["state"] == "done":
        result = queue.store.result(job_id)
        out["windows"] = result["timeline"][start:] if result else []
        out["result"] = result
    else:
        # The worker saves its record at most every PROGRESS_EVERY seconds, but stores
        # each window as it ends: the windows stored since the last save count too (else
        # a job whose next window is slow shows one window less until it ends).
        done = record["progress"]["windows_done"] or 0
        out["windows"] = queue.store.windows(job_id, start, max(done, start) + LOOK_AHEAD)
        if out["windows"] and start + len(out["windows"]) > done:
            n = start + len(out["windows"])
            out["progress"] = dict(out["progress"], windows_done=n,
                                   windows_total=max(n, out["progress"]["windows_total"] or 0),
                                   media_seconds_done=out["windows"][-1]["end"])
    return jsonify(out)


@jobs.delete("/jobs/<job_id>")
def cancel(job_id: str):
    record = _record(job_id)
    if record["state"] in ("done", "failed", "cancelled"):
        raise ServiceError(409, "job_ended", f"the job has ended ({record['state']}): "
                           "nothing to cancel")
    record = _queue().cancel(job_id) or record
    out = public(record)
    out["cancel_requested"] = True
    return jsonify(out)


@jobs.get("/jobs")
def listing():
    queue = _queue()
    try:
        limit = int(request.args.get("limit", "50"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= LIST_LIMIT:
        raise ServiceError(400, "invalid_request",
                           f"limit must be a whole number from 1 to {LIST_LIMIT}")
    state = request.args.get("state")
    if state is not None and state not in STATES:
        raise ServiceError(400, "invalid_request", f"state must be one of {', '.join(STATES)}")
    queue.housekeeping()
    records = [r for r in queue.store.all() if state is None or r["state"] == state]
    return jsonify(jobs=[public(r) for r in records[:limit]], total=len(records))
