"""Forwarding results to BACKEND_URL: bounded retries within a deadline, never raising."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)


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
