"""What the Flask test-client tests of the service share: a fake analyzer, the app, a POST.

test_app.py and test_app_traffic.py import it (the tests folder is on sys.path
under pytest); the fixtures they share (media, api_schema) are in conftest.py.
"""

from __future__ import annotations

import io
import stat
import threading
from pathlib import Path

from emotion.core.labels import EMOTIONS
from emotion.serve.app import create_app

FIELDS = {"meeting_id": "meeting-1", "participant_id": "p.01"}


class FakeAnalyzer:
    """Stands in for Analyzer: records each call; can block on `gate` or raise `error`."""

    def __init__(self, *, gate: threading.Event | None = None, error: Exception | None = None,
                 windows: int = 1):
        self.gate, self.error, self.windows = gate, error, windows
        self.entered = threading.Event()
        self.calls: list[dict] = []

    def used(self) -> dict:
        return {"embedder_id": "fake", "window_seconds": 3.0, "hop_seconds": 3.0,
                "label_names": list(EMOTIONS), "versions": {"torch": None},
                "artifacts": {"embedder": "/srv/secret/embedder.pt"}}

    def analyze_file(self, path: str, kind: str, on_window=None) -> dict:
        p = Path(path)
        self.calls.append({"path": p, "kind": kind, "mode": stat.S_IMODE(p.stat().st_mode),
                           "dir_mode": stat.S_IMODE(p.parent.stat().st_mode)})
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(20)
        if self.error is not None:
            raise self.error
        probs = {e: (0.5 if e == "happy" else 0.1) for e in EMOTIONS}
        timeline = []
        for i in range(self.windows):
            timeline.append({"start": 3.0 * i, "end": 3.0 * i + 3.0, "face_found": False,
                             "face_detected": False, "speech_found": True, "emotion": "happy",
                             "emotion_probs": probs, "anomaly_score": -0.1,
                             "anomaly_flag": "normal", "modalities": "audio_only"})
            if on_window is not None:
                on_window(timeline[-1], i + 1, self.windows)
        return {"kind": kind, "source": {kind: str(path)}, "duration": 3.0 * self.windows,
                "emotion": "happy", "emotion_probs": probs, "anomaly_score": -0.1,
                "anomaly_flag": "normal", "modalities": "audio_only", "warnings": [],
                "timeline": timeline, "anomalies": [],
                "windows": {"total": self.windows, "scored": self.windows, "with_face": 0,
                            "with_face_detected": 0, "with_speech": self.windows},
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
