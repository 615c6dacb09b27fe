"""Admission to /analyze: a few slots per worker, and a short bounded queue before them.

An upload takes one of `slots` (MAX_CONCURRENT) before its body is read. When
they are all taken it waits, first come first served, for at most `max_wait`
seconds (MAX_WAIT) and only while fewer than `queue` (MAX_QUEUE) others wait;
past either bound it is refused, and the service answers 503 with Retry-After.
A waiting request holds one gunicorn thread and nothing else: its body stays in
the socket, unread, so a queue of big uploads takes no disk.
"""

from __future__ import annotations

import threading
import time
from collections import deque


class Refused(Exception):
    """No slot: the queue is full, or none freed in time. The message says which."""


class Admission:
    """`slots` holders at once, at most `queue` more waiting, each at most `max_wait` s.

    A freed slot is handed straight to the longest waiter (no request that
    arrives later can take it first).
    """

    def __init__(self, slots: int, queue: int, max_wait: float):
        self.slots, self.queue, self.max_wait = int(slots), int(queue), float(max_wait)
        self._lock = threading.Lock()
        self._active = 0
        self._waiters: deque[threading.Event] = deque()

    def acquire(self) -> float:
        """Take a slot; return the seconds waited for it. Raises Refused."""
        started = time.monotonic()
        with self._lock:
            if self._active < self.slots and not self._waiters:
                self._active += 1
                return 0.0
            if len(self._waiters) >= self.queue:
                raise Refused(f"this worker is busy (uploads in progress: {self._active}, "
                              f"waiting: {len(self._waiters)}; MAX_CONCURRENT, MAX_QUEUE)")
            turn = threading.Event()
            self._waiters.append(turn)
        if not turn.wait(self.max_wait):
            with self._lock:
                if not turn.is_set():  # else the slot was handed over just now: keep it
                    self._waiters.remove(turn)
                    raise Refused(f"no analysis slot of this worker freed within "
                                  f"{self.max_wait:g} s (MAX_WAIT)")
        return time.monotonic() - started

    def release(self) -> None:
        """Give the slot back, or hand it to the longest waiter."""
        with self._lock:
            if self._waiters:
                self._waiters.popleft().set()
            elif self._active > 0:
                self._active -= 1
            else:
                raise RuntimeError("Admission.release() without a slot taken")

    def load(self) -> dict[str, int]:
        """{"active", "waiting"}: slots taken and requests waiting, now."""
        with self._lock:
            return {"active": self._active, "waiting": len(self._waiters)}
