"""End to end: a real gunicorn (gunicorn.conf.py, app:app, -w 2) on 127.0.0.1 at a free port.

One server, with the shipped admission defaults (per worker 2 slots, 6 waiting)
and MAX_UPLOAD_MB=2, serves the concurrency, big-upload and killed-worker tests.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
import soundfile as sf

from emotion.serve.localserver import LocalServer
from emotion.stages.sample_data import make_video, speech_like

pytestmark = pytest.mark.slow
BOUNDARY = "e2e-boundary"


@pytest.fixture(scope="module")
def uploads(tmp_path_factory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("e2e_media")
    rng = np.random.default_rng(3)
    sf.write(d / "voice.wav", speech_like("angry", duration=3.5, rng=rng), 16_000)
    make_video(d / "face.mp4", [("happy", 3.0)], seed=4)
    make_video(d / "long.mp4", [("sad", 20.0), ("happy", 20.0)], seed=5)
    return {"audio": (d / "voice.wav").read_bytes(), "video": (d / "face.mp4").read_bytes(),
            "long": (d / "long.mp4").read_bytes(),
            "malformed": b"\x00\x00\x00\x18ftypmp42" + rng.bytes(3000)}


def artifact_env(artifacts: dict[str, str]) -> dict[str, str]:
    return {"EMBEDDER_PATH": artifacts["embedder"], "MULTIMODAL_PATH": artifacts["multimodal"],
            "ISOLATION_PATH": artifacts["isolation"]}


@pytest.fixture(scope="module")
def server(artifacts, tmp_path_factory):
    d = tmp_path_factory.mktemp("e2e_server")
    (d / "uploads").mkdir()
    env = {**artifact_env(artifacts), "UPLOAD_DIR": str(d / "uploads"), "MAX_UPLOAD_MB": "2",
           "LOG_LEVEL": "INFO"}
    with LocalServer(env, d / "gunicorn.log", workers=2) as srv:
        yield srv
    assert "Traceback" not in srv.log.read_text()
    assert list((d / "uploads").iterdir()) == []  # the workers' private folders went with them


def upload_files(server: LocalServer) -> list[Path]:
    return [p for p in Path(server.env["UPLOAD_DIR"]).rglob("*") if p.is_file()]


def send(server: LocalServer, kind: str, content: bytes, participant: str) -> requests.Response:
    data = {"meeting_id": "e2e", "participant_id": participant,
            "type": "video" if kind in ("malformed", "long") else kind}
    return requests.post(f"{server.url}/analyze", data=data,
                         files={"file": ("upload.mp4", content)}, timeout=300)


def test_gunicorn_holds_more_concurrent_uploads_than_a_worker_has_slots(server, uploads):
    """8 at once, with 2 slots per worker: the ones beyond wait for a slot, none is refused
    (however gunicorn spreads them: a worker lets 6 more wait)."""
    jobs = [("video" if i % 3 == 0 else "audio", f"p{i}") for i in range(7)]
    jobs.insert(3, ("malformed", "p-bad"))
    with ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(lambda job: (job, send(server, job[0], uploads[job[0]], job[1])),
                                jobs))
    for (kind, participant), r in results:
        if kind == "malformed":
            assert r.status_code == 415 and r.json()["error"] == "unsupported_media", r.text
            continue
        assert r.status_code == 200, (kind, r.status_code, r.text)
        body = r.json()
        assert body["participant_id"] == participant and body["type"] == kind
        assert body["request_id"] == r.headers["X-Request-ID"]
    waits = [r.json()["queue_seconds"] for (kind, _), r in results if kind != "malformed"]
    assert max(waits) > 0  # some waited: for a slot, or for their worker's analysis
    log = server.log.read_text()
    for (kind, _), r in results:
        status = 415 if kind == "malformed" else 200
        line = f"request {r.headers['X-Request-ID']} POST /analyze {status} "
        assert re.search(re.escape(line) + r"[\d.]+ ms queue [\d.]+ s", log), line
    assert requests.get(f"{server.url}/health", timeout=5).json() == {"status": "ok"}
    assert upload_files(server) == []


def multipart(content: bytes) -> tuple[list[bytes], str]:
    """A multipart/form-data body, fields first, as parts; and its Content-Type."""
    head = "".join(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                   for k, v in (("meeting_id", "e2e"), ("participant_id", "big"),
                                ("type", "audio")))
    head += (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
             f'filename="big.wav"\r\n\r\n')
    return ([head.encode(), content, f"\r\n--{BOUNDARY}--\r\n".encode()],
            f"multipart/form-data; boundary={BOUNDARY}")


def test_gunicorn_answers_a_big_upload_with_json_413(server, uploads):
    big = b"\0" * (12 << 20)   # MAX_UPLOAD_MB is 2
    r = send(server, "audio", big, "big")
    assert r.status_code == 413 and r.json()["error"] == "upload_too_large", r.text
    assert "2 MB (MAX_UPLOAD_MB)" in r.json()["detail"]
    # a client that reads the answer only once all is sent: the rest is read and dropped
    # (up to 4 x MAX_UPLOAD_MB; past that the connection is closed)
    parts, content_type = multipart(big[: 6 << 20])
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        conn.request("POST", "/analyze", body=b"".join(parts),
                     headers={"Content-Type": content_type})
        answer = conn.getresponse()
        assert answer.status == 413 and b"upload_too_large" in answer.read()
    finally:
        conn.close()
    # chunked, without a Content-Length: reading stops at the limit
    parts, content_type = multipart(big)
    r = requests.post(f"{server.url}/analyze", data=iter(parts),
                      headers={"Content-Type": content_type}, timeout=60)
    assert r.request.headers["Transfer-Encoding"] == "chunked"
    assert r.status_code == 413 and r.json()["error"] == "upload_too_large", r.text
    assert send(server, "audio", uploads["audio"], "after-big").status_code == 200
    assert upload_files(server) == []


def holder_of(server: LocalServer, size: int) -> int | None:
    """The pid of the worker whose private folder holds an upload of `size` bytes."""
    for f in Path(server.env["UPLOAD_DIR"]).glob("emotion-uploads-*/upload-*"):
        try:
            if f.stat().st_size == size:
                return int(f.parent.name.split("-")[2])
        except (FileNotFoundError, ValueError):
            continue
    return None


def send_or_retry(server: LocalServer, kind: str, content: bytes, participant: str) -> int:
    """The status; after a connection error (the request was held by the killed worker),
    that of one retry, which is safe: an analysis changes nothing on the server."""
    try:
        return send(server, kind, content, participant).status_code
    except requests.ConnectionError:
        return send(server, kind, content, participant + "-retried").status_code


def test_a_killed_worker_is_replaced_and_the_server_keeps_serving(server, uploads, until):
    """SIGKILL the worker analysing an upload: its client gets a connection error (safe to
    retry); the other worker's requests and every later one succeed; the replacement
    sweeps the dead worker's upload folder."""
    long = uploads["long"]
    with ThreadPoolExecutor(8) as pool:
        victim = pool.submit(send, server, "long", long, "victim")
        until(lambda: holder_of(server, len(long)) is not None, 60, "the whole upload received")
        pid = holder_of(server, len(long))
        during = [pool.submit(send_or_retry, server, "audio", uploads["audio"], f"during{i}")
                  for i in range(3)]
        os.kill(pid, signal.SIGKILL)
        later = [pool.submit(send_or_retry, server, "video", uploads["video"], f"later{i}")
                 for i in range(3)]
        with pytest.raises(requests.ConnectionError):
            victim.result()
        assert [f.result() for f in during + later] == [200] * 6
    until(lambda: len(server.worker_pids()) == 2 and pid not in server.worker_pids(), 60,
          "a replacement worker")
    folders = Path(server.env["UPLOAD_DIR"])
    until(lambda: not list(folders.glob(f"emotion-uploads-{pid}-*")), 120,
          "the killed worker's folder swept by its replacement")
    assert send(server, "long", long, "victim-again").status_code == 200
    assert requests.get(f"{server.url}/health", timeout=5).status_code == 200
    assert upload_files(server) == []
    assert f"Worker (pid:{pid}) was sent SIGKILL" in server.log.read_text()


def test_gunicorn_stops_when_an_artifact_is_missing(artifacts, tmp_path):
    env = {**artifact_env(artifacts), "UPLOAD_DIR": str(tmp_path),
           "MULTIMODAL_PATH": str(tmp_path / "missing" / "multimodal_best.pth")}
    srv = LocalServer(env, tmp_path / "gunicorn.log").start()
    try:
        code = srv.proc.wait(120)
    finally:
        srv.stop()
    text = srv.log.read_text()
    assert code != 0, text
    assert "cannot start the service" in text and "multimodal_best.pth" in text
    assert "MULTIMODAL_PATH" in text and "ArtifactError" not in text  # one line, no traceback
