"""The service's traffic beyond one analysis, through Flask's test client: admission
(slots, the bounded queue, MAX_WAIT) and forwarding results to a backend."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from serve_support import FakeAnalyzer, assert_error, leftovers, make_app, post


# ----------------------------------------------------------------- admission
def in_thread(app, file: Path, out: dict, key: str, **kw) -> threading.Thread:
    """POST `file` from a thread of its own; the response lands in out[key]."""
    worker = threading.Thread(target=lambda: out.update({key: post(app.test_client(), file,
                                                                     **kw)}))
    worker.start()
    return worker


@contextlib.contextmanager
def one_upload_in_analysis(tmp_path: Path, media, **settings):
    """An app with one slot (MAX_CONCURRENT=1) whose first upload is held in its
    analysis until the block ends: yields (app, fake analyzer, answers, threads);
    answers["first"] is that upload's, the threads are joined at the end."""
    gate = threading.Event()
    fake = FakeAnalyzer(gate=gate)
    app = make_app(tmp_path, fake, MAX_CONCURRENT=1, **settings)
    out: dict = {}
    threads = [in_thread(app, media["speech"], out, "first")]
    try:
        assert fake.entered.wait(20)
        yield app, fake, out, threads
    finally:
        gate.set()
        for t in threads:
            t.join(20)


def test_a_full_queue_is_answered_503_at_once(media, tmp_path):
    with one_upload_in_analysis(tmp_path, media, MAX_QUEUE=0, RETRY_AFTER=7) as (app, _, out, _):
        client = app.test_client()
        r = post(client, media["speech"])  # would hang on the gate if it waited
        assert_error(r, 503, "overloaded", "uploads in progress: 1, waiting: 0;")
        assert r.get_json()["detail"].endswith("retry after 7 s")
        assert r.headers["Retry-After"] == "7"
        assert client.get("/health").status_code == 200
    assert out["first"].status_code == 200
    assert post(app.test_client(), media["speech"]).status_code == 200  # the slot came back
    assert leftovers(tmp_path) == []


def test_a_busy_worker_queues_uploads_before_reading_them(media, tmp_path, until, api_schema,
                                                          caplog):
    caplog.set_level(logging.INFO, logger="emotion.serve.app")
    with one_upload_in_analysis(tmp_path, media, MAX_QUEUE=1, RETRY_AFTER=7,
                                MAX_UPLOAD_MB=1) as (app, fake, out, threads):
        threads.append(in_thread(app, media["talk"], out, "second", kind="video"))
        until(lambda: app.extensions["emotion"].admission.load()["waiting"] == 1,
              what="a waiting request")
        assert len(leftovers(tmp_path)) == 1  # the waiting upload is not received yet
        client = app.test_client()
        r = post(client, media["speech"])  # the queue is full: refused, not queued
        assert_error(r, 503, "overloaded", "uploads in progress: 1, waiting: 1;")
        assert r.headers["Retry-After"] == "7" and "MAX_QUEUE" in r.get_json()["detail"]
        big = post(client, b"\0" * (2 << 20))  # too large: told so before any wait
        assert_error(big, 413, "upload_too_large", "1 MB (MAX_UPLOAD_MB)")
        assert client.get("/health").status_code == 200
    assert [out[k].status_code for k in ("first", "second")] == [200, 200]
    for k in ("first", "second"):
        api_schema["/analyze"]["POST"].validate_response(out[k])
    queued = out["second"].get_json()["queue_seconds"]
    assert out["first"].get_json()["queue_seconds"] < queued and queued > 0
    assert [c["kind"] for c in fake.calls] == ["audio", "video"]
    lines = [rec.getMessage() for rec in caplog.records if "POST /analyze 200" in rec.getMessage()]
    assert len(lines) == 2 and all(re.search(r" ms queue \d+\.\d{3} s$", m) for m in lines)
    assert leftovers(tmp_path) == []


def test_the_wait_for_a_slot_is_bounded_by_max_wait(media, tmp_path):
    with one_upload_in_analysis(tmp_path, media, MAX_QUEUE=4, MAX_WAIT=0.2) as (app, _, out, _):
        r = post(app.test_client(), media["speech"])
        assert_error(r, 503, "overloaded", "no analysis slot of this worker freed within 0.2 s")
        assert "MAX_WAIT" in r.get_json()["detail"] and r.headers["Retry-After"] == "5"
    assert out["first"].status_code == 200
    assert post(app.test_client(), media["speech"]).status_code == 200
    assert app.extensions["emotion"].admission.load() == {"active": 0, "waiting": 0}


# ----------------------------------------------------------------- forwarding
class Backend(ThreadingHTTPServer):
    """A real HTTP server on 127.0.0.1: answers `status`, after `delay` seconds."""

    daemon_threads = True

    def __init__(self, status: int = 200, delay: float = 0.0):
        self.status, self.delay, self.received = status, delay, []
        super().__init__(("127.0.0.1", 0), _BackendHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/results"


class _BackendHandler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append({"headers": dict(self.headers), "body": json.loads(body)})
        time.sleep(self.server.delay)
        try:
            self.send_response(self.server.status)
            self.send_header("Content-Length", "0")
            self.end_headers()
        except OSError:
            pass  # the client gave up waiting

    def log_message(self, *args):
        pass


@pytest.fixture
def backend():
    servers: list[Backend] = []

    def start(**kw) -> Backend:
        servers.append(Backend(**kw))
        return servers[-1]

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def test_forwarding_to_a_backend(media, tmp_path, backend):
    server = backend(status=200)
    client = make_app(tmp_path, FakeAnalyzer(), BACKEND_URL=server.url).test_client()
    r = post(client, media["speech"], headers={"X-Request-ID": "fwd-1"})
    body = r.get_json()
    assert r.status_code == 200, body
    fwd = body.pop("forwarded")
    assert fwd["enabled"] and fwd["ok"] and fwd["attempts"] == 1 and fwd["status"] == 200
    assert len(server.received) == 1
    assert server.received[0]["body"] == body
    assert server.received[0]["headers"]["X-Request-ID"] == "fwd-1"


def test_a_failing_backend_is_retried_a_bounded_number_of_times(media, tmp_path, backend):
    server = backend(status=500)
    client = make_app(tmp_path, FakeAnalyzer(), BACKEND_URL=server.url, BACKEND_RETRIES=2,
                      BACKEND_TIMEOUT=1).test_client()
    r = post(client, media["speech"])
    assert r.status_code == 200
    fwd = r.get_json()["forwarded"]
    assert fwd == {**fwd, "enabled": True, "ok": False, "attempts": 3, "status": 500,
                   "error": "the backend answered 500"}
    assert len(server.received) == 3
    refused = backend(status=400)
    client = make_app(tmp_path, FakeAnalyzer(), BACKEND_URL=refused.url).test_client()
    fwd = post(client, media["speech"]).get_json()["forwarded"]
    assert not fwd["ok"] and fwd["attempts"] == 1  # a 4xx is not retried


def test_a_slow_or_absent_backend_does_not_hold_the_client(media, tmp_path, backend):
    server = backend(status=200, delay=5.0)
    client = make_app(tmp_path, FakeAnalyzer(), BACKEND_URL=server.url, BACKEND_TIMEOUT=0.4,
                      BACKEND_RETRIES=10, BACKEND_DEADLINE=1.0).test_client()
    started = time.perf_counter()
    r = post(client, media["speech"])
    elapsed = time.perf_counter() - started
    assert r.status_code == 200 and elapsed < 2.5, elapsed  # 10 retries would take > 5 s
    fwd = r.get_json()["forwarded"]
    assert fwd["ok"] is False and 1 <= fwd["attempts"] <= 3 and fwd["seconds"] <= 1.5
    # nothing listens there: a connection error, and the address is not told to the client
    closed = Backend()
    url = closed.url
    closed.shutdown()
    closed.server_close()
    client = make_app(tmp_path, FakeAnalyzer(), BACKEND_URL=url, BACKEND_RETRIES=1,
                      BACKEND_DEADLINE=3).test_client()
    r = post(client, media["speech"])
    fwd = r.get_json()["forwarded"]
    assert r.status_code == 200 and fwd["ok"] is False and fwd["attempts"] == 2
    assert fwd["error"] == "ConnectionError" and "127.0.0.1" not in r.get_data(as_text=True)


def test_a_hanging_backend_holds_a_slot_only_until_its_deadline(media, tmp_path, backend):
    """The slot is held while forwarding, never past BACKEND_DEADLINE: the second upload
    gets the slot within MAX_WAIT although the backend would answer only after 5 s."""
    server = backend(status=200, delay=5.0)
    app = make_app(tmp_path, FakeAnalyzer(), BACKEND_URL=server.url, BACKEND_TIMEOUT=0.3,
                   BACKEND_RETRIES=0, BACKEND_DEADLINE=0.5, MAX_CONCURRENT=1, MAX_QUEUE=1,
                   MAX_WAIT=3)
    out: dict = {}
    workers = [in_thread(app, media["speech"], out, k) for k in ("a", "b")]
    for w in workers:
        w.join(30)
    bodies = [out[k].get_json() for k in ("a", "b")]
    assert [out[k].status_code for k in ("a", "b")] == [200, 200], bodies
    assert all(b["forwarded"]["ok"] is False for b in bodies)
    assert max(b["queue_seconds"] for b in bodies) < 3
