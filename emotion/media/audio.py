"""Audio: constants, loading, clip preparation and the log-mel.

Training (preprocessing_audio.py) and inference (predict.py, the API) call the
same :func:`prepare_clip` and :func:`log_mel`, so a clip is featurised one way.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from emotion.core.errors import MediaError

SAMPLE_RATE = 16_000
N_FFT = 400          # 25 ms window
HOP_LENGTH = 160     # 10 ms hop
N_MELS = 64
FIXED_DURATION = 3.0
TOP_DB_TRIM = 30.0   # librosa.effects.trim threshold below the peak
TOP_DB_MEL = 80.0    # dynamic range kept in the log-mel
SILENCE_PEAK = 1e-4  # -80 dBFS: a clip whose peak is below this holds no signal
PEAK_LEVEL = 0.9     # peak after normalisation
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
MIN_TAIL = 0.25      # seconds: a last window shorter than this (codec padding) is dropped


@dataclass(frozen=True)
class AudioParams:
    """Everything that decides how a waveform becomes features; saved with the data."""

    sample_rate: int = SAMPLE_RATE
    n_fft: int = N_FFT
    hop_length: int = HOP_LENGTH
    n_mels: int = N_MELS
    fixed_duration: float = FIXED_DURATION
    top_db_trim: float = TOP_DB_TRIM
    top_db_mel: float = TOP_DB_MEL

    @property
    def n_samples(self) -> int:
        return int(round(self.fixed_duration * self.sample_rate))

    @property
    def n_frames(self) -> int:
        return self.n_samples // self.hop_length + 1


def load_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 mono in [-1, 1] and its sample rate.

    soundfile handles WAV of any integer or float width, FLAC and OGG.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise MediaError("empty file (0 bytes)")
        y, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except MediaError:
        raise
    except FileNotFoundError:
        raise MediaError(f"no such file: {path}") from None
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as e:
        raise MediaError(f"unreadable audio ({e})") from None
    return to_mono(y), int(sr)


def to_mono(y: np.ndarray) -> np.ndarray:
    """(n,) or (n, channels) -> (n,) float32, averaging channels."""
    y = np.asarray(y, dtype=np.float32)
    if y.ndim == 2:
        y = y.mean(axis=1)
    return np.ascontiguousarray(y)


RESAMPLE_QUALITY = "HQ"


def resample(y: np.ndarray, sr: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """A whole signal to `target` Hz (soxr); :class:`StreamResampler` gives the same samples."""
    if sr == target:
        return y
    import soxr

    return soxr.resample(y, sr, target, quality=RESAMPLE_QUALITY).astype(np.float32, copy=False)


class StreamResampler:
    """Mono chunks at `in_rate`, resampled as they come (decoding a long file).

    soxr's stream gives exactly the samples :func:`resample` gives for the whole
    signal, so a window cut from a decoded file holds what preprocessing would
    compute for the same samples.
    """

    def __init__(self, in_rate: int, out_rate: int = SAMPLE_RATE):
        import soxr

        self._stream = None if in_rate == out_rate else soxr.ResampleStream(
            in_rate, out_rate, 1, dtype="float32", quality=RESAMPLE_QUALITY)

    def __call__(self, chunk: np.ndarray, *, last: bool = False) -> np.ndarray:
        chunk = np.ascontiguousarray(chunk, dtype=np.float32)
        if self._stream is None:
            return chunk
        return self._stream.resample_chunk(chunk, last=last)


def split_windows(y: np.ndarray, sr: int, window: float, hop: float | None = None
                  ) -> list[np.ndarray]:
    """The windows serving cuts from a recording (media.decode.iter_windows does the
    same while decoding): starts every `hop` seconds, the last one ending with the
    recording, a last window shorter than MIN_TAIL dropped (but never the first)."""
    hop = hop or window
    end = len(y) / sr
    out = []
    k = 0
    while k * hop < end - 1e-9:
        start = k * hop
        if k and start >= end - MIN_TAIL:
            break
        out.append(y[int(round(start * sr)):int(round(min(start + window, end) * sr))])
        k += 1
    return out or [y]


def trim_silence(y: np.ndarray, params: AudioParams = AudioParams()) -> np.ndarray:
    """Leading and trailing parts quieter than the clip's peak by top_db_trim, cut."""
    import librosa

    return librosa.effects.trim(y, top_db=params.top_db_trim, frame_length=params.n_fft,
                                hop_length=params.hop_length)[0]


def prepare_clip(y: np.ndarray, sr: int, params: AudioParams = AudioParams(),
                 *, trim: bool = True) -> tuple[np.ndarray, float]:
    """Resample, trim silence, peak-normalise and pad/cut to the fixed duration.

    Returns the clip (params.n_samples,) and the speech duration in seconds
    before padding. Raises MediaError for a clip with no usable signal.
    """
    if y.size == 0:
        raise MediaError("zero-length audio")
    if not np.all(np.isfinite(y)):
        raise MediaError("audio holds NaN or infinite samples")
    y = resample(to_mono(y), sr, params.sample_rate)
    if float(np.max(np.abs(y), initial=0.0)) < SILENCE_PEAK:
        raise MediaError("only silence (peak below -80 dBFS)")
    if trim:
        y = trim_silence(y, params)
    duration = y.size / params.sample_rate
    y = y * np.float32(PEAK_LEVEL / max(float(np.max(np.abs(y))), SILENCE_PEAK))
    n = params.n_samples
    if y.size >= n:
        start = (y.size - n) // 2  # the middle of a long clip, where speech is
        y = y[start:start + n]
    else:
        y = np.pad(y, (0, n - y.size))
    return y.astype(np.float32, copy=False), float(duration)


@functools.lru_cache(maxsize=8)
def mel_basis(sr: int, n_fft: int, n_mels: int):
    """librosa's mel filterbank (Slaney scale and norm), as a torch matrix."""
    import librosa
    import torch

    return torch.from_numpy(librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels))


@functools.lru_cache(maxsize=8)
def _window(n_fft: int):
    import torch

    return torch.hann_window(n_fft)


def log_mel(clips: np.ndarray, params: AudioParams = AudioParams()) -> np.ndarray:
    """Log-mel spectrogram in dB, (n_mels, frames) or (batch, n_mels, frames).

    Equal to librosa.feature.melspectrogram (power 2, centred, zero padding)
    followed by power_to_db(ref=max, top_db) but computed with torch.stft,
    which is faster, and batchable.
    """
    import torch

    x = torch.as_tensor(np.asarray(clips, dtype=np.float32))
    single = x.ndim == 1
    if single:
        x = x[None]
    spec = torch.stft(x, params.n_fft, hop_length=params.hop_length, window=_window(params.n_fft),
                      center=True, pad_mode="constant", return_complex=True)
    power = spec.real.square() + spec.imag.square()
    mel = mel_basis(params.sample_rate, params.n_fft, params.n_mels) @ power
    db = 10.0 * torch.log10(torch.clamp(mel, min=1e-10))
    ref = db.amax(dim=(-2, -1), keepdim=True)
    db = torch.maximum(db - ref, torch.tensor(-params.top_db_mel))
    out = db.numpy().astype(np.float32, copy=False)
    return out[0] if single else out
