"""Participants of a meeting: who is on screen, who speaks, and what each shows.

The analysis core (:mod:`emotion.serve.analyzer`) hands every window of a video
to :meth:`Meeting.observe` with the faces the face policy found in its sampled
frames (all of them, not only the largest) and their embeddings, computed in one
batch. Per window:

1. faces are linked into participants (:class:`emotion.media.tracks.FaceTracker`);
2. when the speech gate hears speech, every participant on screen goes through
   the active-speaker network in one batch (their lip-area crops at 25 frames a
   second and the window's MFCCs, :mod:`emotion.models.speaker`), which gives a
   mean logit per participant, and each one's lip sync is measured (how their
   mouth's motion follows the sound's loudness over the window).

:meth:`Meeting.finish` merges and numbers the participants, turns the logits
into the probability that each one speaks (:class:`SpeakingCalibration`, fitted on
composed meetings: relative to the others on screen, since a film's speaker can
score below 0; raised by the lip sync beside others, since the network barely tells
lips out of time with the sound from lips in time; and relative to the same face's
scores when other voices speak (:func:`voice_contrast`), since a face whose lips
move all along scores high whoever is heard; a face alone on screen by a fit of its
own, on one-face videos), and scores each participant's window: fused with the
window's voice when they are its speaker, image only when they listen. Speech that no
face on screen is credited with goes to the ``unseen_speaker`` lane (a camera
turned off, a phone participant, someone outside the frame), never to the
largest face. The likeliest participant speaks from P = 0.5; a second one in the
same window only from 0.8 (two people may speak at once, but a moving mouth
beside the speaker is more often a listener's).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from emotion.core.labels import EMOTIONS
from emotion.media.decode import DENSE_FPS, Window
from emotion.media.faces import FaceCrop
from emotion.media.tracks import FaceTracker, TrackerSettings
from emotion.models.voice import VoiceContext

log = logging.getLogger(__name__)

CALIBRATION = Path(__file__).resolve().parent / "speaking_calibration.json"
THUMB = 64
ALONE_MARGIN = 3.0  # the margin of a face with no one else on screen


@dataclass(frozen=True)
class SpeakingCalibration:
    """P(speaking) = sigmoid(a * evidence + b * min(margin, 3) + c), where evidence is the
    participant's mean active-speaker logit over the window plus `voice` times its
    :func:`voice_contrast` (how much higher the same face scores when voices like this
    window's are heard than when others are), and margin the evidence's lead over the
    best other face on screen; fitted on composed meetings (bench/asd_calibration.py).
    A fit made before the contrast has voice = 0: the logit alone. Beside other faces,
    the logit is first raised by `sync` times the face's lip sync
    (:func:`emotion.media.speaker_inputs.lip_sync`: its mouth moving with the sound's
    loudness), before the contrast is taken; a fit made before it has sync = 0.

    A face alone on screen has no margin: sigmoid(alone_a * logit + alone_c), fitted
    on one-face videos (a clip with its own sound against its still frame with
    another voice: ``--alone``). Without that fit, alone counts as a margin of 3,
    which credits a lone face with almost any speech (a still photo's logit of -2
    still gave 0.89)."""
    a: float = 1.0
    b: float = 0.5
    c: float = 1.0
    weights: str = "talkset"
    fitted_on: str = "default"
    alone_a: float | None = None
    alone_c: float | None = None
    voice: float = 0.0
    sync: float = 0.0

    @classmethod
    def load(cls, path: str | Path = CALIBRATION) -> SpeakingCalibration:
        p = Path(path)
        if not p.exists():
            return cls()
        d = json.loads(p.read_text())
        alone = d.get("alone") or {}
        return cls(**{k: d[k] for k in ("a", "b", "c", "weights", "fitted_on")},
                   voice=d.get("voice", 0.0), sync=d.get("sync", 0.0),
                   alone_a=alone.get("a"), alone_c=alone.get("c"))

    def score(self, logit: float, sync: float | None) -> float:
        """A face's score beside others: its logit plus `sync` times its lip sync (none
        measured counts as 0)."""
        return logit + self.sync * (sync or 0.0)

    def evidence(self, logit: float, contrast: float) -> float:
        return logit + self.voice * contrast

    def probability(self, evidence: float, margin: float | None) -> float:
        """`margin` None: the face is alone on screen (`evidence` is then its logit)."""
        if margin is None and self.alone_a is not None and self.alone_c is not None:
            z = self.alone_a * evidence + self.alone_c
        else:
            z = self.a * evidence + self.b * capped(margin) + self.c
        return float(1 / (1 + np.exp(-np.clip(z, -50, 50))))

    def probabilities(self, evidence: dict) -> dict:
        """P for each face on screen in a window, from its evidence and its lead over the
        best other face's; a face alone on screen (its evidence is then its logit) by its
        own fit."""
        margins = leads(evidence)
        return {k: self.probability(ev, margins[k]) for k, ev in evidence.items()}


def capped(margin: float | None) -> float:
    return min(ALONE_MARGIN if margin is None else margin, ALONE_MARGIN)


def leads(values: dict) -> dict:
    """Each key's lead over the best other value (None when it is the only one)."""
    out = {}
    for k, v in values.items():
        others = [u for j, u in values.items() if j != k]
        out[k] = v - max(others) if others else None
    return out


# Voice likeness weights windows by max(cosine, 0)^VOICE_POWER: 1 did at least as well
# as 2 and 4 on 36 calibration meetings (seed 1; README, "Who is speaking").
VOICE_POWER = 1.0
# Of the recording's speech windows, this many rows of likeness at a time (memory: a few
# arrays of CHUNK x windows floats, 25 MB each for a 10-hour recording's 12,000 windows).
CHUNK = 256


def voice_contrast(voices: np.ndarray, logits: np.ndarray, power: float = VOICE_POWER
                   ) -> np.ndarray:
    """How much more each participant looks like speaking when this voice is heard than
    when other voices are: (n, K) for a recording's n speech windows and K participants.

    `voices` (n, d): each speech window's voice features; `logits` (n, K): the
    participants' active-speaker logits, NaN where they are not on screen. Voices are
    compared by the cosine of their features less the recording's mean (so that what
    every window shares does not count). For window i and participant k: the mean of
    k's logits over the windows, each weighted by max(cos, 0)^power (window i itself
    by 1), less their mean weighted by max(-cos, 0)^power (windows of unlike
    voices). A face whose lips move all along
    (a muted talker, someone chewing) scores high whichever voice is heard, so its
    contrast is near 0; a speaker's face scores higher with their own voice. 0 where k
    was never on screen while an unlike voice spoke; NaN where k is not on screen."""
    n, k = logits.shape
    out = np.full((n, k), np.nan)
    if n == 0 or k == 0:
        return out
    x = np.asarray(voices, np.float64)
    x = x - x.mean(0)
    x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-9
    present = ~np.isnan(logits)
    values = np.where(present, logits, 0.0)
    for lo in range(0, n, CHUNK):
        cos = x[lo:lo + CHUNK] @ x.T
        rows = np.arange(cos.shape[0])
        like = np.clip(cos, 0, 1) ** power
        like[rows, lo + rows] = 1.0
        unlike = np.clip(-cos, 0, 1) ** power
        unlike[rows, lo + rows] = 0.0
        mean_like = (like @ values) / np.maximum(like @ present, 1e-9)
        weight = unlike @ present
        mean_unlike = np.where(weight > 0.05, (unlike @ values) / np.maximum(weight, 1e-9),
                               mean_like)
        out[lo:lo + CHUNK] = np.where(present[lo:lo + CHUNK], mean_like - mean_unlike, np.nan)
    return out


@dataclass
class _Seen:
    """One raw participant in one window."""
    embedding: np.ndarray | None = None   # the sum of their faces' embeddings (n of them)
    n: int = 0
    boxes: list[tuple[float, tuple]] = field(default_factory=list)  # (time, box)
    detected: bool = False
    logit: float | None = None
    sync: float | None = None      # lip sync with the window's sound (speech windows)


@dataclass
class _WindowRecord:
    start: float
    end: float
    seen: dict[int, _Seen]    # per participant a summed embedding: a few kB per window
    audio: np.ndarray | None      # the window's voice embedding (None: no speech)
    voice: np.ndarray | None = None  # its voice features, before the head (a few kB)


# Speech windows whose faces go through Light-ASD together. In the analysis, between
# the other networks, one window's call took about twice what the same call takes run
# after another (caches and threads gone cold); the crops wait in memory meanwhile
# (25 x 112 x 112 bytes a face and window).
ASD_BATCH = 8


@dataclass(frozen=True)
class MeetingOptions:
    min_face: float = 24.0        # px (in frames scaled to 720): smaller faces are ignored
    speaking: float = 0.5         # the likeliest speaker on screen speaks from this probability
    also_speaking: float = 0.8    # ... and another one too from this (two people at once)
    asd_weights: str | None = None  # Light-ASD's "ava" or "talkset"; None: the calibrated
    # Of each speech window, the loudest stretch this long goes through Light-ASD
    # (bench/asd_calibration.py --seconds; README: 2 s did better on the calibration
    # meetings and worse on the dev meetings, 0.5 s worse on both).
    asd_seconds: float = 1.0
    scan_every: int = 2           # windows: one in this many looks for new (small) faces;
    #                               the others follow the faces already found ...
    rescan_change: float = 8.0    # ... unless the picture changed this much (mean grey
    #                               levels) since the last look: a layout change, a joiner


class Meeting:
    def __init__(self, speaker_model=None, *, options: MeetingOptions = MeetingOptions(),
                 tracker: TrackerSettings = TrackerSettings(),
                 calibration: SpeakingCalibration | None = None, frame_scale: float = 1.0,
                 verify: Callable[[np.ndarray, tuple], bool] | None = None):
        """`verify(rgb, box)`: a second detector's check that a new participant's box is
        a face (:class:`emotion.media.faces.SecondOpinion`); None: no check."""
        self.speaker_model = speaker_model
        self.options = options
        self.tracker = FaceTracker(tracker, verify)
        self.calibration = calibration or SpeakingCalibration.load()
        self.frame_scale = frame_scale       # original pixels per analysed pixel
        self.windows: list[_WindowRecord] = []
        self._thumbs: dict[int, np.ndarray] = {}
        self._pending: list[tuple[list[_Seen], np.ndarray, np.ndarray]] = []

    # ------------------------------------------------------------ per window
    def observe(self, w: Window, faces: list[list[FaceCrop]], embeddings: np.ndarray,
                audio: np.ndarray | None, voice: np.ndarray | None = None) -> None:
        """One window: `faces[k]` the faces of its k-th sampled frame, `embeddings` their
        rows in order; `audio` the window's voice embedding (None: no speech) and `voice`
        its voice features (embedded again at the end against whoever is credited)."""
        seen: dict[int, _Seen] = {}
        row = 0
        for frame, t, found in zip(w.frames, w.times, faces, strict=True):
            ids = self.tracker.update(t, frame, [c.box for c in found]) if found else []
            for pid, crop in zip(ids, found, strict=True):
                s = seen.setdefault(pid, _Seen())
                s.embedding = embeddings[row] if s.embedding is None else \
                    s.embedding + embeddings[row]
                s.n += 1
                s.boxes.append((t, crop.box))
                s.detected |= crop.detected
                if pid not in self._thumbs:
                    self._thumbs[pid] = crop.image
                row += 1
        if audio is not None and seen and self.speaker_model is not None and w.gray:
            for s in seen.values():
                s.sync = window_sync(w, s)
            inputs = speaker_inputs(w, list(seen.values()), self.options.asd_seconds)
            if inputs is not None:
                self._pending.append((list(seen.values()), *inputs))
                if len(self._pending) >= ASD_BATCH:
                    self._speaking()
        self.windows.append(_WindowRecord(w.start, w.end, seen, audio,
                                          voice if audio is not None else None))

    def _speaking(self) -> None:
        """The pending speech windows' participants through the active-speaker network,
        those of one stretch length in one batch, each face with its window's sound."""
        groups: dict[tuple, list] = {}
        for seen, faces, mfcc in self._pending:
            groups.setdefault((faces.shape[1], mfcc.shape[0]), []).append((seen, faces, mfcc))
        self._pending = []
        for group in groups.values():
            faces = np.concatenate([f for _, f, _ in group])
            mfcc = np.concatenate([np.repeat(m[None], len(f), axis=0) for _, f, m in group])
            logits = iter(np.atleast_2d(self.speaker_model.score(faces, mfcc)))
            for seen, _, _ in group:
                for s in seen:
                    s.logit = float(np.mean(next(logits)))

    # ------------------------------------------------------------ the end
    def finish(self, score_many: Callable[[list[tuple[np.ndarray | None,
                                                      np.ndarray | None]]], list[dict]],
               *, hop: float,
               embed_voice: Callable[[np.ndarray, VoiceContext], np.ndarray] | None = None
               ) -> dict:
        """{"participants": [...], "unseen_speaker": {...}}; `score_many(pairs)` is the
        analysis' scoring of (image, audio) embedding pairs (either may be None), all of
        the recording's participant-windows in one call.

        `embed_voice(features, context)`, given for a voice head with speaker norm,
        embeds each speech window's features again against the context of the
        participant credited with it (the unseen lane has one of its own): each
        person's voice is read against their own earlier windows, in time order."""
        self._speaking()
        final = self.tracker.finish()
        n = 1 + max((v for v in final.values() if v is not None), default=-1)
        lanes: list[list[dict]] = [[] for _ in range(n)]
        unseen: list[dict] = []
        todo: list[tuple[dict, np.ndarray | None, np.ndarray | None]] = []
        contexts: dict[int | None, VoiceContext] = {}   # None: the unseen lane

        def voice_of(who: int | None, rec: _WindowRecord) -> np.ndarray:
            if embed_voice is None or rec.voice is None:
                return rec.audio
            return embed_voice(rec.voice[None], contexts.setdefault(who, VoiceContext()))[0]

        merged_all = [self._merge(rec, final) for rec in self.windows]
        contrasts = self._contrasts(merged_all, n)
        for rec, merged, contrast in zip(self.windows, merged_all, contrasts, strict=True):
            probs = self._probabilities(merged, rec.audio is not None, contrast)
            speakers = {k for k in self._speakers(probs) if k in merged}
            if rec.audio is None:
                speakers = set()
            for k in range(n):
                voice = voice_of(k, rec) if k in speakers else None
                lanes[k].append(self._entry(rec, merged.get(k), probs.get(k, 0.0), voice,
                                            todo))
            if rec.audio is not None and not speakers:
                out = {"start": round(rec.start, 3), "end": round(rec.end, 3),
                       "face_found": False, "face_detected": False, "speech_found": True}
                todo.append((out, None, voice_of(None, rec)))
                unseen.append(out)
        for (entry, _, _), scored in zip(todo, score_many([(i, a) for _, i, a in todo]),
                                         strict=True):
            entry.update(scored)
        participants = [self._participant(k, lanes[k], hop, final) for k in range(n)]
        return {"participants": participants,
                "unseen_speaker": {"talk_seconds": _talk(unseen, hop), "timeline": unseen},
                "tracking": {"cuts": [round(t, 3) for t in self.tracker.cuts],
                             "tracks_raw": len(self.tracker.tracks)}}

    @staticmethod
    def _merge(rec: _WindowRecord, final: dict[int, int | None]) -> dict[int, _Seen]:
        out: dict[int, _Seen] = {}
        for raw, s in rec.seen.items():
            k = final.get(raw)
            if k is None:
                continue
            m = out.setdefault(k, _Seen())
            m.embedding = s.embedding if m.embedding is None else m.embedding + s.embedding
            m.n += s.n
            m.boxes += s.boxes
            m.detected |= s.detected
            if s.logit is not None:
                m.logit = s.logit if m.logit is None else max(m.logit, s.logit)
            if s.sync is not None:
                m.sync = s.sync if m.sync is None else max(m.sync, s.sync)
        return out

    def _scores(self, merged: dict[int, _Seen]) -> dict[int, float]:
        """Each scored participant's active-speaker logit, plus the calibration's `sync`
        times their lip sync when they share the screen (a lone face keeps its logit,
        which its own fit reads)."""
        logits = {k: s.logit for k, s in merged.items() if s.logit is not None}
        if len(logits) < 2:
            return logits
        return {k: self.calibration.score(lg, merged[k].sync) for k, lg in logits.items()}

    def _contrasts(self, merged_all: list[dict[int, _Seen]], n: int) -> list[dict[int, float]]:
        """Per window, each scored participant's :func:`voice_contrast` (empty for windows
        without speech, voice features or scores; all of them when the calibration does
        not use it)."""
        out: list[dict[int, float]] = [{} for _ in merged_all]
        if not self.calibration.voice:
            return out
        rows = [i for i, (rec, merged) in enumerate(zip(self.windows, merged_all, strict=True))
                if rec.audio is not None and rec.voice is not None
                and any(s.logit is not None for s in merged.values())]
        if not rows:
            return out
        logits = np.full((len(rows), n), np.nan)
        for r, i in enumerate(rows):
            for k, v in self._scores(merged_all[i]).items():
                logits[r, k] = v
        values = voice_contrast(np.stack([self.windows[i].voice for i in rows]), logits)
        for r, i in enumerate(rows):
            out[i] = {k: float(v) for k, v in enumerate(values[r]) if not np.isnan(v)}
        return out

    def _probabilities(self, merged: dict[int, _Seen], speech: bool,
                       contrast: dict[int, float] | None = None) -> dict[int, float]:
        if not speech:
            return {}
        cal = self.calibration
        logits = self._scores(merged)
        if len(logits) == 1:        # alone on screen: the lone face's own fit
            return cal.probabilities(logits)
        return cal.probabilities({k: cal.evidence(lg, (contrast or {}).get(k, 0.0))
                                  for k, lg in logits.items()})

    def _speakers(self, probs: dict[int, float]) -> set[int]:
        """Who speaks in a window: the likeliest participant when sure enough, and any
        other only when much surer (measured on composed meetings: most windows have one
        speaker, and a moving mouth beside them is more often a listener)."""
        if not probs:
            return set()
        best = max(probs, key=probs.get)
        out = {best} if probs[best] >= self.options.speaking else set()
        return out | {k for k, p in probs.items() if p >= self.options.also_speaking}

    def _entry(self, rec: _WindowRecord, s: _Seen | None, p: float,
               voice: np.ndarray | None, todo: list) -> dict:
        """A participant's window, fused with `voice` (their speech's embedding) when
        they speak; its scores come later, with every other's (`todo`)."""
        out = {"start": round(rec.start, 3), "end": round(rec.end, 3), "present": s is not None,
               "speaking": round(p, 3),
               "speaking_logit": None if s is None or s.logit is None else round(s.logit, 3),
               "lip_sync": None if s is None or s.sync is None else round(s.sync, 3),
               "face_found": s is not None,
               "face_detected": bool(s and s.detected)}
        if s is None:
            out.update(speech_found=False, role=None, emotion=None, emotion_probs=None,
                       anomaly_score=None, anomaly_flag=None, modalities="none")
            return out
        image = s.embedding / s.n
        box = np.mean([b for _, b in s.boxes], axis=0) * self.frame_scale
        out.update(box=[round(float(v), 1) for v in box], speech_found=voice is not None,
                   role="speaking" if voice is not None else "listening")
        todo.append((out, image, voice))
        return out

    def _participant(self, k: int, lane: list[dict], hop: float,
                     final: dict[int, int | None]) -> dict:
        raws = [r for r, v in final.items() if v == k]
        first = min((self.tracker.tracks[r] for r in raws), key=lambda tr: tr.first_t)
        box = [round(v * self.frame_scale, 1) for v in first.first_box]
        answered = [w for w in lane if w["emotion"]]
        weights = {e: 0.0 for e in EMOTIONS}
        for w in answered:
            weights[w["emotion"]] += min(hop, w["end"] - w["start"])
        total = sum(weights.values())
        shares = {e: round(v / total, 4) if total else 0.0 for e, v in weights.items()}
        changes, last = [], None
        for w in answered:
            if w["emotion"] != last:
                changes.append({"time": w["start"], "emotion": w["emotion"]})
                last = w["emotion"]
        return {"id": f"P{k + 1}", "first_seen": round(first.first_t, 3), "box": box,
                "thumbnail": _thumbnail(self._thumbs.get(first.id)),
                "talk_seconds": _talk([w for w in lane if w["speech_found"]], hop),
                "present_seconds": _talk([w for w in lane if w["present"]], hop),
                "emotion": max(shares, key=shares.get) if total else None,
                "emotion_shares": shares, "changes": changes, "timeline": lane}


def speaker_inputs(w: Window, seen: list[_Seen], seconds: float
                   ) -> tuple[np.ndarray, np.ndarray] | None:
    """The active-speaker network's input for the participants `seen` in a window: their
    (B, k, 112, 112) lip-area crops and the MFCCs of the window's loudest `seconds`
    (k frames; the network's cost grows with them), or None when too short. Each
    participant's box at every frame is interpolated between the sampled frames'."""
    from emotion.media.speaker_inputs import SAMPLE_RATE, asd_crop, mfcc

    per = SAMPLE_RATE / DENSE_FPS
    n = min(len(w.gray), int(len(w.audio) / per)) if w.audio is not None else 0
    k = min(n, int(round(seconds * DENSE_FPS)))
    if k < 2:
        return None
    energy = np.add.reduceat(np.square(w.audio[:int(n * per)], dtype=np.float64),
                             (np.arange(n) * per).astype(int))
    first = int(np.argmax(np.convolve(energy, np.ones(k), "valid")))
    times = np.asarray(w.gray_times)[first:first + k]
    batch = []
    for s in seen:
        boxes = _boxes_at(s, times)
        batch.append(np.stack([asd_crop(w.gray[first + i], b) for i, b in enumerate(boxes)]))
    return np.stack(batch), mfcc(w.audio[int(first * per):int((first + k) * per)])


def window_sync(w: Window, s: _Seen) -> float | None:
    """How a participant's mouth moves with the window's sound, over all its grey frames
    (:func:`emotion.media.speaker_inputs.lip_sync`); None when unmeasurable. A video
    slower than 25 frames a second fills several of the window's slots with one frame;
    each frame counts once, and the sound's loudness is taken over a frame's time."""
    from emotion.media.speaker_inputs import (
        SAMPLE_RATE,
        SYNC_LEAD,
        VIDEO_FPS,
        lip_sync,
        loudness,
        mouth_motion,
    )

    if not w.gray or w.audio is None or not s.boxes:
        return None
    times = np.asarray(w.gray_times, np.float64)
    keep = np.flatnonzero(np.r_[True, np.diff(times) > 0])
    times = times[keep]
    span = max(float(np.median(np.diff(times))) if len(times) > 1 else 0.0, 1 / VIDEO_FPS)
    motion = mouth_motion([w.gray[i] for i in keep], _boxes_at(s, times))
    return lip_sync(motion, loudness(w.audio, times - w.start + SYNC_LEAD, SAMPLE_RATE,
                                     span=span))


def _boxes_at(s: _Seen, times: np.ndarray) -> np.ndarray:
    """A participant's box at each of `times`, interpolated between the sampled frames'."""
    ts = np.array([t for t, _ in s.boxes])
    bs = np.array([b for _, b in s.boxes], np.float64)
    return np.stack([np.interp(times, ts, bs[:, j]) for j in range(4)], 1)


def _talk(windows: list[dict], hop: float) -> float:
    return round(sum(min(hop, w["end"] - w["start"]) for w in windows), 3)


def _thumbnail(crop: np.ndarray | None) -> str | None:
    """A small JPEG of a face crop as a data URI, for the page's lanes."""
    if crop is None:
        return None
    small = cv2.resize(crop, (THUMB, THUMB), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, 80])
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode() if ok else None
