"""Gallery-view meetings composed from real talking-face clips, and their scoring.

``evaluate_videos.py --meetings N --av_clips DIR`` composes N meetings from a
folder of real audio-visual clips (a ``labels.csv`` of file, label, person, as
../shared/data/av_clips has) and still faces ({emotion}/*.jpg, the FER test
split), analyses them as predict.py does, and scores every participant.

A meeting is a run of 3-s turns in a 960x540 gallery of 2 to 4 tiles:

- **talkers** are people of the clip folder (one person per tile, no two tiles
  of the same person); in their turn their clip plays with its own sound; when
  another speaks they are shown **still** (their clip's first frame) or
  **muted** (their clip playing without sound: lips that move, but not in time
  with what is heard);
- **listeners** are still faces of the face folder (labelled emotions) on a
  coloured wall;
- some turns are spoken by someone with **no tile** (a clip of a voice corpus: a
  phone participant); some meetings **switch layout** (the tiles reordered, or one
  turn in speaker view: the speaker alone, full frame) and some have a participant
  who **joins late** (their tile appears at a later turn and the grid re-flows).

Truth is kept per turn: who is shown where, who speaks, each one's label. The
score maps each predicted participant to the person whose tile holds their boxes
most often, and gives: participant count right, id switches per
participant-minute, speaker attribution (speech windows credited to exactly the
right participant, or to "unseen" when the speaker has no tile), per-participant
window accuracy and macro-F1 for speaking and for listening windows, and
unanswered windows (a person on screen with no emotion given).
"""

from __future__ import annotations

import csv
import functools
import logging
from pathlib import Path

import cv2
import numpy as np

from emotion.core.atomic import write_json
from emotion.core.errors import EmotionError
from emotion.core.labels import EMOTIONS, canonical
from emotion.core.metrics import classification_metrics
from emotion.media.encode import write_video
from emotion.media.images import load_image

log = logging.getLogger(__name__)

FPS = 25
SR = 16_000
TURN = 3.0
SIZE = (960, 540)
WALLS = [(70, 90, 120), (120, 100, 80), (60, 110, 80), (110, 70, 90)]


# ----------------------------------------------------------------- sources
@functools.lru_cache(maxsize=8)
def read_clip(path: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """A clip's RGB frames (at most one turn's worth, at 25 fps) and its sound at 16 kHz."""
    import av

    from emotion.media.audio import resample, to_mono

    frames, sound, rate = [], [], SR
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
        if c.streams.audio:
            c.seek(0)
            for frame in c.decode(audio=0):
                rate = frame.sample_rate
                sound.append(to_mono(frame.to_ndarray().T.astype(np.float32)))
    y = resample(np.concatenate(sound), rate, SR) if sound else np.zeros(0, np.float32)
    return frames, y.astype(np.float32)


def clip_people(av_dir: str | Path, count_faces=None) -> dict[str, list[dict]]:
    """{person: [{"path", "label"}]} from the folder's labels.csv (clips with sound).

    With `count_faces` (an RGB frame -> the number of faces in it), clips that show
    more than one face in any of five frames a second are left out: a tile is one participant,
    and a film's second person in it would be scored against the wrong truth."""
    av_dir = Path(av_dir)
    table = av_dir / "labels.csv"
    if not table.is_file():
        raise EmotionError(f"{av_dir} has no labels.csv (file, label, person)")
    people: dict[str, list[dict]] = {}
    with table.open(newline="") as f:
        for row in csv.DictReader(f):
            label = None
            if row.get("label"):
                try:
                    label = canonical(row["label"])
                except EmotionError:
                    label = None
            label = label if label in EMOTIONS else None
            if "without_audio" in row["file"]:
                continue
            path = av_dir / row["file"]
            if count_faces is not None:
                frames, _ = read_clip(path)
                most = max(count_faces(f) for f in frames[::5])
                if most > 1:
                    log.info("left out %s: %d faces in one frame", row["file"], most)
                    continue
            people.setdefault(row["person"], []).append({"path": str(path), "label": label})
    return people


def fit_tile(rgb: np.ndarray, w: int, h: int) -> np.ndarray:
    """A picture scaled to cover a w x h tile and centre-cropped to it."""
    s = max(w / rgb.shape[1], h / rgb.shape[0])
    big = cv2.resize(rgb, (max(w, int(round(rgb.shape[1] * s))),
                           max(h, int(round(rgb.shape[0] * s)))), interpolation=cv2.INTER_AREA)
    y0, x0 = (big.shape[0] - h) // 2, (big.shape[1] - w) // 2
    return big[y0:y0 + h, x0:x0 + w]


def still_tile(face: np.ndarray, w: int, h: int, wall) -> np.ndarray:
    """A still face (a data set's crop) in the middle of a coloured wall."""
    tile = np.empty((h, w, 3), np.uint8)
    tile[:] = wall
    side = int(h * 0.6)
    f = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    y0, x0 = (h - side) // 2, (w - side) // 2
    tile[y0:y0 + side, x0:x0 + side] = f
    return tile


def grid(n: int) -> list[tuple[int, int, int, int]]:
    """Tile rectangles (x1, y1, x2, y2) of a gallery of n: one row of two, or 2 x 2."""
    W, H = SIZE
    if n == 1:
        return [(0, 0, W, H)]
    if n == 2:
        return [(0, H // 4, W // 2, 3 * H // 4), (W // 2, H // 4, W, 3 * H // 4)]
    return [(x, y, x + W // 2, y + H // 2) for y in (0, H // 2) for x in (0, W // 2)][:n]


# ----------------------------------------------------------------- composing
def plan(rng: np.random.Generator, people: list[str], faces_n: int, k: int) -> dict:
    """A meeting's script: participants, turns (speaker per turn), layout events."""
    n = int(rng.integers(2, 5))
    n_talk = int(min(len(people), max(1, n - int(rng.integers(0, 2)))))
    talkers = list(rng.choice(people, n_talk, replace=False))
    parts = [{"id": f"T{i}", "kind": "talker", "person": p,
              "quiet": "muted" if rng.random() < 0.5 else "still"}
             for i, p in enumerate(talkers)]
    parts += [{"id": f"L{i}", "kind": "listener", "face": int(rng.integers(faces_n))}
              for i in range(n - n_talk)]
    turns = 8
    speakers = []
    for t in range(turns):
        if k % 3 == 0 and t in (3, 6):
            speakers.append(None)            # someone with no tile
        else:
            choices = [p["id"] for p in parts if p["kind"] == "talker"
                       and (not speakers or speakers[-1] != p["id"] or n_talk == 1)]
            speakers.append(str(rng.choice(choices)))
    late = parts[-1]["id"] if (k % 4 == 1 and n > 2) else None
    join_turn = 3 if late else 0
    event = ["reorder", "speaker_view", None][k % 3]
    return {"participants": parts, "speakers": speakers, "late": late, "join_turn": join_turn,
            "event": event, "event_turn": 5}


def layout(script: dict, turn: int) -> dict[str, tuple]:
    """{participant id: tile rectangle} shown in a turn."""
    ids = [p["id"] for p in script["participants"]
           if not (p["id"] == script["late"] and turn < script["join_turn"])]
    if script["event"] == "speaker_view" and turn == script["event_turn"] \
            and script["speakers"][turn] is not None:
        return {script["speakers"][turn]: grid(1)[0]}
    if script["event"] == "reorder" and turn >= script["event_turn"]:
        ids = ids[1:] + ids[:1]
    return dict(zip(ids, grid(len(ids)), strict=False))


def compose_meeting(out: Path, name: str, script: dict, people: dict, faces: list,
                    voices: list[str], rng: np.random.Generator) -> dict:
    """Write one meeting video; returns its manifest entry with the truth per turn."""
    from emotion.media.audio import load_audio, resample

    clips, stills = {}, {}
    for p in script["participants"]:
        if p["kind"] == "talker":
            own = people[p["person"]]
            clips[p["id"]] = [own[int(i)] for i in rng.permutation(len(own))]
        else:
            path, label = faces[p["face"]]
            stills[p["id"]] = (load_image(path), label)
    turns, segments = [], []
    used: dict[str, int] = {}
    for t, speaker in enumerate(script["speakers"]):
        tiles = layout(script, t)
        frames_of, truth = {}, {}
        sound = np.zeros(int(TURN * SR), np.float32)
        for pid, rect in tiles.items():
            w, h = rect[2] - rect[0], rect[3] - rect[1]
            if pid in stills:
                img, label = stills[pid]
                tile = still_tile(img, w, h, WALLS[int(pid[1:]) % len(WALLS)])
                frames_of[pid] = [tile]
                truth[pid] = {"label": label, "speaking": False, "rect": rect}
                continue
            entry = clips[pid][used.get(pid, 0) % len(clips[pid])]
            if pid == speaker:
                used[pid] = used.get(pid, 0) + 1
            frames, y = read_clip(Path(entry["path"]))
            tiles_f = [fit_tile(f, w, h) for f in frames]
            part = next(p for p in script["participants"] if p["id"] == pid)
            if pid == speaker:
                sound[:min(len(y), len(sound))] += y[:len(sound)]
            elif part["quiet"] == "still":
                tiles_f = tiles_f[:1]
            frames_of[pid] = tiles_f
            truth[pid] = {"label": entry["label"], "speaking": pid == speaker, "rect": rect}
        if speaker is None:
            path = voices[int(rng.integers(len(voices)))]
            y, sr = load_audio(path)
            y = resample(y, sr, SR)[:len(sound)]
            sound[:len(y)] += y
        turns.append({"start": t * TURN, "end": (t + 1) * TURN, "speaker": speaker,
                      "shown": truth})

        def frame_at(i, frames_of=frames_of, tiles=tiles):
            canvas = np.full((SIZE[1], SIZE[0], 3), 30, np.uint8)
            for pid, rect in tiles.items():
                fs = frames_of[pid]
                canvas[rect[1]:rect[3], rect[0]:rect[2]] = fs[min(i, len(fs) - 1)]
            return canvas

        segments.append((frame_at, TURN, sound))
    write_video(out / name, segments, fps=FPS, sr=SR)
    return {"video": name, "script": script, "turns": turns, "duration": len(turns) * TURN}


def compose_meetings(out_dir: str | Path, av_dir: str | Path, faces: dict[str, list[Path]],
                     voices: list[str], *, n: int, seed: int = 0, count_faces=None
                     ) -> list[dict]:
    out_dir = Path(out_dir)
    people = clip_people(av_dir, count_faces)
    flat = [(p, e) for e in EMOTIONS for p in faces[e]]
    manifest = []
    for k in range(n):
        rng = np.random.default_rng([seed, 7, k])
        script = plan(rng, sorted(people), len(flat), k)
        manifest.append(compose_meeting(out_dir, f"meeting_{k:02d}.mp4", script, people,
                                        flat, voices, rng))
        log.info("composed meeting_%02d: %d participants, event %s, late %s", k,
                 len(script["participants"]), script["event"], script["late"])
    write_json(out_dir / "meetings.json", manifest)
    return manifest


# ----------------------------------------------------------------- scoring
def _turn_at(m: dict, t: float) -> dict | None:
    for turn in m["turns"]:
        if turn["start"] <= t < turn["end"]:
            return turn
    return None


def _inside(box, rect) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return rect[0] <= cx < rect[2] and rect[1] <= cy < rect[3]


def match(m: dict, result: dict) -> dict[str, str | None]:
    """{predicted id: truth id}: the person whose tile holds the participant's boxes most."""
    out = {}
    for p in result.get("participants", []):
        votes: dict[str, int] = {}
        for w in p["timeline"]:
            turn = _turn_at(m, (w["start"] + w["end"]) / 2)
            if not w["present"] or turn is None or not w.get("box"):
                continue
            for pid, shown in turn["shown"].items():
                if _inside(w["box"], shown["rect"]):
                    votes[pid] = votes.get(pid, 0) + 1
        out[p["id"]] = max(votes, key=votes.get) if votes else None
    return out


def score_meeting(m: dict, result: dict) -> dict:
    """The counts of one meeting (summed over meetings by :func:`score_meetings`)."""
    truth_ids = {pid for turn in m["turns"] for pid in turn["shown"]}
    preds = result.get("participants", [])
    mapping = match(m, result)
    lanes = {p["id"]: p["timeline"] for p in preds}
    unseen = {(w["start"], w["end"]) for w in result.get("unseen_speaker", {}).get("timeline", [])}
    c = {"count_right": len(preds) == len(truth_ids), "truth": len(truth_ids),
         "predicted": len(preds), "switches": 0, "participant_minutes": 0.0,
         "speech_windows": 0, "attributed": 0, "speech_not_heard": 0,
         "speaking": ([], []), "listening": ([], []), "unanswered": 0, "shown_windows": 0}
    grid_windows = result["timeline"]
    last_pred: dict[str, str] = {}
    for i, w in enumerate(grid_windows):
        turn = _turn_at(m, (w["start"] + w["end"]) / 2)
        if turn is None:
            continue
        span = w["end"] - w["start"]
        credited = set()
        for pid_pred, lane in lanes.items():
            pw = lane[i]
            if pw["present"] and pw["speech_found"]:
                credited.add(mapping.get(pid_pred))
        for pid, shown in turn["shown"].items():
            c["participant_minutes"] += span / 60
            c["shown_windows"] += 1
            here = [p for p, lane in lanes.items() if lane[i]["present"] and lane[i].get("box")
                    and _inside(lane[i]["box"], shown["rect"])]
            if here and last_pred.get(pid) not in (None, here[0]):
                c["switches"] += 1
            if here:
                last_pred[pid] = here[0]
            pw = lanes[here[0]][i] if here else None
            if pw is None or not pw["emotion"]:
                c["unanswered"] += 1
            if shown["label"] is None:
                continue
            kind = "speaking" if shown["speaking"] else "listening"
            c[kind][0].append(EMOTIONS.index(shown["label"]))
            c[kind][1].append(EMOTIONS.index(pw["emotion"]) if pw and pw["emotion"]
                              else len(EMOTIONS))
        if not w["speech_found"]:
            c["speech_not_heard"] += 1
            continue
        c["speech_windows"] += 1
        want = {turn["speaker"]} if turn["speaker"] in turn["shown"] else set()
        if credited == want and (want or (w["start"], w["end"]) in unseen):
            c["attributed"] += 1
    return c


def score_meetings(manifest: list[dict], results: dict[str, dict | str]) -> dict:
    tot = {"videos": len(manifest), "count_right": 0, "switches": 0,
           "participant_minutes": 0.0, "speech_windows": 0, "attributed": 0,
           "speech_not_heard": 0, "unanswered": 0, "shown_windows": 0, "unanswered_videos": 0}
    pairs = {"speaking": ([], []), "listening": ([], [])}
    per_video = []
    for m in manifest:
        r = results.get(m["video"])
        if not isinstance(r, dict):
            tot["unanswered_videos"] += 1
            continue
        c = score_meeting(m, r)
        per_video.append({"video": m["video"], "truth": c["truth"], "predicted": c["predicted"],
                          "switches": c["switches"],
                          "attribution": c["attributed"] / max(c["speech_windows"], 1)})
        for k in tot:
            if k in c and k != "videos":
                tot[k] += c[k]
        for kind in pairs:
            pairs[kind][0].extend(c[kind][0])
            pairs[kind][1].extend(c[kind][1])
    out = {"videos": tot["videos"], "unanswered_videos": tot["unanswered_videos"],
           "participant_count_right": tot["count_right"] / max(tot["videos"], 1),
           "id_switches_per_participant_minute":
               tot["switches"] / max(tot["participant_minutes"], 1e-9),
           "speech_windows": tot["speech_windows"],
           "speaker_attribution": tot["attributed"] / max(tot["speech_windows"], 1),
           "speech_windows_not_heard": tot["speech_not_heard"],
           "unanswered_windows": tot["unanswered"], "shown_windows": tot["shown_windows"],
           "per_video": per_video}
    for kind, (t, p) in pairs.items():
        if t:
            mm = classification_metrics(np.array(t), np.array(p))
            out[kind] = {"windows": len(t), "accuracy": mm["accuracy"],
                         "macro_f1": mm["macro_f1"]}
    return out
