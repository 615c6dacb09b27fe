"""Worker processes (and a Redis server) on this machine: for predict.py --batch, the
tests and the benchmarks.

    with LocalWorkers(env, log, workers=2) as w:     # emotion-worker --workers 2
        w.wait_loaded()
    with LocalRedis(folder) as redis:                # redis-server on a free port
        env["JOBS_REDIS_URL"] = redis.url

Each runs in a session of its own and is stopped with SIGTERM (SIGKILL to the
whole session after `grace` seconds).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from emotion.core.errors import EmotionError
from emotion.serve.localserver import children

LOADED = "models loaded"      # what a worker process logs once it can take jobs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Process:
    cmd: list[str]
    grace = 30.0

    def __init__(self, env: dict[str, str], log: Path):
        self.env, self.log = env, Path(log)
        self.proc: subprocess.Popen | None = None

    def start(self):
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.cmd, env={**os.environ, **self.env}, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(self.grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class LocalWorkers(_Process):
    """``emotion-worker --workers N`` with `env` added to the environment."""

    def __init__(self, env: dict[str, str], log: Path, workers: int = 1,
                 torch_threads: int | None = None):
        super().__init__(env, log)
        self.workers = workers
        self.cmd = [sys.executable, "-m", "emotion.serve.jobs.worker", "--workers", str(workers)]
        if torch_threads:
            self.cmd += ["--torch_threads", str(torch_threads)]

    def loaded(self) -> int:
        return self.tail(10**7).count(LOADED)

    def wait_loaded(self, count: int | None = None, seconds: float = 300) -> float:
        """Seconds until `count` worker processes (all by default) have loaded the models."""
        count = self.workers if count is None else count
        started = time.monotonic()
        while self.loaded() < count:
            if self.proc.poll() is not None:
                raise EmotionError(f"emotion-worker exited:\n{self.tail()}")
            if time.monotonic() > started + seconds:
                raise EmotionError(f"emotion-worker not loaded in {seconds:g} s:\n{self.tail()}")
            time.sleep(0.1)
        return time.monotonic() - started

    def worker_pids(self) -> list[int]:
        return children(self.proc.pid) if self.proc else []


class LocalRedis(_Process):
    """Debian's redis-server on 127.0.0.1 at a free port, nothing saved to disk."""

    grace = 10.0

    def __init__(self, folder: Path):
        folder = Path(folder)
        super().__init__({}, folder / "redis.log")
        exe = shutil.which("redis-server")
        if exe is None:
            raise EmotionError("redis-server is not installed (apt-get install redis-server)")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.cmd = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no", "--dir", str(folder)]

    def start(self):
        super().start()
        import redis

        client = redis.Redis.from_url(self.url)
        for _ in range(200):
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        raise EmotionError(f"redis-server did not start:\n{self.tail()}")
