"""What /analyze and /jobs share: the form, the upload, judging the file, the
analysis' expected failures as HTTP errors, and the answer's JSON.

A job's result is the same JSON /analyze answers, and a job that fails says what
/analyze would have said (:func:`run_analysis`, :class:`ServiceError`).
"""

from __future__ import annotations

import os
import re

from flask import request

from emotion.core.errors import MediaError, MediaTooLongError, UndecodableMediaError
from emotion.media.decode import probe

KINDS = ("audio", "video")
ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")          # meeting_id, participant_id


class ServiceError(Exception):
    """An expected refusal: answered with `status` and {"error", "detail"}."""

    def __init__(self, status: int, error: str, detail: str, *, retry_after: int | None = None):
        super().__init__(detail)
        self.status, self.error, self.detail, self.retry_after = status, error, detail, retry_after

    def as_dict(self) -> dict:
        return {"status": self.status, "error": self.error, "detail": self.detail}


def read_form() -> dict:
    out = {}
    for name in ("meeting_id", "participant_id"):
        value = request.form.get(name)
        if value is None or value == "":
            raise ServiceError(400, "invalid_request", f"{name} is required")
        if not ID_RE.fullmatch(value):
            raise ServiceError(400, "invalid_request", f"{name} must be 1 to 128 characters "
                               "among letters, digits and . _ : -")
        out[name] = value
    kind = request.form.get("type")
    if kind not in KINDS:
        raise ServiceError(400, "invalid_request", "type is required: audio or video")
    out["type"] = kind
    return out


def uploaded_file() -> str:
    upload = request.files.get("file")
    if upload is None:
        raise ServiceError(400, "invalid_request", "file is required (a multipart file part "
                           "named 'file')")
    upload.stream.flush()
    path = upload.stream.name
    if os.path.getsize(path) == 0:
        raise ServiceError(400, "invalid_request", "file is empty")
    return path


def judge(path: str, kind: str, max_seconds: float) -> None:
    """What the file is, by its content; refuse early what cannot be analysed."""
    try:
        info = probe(path)
    except MediaError:
        raise ServiceError(415, "unsupported_media", "unsupported or undecodable media: "
                           "send audio or video that FFmpeg can decode") from None
    if kind == "video" and not info.has_video:
        raise ServiceError(422, "unprocessable_media", "type is video but the file holds no "
                           "video stream" + (" (it is audio: send type=audio)"
                                             if info.has_audio else ""))
    if info.duration > max_seconds:
        raise ServiceError(413, "media_too_long", f"the media lasts {info.duration:.0f} s, "
                           f"longer than the maximum of {max_seconds:g} s")


def run_analysis(analyzer, path: str, kind: str, on_window=None) -> dict:
    """The analysis, its expected failures as ServiceErrors (413, 415, 422)."""
    try:
        if on_window is None:
            return analyzer.analyze_file(path, kind)
        return analyzer.analyze_file(path, kind, on_window=on_window)
    except MediaError as e:
        # messages name the file by its base name only: a generated one, replaced here
        detail = str(e).replace(os.path.basename(path), "the upload")
        if isinstance(e, MediaTooLongError):
            raise ServiceError(413, "media_too_long", detail) from None
        if isinstance(e, UndecodableMediaError):
            raise ServiceError(415, "unsupported_media",
                               f"unsupported or undecodable media: {detail}") from None
        raise ServiceError(422, "unprocessable_media", detail) from None


def public_models(used: dict) -> dict:
    """What the artifacts are, without where they are on this server."""
    return {k: v for k, v in used.items() if k != "artifacts"}


def summary(result: dict) -> dict:
    return {
        "duration": result["duration"],
        "emotions": {"dominant": result["emotion"], "probabilities": result["emotion_probs"]},
        "anomaly": {"score": result["anomaly_score"], "flag": result["anomaly_flag"]},
        "modalities": result["modalities"],
        "warnings": result["warnings"],
        "timeline": result["timeline"],
        "anomalies": result["anomalies"],
        "windows": result["windows"],
        "models": public_models(result["used"]),
        "processing_seconds": result["processing_seconds"],
        # videos: one timeline per participant, and the speech no face on screen made
        **{k: result[k] for k in ("participants", "unseen_speaker") if k in result},
    }
