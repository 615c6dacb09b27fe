"""End to end: a real gunicorn (gunicorn.conf.py, app:app) on 127.0.0.1 at a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
import soundfile as sf

from emotion.stages.sample_data import make_video, speech_like

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(env: dict, log: Path, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "gunicorn", "-w", "2", "-c", "gunicorn.conf.py",
           "--bind", f"127.0.0.1:{port}", "app:app"]
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _wait_ready(base: str, proc: subprocess.Popen, log: Path, seconds: float = 180) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert proc.poll() is None, f"gunicorn exited:\n{log.read_text()[-3000:]}"
        try:
            if requests.get(f"{base}/ready", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise AssertionError(f"gunicorn not ready in {seconds} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def uploads(tmp_path_factory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("e2e_media")
    rng = np.random.default_rng(3)
    sf.write(d / "voice.wav", speech_like("angry", duration=3.5, rng=rng), 16_000)
    make_video(d / "face.mp4", [("happy", 3.0)], seed=4)
    return {"audio": (d / "voice.wav").read_bytes(), "video": (d / "face.mp4").read_bytes(),
            "malformed": b"\x00\x00\x00\x18ftypmp42" + rng.bytes(3000)}


def test_gunicorn_serves_concurrent_uploads(artifacts, uploads, tmp_path):
    port, upload_dir, log = _free_port(), tmp_path / "uploads", tmp_path / "gunicorn.log"
    upload_dir.mkdir()
    env = {"EMBEDDER_PATH": artifacts["embedder"], "MULTIMODAL_PATH": artifacts["multimodal"],
           "ISOLATION_PATH": artifacts["isolation"], "UPLOAD_DIR": str(upload_dir),
           "MAX_CONCURRENT": "16", "LOG_LEVEL": "INFO"}
    proc = _start(env, log, port)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, proc, log)
        jobs = [("video" if i % 4 == 0 else "audio", f"p{i}") for i in range(20)]
        jobs.insert(7, ("malformed", "p-bad"))

        def send(job):
            kind, participant = job
            data = {"meeting_id": "e2e", "participant_id": participant,
                    "type": "video" if kind == "malformed" else kind}
            files = {"file": ("upload.mp4", uploads[kind])}
            return job, requests.post(f"{base}/analyze", data=data, files=files, timeout=300)

        started = time.perf_counter()
        with ThreadPoolExecutor(len(jobs)) as pool:
            results = list(pool.map(send, jobs))
        elapsed = time.perf_counter() - started
        for (kind, participant), r in results:
            if kind == "malformed":
                assert r.status_code == 415 and r.json()["error"] == "unsupported_media", r.text
                continue
            assert r.status_code == 200, (kind, r.status_code, r.text)
            body = r.json()
            assert body["participant_id"] == participant and body["type"] == kind
            assert body["request_id"] == r.headers["X-Request-ID"]
        assert len({r.headers["X-Request-ID"] for _, r in results}) == len(jobs)
        assert requests.get(f"{base}/health", timeout=5).json() == {"status": "ok"}
        assert [p for p in upload_dir.rglob("*") if p.is_file()] == []
        print(f"{len(jobs)} concurrent uploads in {elapsed:.1f} s")
    finally:
        _stop(proc)
    text = log.read_text()
    assert text.count("POST /analyze 200 ") == 20 and text.count("POST /analyze 415 ") == 1
    assert "Traceback" not in text
    assert list(upload_dir.iterdir()) == []  # the workers' private folders went with them


def test_gunicorn_stops_when_an_artifact_is_missing(artifacts, tmp_path):
    log = tmp_path / "gunicorn.log"
    env = {"EMBEDDER_PATH": artifacts["embedder"],
           "MULTIMODAL_PATH": str(tmp_path / "missing" / "multimodal_best.pth"),
           "ISOLATION_PATH": artifacts["isolation"], "UPLOAD_DIR": str(tmp_path)}
    proc = _start(env, log, _free_port())
    try:
        code = proc.wait(120)
    finally:
        _stop(proc)
    text = log.read_text()
    assert code != 0, text
    assert "cannot start the service" in text and "multimodal_best.pth" in text
    assert "MULTIMODAL_PATH" in text and "ArtifactError" not in text  # one line, no traceback
