"""Labelled videos composed from test faces and test voices, analysed as predict.py does.

    python evaluate_videos.py --faces ../shared/data/fer2013/test \
        --audio_h5 results/real/preprocessed_audio.h5 --artifacts results/real \
        --out results/video_eval

No labelled talking-face video is at hand, so this composes some: each video is
a run of one-window segments (3 s), each showing one face of an emotion while a
clip of the same emotion plays. Faces come from a folder of {emotion}/*.jpg (the
FER test split), clips from the test speakers of preprocessed_audio.h5, so
neither was trained on. Per framing, timelines of six emotions (a new face each)
and short one-person videos (one face, one emotion, 6 s). Three framings, as
cameras show faces:

  closeup   the face fills a 640x480 frame (forehead and chin cut, a webcam close-up)
  small     a 100-120 px face somewhere in a 640x360 frame
  upscaled  the 48 px crop upscaled to 192 px in a 640x360 frame

Every video goes through the same analysis as predict.py (emotion.serve.analyzer).
The report gives, per framing and overall: videos that got no answer, window
accuracy and macro-F1 (a window is judged by the segment holding its middle; a
window with no prediction counts as wrong), the share of windows with a detected
face, and the real-time factor (analysis seconds / media seconds).

--results DIR scores predictions made elsewhere instead (one JSON per video,
named like the video, as `predict.py --video V --out DIR/V.json` writes): the
same videos and labels can so be scored for another version of the code.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import cv2
import numpy as np

from emotion.core import cli, h5io
from emotion.core.atomic import write_json
from emotion.core.errors import EmotionError, MediaError
from emotion.core.labels import ALL_LABELS, EMOTIONS, canonical
from emotion.core.metrics import classification_metrics
from emotion.core.paths import work_dir
from emotion.media.audio import AudioParams, load_audio, resample, trim_silence
from emotion.media.encode import write_video
from emotion.media.images import load_image

log = logging.getLogger(__name__)

USAGE = __doc__
FPS = 25
SAMPLE_RATE = 16_000
FRAMINGS = ("closeup", "small", "upscaled")
NONE = len(EMOTIONS)  # the label of "no prediction" in the confusion


# ----------------------------------------------------------------- framings
def frame_closeup(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The face fills a 640x480 frame: scaled past the frame's height and cut."""
    side = int(480 * rng.uniform(1.0, 1.25)) // 2 * 2
    big = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    top = (side - 480) // 2
    big = big[top:top + 480]
    left = (640 - side) // 2  # side <= 600: the sides are the picture's edges, blurred
    frame = cv2.copyMakeBorder(big, 0, 0, left, 640 - side - left, cv2.BORDER_REPLICATE)
    blurred = cv2.GaussianBlur(frame, (0, 0), 12)
    frame[:, :left], frame[:, left + side:] = blurred[:, :left], blurred[:, left + side:]
    return frame


def frame_small(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 100-120 px face at a random place in a 640x360 frame with a soft background."""
    h, w = 360, 640
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a, b = rng.integers(40, 220, 3), rng.integers(40, 220, 3)
    ramp = (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1))
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0)
    frame = (a * (1 - ramp[..., None]) + b * ramp[..., None]).astype(np.uint8)
    side = int(rng.integers(100, 121))
    small = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    y0, x0 = int(rng.integers(20, h - side - 20)), int(rng.integers(20, w - side - 20))
    frame[y0:y0 + side, x0:x0 + side] = small
    return frame


def frame_upscaled(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The crop upscaled to 192 px in the middle of a grey 640x360 frame."""
    frame = np.full((360, 640, 3), 100, np.uint8)
    big = cv2.resize(face, (192, 192), interpolation=cv2.INTER_CUBIC)
    frame[84:276, 224:416] = big
    return frame


FRAMERS = {"closeup": frame_closeup, "small": frame_small, "upscaled": frame_upscaled}


# ----------------------------------------------------------------- composing
def test_clips(audio_h5: str | Path) -> dict[str, list[str]]:
    """The test speakers' clips of preprocessed_audio.h5, by emotion (six only)."""
    with h5io.open_checked(audio_h5, h5io.PREPROCESSED_AUDIO) as f:
        rows = zip(h5io.read_strings(f["paths"]), f["labels"][()], h5io.read_strings(f["splits"]),
                   strict=True)
        out: dict[str, list[str]] = {e: [] for e in EMOTIONS}
        for path, label, split in rows:
            if split == "test" and ALL_LABELS[int(label)] in out:
                out[ALL_LABELS[int(label)]].append(path)
    missing = [e for e, v in out.items() if not v]
    if missing:
        raise EmotionError(f"{audio_h5} has no test clip of {', '.join(missing)}; compose needs "
                           "test speakers' clips of all six emotions")
    return out


def face_files(faces_dir: str | Path) -> dict[str, list[Path]]:
    """Face images under {emotion}/ folders (six emotions, synonyms allowed)."""
    faces_dir = Path(faces_dir)
    out: dict[str, list[Path]] = {e: [] for e in EMOTIONS}
    for d in sorted(p for p in faces_dir.iterdir() if p.is_dir()):
        try:
            e = canonical(d.name)
        except EmotionError:
            continue
        if e in out:
            out[e] += sorted(p for p in d.iterdir() if p.is_file())
    missing = [e for e, v in out.items() if not v]
    if missing:
        raise EmotionError(f"{faces_dir} has no {', '.join(missing)}/ folder of images")
    return out


def segment_audio(path: str, seconds: float) -> np.ndarray:
    """A clip at 16 kHz, its silences trimmed as in training, centred in `seconds`.

    The level is left as recorded: quiet speakers stay quiet.
    """
    y, sr = load_audio(path)
    y = trim_silence(resample(y, sr, SAMPLE_RATE), AudioParams())
    n = int(round(seconds * SAMPLE_RATE))
    if len(y) >= n:
        start = (len(y) - n) // 2
        return y[start:start + n]
    left = (n - len(y)) // 2
    return np.pad(y, (left, n - len(y) - left))


def _video(out: Path, name: str, framing: str, emotions: list[str], faces, clips,
           rng: np.random.Generator, seconds: float, *, one_face: bool) -> dict:
    """One composed video: a segment per emotion; one face throughout when `one_face`
    (a single person: then the emotions are all the same), else a new face each."""
    parts, labels, face_path = [], [], None
    for k, e in enumerate(emotions):
        if face_path is None or not one_face:
            face_path = faces[e][int(rng.integers(len(faces[e])))]
            frame = FRAMERS[framing](load_image(face_path), rng)
        clip_path = clips[e][int(rng.integers(len(clips[e])))]
        parts.append(((lambda i, fr=frame: fr), seconds, segment_audio(clip_path, seconds)))
        labels.append({"start": k * seconds, "end": (k + 1) * seconds, "emotion": e,
                       "face": str(face_path), "clip": str(clip_path)})
    write_video(out / name, parts, fps=FPS, sr=SAMPLE_RATE)
    return {"video": name, "framing": framing, "segments": labels,
            "duration": len(emotions) * seconds, "one_face": one_face}


def compose(out_dir: str | Path, faces: dict[str, list[Path]], clips: dict[str, list[str]], *,
            framings=FRAMINGS, videos: int = 6, segments: int = 6, singles: int = 12,
            seconds: float = 3.0, seed: int = 0) -> list[dict]:
    """Write the videos and labels.json; returns the manifest (one entry per video).

    Per framing: `videos` timelines of `segments` emotions, a new face each, and
    `singles` short videos of one person (one face, one emotion, two segments), as a
    webcam recording of one speaker is.
    """
    out_dir = Path(out_dir)
    manifest = []
    for f_i, framing in enumerate(framings):
        for v in range(videos):
            rng = np.random.default_rng([seed, f_i, v])
            emotions = [EMOTIONS[i] for i in rng.permutation(np.resize(
                np.arange(len(EMOTIONS)), segments))]
            manifest.append(_video(out_dir, f"{framing}_{v:02d}.mp4", framing, emotions,
                                   faces, clips, rng, seconds, one_face=False))
            log.info("composed %s: %s", manifest[-1]["video"], " ".join(emotions))
        for v in range(singles):
            rng = np.random.default_rng([seed, f_i, 1000 + v])
            e = EMOTIONS[v % len(EMOTIONS)]
            manifest.append(_video(out_dir, f"{framing}_one_{v:02d}.mp4", framing, [e, e],
                                   faces, clips, rng, seconds, one_face=True))
        log.info("composed %d one-person %s videos", singles, framing)
    write_json(out_dir / "labels.json", manifest)
    return manifest


# ----------------------------------------------------------------- scoring
def window_truth(window: dict, segments: list[dict]) -> str | None:
    """The emotion of the segment that holds the window's middle."""
    mid = (window["start"] + window["end"]) / 2
    for s in segments:
        if s["start"] <= mid < s["end"]:
            return s["emotion"]
    return None


def score(manifest: list[dict], results: dict[str, dict | str]) -> dict:
    """Per framing and overall: unanswered videos, window accuracy and macro-F1, RTF.

    `results` maps a video's name to the analysis JSON, or to the error message
    when the analysis refused it.
    """
    report: dict[str, dict] = {}
    for group in (*sorted({m["framing"] for m in manifest}), "all"):
        entries = [m for m in manifest if group in ("all", m["framing"])]
        truth, pred, detected, seconds, media = [], [], [], 0.0, 0.0
        unanswered = []
        for m in entries:
            r = results.get(m["video"])
            if not isinstance(r, dict):
                unanswered.append({"video": m["video"], "error": str(r)})
                n = len(m["segments"])
                truth += [EMOTIONS.index(s["emotion"]) for s in m["segments"]]
                pred += [NONE] * n
                detected += [False] * n
                continue
            seconds += float(r.get("processing_seconds", 0.0))
            media += float(r.get("duration", m["duration"]))
            for w in r["timeline"]:
                t = window_truth(w, m["segments"])
                if t is None:
                    continue
                truth.append(EMOTIONS.index(t))
                pred.append(EMOTIONS.index(w["emotion"]) if w.get("emotion") else NONE)
                detected.append(bool(w.get("face_detected", w.get("face_found"))))
        m6 = classification_metrics(np.array(truth), np.array(pred))
        report[group] = {
            "videos": len(entries), "unanswered": len(unanswered),
            "unanswered_videos": unanswered, "windows": len(truth),
            "window_accuracy": m6["accuracy"], "window_macro_f1": m6["macro_f1"],
            "per_class_f1": m6["per_class_f1"],
            "windows_without_prediction": int(sum(p == NONE for p in pred)),
            "face_detected_share": float(np.mean(detected)) if detected else 0.0,
            "real_time_factor": seconds / media if media else None,
        }
    return report


def analyse(manifest: list[dict], videos_dir: Path, analyzer, results_dir: Path
            ) -> dict[str, dict | str]:
    """Every video through the analyzer; each JSON (or refusal) saved in results_dir."""
    results: dict[str, dict | str] = {}
    for m in manifest:
        try:
            r = analyzer.analyze_video(videos_dir / m["video"])
            write_json(results_dir / f"{m['video']}.json", r)
            results[m["video"]] = r
        except MediaError as e:
            results[m["video"]] = str(e)
            log.warning("%s: no answer (%s)", m["video"], e)
    return results


def read_results(manifest: list[dict], results_dir: Path) -> dict[str, dict | str]:
    """Predictions saved as {results_dir}/{video}.json; a missing one is unanswered."""
    out: dict[str, dict | str] = {}
    for m in manifest:
        path = results_dir / f"{m['video']}.json"
        out[m["video"]] = json.loads(path.read_text()) if path.is_file() else "no prediction"
    return out


def heard_voices(manifest: list[dict], audio_h5: str | None,
                 voice_speakers: list[str] | None) -> list[str] | None:
    """The speakers of the composed clips whom the voice head learned from (their
    audio side is then optimistic), or None when that cannot be told."""
    if not audio_h5 or voice_speakers is None:
        log.info("pass --audio_h5 to check that the voice head never heard these speakers")
        return None
    with h5io.open_checked(audio_h5, h5io.PREPROCESSED_AUDIO) as f:
        speaker_of = dict(zip(h5io.read_strings(f["paths"]), h5io.read_strings(f["speakers"]),
                              strict=True))
    used = {speaker_of.get(seg["clip"]) for m in manifest for seg in m["segments"]}
    heard = sorted(used & set(voice_speakers))
    if heard:
        log.warning("the voice head learned from %d of the %d speakers in these videos (%s): "
                    "the audio side is optimistic; for an honest figure make the artifacts "
                    "with extract_embeddings.py --voice_splits train,val", len(heard),
                    len(used - {None}), ", ".join(heard))
    return heard


def log_report(report: dict) -> None:
    for group, r in report.items():
        rtf = "n/a" if r["real_time_factor"] is None else f"{r['real_time_factor']:.3f}"
        log.info("%-9s videos %2d, unanswered %d, windows %3d: accuracy %.3f, macro-F1 %.3f, "
                 "face detected in %.0f%% of windows, real-time factor %s", group, r["videos"],
                 r["unanswered"], r["windows"], r["window_accuracy"], r["window_macro_f1"],
                 100 * r["face_detected_share"], rtf)


# --------------------------------------------------------------------------
# The command line (evaluate_videos.py)

def get_args_parser() -> argparse.ArgumentParser:
    p = cli.parser(USAGE)
    p.add_argument("--faces", help="folder of {emotion}/*.jpg test faces (to compose)")
    p.add_argument("--audio_h5", help="preprocessed_audio.h5 whose test split gives the voices")
    p.add_argument("--artifacts", default=".", help="pipeline.py's --work folder (the models)")
    p.add_argument("--out", default="results/video_eval")
    p.add_argument("--videos", type=int, default=6, help="videos per framing")
    p.add_argument("--segments", type=int, default=6, help="segments (3 s each) per video")
    p.add_argument("--singles", type=int, default=12,
                   help="one-person videos (one face, one emotion, 6 s) per framing")
    p.add_argument("--framings", default=",".join(FRAMINGS))
    p.add_argument("--meetings", type=int, default=0,
                   help="also compose this many gallery-view meetings (needs --av_clips)")
    p.add_argument("--av_clips", help="folder of real talking-face clips with labels.csv "
                                      "(file, label, person) for the meetings")
    p.add_argument("--voices", help="folder of WAVs for speakers with no tile (default: the "
                                    "test split of --audio_h5)")
    p.add_argument("--no_singles", action="store_true",
                   help="only the meetings: skip the videos of one face at a time")
    p.add_argument("--results", default=None,
                   help="score these predictions ({video}.json) instead of analysing")
    p.add_argument("--seed", type=int, default=0)
    return p


def run(args: argparse.Namespace) -> dict:
    """Compose (unless the videos are there), analyse or read results, score, report."""
    from emotion.serve.analyzer import Analyzer

    out = Path(args.out)
    analyzer = None if args.results else Analyzer(*_artifact_paths(args.artifacts))
    report = {} if args.no_singles else singles(args, out, analyzer)
    if args.meetings:
        report["meetings"] = meetings(args, out, analyzer)
    write_json(out / "report.json", report)
    return report


def singles(args: argparse.Namespace, out: Path, analyzer) -> dict:
    """The videos of one face at a time (three framings): compose, analyse, score."""
    videos_dir = out / "videos"
    labels = videos_dir / "labels.json"
    if labels.is_file():
        manifest = json.loads(labels.read_text())
        log.info("reusing the %d composed videos in %s", len(manifest), videos_dir)
    else:
        if not (args.faces and args.audio_h5):
            raise EmotionError(f"no composed videos in {videos_dir}: give --faces and "
                               "--audio_h5 to compose them")
        framings = [f.strip() for f in args.framings.split(",") if f.strip()]
        unknown = [f for f in framings if f not in FRAMERS]
        if unknown:
            raise EmotionError(f"--framings {unknown}: choose among {', '.join(FRAMINGS)}")
        manifest = compose(videos_dir, face_files(args.faces), test_clips(args.audio_h5),
                           framings=framings, videos=args.videos, segments=args.segments,
                           singles=args.singles, seed=args.seed)
    if analyzer is None:
        results = read_results(manifest, Path(args.results))
    else:
        results = analyse(manifest, videos_dir, analyzer, out / "results")
    report = score(manifest, results)
    if analyzer is not None:
        report["all"]["voices_heard_in_training"] = heard_voices(
            manifest, args.audio_h5, analyzer.embedder.extra.get("voice_speakers"))
    log_report(report)
    return report


def _artifact_paths(root: str | Path) -> tuple[Path, Path, Path]:
    a = work_dir(root)
    return a.embedder, a.multimodal, a.isolation


def meetings(args: argparse.Namespace, out: Path, analyzer) -> dict:
    """Compose (unless there), analyse (or read --results) and score the meetings."""
    from emotion.serve.analyzer import Analyzer
    from emotion.stages import meeting_eval

    videos = out / "meetings"
    table = videos / "meetings.json"
    if table.is_file():
        manifest = json.loads(table.read_text())[:args.meetings]
    else:
        if not (args.av_clips and args.faces and (args.voices or args.audio_h5)):
            raise EmotionError("--meetings needs --av_clips, --faces and --voices (or "
                               "--audio_h5) to compose them")
        voices = (sorted(str(p) for p in Path(args.voices).glob("*.wav")) if args.voices
                  else [c for cs in test_clips(args.audio_h5).values() for c in cs])
        finder = analyzer or Analyzer(*_artifact_paths(args.artifacts))
        manifest = meeting_eval.compose_meetings(
            videos, args.av_clips, face_files(args.faces), voices, n=args.meetings,
            seed=args.seed, count_faces=lambda rgb: len(finder.embedder.faces(
                rgb, min_side=finder.options.meeting.min_face)))
    results = (read_results(manifest, Path(args.results)) if analyzer is None
               else analyse(manifest, videos, analyzer, out / "meeting_results"))
    report = meeting_eval.score_meetings(manifest, results)
    log.info("meetings %d: participant count right %.0f%%, id switches %.3f per "
             "participant-minute, speaker attribution %.3f of %d speech windows; speaking "
             "windows %s, listening windows %s; unanswered %d of %d shown windows",
             report["videos"], 100 * report["participant_count_right"],
             report["id_switches_per_participant_minute"], report["speaker_attribution"],
             report["speech_windows"], report.get("speaking"), report.get("listening"),
             report["unanswered_windows"], report["shown_windows"])
    return report


def main(argv: list[str] | None = None) -> int:
    return cli.run_main(argv, get_args_parser, run, "evaluate_videos.py")
