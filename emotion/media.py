"""Decoding media for analysis, streamed: memory stays bounded for hour-long files.

PyAV decodes every container and codec the service accepts (no system ffmpeg
needed). What a file is, is judged by its content, never by its name.
:func:`iter_windows` walks a video's (or an audio file's) packets once, in
order, and yields fixed windows, each with its audio samples at the training
sample rate and a few RGB frames sampled across it; only the current windows'
samples and frames are held.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import MediaError, MediaTooLongError, UndecodableMediaError

log = logging.getLogger(__name__)

MAX_FRAME_SIDE = 720   # frames are scaled down to this before face detection
FRAMES_PER_WINDOW = 3
MIN_TAIL = 0.25        # seconds: a last window shorter than this (codec padding) is dropped


@dataclass(frozen=True)
class MediaInfo:
    duration: float          # seconds; 0.0 when the container does not say
    has_video: bool
    has_audio: bool
    format: str


def _open(path: str | Path):
    import av

    try:
        return av.open(str(path), metadata_errors="ignore")
    except FileNotFoundError:
        raise MediaError(f"{Path(path).name}: no such file") from None
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise UndecodableMediaError(f"{Path(path).name}: cannot be decoded as audio or video "
                         f"({_reason(e)})") from None


def _reason(e: Exception) -> str:
    """FFmpeg's reason without the file's path (which may be a server's temporary name)."""
    return str(getattr(e, "strerror", None) or type(e).__name__)


def probe(path: str | Path) -> MediaInfo:
    """What the file holds, by its content."""
    with _open(path) as c:
        video = [s for s in c.streams.video if s.codec_context is not None]
        audio = [s for s in c.streams.audio if s.codec_context is not None]
        duration = 0.0
        if c.duration:
            duration = float(c.duration) / 1_000_000  # av.time_base
        else:
            for s in video + audio:
                if s.duration and s.time_base:
                    duration = max(duration, float(s.duration * s.time_base))
        fmt = c.format.name if c.format else "unknown"
        # An image decoded by FFmpeg is a one-frame "video" with no duration.
        return MediaInfo(duration, bool(video), bool(audio), fmt)


@dataclass
class Window:
    index: int
    start: float
    end: float
    audio: np.ndarray | None = None            # float32 mono at the requested rate
    frames: list[np.ndarray] = field(default_factory=list)  # RGB uint8
    slots: list[float] = field(default_factory=list)         # frame times still wanted


def _scaled(frame, max_side: int) -> np.ndarray:
    w, h = frame.width, frame.height
    s = min(1.0, max_side / max(w, h))
    if s < 1.0:
        return frame.to_ndarray(format="rgb24", width=max(2, int(w * s) // 2 * 2),
                                height=max(2, int(h * s) // 2 * 2))
    return frame.to_ndarray(format="rgb24")


def iter_windows(path: str | Path, *, window: float, hop: float, sample_rate: int,
                 frames_per_window: int = FRAMES_PER_WINDOW, use_video: bool = True,
                 use_audio: bool = True, max_duration: float | None = None
                 ) -> Iterator[Window]:
    """Decode once, in order, and yield each window when everything in it is decoded.

    A window holds the audio of [start, end) (None when the file has no audio
    track) and up to `frames_per_window` frames at evenly spaced times in it.
    The last window ends where the media ends. Raises MediaError for a file
    that cannot be decoded, or that exceeds `max_duration` seconds.
    """
    import av

    if window <= 0 or hop <= 0:
        raise MediaError(f"window {window} s and hop {hop} s must be positive")
    c = _open(path)
    try:
        vs = c.streams.video[0] if (use_video and c.streams.video) else None
        as_ = c.streams.audio[0] if (use_audio and c.streams.audio) else None
        if vs is None and as_ is None:
            raise UndecodableMediaError(f"{Path(path).name}: holds no usable video or audio "
                                        "stream")
        if vs is not None:
            vs.thread_type = "AUTO"
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate) \
            if as_ is not None else None
        # audio buffer: samples from absolute sample index `buf_start` on
        buf: list[np.ndarray] = []
        buf_start = 0
        n_audio = 0                  # samples decoded so far
        t_video = 0.0                # time of the last decoded frame
        video_done = vs is None
        audio_done = as_ is None
        pending: list[Window] = []
        next_index = 0

        def open_windows_until(t: float) -> None:
            nonlocal next_index
            while next_index * hop <= t:
                start = next_index * hop
                step = window / frames_per_window
                pending.append(Window(next_index, start, start + window,
                                      slots=[start + (k + 0.5) * step
                                             for k in range(frames_per_window)]))
                next_index += 1

        def audio_slice(start: float, end: float) -> np.ndarray:
            a, b = int(round(start * sample_rate)), int(round(end * sample_rate))
            data = np.concatenate(buf) if len(buf) > 1 else (buf[0] if buf else
                                                             np.zeros(0, np.float32))
            buf[:] = [data] if len(data) else []
            return data[max(0, a - buf_start):max(0, b - buf_start)].copy()

        def ready(w: Window, final: bool) -> bool:
            if final:
                return True
            audio_ok = audio_done or n_audio >= int(round(w.end * sample_rate))
            video_ok = video_done or not w.slots
            return audio_ok and video_ok

        def emit(final: bool = False) -> Iterator[Window]:
            nonlocal buf_start
            while pending and ready(pending[0], final):
                w = pending.pop(0)
                end_time = max(n_audio / sample_rate if as_ is not None else 0.0, t_video)
                w.end = min(w.end, end_time) if final else w.end
                if w.end - w.start <= 0:
                    continue
                if as_ is not None:
                    w.audio = audio_slice(w.start, w.end)
                w.slots = []
                # drop samples no later window needs
                keep_from = int(round(((pending[0].start if pending else w.end))
                                      * sample_rate))
                if buf and keep_from > buf_start:
                    data = np.concatenate(buf)
                    cut = min(len(data), keep_from - buf_start)
                    buf[:] = [data[cut:]] if len(data) > cut else []
                    buf_start += cut
                yield w

        streams = [s for s in (vs, as_) if s is not None]
        for packet in c.demux(*streams):
            try:
                frames = packet.decode()
            except av.error.FFmpegError as e:
                log.debug("skipping a packet that does not decode: %s", e)
                continue
            for frame in frames:
                if packet.stream is vs:
                    if frame.time is None:
                        continue
                    t_video = float(frame.time)
                    open_windows_until(t_video)
                    rgb = None
                    for w in pending:
                        while w.slots and w.slots[0] <= t_video:
                            w.slots.pop(0)
                            if rgb is None:
                                rgb = _scaled(frame, MAX_FRAME_SIDE)
                            w.frames.append(rgb)
                else:
                    for out in resampler.resample(frame):
                        samples = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                        buf.append(samples)
                        n_audio += len(samples)
                    open_windows_until(n_audio / sample_rate)
            if max_duration is not None and max(t_video, n_audio / sample_rate) > max_duration:
                raise MediaTooLongError(f"{Path(path).name} is longer than the maximum of "
                                 f"{max_duration:.0f} s")
            yield from emit()
        if resampler is not None:
            for out in resampler.resample(None):
                samples = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                buf.append(samples)
                n_audio += len(samples)
        video_done = audio_done = True
        end_time = max(n_audio / sample_rate if as_ is not None else 0.0, t_video)
        open_windows_until(max(0.0, end_time - 1e-9))
        # windows that would start at or after the end hold nothing
        pending[:] = [w for w in pending if w.start < end_time - MIN_TAIL or w.index == 0]
        yield from emit(final=True)
    except av.error.FFmpegError as e:
        raise UndecodableMediaError(f"{Path(path).name}: decoding failed ({_reason(e)})"
                                    ) from None
    finally:
        c.close()

