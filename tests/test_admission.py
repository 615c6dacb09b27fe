"""Admission (emotion/serve/admission.py), the drain of refused bodies (uploads.py) and the
threads gunicorn.conf.py gives a worker for them."""

from __future__ import annotations

import io
import runpy
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from emotion.serve.admission import Admission, Refused
from emotion.serve.uploads import discard_unread_body


def test_free_slots_are_taken_at_once_and_a_full_queue_refuses():
    gate = Admission(slots=2, queue=0, max_wait=30)
    assert gate.acquire() == 0.0 and gate.acquire() == 0.0
    assert gate.load() == {"active": 2, "waiting": 0}
    with pytest.raises(Refused, match=r"in progress: 2, waiting: 0;"):
        gate.acquire()
    gate.release()
    assert gate.acquire() == 0.0
    gate.release()
    gate.release()
    assert gate.load() == {"active": 0, "waiting": 0}
    with pytest.raises(RuntimeError, match="without a slot"):
        gate.release()


def test_waiters_get_freed_slots_first_come_first_served(until):
    gate = Admission(slots=1, queue=3, max_wait=30)
    gate.acquire()
    order: list[int] = []
    waited: dict[int, float] = {}

    def wait_then_hold(i: int) -> None:
        waited[i] = gate.acquire()
        order.append(i)

    threads = []
    for i in range(3):
        threads.append(threading.Thread(target=wait_then_hold, args=(i,)))
        threads[-1].start()
        until(lambda n=i + 1: gate.load()["waiting"] == n)
    with pytest.raises(Refused, match="waiting: 3;"):
        gate.acquire()  # the queue is full
    for i in range(3):
        gate.release()  # handed to the longest waiter, who now holds it
        until(lambda n=i + 1: len(order) == n)
        assert gate.load() == {"active": 1, "waiting": 2 - i}
    for t in threads:
        t.join(20)
    assert order == [0, 1, 2]
    assert waited[0] > 0 and waited[2] >= waited[1] >= waited[0]
    gate.release()
    assert gate.load() == {"active": 0, "waiting": 0}


def test_a_wait_longer_than_max_wait_is_refused_and_leaves_the_queue():
    gate = Admission(slots=1, queue=1, max_wait=0.05)
    gate.acquire()
    with pytest.raises(Refused, match=r"within 0.05 s \(MAX_WAIT\)"):
        gate.acquire()
    assert gate.load() == {"active": 1, "waiting": 0}
    gate.release()
    assert gate.acquire() == 0.0


def test_a_refused_body_is_read_and_dropped_within_bounds():
    body = io.BytesIO(b"x" * 300_000)
    environ = {"wsgi.input": body, "wsgi.input_terminated": True}
    assert discard_unread_body(environ, max_bytes=100_000) == 100_000
    assert discard_unread_body(environ, max_bytes=10**9) == 200_000
    assert discard_unread_body(environ, max_bytes=10**9) == 0  # nothing left
    # a server that does not end the stream itself: reading could wait for the next request
    assert discard_unread_body({"wsgi.input": io.BytesIO(b"x" * 10)}, 10**9) == 0


def test_gunicorn_threads_hold_the_slots_the_queue_and_one_more(monkeypatch):
    conf = Path(__file__).resolve().parents[1] / "gunicorn.conf.py"
    monkeypatch.delenv("GUNICORN_THREADS", raising=False)
    monkeypatch.setenv("MAX_CONCURRENT", "3")
    monkeypatch.setenv("MAX_QUEUE", "4")
    assert runpy.run_path(str(conf))["threads"] == 8
    monkeypatch.setenv("GUNICORN_THREADS", "4")
    settings = runpy.run_path(str(conf))
    assert settings["threads"] == 4
    warnings: list[str] = []
    server = SimpleNamespace(cfg=SimpleNamespace(threads=4),
                             log=SimpleNamespace(warning=lambda m, *a: warnings.append(m % a)))
    settings["on_starting"](server)
    assert len(warnings) == 1 and "fewer than MAX_CONCURRENT + MAX_QUEUE + 1 = 8" in warnings[0]
    server.cfg.threads = 8
    settings["on_starting"](server)
    assert len(warnings) == 1
