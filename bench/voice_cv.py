"""Leave-speakers-out cross-validation of the voice branch, against a classic floor.

    python bench/voice_cv.py --audio ../shared/data/ravdess_16k --out results/voice_cv

The truth about voices the model has never heard: folds of whole speakers (for
RAVDESS, 4 folds of 4 actors, 2 male and 2 female each: odd actor numbers are
male), the same folds for every method, scored

- per clip: each clip prepared whole, as preprocessing_audio.py prepares it;
- per 3-s window: each clip cut into the windows serving cuts (media.audio.
  split_windows), each prepared as serving prepares a window. "speech windows"
  are those the speech gate passes, the ones serving scores; "all windows"
  counts every window (a window with no usable signal counts as wrong).

Methods, in the same run:
- voice: the product's branch (emotion.models.voice: Whisper tiny.en blocks 2+3,
  the regression head, trained as extract_embeddings.py trains it);
- classic: the floor, MFCC + deltas, energy, pitch and voicing statistics into a
  standardised logistic regression whose C an inner speaker-grouped CV picks
  (bench/voice_floor.py).

Writes {out}/voice_cv.json, voice_cv.md (the table) and confusion_{method}.png,
and prints the table. Also times one 3-s window of each method on one thread.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch

from emotion.core import cli
from emotion.core.atomic import write_json, write_text_atomic
from emotion.core.errors import MediaError
from emotion.core.labels import ALL_LABELS, EMOTIONS
from emotion.core.metrics import classification_metrics, confusion_counts, normalise_rows
from emotion.core.plots import figure, save_png
from emotion.media.audio import AudioParams, load_audio, prepare_clip, resample, split_windows
from emotion.media.vad import SpeechDetector
from emotion.models.voice import VoiceConfig, VoiceData, VoiceFeatures, collect, fit_head
from emotion.stages.preprocess_audio import scan_clips

log = logging.getLogger("voice_cv")
SR = 16_000


def ravdess_actor(speaker: str) -> int | None:
    """The actor number of a RAVDESS speaker id ("ravdess_07"), else None."""
    prefix, _, number = speaker.rpartition("_")
    return int(number) if prefix == "ravdess" and number.isdigit() else None


def balanced_folds(speakers: list[str], k: int, seed: int) -> list[list[str]]:
    """k folds of whole speakers. RAVDESS actors are balanced by sex (odd actor numbers
    are male): one seeded shuffle of the male actors, then of the female ones, and fold
    i takes an equal slice of each. Other corpora: a seeded shuffle, dealt round."""
    unique = sorted(set(speakers))
    rng = np.random.default_rng(seed)
    actors = {s: ravdess_actor(s) for s in unique}
    if all(a is not None for a in actors.values()):
        by_number = sorted(unique, key=actors.get)
        male = np.array([s for s in by_number if actors[s] % 2 == 1])
        female = np.array([s for s in by_number if actors[s] % 2 == 0])
        rng.shuffle(male)
        rng.shuffle(female)
        return [sorted(np.array_split(male, k)[i].tolist() + np.array_split(female, k)[i]
                       .tolist(), key=actors.get) for i in range(k)]
    order = list(rng.permutation(unique))
    return [sorted(order[i::k]) for i in range(k)]


def load_clips(audio_dir: str) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """Every labelled clip of the six emotions at 16 kHz, its label (index into EMOTIONS)
    and speaker."""
    found, _ = scan_clips(audio_dir)
    waves, labels, speakers = [], [], []
    for path, c in found:
        if c.label not in EMOTIONS:
            continue
        y, sr = load_audio(path)
        waves.append(resample(y, sr, SR))
        labels.append(EMOTIONS.index(c.label))
        speakers.append(c.speaker)
    return waves, np.array(labels), speakers


def windows_of(waves: list[np.ndarray], params: AudioParams, detector: SpeechDetector):
    """Every window of every clip: (clip index, (prepared window, speech seconds) or None
    when it holds no usable signal, whether the speech gate passes it)."""
    out = []
    for i, y in enumerate(waves):
        for w in split_windows(y, SR, params.fixed_duration):
            try:
                prepared = prepare_clip(w, SR, params)
            except MediaError:  # digital silence: no usable signal
                prepared = None
            out.append((i, prepared, detector.has_speech(w)))
    return out


def score(truth: np.ndarray, pred: np.ndarray) -> dict:
    m = classification_metrics(truth, pred)
    return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "n": m["n"]}


def summary(per_fold: list[dict]) -> dict:
    out = {}
    for key in per_fold[0]:
        acc = [f[key]["accuracy"] for f in per_fold]
        f1 = [f[key]["macro_f1"] for f in per_fold]
        out[key] = {"accuracy": float(np.mean(acc)), "accuracy_min": float(min(acc)),
                    "accuracy_max": float(max(acc)), "macro_f1": float(np.mean(f1)),
                    "n": int(sum(f[key]["n"] for f in per_fold))}
    return out


def cross_validate(predict_fold, clip_x, win_x, labels, speakers, windows, folds):
    """predict_fold(train_mask) -> (clip predictions fn, window predictions fn).
    Returns per-fold scores and the pooled predictions for the confusion matrix."""
    win_clip = np.array([w[0] for w in windows])
    win_speech = np.array([w[2] for w in windows])
    win_ok = np.array([w[1] is not None for w in windows])
    per_fold, pooled = [], {"clip": ([], []), "speech_window": ([], [])}
    for fold in folds:
        test = np.array([s in fold for s in speakers])
        predict = predict_fold(~test)
        clip_pred = predict(clip_x[test])
        wt = test[win_clip]
        w_pred = np.full(len(windows), -1)
        ok = wt & win_ok
        w_pred[ok] = predict(win_x[ok])
        truth_w = labels[win_clip]
        sp = wt & win_speech
        per_fold.append({
            "clip": score(labels[test], clip_pred),
            "speech_window": score(truth_w[sp], np.where(w_pred[sp] < 0, len(EMOTIONS),
                                                         w_pred[sp])),
            "all_windows": score(truth_w[wt], np.where(w_pred[wt] < 0, len(EMOTIONS),
                                                       w_pred[wt]))})
        pooled["clip"][0].extend(labels[test])
        pooled["clip"][1].extend(clip_pred)
        pooled["speech_window"][0].extend(truth_w[sp])
        pooled["speech_window"][1].extend(w_pred[sp])
    return per_fold, pooled


def plot_confusions(pooled: dict, path: Path, title: str) -> None:
    fig = figure(11, 5)
    axes = fig.subplots(1, len(pooled))
    for ax, (name, (t, p)) in zip(axes, pooled.items(), strict=True):
        cm = normalise_rows(confusion_counts(np.array(t), np.clip(np.array(p), 0, 5)))
        ax.imshow(cm, cmap="Blues", vmin=0, vmax=1)
        for i in range(len(EMOTIONS)):
            for j in range(len(EMOTIONS)):
                ax.text(j, i, f"{cm[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if cm[i, j] > 0.5 else "black")
        ax.set_xticks(range(6), EMOTIONS, rotation=45, ha="right")
        ax.set_yticks(range(6), EMOTIONS)
        ax.set(title=f"{name} (n={len(t)})", xlabel="predicted", ylabel="true")
    fig.suptitle(title)
    save_png(fig, path)


def time_window(fn, clip: np.ndarray, n: int = 20) -> float:
    """Milliseconds per call of fn(clip), on one thread, median of n."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fn(clip)
        times = []
        for _ in range(n):
            t = time.perf_counter()
            fn(clip)
            times.append(time.perf_counter() - t)
        return 1000 * float(np.median(times))
    finally:
        torch.set_num_threads(threads)


def table(results: dict) -> str:
    lines = ["| method | clip accuracy mean [min-max] | clip macro-F1 | speech-window accuracy "
             "mean [min-max] | speech-window macro-F1 | all-window accuracy | ms per 3-s window "
             "(1 thread) |", "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        c, s, a = r["summary"]["clip"], r["summary"]["speech_window"], \
            r["summary"]["all_windows"]
        lines.append(f"| {name} | {c['accuracy']:.3f} [{c['accuracy_min']:.2f}-"
                     f"{c['accuracy_max']:.2f}] | {c['macro_f1']:.3f} | {s['accuracy']:.3f} "
                     f"[{s['accuracy_min']:.2f}-{s['accuracy_max']:.2f}] | {s['macro_f1']:.3f} | "
                     f"{a['accuracy']:.3f} | {r['ms_per_window']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--audio", required=True, help="a folder of labelled clips")
    p.add_argument("--out", default="results/voice_cv", type=Path)
    p.add_argument("--folds", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", default="voice,classic")
    args = p.parse_args(argv)
    cli.setup_logging()
    from voice_floor import ClassicFloor  # bench/, beside this script

    params, cfg = AudioParams(), VoiceConfig(seed=args.seed)
    detector = SpeechDetector()
    waves, labels, speakers = load_clips(args.audio)
    folds = balanced_folds(speakers, args.folds, args.seed)
    log.info("%d clips of %d speakers; folds %s", len(waves), len(set(speakers)), folds)
    windows = windows_of(waves, params, detector)
    log.info("%d windows, %d with speech", len(windows), sum(w[2] for w in windows))
    sample = prepare_clip(waves[0], SR, params)[0]
    results = {}
    for method in args.methods.split(","):
        t = time.perf_counter()
        if method == "voice":
            features = VoiceFeatures(cfg.blocks)
            data = collect(waves, SR, np.array([ALL_LABELS.index(EMOTIONS[i]) for i in labels]),
                           speakers, params=params, detector=detector, features=features,
                           cfg=cfg)
            win_x = np.zeros((len(windows), data.clips.shape[1]), np.float32)
            ok = [k for k, w in enumerate(windows) if w[1] is not None]
            win_x[ok] = features(np.stack([windows[k][1][0] for k in ok]))

            def fold_model(train_mask, data: VoiceData = data):
                head = fit_head(data, train_mask, cfg)
                return lambda x: head.logits(x).argmax(1)

            clip_x = data.clips
            ms = time_window(lambda c, f=features: f(c[None]), sample) + time_window(
                detector.has_speech, sample)
        elif method == "classic":
            floor = ClassicFloor(seed=args.seed)
            clip_x = floor.features([prepare_clip(y, SR, params) for y in waves])
            win_x = np.zeros((len(windows), clip_x.shape[1]), np.float32)
            ok = [k for k, w in enumerate(windows) if w[1] is not None]
            win_x[ok] = floor.features([windows[k][1] for k in ok])

            def fold_model(train_mask, floor=floor, clip_x=clip_x):
                return floor.fit(clip_x[train_mask], labels[train_mask],
                                 np.array(speakers)[train_mask])

            ms = time_window(lambda c, f=floor: f.features([(c, params.fixed_duration)]),
                             sample)
        else:
            raise SystemExit(f"--methods: unknown {method!r} (voice, classic)")
        per_fold, pooled = cross_validate(fold_model, clip_x, win_x, labels, speakers,
                                          windows, folds)
        results[method] = {"per_fold": per_fold, "summary": summary(per_fold),
                           "ms_per_window": ms, "seconds": time.perf_counter() - t}
        plot_confusions(pooled, args.out / f"confusion_{method}.png",
                        f"{method}: leave-speakers-out, pooled over {len(folds)} folds")
        log.info("%s done in %.0f s", method, results[method]["seconds"])
    text = table(results)
    print(text)
    write_text_atomic(text + "\n", args.out / "voice_cv.md")
    write_json(args.out / "voice_cv.json", {"folds": folds, "results": results,
                                            "config": {"voice": cfg.__dict__ | {}}})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
