"""The job store: records, the windows finished so far, results, over huey's storage.

Everything lives in two key-value namespaces of the queue's own storage (the
SQLite file beside the results, or the Redis server the workers pull from), so
one code path serves both and nothing else needs a server:

- ``records``: one small JSON record per job (state, progress, attempts, error,
  delivery); listed whole by GET /jobs;
- ``data``: per job, each finished window (``w:<id>:<n>``), the result
  (``r:<id>``, written with put_if_empty: once, whole, or not at all), the
  cancel flag (``c:<id>``) and the claims that make retries safe (``a:<id>:run<k>``:
  attempt k runs at most once, however many messages or housekeepers ask for it).

A record is written by the service when the job is submitted (and when a queued
job is cancelled), then by the worker that holds the job's current attempt, or by
the reaper that claimed the next attempt of a job whose worker died.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable

from huey.constants import EmptyData

STATES = ("queued", "running", "done", "failed", "cancelled")
ENDED = ("done", "failed", "cancelled")
ID_BYTES = 16            # 128 random bits: ids cannot be guessed


def new_job_id() -> str:
    return secrets.token_urlsafe(ID_BYTES)


def _dump(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _load(raw) -> dict | None:
    if raw is EmptyData or raw is None:
        return None
    return json.loads(bytes(raw))


class JobStore:
    """Job records and data in two storages of the queue's kind (huey BaseStorage)."""

    def __init__(self, records, data):
        self.records, self.data = records, data

    # ------------------------------------------------------------ records
    def create(self, job_id: str, fields: dict, *, media: str, media_bytes: int,
               max_attempts: int) -> dict:
        now = time.time()
        record = {"id": job_id, "state": "queued", **fields, "created": now, "started": None,
                  "finished": None, "updated": now, "attempts": 0,
                  "max_attempts": max_attempts, "media": media, "media_bytes": media_bytes,
                  "progress": {"windows_done": 0, "windows_total": None,
                               "media_seconds_done": 0.0, "media_seconds_total": None},
                  "progress_at": None, "error": None, "worker": None, "retries": [],
                  "delivery": None}
        self.put(record)
        return record

    def put(self, record: dict) -> None:
        self.records.put_data(record["id"], _dump(record))

    def get(self, job_id: str) -> dict | None:
        return _load(self.records.peek_data(job_id))

    def all(self) -> list[dict]:
        """Every record, newest first."""
        out = []
        for raw in self.records.result_items().values():
            try:
                out.append(json.loads(bytes(raw)))
            except (ValueError, TypeError):
                continue
        return sorted(out, key=lambda r: r.get("created", 0), reverse=True)

    def delete(self, job_id: str, windows: int = 0) -> None:
        record = self.get(job_id)
        progress = (record or {}).get("progress", {})
        n = max(windows, progress.get("windows_done") or 0, progress.get("windows_total") or 0)
        for key in [f"w:{job_id}:{i}" for i in range(1, n + 1)] + [f"r:{job_id}",
                                                                   f"c:{job_id}"]:
            self.data.delete_data(key)
        for k in range(1, (record or {}).get("max_attempts", 0) + 2):
            for what in ("run", "queue"):
                self.data.delete_data(f"a:{job_id}:{what}{k}")
        self.records.delete_data(job_id)

    # ------------------------------------------------------------ windows and results
    def put_window(self, job_id: str, n: int, window: dict) -> None:
        self.data.put_data(f"w:{job_id}:{n}", _dump(window))

    def windows(self, job_id: str, start: int, stop: int) -> list[dict]:
        """Windows start+1 .. stop (1-based keys), in order, up to the first one missing."""
        keys = [f"w:{job_id}:{i}" for i in range(start + 1, stop + 1)]
        found = self.data.peek_many(keys) if keys else {}
        out = []
        for k in keys:
            if k not in found:
                break
            out.append(json.loads(bytes(found[k])))
        return out

    def drop_windows(self, job_id: str, n: int | None = None) -> None:
        """Windows 1..n, once the result holds them all; None: every one stored (they are
        written in order from 1), before an attempt writes its own."""
        if n is None:
            n = 0
            while self.data.has_data_for_key(f"w:{job_id}:{n + 1}"):
                n += 1
        for i in range(1, n + 1):
            self.data.delete_data(f"w:{job_id}:{i}")

    def put_result(self, job_id: str, result: dict) -> bool:
        """Write the result once: False when one is there already (it is kept)."""
        return bool(self.data.put_if_empty(f"r:{job_id}", _dump(result)))

    def result(self, job_id: str) -> dict | None:
        return _load(self.data.peek_data(f"r:{job_id}"))

    # ------------------------------------------------------------ cancel and claims
    def cancel(self, job_id: str) -> None:
        self.data.put_data(f"c:{job_id}", b"1")

    def cancelled(self, job_id: str) -> bool:
        return self.data.has_data_for_key(f"c:{job_id}")

    def claim(self, job_id: str, what: str, who: str) -> bool:
        """True for the one caller that takes `what` ("run2": running attempt 2,
        "queue2": queueing it) of the job; False for every other."""
        return bool(self.data.put_if_empty(f"a:{job_id}:{what}", who.encode()))


def public(record: dict, base_url: str = "") -> dict:
    """What GET /jobs shows of a record: no server paths; the time left estimated."""
    out = {k: v for k, v in record.items() if k not in ("media",)}
    out["status_url"] = f"{base_url}/jobs/{record['id']}"
    out["eta_seconds"] = eta(record)
    return out


def eta(record: dict) -> float | None:
    """Seconds left, from the pace of this attempt so far (None until a window is done)."""
    p = record["progress"]
    done, total = p.get("windows_done") or 0, p.get("windows_total")
    if record["state"] in ENDED:
        return 0.0
    if record["state"] != "running" or not done or not total or not record.get("started"):
        return None
    pace = ((record.get("progress_at") or record["updated"]) - record["started"]) / done
    return round(max(0.0, pace * (total - done)), 1)


def stale(records: Iterable[dict], older_than: float, now: float | None = None) -> list[dict]:
    """Running jobs whose worker has not been heard of for `older_than` seconds."""
    now = time.time() if now is None else now
    return [r for r in records if r["state"] == "running" and now - r["updated"] > older_than]
