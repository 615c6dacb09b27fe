"""Which Light-ASD weights, and what `speaking` means, measured on composed meetings.

    python bench/asd_calibration.py --av_clips ../shared/data/av_clips \
        --faces ../shared/data/fer2013/test --voices ../shared/data/ravdess_16k \
        --artifacts results/real --meetings 10 --seed 1 --out results/asd_calibration --write

Composes gallery meetings (emotion.stages.meeting_eval, another seed than the
evaluation's), runs the analysis' own face finding and tracking on them, and
scores every participant of every speech window with both shipped weights (AVA
and TalkSet; audio-visual and visual-only heads). Per weights it fits the
speaking probability P = sigmoid(a evidence + b min(margin, 3) + c) by logistic
regression on the windows with two faces or more, where evidence = score + voice x
the face's voice contrast (emotion.serve.meeting.voice_contrast of the scores, over
each video's scored windows), score = logit + sync x the face's lip sync
(emotion.media.speaker_inputs.lip_sync, the analysis' own, over the whole window) and
margin the evidence's lead over the best other face; `sync` and `voice` are the pair
of SYNC_WEIGHTS and VOICE_WEIGHTS whose fit credits the most speech windows right by
the analysis' own rule. It reports AUC and speaker attribution (speech windows credited
to exactly the right participant, or to no one when the speaker has no tile) with
the fitted and the 0-threshold rules. --write saves the chosen weights' fit as
emotion/serve/speaking_calibration.json.

A face alone on screen has no one to be ahead of, so its probability has a fit of
its own: --alone composes one-face videos from every clip of --av_clips, three
ways (the clip with its own sound: speaking; its first frame still with a voice
of --voices: a camera-off avatar or a listener while someone unseen speaks, not
speaking; the clip moving with such a voice: not speaking either, the muted talker
Light-ASD cannot tell), scores them through the analysis' own windows, and fits
P = sigmoid(a logit + c) on the first two (the third is reported, not fitted: no
threshold separates it). --write then adds "alone" to the same file.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from emotion.core.paths import work_dir
from emotion.media.decode import MAX_FRAME_SIDE
from emotion.serve.analyzer import Analyzer
from emotion.serve.meeting import (
    CALIBRATION,
    Meeting,
    MeetingOptions,
    SpeakingCalibration,
    capped,
    leads,
    speaker_inputs,
    voice_contrast,
    window_sync,
)
from emotion.stages import meeting_eval
from emotion.stages.video_eval import face_files

log = logging.getLogger("asd_calibration")

# Weights of the voice contrast in the speaking evidence, tried in turn (0: the logit alone).
VOICE_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0)
# Weights of the lip sync added to the logit of a face beside others, tried with each.
SYNC_WEIGHTS = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0)
NOT_SCORES = ("video", "window", "pid", "truth", "sync")


def collect(analyzer: Analyzer, manifest: list[dict], videos: Path, models: dict,
            seconds: tuple[float, ...] = (), voices: dict | None = None) -> list[dict]:
    """Per speech window and participant on screen: logits of every model, and the truth.
    Each model hears the stretch the analysis gives it (MeetingOptions.asd_seconds; keys: the
    model's name); those of `seconds` are compared ("name@0.5s", audio-visual head only).
    Participants are the analysis' own (raw tracks merged as Meeting.finish merges them;
    a merged participant's score in a window is the highest of its tracks'). `voices`, when
    given, gets each scored window's voice features ("video:window": features), which the
    voice contrast compares."""
    rows = []
    scale = meeting_eval.SIZE[0] / MAX_FRAME_SIDE
    for m in manifest:
        meeting = Meeting(None)
        raw = []
        find_faces = analyzer.recording_faces()     # the analysis' own face finding
        for w in analyzer._iter(videos / m["video"], use_video=True):
            faces, emb = find_faces(w.frames)
            voice, audio = analyzer.window_voice(w.audio)
            meeting.observe(w, faces, emb, audio)
            seen = meeting.windows[-1].seen
            for s in seen.values():             # the analysis measures it with its model
                s.sync = window_sync(w, s) if audio is not None else None
            turn = meeting_eval._turn_at(m, (w.start + w.end) / 2)
            if audio is None or not seen or turn is None:
                continue
            inputs = speaker_inputs(w, list(seen.values()), meeting.options.asd_seconds)
            if inputs is None:
                continue
            if voices is not None:
                voices[f"{m['video']}:{len(meeting.windows) - 1}"] = voice
            scores = {}
            for name, model in models.items():
                scores[name] = np.atleast_2d(model.score(*inputs)).mean(1)
                scores[name + "_visual"] = np.atleast_2d(
                    model.visual_only(inputs[0])).mean(1)
                for sec in seconds:
                    shorter = speaker_inputs(w, list(seen.values()), sec)
                    scores[f"{name}@{sec:g}s"] = np.atleast_2d(model.score(*shorter)).mean(1)
            for j, (pid, s) in enumerate(seen.items()):
                box = np.mean([b for _, b in s.boxes], axis=0) * scale
                who = next((p for p, sh in turn["shown"].items()
                            if meeting_eval._inside(box, sh["rect"])), None)
                raw.append({"video": m["video"], "window": len(meeting.windows) - 1, "pid": pid,
                            "truth": who is not None and who == turn["speaker"],
                            "sync": np.nan if s.sync is None else s.sync,
                            **{k: float(v[j]) for k, v in scores.items()}})
        final = meeting.tracker.finish()
        merged: dict[tuple, dict] = {}
        for r in raw:
            k = final.get(r["pid"])
            if k is None:
                continue
            key = (r["window"], k)
            if key not in merged:
                merged[key] = {**r, "pid": k}
            else:
                old = merged[key]
                merged[key] = {**{n: float(np.fmax(old[n], r[n])) for n in r
                                  if isinstance(r[n], float)},
                               "video": r["video"], "window": r["window"], "pid": k,
                               "truth": old["truth"] or r["truth"]}
        rows += merged.values()
        log.info("%s: %d rows so far", m["video"], len(rows))
    return rows


ALONE_CASES = ("own sound", "still, another voice", "moving, another voice")


def alone_rows(analyzer: Analyzer, av_clips: str, voices: list[str], out: Path,
               model, seconds: float, seed: int = 0) -> list[dict]:
    """One-face videos (960x540, the clip filling the frame, its first 3 s), three per
    clip (ALONE_CASES), each window's mean logit as the analysis computes it."""
    from emotion.media.audio import load_audio, resample
    from emotion.media.encode import write_video

    rng = np.random.default_rng(seed)
    rows = []
    people = meeting_eval.clip_people(av_clips)
    w_, h_ = meeting_eval.SIZE
    for person, clips in sorted(people.items()):
        for clip in clips:
            frames, own = meeting_eval.read_clip(Path(clip["path"]))
            tiles = [meeting_eval.fit_tile(f, w_, h_) for f in frames]
            y, sr = load_audio(voices[int(rng.integers(len(voices)))])
            other = resample(y, sr, meeting_eval.SR)
            for k, (case, (shown, sound)) in enumerate(zip(
                    ALONE_CASES, [(tiles, own), (tiles[:1], other), (tiles, other)],
                    strict=True)):
                path = out / "alone" / f"{Path(clip['path']).stem}_{k}.mp4"
                if not path.is_file():
                    write_video(path, [(lambda i, s=shown: s[min(i, len(s) - 1)],
                                        meeting_eval.TURN, sound[:int(meeting_eval.TURN
                                                                      * meeting_eval.SR)])],
                                fps=meeting_eval.FPS, sr=meeting_eval.SR)
                meeting = Meeting(None)
                find_faces = analyzer.recording_faces()
                for w in analyzer._iter(path, use_video=True):
                    faces, emb = find_faces(w.frames)
                    meeting.observe(w, faces, emb, analyzer.audio_embedding(w.audio))
                    seen = list(meeting.windows[-1].seen.values())
                    if len(seen) != 1 or meeting.windows[-1].audio is None:
                        continue
                    inputs = speaker_inputs(w, seen, seconds)
                    if inputs is not None:
                        sync = window_sync(w, seen[0])
                        rows.append({"clip": path.name, "person": person, "case": case,
                                     "logit": float(np.mean(model.score(*inputs))),
                                     "sync": sync})
        log.info("%s: %d one-face windows so far", person, len(rows))
    return rows


def fit_alone(rows: list[dict]) -> dict:
    """The lone face's fit on the first two cases, and how each case is decided. The
    regularisation is chosen by leaving one clip out at a time (the two cases barely
    overlap, so the default C = 1 pulls the threshold into the speakers)."""
    fit = [r for r in rows if r["case"] != ALONE_CASES[2]]
    x = np.array([[r["logit"]] for r in fit])
    y = np.array([r["case"] == ALONE_CASES[0] for r in fit])
    clips = np.array([r["clip"].rsplit("_", 1)[0] for r in fit])
    right = {}
    for strength in (1.0, 10.0, 100.0):
        right[strength] = sum(int((LogisticRegression(C=strength).fit(
            x[clips != c], y[clips != c]).predict(x[clips == c]) == y[clips == c]).sum())
            for c in np.unique(clips))
    best = max(right, key=lambda k: (right[k], -k))
    lr = LogisticRegression(C=best).fit(x, y)
    a, c = float(lr.coef_[0, 0]), float(lr.intercept_[0])
    report = {"a": a, "c": c, "C": best, "windows": len(rows),
              "left_one_clip_out_right": {str(k): v for k, v in right.items()},
              "fitted_windows": len(fit)}
    for case in ALONE_CASES:
        lg = np.array([r["logit"] for r in rows if r["case"] == case])
        said = a * lg + c >= 0
        report[case] = {"windows": len(lg), "credited_to_the_face": float(said.mean()),
                        "logit_min_median_max": [float(lg.min()), float(np.median(lg)),
                                                 float(lg.max())]}
    return report


def by_window(rows: list[dict]) -> dict[tuple, list[int]]:
    out: dict[tuple, list[int]] = {}
    for i, r in enumerate(rows):
        out.setdefault((r["video"], r["window"]), []).append(i)
    return out


def contrasts(rows: list[dict], scores: np.ndarray, voices: dict) -> np.ndarray:
    """Each row's voice contrast (emotion.serve.meeting.voice_contrast, the analysis' own)
    of its `scores` among its video's scored windows; 0 where the window's voice features
    are missing."""
    out = np.zeros(len(rows))
    videos: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        if f"{r['video']}:{r['window']}" in voices:
            videos.setdefault(r["video"], []).append(i)
    for video, idx in videos.items():
        windows = sorted({rows[i]["window"] for i in idx})
        pids = sorted({rows[i]["pid"] for i in idx})
        logits = np.full((len(windows), len(pids)), np.nan)
        for i in idx:
            logits[windows.index(rows[i]["window"]), pids.index(rows[i]["pid"])] = scores[i]
        values = voice_contrast(np.stack([voices[f"{video}:{w}"] for w in windows]), logits)
        for i in idx:
            out[i] = values[windows.index(rows[i]["window"]), pids.index(rows[i]["pid"])]
    return out


def features(rows: list[dict], evidence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(evidence, min(margin, 3)) of the rows that share their window with another face
    (a lone face has a fit of its own), and which rows those are."""
    x, keep = [], []
    for idx in by_window(rows).values():
        if len(idx) < 2:
            continue
        lead = leads({i: evidence[i] for i in idx})
        for i in idx:
            x.append([evidence[i], capped(lead[i])])
            keep.append(i)
    return np.array(x), np.array(keep)


def attribution(rows: list[dict], evidence: np.ndarray, logit: np.ndarray,
                calibration: SpeakingCalibration) -> float:
    """Speech windows credited to exactly the right participants by the analysis' rule
    (Meeting._speakers on SpeakingCalibration's probabilities; a lone face by its own
    fit), or to no one when the speaker has no tile."""
    rule = Meeting(None, calibration=calibration)
    right = 0
    windows = by_window(rows)
    for idx in windows.values():
        probs = calibration.probabilities({i: (logit if len(idx) == 1 else evidence)[i]
                                           for i in idx})
        said = rule._speakers(probs)
        right += all((i in said) == rows[i]["truth"] for i in idx)
    return right / max(len(windows), 1)


def fit_speaking(rows: list[dict], key: str, voices: dict, base: SpeakingCalibration
                 ) -> dict:
    """Per weight of the lip sync (SYNC_WEIGHTS) and of the voice contrast
    (VOICE_WEIGHTS), the logistic fit of P on the evidence and its margin, and its
    attribution: the best pair's fit, with every pair's under "by_weights" (the
    analysis' score of a face beside others is its logit plus sync x its lip sync,
    SpeakingCalibration.score; the contrast is taken of those scores)."""
    y = np.array([r["truth"] for r in rows])
    logit = np.array([r[key] for r in rows])
    sync = np.nan_to_num(np.array([r.get("sync", np.nan) for r in rows], np.float64))
    beside = np.zeros(len(rows), bool)
    for idx in by_window(rows).values():
        beside[idx] = len(idx) > 1
    fits = []
    for sync_weight in SYNC_WEIGHTS if sync.any() else (0.0,):
        score = logit + sync_weight * sync * beside
        contrast = contrasts(rows, score, voices)
        for weight in VOICE_WEIGHTS if voices else (0.0,):
            evidence = score + weight * contrast
            x, keep = features(rows, evidence)
            lr = LogisticRegression(C=1.0).fit(x, y[keep])
            cal = replace(base, a=float(lr.coef_[0, 0]), b=float(lr.coef_[0, 1]),
                          c=float(lr.intercept_[0]), voice=weight, sync=sync_weight)
            fits.append({"sync": sync_weight, "voice": weight, "a": cal.a, "b": cal.b,
                         "c": cal.c, "auc_evidence": roc_auc_score(y[keep], x[:, 0]),
                         "auc_fitted": roc_auc_score(y[keep], lr.predict_proba(x)[:, 1]),
                         "attribution_fitted": attribution(rows, evidence, logit, cal)})
    best = max(fits, key=lambda f: (f["attribution_fitted"], -f["sync"], -f["voice"]))
    return {**best, "by_weights": fits,
            "attribution_logit_only": next(f["attribution_fitted"] for f in fits
                                           if f["sync"] == 0 and f["voice"] == 0),
            "attribution_without_sync": max(f["attribution_fitted"] for f in fits
                                            if f["sync"] == 0),
            "attribution_logit_above_0": attribution(
                rows, logit, logit, SpeakingCalibration(a=1.0, b=0.0, c=0.0))}


def pooled(rows: list[dict], voices: dict, others: list[str], described: str
           ) -> tuple[list[dict], dict, str]:
    """These rows and voices with those of other --out folders (`others`), whose videos
    are named after their folder so that no two meetings share a name."""
    parts = [described]
    for folder in map(Path, others):
        more = json.loads((folder / "rows.json").read_text())
        manifest = json.loads((folder / "videos" / "meetings.json").read_text())
        run = json.loads((folder / "run.json").read_text()) if (folder / "run.json").is_file() \
            else {}
        rows = rows + [{**r, "video": f"{folder.name}/{r['video']}"} for r in more]
        if (folder / "voices.npz").is_file():
            voices = {**voices, **{f"{folder.name}/{k}": v
                                   for k, v in np.load(folder / "voices.npz").items()}}
        parts.append(f"{len(manifest)} of {folder}"
                     + (f" (seed {run['seed']})" if "seed" in run else ""))
    return rows, voices, " and ".join(parts)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--av_clips", required=True)
    p.add_argument("--faces", required=True)
    p.add_argument("--voices", required=True, help="folder of voice-corpus WAVs (unseen talkers)")
    p.add_argument("--artifacts", required=True)
    p.add_argument("--meetings", type=int, default=10)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default="results/asd_calibration")
    p.add_argument("--write", action="store_true", help="save the chosen fit")
    p.add_argument("--recollect", action="store_true", help="score the videos again")
    p.add_argument("--pool", nargs="+", default=[],
                   help="other --out folders of this script (other seeds) whose rows are "
                        "fitted together with these")
    p.add_argument("--weights", nargs="+", default=["ava", "talkset"], help="weights to score")
    p.add_argument("--alone", action="store_true",
                   help="fit a face alone on screen instead (one-face videos of every clip)")
    p.add_argument("--seconds", nargs="+", type=float, default=[],
                   help="other stretches (s) to judge each window's speaker on, compared "
                        "with the analysis' own (MeetingOptions.asd_seconds)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from emotion.models.speaker import ActiveSpeakerModel

    out = Path(args.out)
    videos = out / "videos"
    a = work_dir(args.artifacts)
    analyzer = Analyzer(a.embedder, a.multimodal, a.isolation)
    if args.alone:
        calibration = json.loads(CALIBRATION.read_text())
        model = ActiveSpeakerModel.load(weights=calibration["weights"], precision="auto")
        voices = sorted(str(v) for v in Path(args.voices).glob("*.wav"))
        rows = alone_rows(analyzer, args.av_clips, voices, out, model,
                          MeetingOptions().asd_seconds, args.seed)
        (out / "alone_rows.json").write_text(json.dumps(rows))
        report = fit_alone(rows)
        (out / "alone_report.json").write_text(json.dumps(report, indent=2))
        for case in ALONE_CASES:
            log.info("%-22s %3d windows, credited to the face %.3f, logits %s", case,
                     report[case]["windows"], report[case]["credited_to_the_face"],
                     np.round(report[case]["logit_min_median_max"], 2).tolist())
        log.info("alone: P = sigmoid(%.3f logit + %.3f) (C %g; one clip left out at a time: "
                 "%s of %d right)", report["a"], report["c"], report["C"],
                 report["left_one_clip_out_right"], report["fitted_windows"])
        if args.write:
            own, still = (report[case]["credited_to_the_face"] for case in ALONE_CASES[:2])
            clips = len({r["clip"].rsplit("_", 1)[0] for r in rows})
            calibration["alone"] = {
                "a": report["a"], "c": report["c"],
                "fitted_on": f"one-face videos of {clips} clips, {report['windows']} windows: "
                             f"own sound credited {own:.3f}, a still face with another voice "
                             f"{still:.3f} (C {report['C']:g})"}
            CALIBRATION.write_text(json.dumps(calibration, indent=2) + "\n")
            log.info("wrote %s (alone)", CALIBRATION)
        return 0
    if (videos / "meetings.json").is_file():
        manifest = json.loads((videos / "meetings.json").read_text())
    else:
        voices = sorted(str(v) for v in Path(args.voices).glob("*.wav"))
        manifest = meeting_eval.compose_meetings(
            videos, args.av_clips, face_files(args.faces), voices, n=args.meetings,
            seed=args.seed, count_faces=lambda rgb: len(analyzer.embedder.faces(
                rgb, min_side=analyzer.options.meeting.min_face)))
    if (out / "rows.json").is_file() and not args.recollect:
        rows = json.loads((out / "rows.json").read_text())
        log.info("reusing the %d rows of %s (--recollect scores the videos again)", len(rows),
                 out / "rows.json")
        voices = dict(np.load(out / "voices.npz")) if (out / "voices.npz").is_file() else {}
    else:
        models = {w: ActiveSpeakerModel.load(weights=w) for w in args.weights}
        voices = {}
        rows = collect(analyzer, manifest, videos, models, tuple(args.seconds), voices)
        (out / "rows.json").write_text(json.dumps(rows))
        (out / "run.json").write_text(json.dumps({"seed": args.seed, "meetings": len(manifest)}))
        np.savez(out / "voices.npz", **voices)
    rows, voices, described = pooled(rows, voices, args.pool,
                                     f"{len(manifest)} composed meetings (seed {args.seed})")
    if not voices:
        log.info("no voice features saved with these rows: fitting without the voice "
                 "contrast (--recollect keeps them)")
    kept = json.loads(CALIBRATION.read_text()) if CALIBRATION.is_file() else {}
    base = SpeakingCalibration.load()
    report = {}
    for key in [k for k in rows[0] if k not in NOT_SCORES]:
        # the lone face's fit belongs to the weights it was made with
        r = report[key] = fit_speaking(
            rows, key, voices, base if key == kept.get("weights") else
            replace(base, alone_a=None, alone_c=None))
        log.info("%-15s sync %g, voice %g: AUC %.3f (fitted %.3f), attribution fitted %.3f "
                 "(without sync %.3f, logit alone %.3f), logit>0 %.3f", key, r["sync"],
                 r["voice"], r["auc_evidence"], r["auc_fitted"], r["attribution_fitted"],
                 r["attribution_without_sync"], r["attribution_logit_only"],
                 r["attribution_logit_above_0"])
    report["rows"] = len(rows)
    report["speakers"] = sum(r["truth"] for r in rows)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    if args.write:
        best = max((k for k in ("ava", "talkset") if k in report),
                   key=lambda k: report[k]["attribution_fitted"])
        r = report[best]
        CALIBRATION.write_text(json.dumps(
            {"weights": best, "a": r["a"], "b": r["b"], "c": r["c"], "voice": r["voice"],
             "sync": r["sync"],
             "fitted_on": f"{described}, {len(rows)} "
                          f"participant-windows; attribution {r['attribution_fitted']:.3f}",
             **({"alone": kept["alone"]} if "alone" in kept and best == kept.get("weights")
                else {})},
            indent=2) + "\n")
        log.info("wrote %s (weights %s)", CALIBRATION, best)
    return 0


if __name__ == "__main__":
    sys.exit(main())
