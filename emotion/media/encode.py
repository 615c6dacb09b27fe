"""Writing media: an mp4 (h264 + aac) from frames and a waveform, for generated and
composed test videos."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_video(path: str | Path, segments, *, fps: int, sr: int = 16_000,
                audio: bool = True, audio_codec: str = "aac") -> Path:
    """Encode a video (h264 + aac; pcm_s16le in an .mkv for lossless sound) from
    segments (frame_at, seconds, waveform or None).

    frame_at(i) gives the segment's i-th RGB frame (all frames one size, even
    sides); the waveform (mono float32 at `sr`) is padded or cut to the segment.
    Segments are encoded one after the other: nothing is held but the current one.
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        vs = as_ = None
        for frame_at, seconds, y in segments:
            n = int(round(seconds * fps))
            for i in range(n):
                rgb = frame_at(i)
                if vs is None:
                    vs = out.add_stream("libx264", rate=fps)
                    vs.height, vs.width = rgb.shape[:2]
                    vs.pix_fmt = "yuv420p"
                    vs.options = {"preset": "ultrafast"}
                    if audio:
                        as_ = out.add_stream(audio_codec, rate=sr, layout="mono")
                for packet in vs.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                    out.mux(packet)
            if as_ is not None:
                k = int(round(seconds * sr))
                y = np.zeros(k, np.float32) if y is None else np.asarray(y, np.float32)
                y = np.pad(y, (0, max(0, k - len(y))))[:k]
                for i in range(0, k, 1024):
                    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(y[None, i:i + 1024]),
                                                       format="flt", layout="mono")
                    frame.sample_rate = sr
                    for packet in as_.encode(frame):
                        out.mux(packet)
        for stream in (vs, as_):
            if stream is not None:
                for packet in stream.encode():
                    out.mux(packet)
    return path
