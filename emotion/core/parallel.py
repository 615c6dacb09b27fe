"""Ordered parallel map with bounded memory, for the batch stages.

`concurrent.futures.Executor.map` submits every item up front and keeps every
result until it is consumed; with 420,000 images that is the whole data set in
memory. Here at most `window` chunks are in flight at once, and results come
back in input order so the writer can stream them to disk.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from itertools import islice
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def _init_worker() -> None:
    # Workers share the machine's cores: one thread each for the native libraries.
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def _run_chunk(fn: Callable[[T], R], chunk: Sequence[T]) -> list[R]:
    return [fn(x) for x in chunk]


def ordered_map(fn: Callable[[T], R], items: Iterable[T], *, workers: int,
                chunk_size: int = 16, window: int | None = None) -> Iterator[R]:
    """Yield fn(x) for x in items, in order, using `workers` processes.

    `fn` must be a module-level function (it is pickled to the workers).
    workers <= 1 runs in this process, which keeps tests and debugging simple.
    """
    if workers <= 1:
        yield from map(fn, items)
        return
    window = window or 4 * workers
    it = iter(items)
    # spawn: forking a process that holds torch/OpenMP threads can deadlock.
    ctx = mp.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker)
    pending: deque[Future] = deque()
    try:
        while True:
            while len(pending) < window:
                chunk = list(islice(it, chunk_size))
                if not chunk:
                    break
                pending.append(pool.submit(_run_chunk, fn, chunk))
            if not pending:
                break
            yield from pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
