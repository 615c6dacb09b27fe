"""Faces linked across frames into participants whose id holds for the whole recording.

A meeting recording shows each participant in a tile (gallery view) or large
(speaker view); tiles move when someone joins, and the view switches. So a face
is linked to a participant by two cues:

- **position**: the box overlaps the participant's last box (intersection over the
  smaller box, so a detected face inside the centre square that stood for it in
  another frame is the same place; a close overlap is enough on its own, a loose
  one with a similar look), while nothing suggests
  the layout changed since; a missed detection or a brief occlusion keeps the
  participant open (``max_gap`` seconds) at the same place;
- **appearance**: a colour signature of the face and its surroundings (hue and
  saturation of the face crop, and of the ring around it: hair, clothes and the
  participant's own room), compared with the participant's running signature.
  It survives a change of scale and place, so a tile that moved or a switch to
  speaker view finds the same person again.

Detections of one frame are assigned together (scipy's ``linear_sum_assignment``
on a cost mixing both cues, gated), so two faces never share a participant in a
frame. A layout change is told by a frame-difference test between sampled frames
(a tenth of the cost of a shot detector that reads every frame, and enough for
the cuts of a meeting recording). At the end, participants that never share a
frame and look alike are merged (a person whose first tile was missed long
enough to open a new participant), and participants seen in too few frames
to be a person are dropped (unless none is left: then the most seen stays);
ids are then numbered by first appearance.

Given a ``verify`` check (:class:`emotion.media.faces.SecondOpinion`: another
detector's look at the box), a participant must also pass it in one of its
first frames: things the face detector keeps finding in a tile (glare, a logo, a
tile's edge) are dropped, as the frame-count rule cannot drop what is seen all along.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from emotion.media.images import overlap

HIST_BINS = (12, 6)  # hue, saturation


def appearance(rgb: np.ndarray, box) -> np.ndarray:
    """A unit-norm colour signature of the face at `box` (x1, y1, x2, y2) in an RGB frame:
    square-rooted hue-saturation histograms of the face and of the ring around it."""
    h, w = rgb.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    bw, bh = x2 - x1, y2 - y1
    parts = []
    for grow in (0.0, 0.6):
        a, b = int(max(0, x1 - grow * bw)), int(max(0, y1 - grow * bh))
        c, d = int(min(w, x2 + grow * bw)), int(min(h, y2 + grow * bh))
        if c - a < 2 or d - b < 2:
            parts.append(np.zeros(HIST_BINS[0] * HIST_BINS[1], np.float32))
            continue
        hsv = cv2.cvtColor(np.ascontiguousarray(rgb[b:d, a:c]), cv2.COLOR_RGB2HSV)
        mask = None
        if grow:  # the ring only: the face itself is the other part
            mask = np.full(hsv.shape[:2], 255, np.uint8)
            mask[int(y1) - b:int(y2) - b, int(x1) - a:int(x2) - a] = 0
        hist = cv2.calcHist([hsv], [0, 1], mask, list(HIST_BINS), [0, 180, 0, 256]).ravel()
        parts.append(np.sqrt(hist / max(hist.sum(), 1.0)))
    sig = np.concatenate(parts).astype(np.float32)
    return sig / max(float(np.linalg.norm(sig)), 1e-9)


def frame_changed(prev: np.ndarray | None, rgb: np.ndarray, threshold: float) -> bool:
    """A cut or a layout change between two sampled frames: the mean absolute difference
    of small grey copies, in grey levels."""
    if prev is None:
        return False
    small = [cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), (64, 36),
                        interpolation=cv2.INTER_AREA).astype(np.float32) for f in (prev, rgb)]
    return float(np.abs(small[0] - small[1]).mean()) > threshold


@dataclass
class Track:
    id: int
    first_t: float
    first_box: tuple[float, float, float, float]
    last_t: float
    last_box: tuple[float, float, float, float]
    signature: np.ndarray
    frames: list[float] = field(default_factory=list)  # times it was seen
    verified: bool = False        # a second detector agreed it is a face
    checks: int = 0               # ... asked so many times

    def see(self, t: float, box, sig: np.ndarray, rate: float) -> None:
        self.last_t, self.last_box = t, tuple(box)
        self.frames.append(t)
        mixed = (1 - rate) * self.signature + rate * sig
        self.signature = mixed / max(float(np.linalg.norm(mixed)), 1e-9)


@dataclass(frozen=True)
class TrackerSettings:
    max_gap: float = 6.0          # seconds a participant keeps its place unseen
    min_iou: float = 0.3          # boxes overlapping this much (of the smaller) share a place
    same_look: float = 0.80       # signature similarity that links a face anywhere
    near_look: float = 0.55       # ... and at the same place
    same_place: float = 0.6       # overlap that links a face whatever its look (no cut)
    merge_look: float = 0.75      # participants that never meet and look this alike merge
    #                               (dev meetings: the same person 0.80 and 0.82 - a clip
    #                               restarting every turn, a return from speaker view -;
    #                               two people at most 0.29)
    min_frames: int = 4           # seen in fewer sampled frames (a window has 3): not a
    #                               participant (on the dev meetings this put 4 of the 7
    #                               over-counted right: faces seen in 3 frames or fewer)
    min_share: float = 0.02       # ... or in less than this share of the sampled frames
    cut_threshold: float = 18.0   # grey levels of mean frame difference: a layout change
    rate: float = 0.1             # how fast a signature follows its participant
    verify_frames: int = 6        # frames in which a participant may pass the check

    def settings(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


class FaceTracker:
    """Online: :meth:`update` per sampled frame gives each face a participant id;
    :meth:`finish` merges and drops participants and maps ids to final ones."""

    def __init__(self, settings: TrackerSettings = TrackerSettings(),
                 verify: Callable[[np.ndarray, tuple], bool] | None = None):
        self.s = settings
        self.verify = verify
        self.tracks: list[Track] = []
        self._prev: np.ndarray | None = None
        self.frames_seen = 0
        self.cuts: list[float] = []

    def _cost(self, boxes, sigs, t: float, cut: bool) -> np.ndarray:
        big = 1e6
        cost = np.full((len(boxes), len(self.tracks)), big)
        for j, tr in enumerate(self.tracks):
            recent = not cut and t - tr.last_t <= self.s.max_gap
            for i, (box, sig) in enumerate(zip(boxes, sigs, strict=True)):
                look = float(sig @ tr.signature)
                place = overlap(box, tr.last_box) if recent else 0.0
                if look >= self.s.same_look or place >= self.s.same_place or (
                        place >= self.s.min_iou and look >= self.s.near_look):
                    cost[i, j] = (1 - look) + (1 - place) * 0.5
        return cost

    def update(self, t: float, rgb: np.ndarray, boxes: list) -> list[int]:
        """The participant id of each box (x1, y1, x2, y2) seen at time `t` in `rgb`."""
        self.frames_seen += 1
        cut = frame_changed(self._prev, rgb, self.s.cut_threshold)
        if cut:
            self.cuts.append(t)
        self._prev = rgb
        sigs = [appearance(rgb, b) for b in boxes]
        ids = [-1] * len(boxes)
        if boxes and self.tracks:
            cost = self._cost(boxes, sigs, t, cut)
            rows, cols = linear_sum_assignment(cost)
            for i, j in zip(rows, cols, strict=True):
                if cost[i, j] < 1e6:
                    self.tracks[j].see(t, boxes[i], sigs[i], self.s.rate)
                    ids[i] = self.tracks[j].id
        for i, box in enumerate(boxes):
            if ids[i] < 0:
                tr = Track(len(self.tracks), t, tuple(box), t, tuple(box), sigs[i], [t])
                self.tracks.append(tr)
                ids[i] = tr.id
        if self.verify is not None:
            for i, box in zip(ids, boxes, strict=True):
                tr = self.tracks[i]
                if not tr.verified and tr.checks < self.s.verify_frames:
                    tr.checks += 1
                    tr.verified = bool(self.verify(rgb, tuple(box)))
        return ids

    def finish(self) -> dict[int, int | None]:
        """{raw id: final participant index (0, 1, ... by first appearance), or None when
        dropped}: look-alikes that never share a frame merged, rare and unverified ones
        dropped."""
        parent = {tr.id: tr.id for tr in self.tracks}

        def root(i: int) -> int:
            while parent[i] != i:
                i = parent[i]
            return i

        times = {tr.id: set(tr.frames) for tr in self.tracks}
        order = sorted(self.tracks, key=lambda tr: tr.first_t)
        for a_i, a in enumerate(order):
            for b in order[a_i + 1:]:
                ra, rb = root(a.id), root(b.id)
                if ra == rb or times[ra] & times[rb]:
                    continue
                if float(a.signature @ b.signature) >= self.s.merge_look:
                    parent[rb] = ra
                    times[ra] |= times[rb]
        floor = max(self.s.min_frames, self.s.min_share * self.frames_seen)
        roots = {root(i) for i in parent}
        verified = {root(tr.id) for tr in self.tracks if tr.verified or self.verify is None}
        keep = {r for r in roots if len(times[r]) >= floor and r in verified}
        if not keep and roots:  # one face seen too rarely is still the one on screen
            keep = {max(roots, key=lambda r: len(times[r]))}
        keep = sorted(keep, key=lambda r: min(times[r]))
        final = {r: k for k, r in enumerate(keep)}
        return {i: final.get(root(i)) for i in parent}
