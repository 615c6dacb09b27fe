"""A real gunicorn serving this checkout on 127.0.0.1, for the end-to-end tests and benchmarks.

    with LocalServer(artifacts_env(folder), log=path, workers=2) as server:
        requests.post(server.url + "/analyze", ...)

It runs ``python -m gunicorn -c gunicorn.conf.py app:app`` from the repository
root (so with the shipped settings and this checkout's package) at a free
port, in a session of its own, and stops it with SIGTERM (SIGKILL after 60 s).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def artifacts_env(folder: Path) -> dict[str, str]:
    """EMBEDDER_PATH, MULTIMODAL_PATH, ISOLATION_PATH for what `make demo` writes in `folder`."""
    folder = Path(folder).resolve()
    return {"EMBEDDER_PATH": str(folder / "saved_models" / "embedder.pt"),
            "MULTIMODAL_PATH": str(folder / "saved_models" / "multimodal_best.pth"),
            "ISOLATION_PATH": str(folder / "anomaly" / "isolation_forest.joblib")}


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (gunicorn's workers, for its master)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, IndexError, ValueError):
                continue
    return sorted(out)


class LocalServer:
    """gunicorn with `env` added to the environment, its output in `log`."""

    def __init__(self, env: dict[str, str], log: Path, workers: int = 2):
        self.env, self.log, self.workers = env, Path(log), workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> LocalServer:
        cmd = [sys.executable, "-m", "gunicorn", "-w", str(self.workers), "-c", "gunicorn.conf.py",
               "--bind", f"127.0.0.1:{self.port}", "app:app"]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **self.env},
                                         stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        return self

    def wait_ready(self, seconds: float = 180) -> float:
        """Seconds until /ready answers 200; AssertionError with the log's end otherwise."""
        import requests

        started = time.monotonic()
        while time.monotonic() < started + seconds:
            assert self.proc.poll() is None, f"gunicorn exited:\n{self.tail()}"
            try:
                if requests.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    return time.monotonic() - started
            except requests.RequestException:
                pass
            time.sleep(0.25)
        raise AssertionError(f"gunicorn not ready in {seconds} s:\n{self.tail()}")

    def worker_pids(self) -> list[int]:
        return children(self.proc.pid)

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL to the whole session after 60 s; the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode

    def __enter__(self) -> LocalServer:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
