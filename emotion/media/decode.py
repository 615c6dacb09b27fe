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

from emotion.core.errors import MediaError, MediaTooLongError, UndecodableMediaError
from emotion.media.audio import MIN_TAIL, StreamResampler, to_mono

log = logging.getLogger(__name__)

MAX_FRAME_SIDE = 720   # frames are scaled down to this before face detection
FRAMES_PER_WINDOW = 3
DENSE_FPS = 25.0       # the active-speaker network's frame rate (Light-ASD)


@dataclass(frozen=True)
class MediaInfo:
    duration: float          # seconds; 0.0 when the container does not say
    has_video: bool
    has_audio: bool
    format: str
    width: int = 0           # the first video stream's frame size (0 without one)
    height: int = 0


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
        size = (int(video[0].codec_context.width or 0), int(video[0].codec_context.height or 0)) \
            if video else (0, 0)
        # An image decoded by FFmpeg is a one-frame "video" with no duration.
        return MediaInfo(duration, bool(video), bool(audio), fmt, *size)


@dataclass
class Window:
    index: int
    start: float
    end: float
    audio: np.ndarray | None = None            # float32 mono at the requested rate
    frames: list[np.ndarray] = field(default_factory=list)  # RGB uint8
    times: list[float] = field(default_factory=list)         # each frame's time
    slots: list[float] = field(default_factory=list)         # frame times still wanted
    # with dense_fps: grey frames at that rate (the same scale as `frames`), their times
    gray: list[np.ndarray] = field(default_factory=list)
    gray_times: list[float] = field(default_factory=list)
    gray_slots: list[float] = field(default_factory=list)


def _gray(frame, max_side: int) -> np.ndarray:
    """A frame's luma as 8-bit grey at `_scaled`'s size. The Y plane of a YUV frame is
    its grey picture (limited range stretched to full, as cv2's RGB-to-grey gives);
    taking it costs a copy, where FFmpeg's conversion costs milliseconds."""
    import cv2

    w, h = frame.width, frame.height
    fmt = frame.format.name
    # 8-bit planar luma only: a 10-bit format ("...10le") stores two bytes a sample
    if fmt.startswith(("yuv", "nv12", "nv21")) and not fmt.endswith(("le", "be")) \
            and frame.planes:
        plane = frame.planes[0]
        y = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:h, :w]
        if not fmt.startswith("yuvj"):
            y = cv2.convertScaleAbs(y, alpha=255 / 219, beta=-16 * 255 / 219)
    else:
        y = frame.to_ndarray(format="gray")
    s = min(1.0, max_side / max(w, h))
    if s < 1.0:
        size = (max(2, int(w * s) // 2 * 2), max(2, int(h * s) // 2 * 2))
        return cv2.resize(y, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(y)


def _scaled(frame, max_side: int) -> np.ndarray:
    w, h = frame.width, frame.height
    s = min(1.0, max_side / max(w, h))
    if s < 1.0:
        return frame.to_ndarray(format="rgb24", width=max(2, int(w * s) // 2 * 2),
                                height=max(2, int(h * s) // 2 * 2))
    return frame.to_ndarray(format="rgb24")


class _Cutter:
    """The windows still open while a file is decoded, and the audio they need.

    Audio samples are kept from absolute index `buf_start` on; a window is
    emitted once every sample and frame slot of it has been decoded (or the
    file has ended), and the samples no later window needs are dropped.
    """

    def __init__(self, *, window: float, hop: float, sample_rate: int,
                 frames_per_window: int, has_audio: bool, has_video: bool,
                 dense_fps: float | None = None):
        self.window, self.hop, self.sr = window, hop, sample_rate
        self.frames_per_window = frames_per_window
        self.dense_fps = dense_fps
        self.last_frame: tuple[float, np.ndarray] | None = None  # for a short last window
        self.has_audio, self.has_video = has_audio, has_video
        self.buf: list[np.ndarray] = []
        self.buf_start = 0
        self.n_audio = 0              # samples decoded so far
        self.t_video = 0.0            # time of the last decoded frame
        self.pending: list[Window] = []
        self.next_index = 0

    @property
    def decoded_until(self) -> float:
        return max(self.n_audio / self.sr if self.has_audio else 0.0, self.t_video)

    def open_until(self, t: float) -> None:
        """Open every window that starts at or before `t`."""
        while self.next_index * self.hop <= t:
            start = self.next_index * self.hop
            step = self.window / self.frames_per_window
            dense = ([start + k / self.dense_fps
                      for k in range(int(round(self.window * self.dense_fps)))]
                     if self.dense_fps else [])
            self.pending.append(Window(self.next_index, start, start + self.window,
                                       slots=[start + (k + 0.5) * step
                                              for k in range(self.frames_per_window)],
                                       gray_slots=dense))
            self.next_index += 1

    def add_frame(self, frame, t: float) -> None:
        """Give the frame at time `t` to every open window with a slot at or before it."""
        self.t_video = t
        self.open_until(t)
        rgb = gray = None
        for w in self.pending:
            while w.slots and w.slots[0] <= t:
                w.slots.pop(0)
                if rgb is None:
                    rgb = _scaled(frame, MAX_FRAME_SIDE)
                w.frames.append(rgb)
                w.times.append(t)
            # every dense slot up to this frame takes it (a slower video repeats frames)
            while w.gray_slots and w.gray_slots[0] <= t + 0.5 / (self.dense_fps or 1):
                w.gray_slots.pop(0)
                if gray is None:
                    gray = _gray(frame, MAX_FRAME_SIDE)
                w.gray.append(gray)
                w.gray_times.append(t)
        self.last_frame = (t, frame)

    def add_audio(self, samples: np.ndarray) -> None:
        self.buf.append(samples)
        self.n_audio += len(samples)
        self.open_until(self.n_audio / self.sr)

    def _ready(self, w: Window, final: bool) -> bool:
        if final:
            return True
        audio_ok = not self.has_audio or self.n_audio >= int(round(w.end * self.sr))
        video_ok = not self.has_video or (not w.slots and not w.gray_slots)
        return audio_ok and video_ok

    def _slice(self, start: float, end: float) -> np.ndarray:
        a, b = int(round(start * self.sr)), int(round(end * self.sr))
        data = np.concatenate(self.buf) if self.buf else np.zeros(0, np.float32)
        self.buf[:] = [data] if len(data) else []
        return data[max(0, a - self.buf_start):max(0, b - self.buf_start)].copy()

    def _drop_before(self, t: float) -> None:
        keep_from = int(round(t * self.sr))
        if self.buf and keep_from > self.buf_start:
            data = np.concatenate(self.buf)
            cut = min(len(data), keep_from - self.buf_start)
            self.buf[:] = [data[cut:]] if len(data) > cut else []
            self.buf_start += cut

    def emit(self, final: bool = False) -> Iterator[Window]:
        """The windows that are complete (all of them when `final`), in order."""
        while self.pending and self._ready(self.pending[0], final):
            w = self.pending.pop(0)
            w.end = min(w.end, self.decoded_until) if final else w.end
            if w.end - w.start <= 0:
                continue
            if self.has_audio:
                w.audio = self._slice(w.start, w.end)
            if final and not w.frames and self.last_frame and self.last_frame[0] >= w.start:
                # a last window shorter than the frame spacing: its slots fell after the
                # end, but its frames are on screen (the last decoded one stands for them)
                w.frames.append(_scaled(self.last_frame[1], MAX_FRAME_SIDE))
                w.times.append(self.last_frame[0])
            w.slots, w.gray_slots = [], []
            self._drop_before(self.pending[0].start if self.pending else w.end)
            yield w

    def finish(self) -> Iterator[Window]:
        """After the last packet: close the windows that hold anything."""
        end_time = self.decoded_until
        self.open_until(max(0.0, end_time - 1e-9))
        # windows that would start at or after the end hold nothing
        self.pending[:] = [w for w in self.pending
                           if w.start < end_time - MIN_TAIL or w.index == 0]
        yield from self.emit(final=True)


class _AudioTrack:
    """An audio stream's frames as mono float32 at the training rate.

    The same steps as preprocessing's: samples as floats (FFmpeg's s16 to float is
    soundfile's, x / 32768), channels averaged (:func:`to_mono`), then soxr at the
    training rate (:class:`StreamResampler`, which equals preprocessing's resample).
    """

    def __init__(self, stream, sample_rate: int):
        import av

        self.to_float = av.AudioResampler(format="fltp")  # same layout and rate
        self.out_rate = sample_rate
        self.resampler: StreamResampler | None = None

    def _mono(self, frame) -> Iterator[np.ndarray]:
        for out in self.to_float.resample(frame):
            if self.resampler is None:
                self.resampler = StreamResampler(int(out.sample_rate), self.out_rate)
            yield to_mono(out.to_ndarray().T)

    def samples(self, frame) -> Iterator[np.ndarray]:
        for mono in self._mono(frame):
            yield self.resampler(mono)

    def flush(self) -> Iterator[np.ndarray]:
        tail = list(self._mono(None))
        if self.resampler is not None:
            yield self.resampler(np.concatenate(tail) if tail else np.zeros(0, np.float32),
                                 last=True)


def _feed(packet, video_stream, track: _AudioTrack | None, cut: _Cutter) -> None:
    """Decode one packet into `cut`; a packet that does not decode is skipped."""
    import av

    try:
        frames = packet.decode()
    except av.error.FFmpegError as e:
        log.debug("skipping a packet that does not decode: %s", e)
        return
    for frame in frames:
        if packet.stream is video_stream:
            if frame.time is not None:
                cut.add_frame(frame, float(frame.time))
        else:
            for samples in track.samples(frame):
                cut.add_audio(samples)


def iter_windows(path: str | Path, *, window: float, hop: float, sample_rate: int,
                 frames_per_window: int = FRAMES_PER_WINDOW, use_video: bool = True,
                 use_audio: bool = True, max_duration: float | None = None,
                 dense_fps: float | None = None) -> Iterator[Window]:
    """Decode once, in order, and yield each window when everything in it is decoded.

    A window holds the audio of [start, end) (None when the file has no audio
    track) and up to `frames_per_window` frames at evenly spaced times in it;
    with `dense_fps`, also its frames in grey at that rate (for lip movement).
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
        track = _AudioTrack(as_, sample_rate) if as_ is not None else None
        cut = _Cutter(window=window, hop=hop, sample_rate=sample_rate,
                      frames_per_window=frames_per_window, has_audio=as_ is not None,
                      has_video=vs is not None, dense_fps=dense_fps)
        for packet in c.demux(*[s for s in (vs, as_) if s is not None]):
            _feed(packet, vs, track, cut)
            if max_duration is not None and cut.decoded_until > max_duration:
                raise MediaTooLongError(f"{Path(path).name} is longer than the maximum of "
                                        f"{max_duration:.0f} s")
            yield from cut.emit()
        if track is not None:
            for samples in track.flush():
                cut.add_audio(samples)
        yield from cut.finish()
    except av.error.FFmpegError as e:
        raise UndecodableMediaError(f"{Path(path).name}: decoding failed ({_reason(e)})"
                                    ) from None
    finally:
        c.close()
