"""Is anyone speaking? silero-vad's model, run by onnxruntime, level-independent.

silero-vad (MIT) ships its models inside its wheel; the "sequence" ONNX export
runs a whole window in one call and gives, bit for bit, the per-32-ms speech
probabilities of its streaming model. The file is found without importing the
package (whose import pins torch to one thread) and run here with numpy and
onnxruntime. Training (preprocessing_audio.py, the voice branch's windows) and
serving gate audio with this same detector.

A window is first brought to a -6 dBFS peak (LEVEL_NORMALISED; silero's own
probabilities fall with the level: 35 % of RAVDESS clips went unheard 30 dB down),
then holds speech when at least MIN_SPEECH_SECONDS of its 32-ms frames have a
speech probability of at least THRESHOLD. A window refused so is heard again played
slower (SLOWED_VIEWS: resampled as if recorded faster, so pitch and tempo drop
together): silero misses high, strained voices (shouted, fearful, a quarter of one
RAVDESS actress's clips) that it hears once they are lower, while silence, hum and
noise are not speech at any speed (issue 24). A window still refused, though a slowed
hearing half-heard it (PITCH_HINT), is speech when librosa's pYIN finds it voiced for
PITCH_SECONDS (PITCH_OPINION: a scream near 900 Hz that silero gives 0.47 at most).
Measured on RAVDESS and EMOVO speech at
0 to -30 dB against silence, hum and noise (bench/speech_gate.py; README, "The speech
gate"): unlike the energy gate before it, it hears quiet speakers and does not take
loud noise for a voice.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from emotion.core.paths import installed_path

PACKAGE = "silero_vad"
MODEL = "silero_vad_16k_sequence.onnx"
SAMPLE_RATE = 16_000
FRAME = 512               # samples per probability (32 ms)
CONTEXT = 64              # samples of the previous frame each frame sees
MAX_FRAMES = 512          # frames per ONNX call (16 s)
THRESHOLD = 0.5
MIN_SPEECH_SECONDS = 0.25
LEVEL_NORMALISED = True
SLOWED_VIEWS = (0.7, 0.5)  # playback rates of the second and third hearing
SLOWED_HINT = 0.15         # ...given only when some frame's probability reached this at
#                            first (noise, hum and silence stay below 0.07: one hearing)
PITCH_OPINION = True       # refused slowed too, but half-heard there: a voice's pitch?
PITCH_HINT = 0.3           # ...asked only when a slowed hearing's frame reached this
PITCH_RANGE = (75.0, 1100.0)  # Hz: speech, shouts and screams (a scream near 900 Hz)
PITCH_SECONDS = 1.0        # voiced this long (measured: with 0.5 s, 2 more of the 27
#                            speechless meeting windows passed, holding a word's end)
PEAK = 0.5                # -6 dBFS: the level every window is brought to
SILENCE_PEAK = 1e-4       # -80 dBFS: below, no signal


def level(audio: np.ndarray) -> np.ndarray:
    """The audio scaled to a -6 dBFS peak, so the detector judges what is said, not how
    loud (below -80 dBFS it is left as it is: no signal at all)."""
    peak = float(np.max(np.abs(audio), initial=0.0))
    if peak < SILENCE_PEAK:
        return audio
    return (audio * np.float32(PEAK / peak)).astype(np.float32, copy=False)


def model_file() -> Path:
    return installed_path(PACKAGE, f"data/{MODEL}",
                          needed_for="the speech gate needs silero-vad's model",
                          install="pip install silero-vad==6.2.3 onnxruntime (the model "
                                  "ships in the wheel)")


def frame_blocks(audio: np.ndarray):
    """Blocks (frames, CONTEXT + FRAME): each frame with the previous frame's last
    CONTEXT samples before it (zeros for the first); the last frame zero-padded."""
    n = (audio.size + FRAME - 1) // FRAME
    previous = np.zeros(CONTEXT, np.float32)
    for first in range(0, n, MAX_FRAMES):
        k = min(MAX_FRAMES, n - first)
        frames = np.zeros((k, FRAME), np.float32)
        chunk = audio[first * FRAME:(first + k) * FRAME]
        frames.reshape(-1)[:chunk.size] = chunk
        contexts = np.empty((k, CONTEXT), np.float32)
        contexts[0] = previous
        contexts[1:] = frames[:-1, -CONTEXT:]
        previous = frames[-1, -CONTEXT:].copy()
        yield np.concatenate([contexts, frames], axis=1)


class SpeechDetector:
    """Per-frame speech probabilities of 16 kHz mono audio; thread-safe."""

    def __init__(self, *, threshold: float = THRESHOLD,
                 min_speech_seconds: float = MIN_SPEECH_SECONDS,
                 level_normalised: bool = LEVEL_NORMALISED,
                 slowed_views: tuple[float, ...] | list[float] = SLOWED_VIEWS,
                 pitch_opinion: bool = PITCH_OPINION):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1
        self._session = ort.InferenceSession(str(model_file()), sess_options=options,
                                             providers=["CPUExecutionProvider"])
        self._lock = threading.Lock()
        self.threshold, self.min_speech_seconds = threshold, min_speech_seconds
        self.level_normalised = level_normalised
        self.slowed_views = tuple(float(v) for v in slowed_views)
        self.pitch_opinion = bool(pitch_opinion)
        if any(not 0.2 <= v < 1.0 for v in self.slowed_views):
            raise ValueError(f"slowed_views {self.slowed_views}: rates in [0.2, 1)")

    def settings(self) -> dict:
        """What an embedder records of this gate (and builds it again from)."""
        return {"threshold": self.threshold, "min_speech_seconds": self.min_speech_seconds,
                "level_normalised": self.level_normalised,
                "slowed_views": list(self.slowed_views), "pitch_opinion": self.pitch_opinion}

    def probabilities(self, audio: np.ndarray) -> np.ndarray:
        audio = np.ascontiguousarray(audio, dtype=np.float32).reshape(-1)
        h = np.zeros((1, 1, 128), np.float32)
        c = np.zeros((1, 1, 128), np.float32)
        out = []
        with self._lock:
            for block in frame_blocks(audio):
                p, h, c = self._session.run(["speech_probs", "hn", "cn"],
                                            {"input": block, "h": h, "c": c})
                out.append(np.asarray(p, np.float32).reshape(-1))
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def _heard(self, audio: np.ndarray, rate: float) -> tuple[float, float]:
        """(seconds of speech frames, in the recording's own seconds; the highest frame
        probability) of the audio levelled (when the gate levels) and played at `rate`."""
        if self.level_normalised:
            audio = level(np.asarray(audio, np.float32))
        if rate != 1.0:
            audio = slowed(audio, rate)
        p = self.probabilities(audio)
        return (float((p >= self.threshold).sum()) * FRAME / SAMPLE_RATE * rate,
                float(p.max(initial=0.0)))

    def speech_seconds(self, audio: np.ndarray, *, rate: float = 1.0) -> float:
        """Seconds of frames that hold speech (after levelling, when the gate levels),
        heard played at `rate` (1: as it is), in the recording's own seconds."""
        return self._heard(audio, rate)[0]

    def has_speech(self, audio: np.ndarray | None) -> bool:
        """Speech at normal speed, or (refused there, but with a hint of a voice) at one
        of the slowed views, or (`pitch_opinion`: half-heard slowed) voiced for as long
        as speech must be: a scream silero never quite hears at any speed."""
        if audio is None or audio.size < FRAME // 4:
            return False
        seconds, top = self._heard(audio, 1.0)
        if seconds >= self.min_speech_seconds:
            return True
        if top < SLOWED_HINT:
            return False
        for r in self.slowed_views:
            seconds, slowed_top = self._heard(audio, r)
            if seconds >= self.min_speech_seconds:
                return True
            top = max(top, slowed_top)
        return self.pitch_opinion and top >= PITCH_HINT and \
            voiced_seconds(audio) >= max(PITCH_SECONDS, self.min_speech_seconds)


def voiced_seconds(audio: np.ndarray) -> float:
    """Seconds of 16-kHz audio that librosa's pYIN finds voiced within PITCH_RANGE (about
    0.5 s of CPU for 3 s: asked only of windows silero half-heard)."""
    import librosa

    _, voiced, _ = librosa.pyin(np.asarray(audio, np.float32), fmin=PITCH_RANGE[0],
                                fmax=PITCH_RANGE[1], sr=SAMPLE_RATE, frame_length=1024,
                                hop_length=256)
    return float(np.sum(voiced)) * 256 / SAMPLE_RATE


def slowed(audio: np.ndarray, rate: float) -> np.ndarray:
    """The audio as heard played at `rate` of its speed (pitch and tempo together)."""
    import soxr

    return soxr.resample(np.asarray(audio, np.float32), SAMPLE_RATE,
                         int(round(SAMPLE_RATE / rate))).astype(np.float32, copy=False)
