"""The queue (huey) and what a worker does with a job.

:class:`JobQueue` builds the huey instance from the settings (a SQLite file in
JOBS_DIR, or JOBS_REDIS_URL) and registers two tasks on it:

- ``run_job(job_id, attempt)``: analyses the job's media with the service's own
  analysis, storing each window as it is scored (progress), then the result once;
  a malformed file fails the job with the message /analyze gives;
- ``deliver(job_id)``: one POST of the result to BACKEND_URL; a failure is
  retried by huey's scheduler after a growing delay, so no worker waits meanwhile.

huey drops a message when a worker takes it: a worker killed mid-job
(SIGKILL, out of memory, a lost machine) would lose it. So each worker process
has a heartbeat thread that keeps its running job's record fresh and does the
housekeeping (:meth:`JobQueue.housekeeping`): a running job unheard of for
JOBS_STALE_SECONDS is queued again, at most JOBS_MAX_ATTEMPTS runs in all, then
failed with the reason; ended jobs past JOBS_RETENTION_HOURS are removed.
Claims in the store (put_if_empty) make each attempt run once however many
housekeepers see it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import threading
import time
from pathlib import Path

from huey import RedisHuey, SqliteHuey
from huey.storage import RedisStorage, SqliteStorage

from emotion.media.decode import probe
from emotion.serve.answers import ServiceError, judge, run_analysis, summary
from emotion.serve.forwarder import Forwarder
from emotion.serve.jobs.store import ENDED, JobStore, stale

log = logging.getLogger(__name__)

QUEUE_NAME = "emotion-jobs"
PROGRESS_EVERY = 0.5    # seconds between saves of a running job's progress
_INHERITED: list = []   # SQLite connections a forked worker must neither use nor close
DB_NAME = "queue.db"


class JobCancelled(Exception):
    """Raised from the progress callback when the job's cancel flag is set."""


class DeliveryFailed(Exception):
    """A delivery attempt the backend may accept later: huey retries it."""


class _StoreStorage(SqliteStorage):
    """The job store's SQLite storage: WAL with synchronous=NORMAL, no fsync per commit.

    A running job saves each window; with a fsync each (huey's default), a disk shared
    with other writers made a window's save take up to a second. NORMAL in WAL mode
    keeps every commit through a crash of any process (what a killed worker needs);
    only a power loss or an OS crash may drop the last commits, never corrupt the file.
    The queue itself (huey's storage) keeps its fsync per commit."""

    def _create_connection(self):
        conn = super()._create_connection()
        conn.execute("pragma synchronous=1")
        return conn


def _who() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class JobQueue:
    """The queue, the store and the tasks, for one process (service or worker)."""

    def __init__(self, settings: dict, analyzer=None):
        self.settings = settings
        self.jobs_dir = Path(settings["JOBS_DIR"]).resolve()
        self.media_dir = self.jobs_dir / "media"
        self.media_dir.mkdir(parents=True, exist_ok=True)
        url = settings["JOBS_REDIS_URL"]
        if url:
            self.huey = RedisHuey(QUEUE_NAME, url=url, results=False)
            records, data = (RedisStorage(f"{QUEUE_NAME}-{n}", url=url)
                             for n in ("records", "data"))
        else:
            db = str(self.jobs_dir / DB_NAME)
            self.huey = SqliteHuey(QUEUE_NAME, filename=db, results=False)
            records, data = (_StoreStorage(f"{QUEUE_NAME}-{n}", filename=db)
                             for n in ("records", "data"))
        self.store = JobStore(records, data)
        self.analyzer = analyzer               # injected (tests) or loaded by load_analyzer
        self._lock = threading.Lock()          # the running job's record: two threads write
        self._current: dict | None = None
        self._saved_at = 0.0                   # when the running job's record was saved
        self._beat: threading.Thread | None = None
        self.run_job = self.huey.task(name="run_job")(self._run)
        backend = settings["BACKEND_URL"]
        self.forwarder = Forwarder(backend, float(settings["BACKEND_TIMEOUT"]), 0,
                                   float(settings["BACKEND_TIMEOUT"])) if backend else None
        self.deliver = self.huey.task(name="deliver", retries=int(settings["BACKEND_RETRIES"]),
                                      retry_delay=1.0, retry_backoff=2.0)(self._deliver)

    # ------------------------------------------------------------ service side
    @property
    def where(self) -> str:
        return "redis" if self.settings["JOBS_REDIS_URL"] else str(self.jobs_dir / DB_NAME)

    def submit(self, job_id: str, fields: dict, media: Path) -> dict:
        """Record the job (its media already at `media`) and queue its first attempt."""
        record = self.store.create(job_id, fields, media=str(media),
                                   media_bytes=media.stat().st_size,
                                   max_attempts=int(self.settings["JOBS_MAX_ATTEMPTS"]))
        self.run_job(job_id, 1)
        return record

    def media_bytes(self) -> int:
        """Bytes of queued media on disk now (the budget's measure)."""
        total = 0
        for p in self.media_dir.iterdir():
            with contextlib.suppress(FileNotFoundError):
                total += p.stat().st_size
        return total

    def cancel(self, job_id: str) -> dict | None:
        """Flag the job; a queued one ends now, a running one at its next window."""
        record = self.store.get(job_id)
        if record is None or record["state"] in ENDED:
            return record
        self.store.cancel(job_id)
        if record["state"] == "queued":
            self._end(record, "cancelled")
        return self.store.get(job_id)

    # ------------------------------------------------------------ worker side
    def after_fork(self) -> None:
        """A worker process the consumer forked (again, after one died) may inherit the
        consumer's open SQLite connection and even its lock taken by the scheduler
        thread: SQLite forbids using a connection across fork, and a held lock would
        never be released here. Fresh ones (huey's SQL storages keep them in ``_conn``
        and ``lock``); the inherited connections are kept, unclosed, as SQLite asks."""
        for storage in (self.huey.storage, self.store.records, self.store.data):
            if hasattr(storage, "lock") and hasattr(storage, "_conn"):
                _INHERITED.append(storage._conn)
                storage._conn = None
                storage.lock = threading.Lock()

    def load_analyzer(self) -> None:
        """In each worker process, after the fork: the models, then the heartbeat."""
        self.after_fork()
        if self.analyzer is None:
            # torch is imported here, in the worker process, never in the consumer that
            # forks it: torch's thread pools do not survive a fork (gunicorn.conf.py)
            from emotion.serve.analyzer import Analyzer, Options

            s = self.settings
            if s["TORCH_THREADS"]:
                import torch

                torch.set_num_threads(int(s["TORCH_THREADS"]))
            started = time.perf_counter()
            self.analyzer = Analyzer(
                s["EMBEDDER_PATH"], s["MULTIMODAL_PATH"], s["ISOLATION_PATH"],
                device=s["DEVICE"],
                options=Options(max_duration=float(s["JOBS_MAX_MEDIA_SECONDS"])))
            log.info("worker %s: models loaded in %.1f s", _who(),
                     time.perf_counter() - started)
        self.start_heartbeat()

    def start_heartbeat(self) -> None:
        if self._beat is None or not self._beat.is_alive():
            self._beat = threading.Thread(target=self._heartbeat, name="job-heartbeat",
                                          daemon=True)
            self._beat.start()

    def _heartbeat(self) -> None:
        every = float(self.settings["JOBS_HEARTBEAT_SECONDS"])
        while True:
            time.sleep(every)
            try:
                with self._lock:
                    if self._current is not None:
                        self._current["updated"] = time.time()
                        self.store.put(self._current)
                self.housekeeping()
            except Exception:  # noqa: BLE001 - a store hiccup must not end the heartbeat
                log.exception("job heartbeat failed; trying again in %.1f s", every)

    def _run(self, job_id: str, attempt: int) -> None:
        if not self.store.claim(job_id, f"run{attempt}", _who()):
            log.info("job %s attempt %d: already taken (a repeated message)", job_id, attempt)
            return
        record = self.store.get(job_id)
        if record is None or record["state"] in ENDED:
            return
        if self.store.cancelled(job_id):
            self._end(record, "cancelled")
            return
        # a dead attempt's windows go first: a reader counts every window stored
        self.store.drop_windows(job_id)
        now = time.time()
        record.update(state="running", attempts=attempt, started=now, updated=now,
                      progress_at=None, worker=_who())
        record["progress"].update(windows_done=0, media_seconds_done=0.0)
        with self._lock:
            self._current = record
            self.store.put(record)
        log.info("job %s attempt %d: running on %s", job_id, attempt, record["worker"])
        try:
            body = self._analyse(record)
        except JobCancelled:
            self._end(record, "cancelled")
        except ServiceError as e:
            self._end(record, "failed", error=e.as_dict())
        except Exception:  # noqa: BLE001 - the job fails with an id; the worker goes on
            log.exception("job %s failed unexpectedly", job_id)
            self._end(record, "failed", error={
                "status": 500, "error": "internal_error",
                "detail": f"an unexpected error occurred; the worker's log has it under "
                          f"job {job_id}"})
        else:
            if not self.store.put_result(job_id, body):
                log.warning("job %s: a result is stored already; this run's is dropped", job_id)
            self._end(record, "done")
            self.store.drop_windows(job_id, record["progress"]["windows_done"])
            if self.forwarder is not None:
                self.deliver(job_id)

    def _analyse(self, record: dict) -> dict:
        media, kind = record["media"], record["type"]
        if not os.path.exists(media):
            raise ServiceError(410, "media_gone", "the job's media is no longer there "
                               "(removed, or JOBS_DIR is not shared with this worker)")
        judge(media, kind, float(self.settings["JOBS_MAX_MEDIA_SECONDS"]))
        seconds = probe(media).duration
        hop = float(self.analyzer.hop) if hasattr(self.analyzer, "hop") else 3.0
        with self._lock:
            record["progress"].update(media_seconds_total=round(seconds, 3),
                                      windows_total=max(1, math.ceil(seconds / hop - 1e-6)))
            self.store.put(record)
        result = run_analysis(self.analyzer, media, kind,
                              on_window=lambda w, done, total: self._window(record, w, done,
                                                                            total))
        fields = {k: record[k] for k in ("meeting_id", "participant_id", "type")}
        return {"request_id": record["id"], **fields, **summary(result),
                "queue_seconds": round(record["started"] - record["created"], 3),
                "forwarded": {"enabled": self.forwarder is not None, "ok": None,
                              "attempts": 0, "status": None, "error": None, "seconds": 0.0}}

    def _window(self, record: dict, window: dict, done: int, total: int) -> None:
        # The window is stored first, then the record that counts it: a reader never
        # sees a count of windows that are not there. The record is saved at most every
        # PROGRESS_EVERY seconds (each save is a commit; a window takes tens of ms).
        self.store.put_window(record["id"], done, window)
        now = time.time()
        with self._lock:
            record["progress"].update(windows_done=done, windows_total=total,
                                      media_seconds_done=window["end"])
            record.update(updated=now, progress_at=now)
            if now - self._saved_at >= PROGRESS_EVERY or done >= total:
                self.store.put(record)
                self._saved_at = now
        if self.store.cancelled(record["id"]):
            raise JobCancelled

    def _end(self, record: dict, state: str, *, error: dict | None = None) -> None:
        with self._lock:
            now = time.time()
            record.update(state=state, finished=now, updated=now, error=error)
            if state == "done":
                p = record["progress"]
                p.update(windows_total=p["windows_done"],
                         media_seconds_total=p["media_seconds_done"])
            self.store.put(record)
            if self._current is not None and self._current["id"] == record["id"]:
                self._current = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(record["media"])
        log.info("job %s %s%s", record["id"], state, f": {error['detail']}" if error else "")

    def _deliver(self, job_id: str) -> None:
        record, result = self.store.get(job_id), self.store.result(job_id)
        if record is None or result is None or self.forwarder is None:
            return
        out = self.forwarder.send(result, job_id)
        record = self.store.get(job_id) or record
        previous = record.get("delivery") or {"attempts": 0}
        record["delivery"] = {"ok": out["ok"], "attempts": previous["attempts"] + 1,
                              "status": out["status"], "error": out["error"],
                              "at": time.time()}
        self.store.put(record)
        status = out["status"]
        if not out["ok"] and (status is None or status >= 500 or status in (408, 429)):
            raise DeliveryFailed(f"job {job_id}: the backend did not take the result "
                                 f"({out['error']})")

    # ------------------------------------------------------------ housekeeping
    def housekeeping(self, now: float | None = None) -> dict:
        """Retry or fail jobs whose worker died; drop ended jobs past retention."""
        now = time.time() if now is None else now
        records = self.store.all()
        counts = {"retried": 0, "failed": 0, "expired": 0}
        for r in stale(records, float(self.settings["JOBS_STALE_SECONDS"]), now):
            nxt = r["attempts"] + 1
            if not self.store.claim(r["id"], f"queue{nxt}", _who()):
                continue
            r = self.store.get(r["id"])
            if r is None or r["state"] != "running" or r["attempts"] != nxt - 1:
                continue
            reason = (f"the worker running attempt {r['attempts']} ({r['worker']}) stopped "
                      f"answering: killed, out of memory or lost")
            r["retries"].append({"attempt": r["attempts"], "reason": reason, "at": now})
            if nxt > int(r["max_attempts"]):
                counts["failed"] += 1
                self._end(r, "failed", error={
                    "status": 500, "error": "worker_lost",
                    "detail": f"{reason}; tried {r['attempts']} times "
                              f"(JOBS_MAX_ATTEMPTS), giving up"})
                continue
            counts["retried"] += 1
            r.update(state="queued", updated=now)
            self.store.put(r)
            log.warning("job %s: %s; queued again (attempt %d of %d)", r["id"], reason, nxt,
                        r["max_attempts"])
            self.run_job(r["id"], nxt)
        keep = float(self.settings["JOBS_RETENTION_HOURS"]) * 3600
        for r in records:
            if r["state"] in ENDED and (r.get("finished") or now) < now - keep:
                self.store.delete(r["id"])
                counts["expired"] += 1
        return counts
