"""Setting the speech gate by measurement: real speech with pauses against silence, hum
and noise, for silero-vad's thresholds and for the energy gate it replaced.

    python bench/speech_gate.py --audio ../shared/data/ravdess_16k --out results/speech_gate
    python bench/speech_gate.py --audio ../shared/data/ravdess_16k \
        --audio ../shared/data/emovo_16k --only level-normalised       # per corpus

Speech: every clip of the folder, as recorded and attenuated by 10, 20 and 30 dB (a
quiet speaker, a distant microphone), and "meetings": the clips strung together with
pauses of 0.5-2 s, cut into the 3-s windows serving cuts. A window of a meeting holds
speech when at least 0.25 s of it is speech by the clip's trimmed extent (trim at
30 dB below its peak). Non-speech: digital silence, 50/60/120 Hz hum, white and pink
noise and room tone, each at several levels, 3-s windows.

Reports, per gate setting: the share of clips refused (no window heard), by emotion
(the energy gate's refusals fell on sad and neutral clips) and by corpus, the clips
refused whole as preprocessing_audio.py gates them, per corpus, the share of speech and
of silent meeting windows passed, and the share of non-speech windows passed. The
shipped gate (emotion.media.vad.SpeechDetector(): levelled, and a refused window heard
again slowed) is measured beside the settings.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from emotion.core import cli
from emotion.core.atomic import write_json
from emotion.media.audio import AudioParams, load_audio, resample, split_windows
from emotion.media.vad import SpeechDetector, level
from emotion.stages.preprocess_audio import scan_clips
from emotion.stages.probes import pink_noise, room_tone, white_noise

SR = 16_000
ENERGY_DBFS = -45.0  # the gate before: a 25 ms frame louder than this was speech


def energy_seconds(y: np.ndarray) -> float:
    """Seconds of 25-ms frames louder than -45 dBFS (the energy gate)."""
    frame = int(0.025 * SR)
    n = y.size // frame
    if n == 0:
        return 0.0
    rms = np.sqrt(np.mean(np.square(y[:n * frame].reshape(n, frame), dtype=np.float64), 1))
    return float((rms > 10 ** (ENERGY_DBFS / 20)).sum()) * frame / SR


def non_speech(rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    n = 3 * SR
    t = np.arange(n) / SR
    out: dict[str, list[np.ndarray]] = {"silence": [np.zeros(n, np.float32)] * 4}
    out["hum"] = [(a * np.sin(2 * np.pi * hz * t)).astype(np.float32)
                  for hz in (50, 60, 120) for a in (0.03, 0.3)]
    for name, make in (("white_noise", white_noise), ("pink_noise", pink_noise),
                       ("room_tone", room_tone)):
        out[name] = [make(n, SR, rng) * np.float32(g) for g in (1.0, 0.1, 0.01) for _ in range(4)]
    return out


def meeting(clips: list[np.ndarray], rng: np.random.Generator, params: AudioParams
            ) -> tuple[list[np.ndarray], list[bool]]:
    """The clips strung with pauses, cut in windows; whether each window holds speech."""
    import librosa

    parts, speech = [], []
    pos = 0
    for y in clips:
        pause = np.zeros(int(rng.uniform(0.5, 2.0) * SR), np.float32)
        _, (a, b) = librosa.effects.trim(y, top_db=params.top_db_trim)
        speech.append((pos + len(pause) + a, pos + len(pause) + b))
        parts += [pause, y]
        pos += len(pause) + len(y)
    stream = np.concatenate(parts)
    windows = split_windows(stream, SR, params.fixed_duration)
    truth = []
    for k, w in enumerate(windows):
        start, end = k * 3 * SR, k * 3 * SR + len(w)
        overlap = sum(max(0, min(end, b) - max(start, a)) for a, b in speech)
        truth.append(overlap >= 0.25 * SR)
    return windows, truth


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--audio", action="append", required=True, help="repeat for each corpus")
    p.add_argument("--out", default="results/speech_gate", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", default="", help="measure only the gates whose name holds this")
    args = p.parse_args(argv)
    cli.setup_logging()
    rng, params = np.random.default_rng(args.seed), AudioParams()
    found = [f for d in args.audio for f in scan_clips(d)[0]]
    clips = [(resample(*load_audio(path), SR), c.label) for path, c in found]
    corpus_of = [c.corpus for _, c in found]
    detector = SpeechDetector(slowed_views=())
    probs = {}  # one VAD pass per signal; the settings only threshold it

    def vad_seconds(y: np.ndarray, threshold: float) -> float:
        key = id(y)
        if key not in probs:
            probs[key] = (y, detector.probabilities(y))
        return float((probs[key][1] >= threshold).sum()) * 512 / SR

    gates = {"energy -45 dBFS": lambda y: energy_seconds(y) >= 0.25}
    for thr in (0.3, 0.5, 0.7):
        for min_s in (0.1, 0.25, 0.5):
            gates[f"silero {thr} / {min_s} s"] = (
                lambda y, thr=thr, min_s=min_s: vad_seconds(y, thr) >= min_s)
    normalised = {}

    def loud(y: np.ndarray) -> np.ndarray:  # the window brought to the gate's level
        if id(y) not in normalised:
            normalised[id(y)] = level(y)
        return normalised[id(y)]

    for thr in (0.3, 0.5):
        gates[f"silero {thr} / 0.25 s, level-normalised"] = (
            lambda y, thr=thr: vad_seconds(loud(y), thr) >= 0.25)
    shipped = SpeechDetector()
    gates[f"silero 0.5 / 0.25 s, level-normalised, slowed {list(shipped.slowed_views)}, "
          f"pitch opinion {shipped.pitch_opinion} (shipped)"] = shipped.has_speech
    gates = {name: gate for name, gate in gates.items() if args.only in name}
    levels = {f"{db} dB": np.float32(10 ** (db / 20)) for db in (0, -10, -20, -30)}
    clip_windows = {name: [[w * g for w in split_windows(y, SR, 3.0)] for y, _ in clips]
                    for name, g in levels.items()}
    m_windows, m_truth = meeting([y for y, _ in clips[:120]], rng, params)
    others = non_speech(rng)
    report = {}
    for gate_name, gate in gates.items():
        row = {}
        for db, per_clip in clip_windows.items():
            refused = [not any(gate(w) for w in ws) for ws in per_clip]
            by_emotion = {}
            for (_, label), r in zip(clips, refused, strict=True):
                by_emotion.setdefault(label, []).append(r)
            row[f"clips refused at {db}"] = float(np.mean(refused))
            row[f"refused by corpus at {db}"] = {
                c: int(sum(r for r, k in zip(refused, corpus_of, strict=True) if k == c))
                for c in sorted(set(corpus_of))}
            row[f"refused by emotion at {db}"] = {e: float(np.mean(v))
                                                     for e, v in sorted(by_emotion.items())}
        whole = [not gate(y) for y, _ in clips]  # as preprocessing_audio.py gates a clip
        row["clips refused whole, by corpus"] = {
            c: f"{sum(r for r, k in zip(whole, corpus_of, strict=True) if k == c)} of "
               f"{corpus_of.count(c)}" for c in sorted(set(corpus_of))}
        passed = np.array([gate(w) for w in m_windows])
        truth = np.array(m_truth)
        row["meeting speech windows passed"] = float(passed[truth].mean())
        row["meeting silent windows passed"] = float(passed[~truth].mean()) \
            if (~truth).any() else None
        row["non-speech passed"] = {k: float(np.mean([gate(y) for y in v]))
                                    for k, v in others.items()}
        report[gate_name] = row
        print(f"{gate_name:<22} refused clips: " + ", ".join(
            f"{lv} {row[f'clips refused at {lv}']:.3f}" for lv in levels)
            + f" | meeting speech {row['meeting speech windows passed']:.3f}, silence "
            f"{row['meeting silent windows passed']} | non-speech passed "
            + ", ".join(f"{k} {v:.2f}" for k, v in row["non-speech passed"].items())
            + f" | refused whole: {row['clips refused whole, by corpus']}")
    write_json(args.out / "speech_gate.json", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
