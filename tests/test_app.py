"""The HTTP service (emotion/serve/app.py, app.py) through Flask's test client.

The analysis itself is tested in test_predict.py; here a real Analyzer (on the
session's tiny artifacts) checks what goes through, and a fake one stands in
where a test needs an analysis to block, fail or finish at once.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import stat
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import schemathesis
import soundfile as sf
from hypothesis import HealthCheck, settings

from emotion.core.errors import ArtifactError, EmotionError, MediaError, MediaTooLongError
from emotion.core.labels import EMOTIONS
from emotion.serve.analyzer import Analyzer
from emotion.serve.app import OPENAPI, create_app
from emotion.stages.sample_data import make_video, speech_like

FIELDS = {"meeting_id": "meeting-1", "participant_id": "p.01"}


@pytest.fixture(scope="module")
def analyzer(artifacts) -> Analyzer:
    return Analyzer(artifacts["embedder"], artifacts["multimodal"], artifacts["isolation"])


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("upload_media")
    rng = np.random.default_rng(11)
    sf.write(d / "speech.wav", speech_like("happy", duration=5.0, rng=rng), 16_000)
    sf.write(d / "long.wav", speech_like("sad", duration=8.0, rng=rng), 16_000)
    sf.write(d / "silent.wav", np.zeros(16_000 * 2, np.float32), 16_000)
    make_video(d / "talk.mp4", [("happy", 4.0)], seed=1)
    make_video(d / "mute.mp4", [("happy", 3.0)], audio=False, seed=2)
    make_video(d / "blank.mp4", [(None, 3.0)], seed=3)
    (d / "notes.mp4").write_text("minutes of the meeting, not a video\n" * 20)
    return {p.stem: p for p in d.iterdir()}


class FakeAnalyzer:
    """Stands in for Analyzer: records each call; can block on `gate` or raise `error`."""

    def __init__(self, *, gate: threading.Event | None = None, error: Exception | None = None):
        self.gate, self.error = gate, error
        self.entered = threading.Event()
        self.calls: list[dict] = []

    def used(self) -> dict:
        return {"embedder_id": "fake", "window_seconds": 3.0, "hop_seconds": 3.0,
                "label_names": list(EMOTIONS), "versions": {"torch": None},
                "artifacts": {"embedder": "/srv/secret/embedder.pt"}}

    def analyze_file(self, path: str, kind: str) -> dict:
        p = Path(path)
        self.calls.append({"path": p, "kind": kind, "mode": stat.S_IMODE(p.stat().st_mode),
                           "dir_mode": stat.S_IMODE(p.parent.stat().st_mode)})
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(20)
        if self.error is not None:
            raise self.error
        probs = {e: (0.5 if e == "happy" else 0.1) for e in EMOTIONS}
        window = {"start": 0.0, "end": 3.0, "face_found": False, "face_detected": False,
                  "speech_found": True,
                  "emotion": "happy", "emotion_probs": probs, "anomaly_score": -0.1,
                  "anomaly_flag": "normal", "modalities": "audio_only"}
        return {"kind": kind, "source": {kind: str(path)}, "duration": 3.0,
                "emotion": "happy", "emotion_probs": probs, "anomaly_score": -0.1,
                "anomaly_flag": "normal", "modalities": "audio_only", "warnings": [],
                "timeline": [window], "anomalies": [],
                "windows": {"total": 1, "scored": 1, "with_face": 0, "with_face_detected": 0,
                            "with_speech": 1},
                "used": self.used(), "processing_seconds": 0.01}


def make_app(tmp_path: Path, analyzer, **settings):
    config = {"TESTING": True, "UPLOAD_DIR": str(tmp_path / "uploads"), **settings}
    return create_app(config, analyzer=analyzer)


def post(client, file: Path | bytes | None, *, kind: str = "audio", filename: str = "clip",
         headers: dict | None = None, **fields):
    data = {**FIELDS, "type": kind, **fields}
    data = {k: v for k, v in data.items() if v is not None}
    if file is not None:
        content = file if isinstance(file, bytes) else file.read_bytes()
        data["file"] = (io.BytesIO(content), filename)
    return client.post("/analyze", data=data, headers=headers or {},
                       content_type="multipart/form-data")


def leftovers(tmp_path: Path) -> list[Path]:
    """Files left in the upload folder (the worker's private folder itself stays)."""
    return [p for p in (tmp_path / "uploads").rglob("*") if p.is_file()]


def assert_error(response, status: int, error: str, match: str = "") -> dict:
    body = response.get_json()
    assert response.status_code == status, body
    assert set(body) == {"error", "detail"} and body["error"] == error, body
    assert match.lower() in body["detail"].lower(), body
    return body


@pytest.fixture(scope="module")
def api_schema():
    return schemathesis.openapi.from_dict(json.loads(OPENAPI.read_text()))


# ----------------------------------------------------------------- the app and its models
def test_analyze_audio_and_video(analyzer, media, tmp_path, api_schema):
    client = make_app(tmp_path, analyzer).test_client()
    for file, kind in ((media["speech"], "audio"), (media["talk"], "video")):
        r = post(client, file, kind=kind, filename="../../etc/" + file.name)
        body = r.get_json()
        assert r.status_code == 200, body
        api_schema["/analyze"]["POST"].validate_response(r)
        assert (body["meeting_id"], body["participant_id"], body["type"]) == \
            ("meeting-1", "p.01", kind)
        direct = analyzer.analyze_file(file, kind)  # what the analysis itself says
        assert body["emotions"] == {"dominant": direct["emotion"],
                                    "probabilities": direct["emotion_probs"]}
        assert body["timeline"] == direct["timeline"] and len(body["timeline"]) >= 2
        assert body["anomaly"] == {"score": direct["anomaly_score"],
                                   "flag": direct["anomaly_flag"]}
        assert body["duration"] == direct["duration"] > 3
        assert body["windows"]["total"] == len(body["timeline"])
        assert body["models"]["embedder_id"] == analyzer.embedder.embedder_id
        assert body["forwarded"]["enabled"] is False
        assert r.headers["X-Request-ID"] == body["request_id"]
        text = r.get_data(as_text=True)
        assert "artifacts" not in body["models"] and str(tmp_path) not in text
        assert "upload-" not in text and "emotion-uploads" not in text
    assert body["timeline"][0]["face_found"]
    assert leftovers(tmp_path) == []


def test_media_is_judged_by_content_not_name(analyzer, media, tmp_path):
    client = make_app(tmp_path, analyzer).test_client()
    r = post(client, media["talk"], kind="video", filename="song.wav")
    assert r.status_code == 200 and r.get_json()["windows"]["with_face"] > 0
    # type=audio takes a video's voice
    r = post(client, media["talk"], kind="audio", filename="talk.mp4")
    assert r.status_code == 200 and r.get_json()["windows"]["with_face"] == 0
    assert_error(post(client, media["notes"], kind="video", filename="talk.mp4"), 415,
                 "unsupported_media", "undecodable")
    assert_error(post(client, os.urandom(5000), kind="audio", filename="a.wav"), 415,
                 "unsupported_media")
    assert leftovers(tmp_path) == []


def test_a_silent_video_with_a_face_is_answered_image_only(analyzer, media, tmp_path):
    client = make_app(tmp_path, analyzer).test_client()
    r = post(client, media["mute"], kind="video")
    body = r.get_json()
    assert r.status_code == 200, body
    assert body["modalities"] == "image_only" and "no audio track" in " ".join(body["warnings"])
    assert all(w["face_found"] and not w["speech_found"] for w in body["timeline"])


@pytest.mark.parametrize("name,kind,error,match", [
    ("speech", "video", "unprocessable_media", "no video stream (it is audio: send type=audio)"),
    ("blank", "video", "unprocessable_media", "no face in any frame and no speech"),
    ("mute", "audio", "unprocessable_media", "no audio track"),
    ("silent", "audio", "unprocessable_media", "no speech"),
])
def test_media_that_cannot_be_analysed(analyzer, media, tmp_path, name, kind, error, match):
    client = make_app(tmp_path, analyzer).test_client()
    body = assert_error(post(client, media[name], kind=kind), 422, error, match)
    assert "upload-" not in body["detail"] and str(tmp_path) not in body["detail"]
    assert leftovers(tmp_path) == []


def test_media_longer_than_the_maximum(analyzer, media, tmp_path):
    client = make_app(tmp_path, analyzer, MAX_MEDIA_SECONDS=6).test_client()
    assert_error(post(client, media["long"]), 413, "media_too_long", "longer than the maximum")
    assert post(client, media["speech"]).status_code == 200


def test_media_found_too_long_while_decoding(media, tmp_path):
    """When the container understates its duration, the analyzer's own limit answers."""
    fake = FakeAnalyzer(error=MediaTooLongError("x is longer than the maximum of 6 s"))
    client = make_app(tmp_path, fake).test_client()
    assert_error(post(client, media["speech"]), 413, "media_too_long", "maximum of 6 s")


def test_ready_health_and_start_up(analyzer, artifacts, tmp_path):
    client = make_app(tmp_path, analyzer).test_client()
    r = client.get("/ready")
    assert r.status_code == 200 and r.get_json()["status"] == "ready"
    assert "artifacts" not in r.get_json()["models"]
    bare = make_app(tmp_path, None, LOAD_MODELS=False).test_client()
    assert bare.get("/health").get_json() == {"status": "ok"}
    r = bare.get("/ready")
    assert_error(r, 503, "not_ready", "not loaded")
    assert r.headers["Retry-After"].isdigit()
    with pytest.raises(ArtifactError, match="does not exist.*MULTIMODAL_PATH"):
        create_app({"EMBEDDER_PATH": artifacts["embedder"],
                    "MULTIMODAL_PATH": str(tmp_path / "missing.pth"),
                    "ISOLATION_PATH": artifacts["isolation"]})


def test_the_factory_loads_the_artifacts_it_is_given(artifacts, tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDDER_PATH", artifacts["embedder"])
    monkeypatch.setenv("MULTIMODAL_PATH", artifacts["multimodal"])
    monkeypatch.setenv("ISOLATION_PATH", artifacts["isolation"])
    app = create_app({"UPLOAD_DIR": str(tmp_path)})
    assert app.extensions["emotion"].analyzer.options.max_duration == 3600.0
    assert app.test_client().get("/ready").status_code == 200


def test_app_py_stops_with_one_clear_line(tmp_path, monkeypatch, caplog):
    import importlib

    monkeypatch.setenv("EMBEDDER_PATH", str(tmp_path / "nowhere" / "embedder.pt"))
    monkeypatch.setenv("UPLOAD_DIR", str(tmp_path))
    module = importlib.import_module("app")  # importing builds nothing
    with pytest.raises(SystemExit) as stop:
        module.app  # noqa: B018 - gunicorn's access, which builds the app
    assert stop.value.code == 3  # gunicorn's boot error: the server stops
    assert "embedder.pt" in caplog.text and "EMBEDDER_PATH" in caplog.text


def test_bad_settings_are_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("MAX_UPLOAD_MB", "lots")
    with pytest.raises(EmotionError, match="MAX_UPLOAD_MB"):
        make_app(tmp_path, FakeAnalyzer())
    monkeypatch.setenv("MAX_UPLOAD_MB", "10")
    with pytest.raises(EmotionError, match="MAX_CONCURRENT must be positive"):
        make_app(tmp_path, FakeAnalyzer(), MAX_CONCURRENT=0)
    with pytest.raises(EmotionError, match="MAX_QUEUE must be 0 or more"):
        make_app(tmp_path, FakeAnalyzer(), MAX_QUEUE=-1)
    monkeypatch.setenv("MAX_WAIT", "0")
    with pytest.raises(EmotionError, match="MAX_WAIT must be positive"):
        make_app(tmp_path, FakeAnalyzer())


# ----------------------------------------------------------------- requests refused
@pytest.mark.parametrize("change,match", [
    ({"meeting_id": None}, "meeting_id is required"),
    ({"participant_id": ""}, "participant_id is required"),
    ({"meeting_id": "room 1"}, "meeting_id must be"),
    ({"meeting_id": "m\n1"}, "meeting_id must be"),
    ({"participant_id": "x" * 129}, "participant_id must be"),
    ({"participant_id": "émile"}, "participant_id must be"),
    ({"kind": "image"}, "type is required: audio or video"),
    ({"kind": None}, "type is required"),
    ({"file": None}, "file is required"),
    ({"file": b""}, "file is empty"),
])
def test_invalid_fields(media, tmp_path, change, match):
    fake = FakeAnalyzer()
    client = make_app(tmp_path, fake).test_client()
    change = dict(change)
    file = change.pop("file", media["speech"])
    assert_error(post(client, file, **change), 400, "invalid_request", match)
    assert fake.calls == [] and leftovers(tmp_path) == []


def test_upload_too_large(media, tmp_path):
    fake = FakeAnalyzer()
    client = make_app(tmp_path, fake, MAX_UPLOAD_MB=0.05).test_client()
    assert media["speech"].stat().st_size > 0.05 * 2**20
    assert_error(post(client, media["speech"]), 413, "upload_too_large", "0.05 MB")
    assert fake.calls == [] and leftovers(tmp_path) == []


def test_other_http_errors_are_json(tmp_path):
    client = make_app(tmp_path, FakeAnalyzer()).test_client()
    assert_error(client.get("/nowhere"), 404, "not_found")
    r = client.get("/analyze")
    assert_error(r, 405, "method_not_allowed")
    assert "POST" in r.headers["Allow"]
    assert_error(client.post("/analyze", data="x", content_type="text/plain"), 400,
                 "invalid_request", "meeting_id is required")


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


def test_upload_is_a_private_temporary_file_removed_even_on_failure(media, tmp_path, caplog):
    fake = FakeAnalyzer(error=RuntimeError("boom in /srv/secret/model"))
    client = make_app(tmp_path, fake, MAX_CONCURRENT=1).test_client()
    with caplog.at_level(logging.ERROR, logger="emotion.serve.app"):
        r = post(client, media["speech"], filename="../../evil.wav")
    body = assert_error(r, 500, "internal_error", r.headers["X-Request-ID"])
    assert "boom" not in body["detail"] and "Traceback" in caplog.text  # logged, not told
    call = fake.calls[0]
    assert call["mode"] == 0o600 and call["dir_mode"] == 0o700
    assert call["path"].is_relative_to(tmp_path / "uploads") and "evil" not in call["path"].name
    assert not call["path"].exists() and leftovers(tmp_path) == []
    fake.error = None
    assert post(client, media["speech"]).status_code == 200  # the worker keeps serving


def test_analyzer_messages_do_not_show_the_temporary_name(media, tmp_path):
    class NoFace(FakeAnalyzer):
        def analyze_file(self, path, kind):
            raise MediaError(f"{Path(path).name}: no face found in any frame")

    client = make_app(tmp_path, NoFace()).test_client()
    body = assert_error(post(client, media["talk"], kind="video"), 422, "unprocessable_media")
    assert body["detail"] == "the upload: no face found in any frame"


# ----------------------------------------------------------------- headers, logs, CORS
def test_request_id_and_one_log_line_per_request(tmp_path, caplog):
    client = make_app(tmp_path, FakeAnalyzer()).test_client()
    with caplog.at_level(logging.INFO, logger="emotion.serve.app"):
        r = client.get("/health", headers={"X-Request-ID": "req-42.a"})
        assert r.headers["X-Request-ID"] == "req-42.a"
        r = client.post("/analyze", headers={"X-Request-ID": "bad id; drop table"})
    generated = r.headers["X-Request-ID"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    lines = [rec.getMessage() for rec in caplog.records if rec.getMessage().startswith("request ")]
    assert len(lines) == 2
    assert lines[0].startswith("request req-42.a GET /health 200 ") and lines[0].endswith(" ms")
    assert lines[1].startswith(f"request {generated} POST /analyze 400 ")


def test_cors_only_for_configured_origins(tmp_path):
    client = make_app(tmp_path, FakeAnalyzer(),
                      FLASK_CORS_ORIGINS="http://localhost:3000, https://app.example").test_client()
    r = client.get("/health", headers={"Origin": "https://app.example"})
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "X-Request-ID" in r.headers["Access-Control-Expose-Headers"]
    r = client.options("/analyze", headers={"Origin": "http://localhost:3000",
                                            "Access-Control-Request-Method": "POST"})
    assert r.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    r = client.get("/health", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in r.headers
    r = make_app(tmp_path, FakeAnalyzer()).test_client().get(
        "/health", headers={"Origin": "http://localhost:3000"})
    assert "Access-Control-Allow-Origin" not in r.headers


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


# ----------------------------------------------------------------- the API's document
def test_openapi_document_is_served_and_matches_the_code(tmp_path):
    client = make_app(tmp_path, FakeAnalyzer()).test_client()
    r = client.get("/openapi.json")
    assert r.status_code == 200 and r.mimetype == "application/json"
    doc = r.get_json()
    assert doc == json.loads(OPENAPI.read_text())
    schemas = doc["components"]["schemas"]
    assert schemas["Probabilities"]["required"] == list(EMOTIONS)
    assert schemas["Window"]["properties"]["emotion"]["enum"] == [*EMOTIONS, None]
    assert set(doc["paths"]) == {"/analyze", "/health", "/ready", "/openapi.json"}


@pytest.fixture(scope="module")
def fuzz_app(analyzer, tmp_path_factory):
    return create_app({"TESTING": True, "UPLOAD_DIR": str(tmp_path_factory.mktemp("fuzz"))},
                      analyzer=analyzer)


@pytest.mark.slow
@schemathesis.openapi.from_path(str(OPENAPI)).parametrize()
@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzzing_finds_no_server_error(case, fuzz_app):
    """Generated requests, valid and not, for every operation: no 5xx, and every answer
    is one the document describes. (A schema-valid upload may still be refused: no
    schema says "a video with a face and a voice", so that check is left out.)"""
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    case.call_and_validate(app=fuzz_app, excluded_checks=[positive_data_acceptance])
