"""Scoring composed meetings (emotion.stages.meeting_eval): participants matched to people by
their tiles, speaker attribution, id switches, per-role accuracy; and a composed meeting's
layout (a late joiner, speaker view)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from emotion.stages import meeting_eval

LEFT, RIGHT = (0, 135, 480, 405), (480, 135, 960, 405)


def _manifest() -> dict:
    shown = {"T0": {"label": "happy", "speaking": True, "rect": LEFT},
             "L0": {"label": "sad", "speaking": False, "rect": RIGHT}}
    second = copy.deepcopy(shown)
    second["T0"]["speaking"] = False
    return {"video": "m.mp4", "duration": 6.0,
            "turns": [{"start": 0.0, "end": 3.0, "speaker": "T0", "shown": shown},
                      {"start": 3.0, "end": 6.0, "speaker": None, "shown": second}]}


def _window(start, box, emotion, speaks):
    return {"start": start, "end": start + 3.0, "present": True, "box": box,
            "emotion": emotion, "speech_found": speaks}


def _result(credit_right_first: bool = False) -> dict:
    left, right = [100.0, 200.0, 200.0, 300.0], [600.0, 200.0, 700.0, 300.0]
    return {"timeline": [{"start": 0.0, "end": 3.0, "speech_found": True},
                         {"start": 3.0, "end": 6.0, "speech_found": True}],
            "participants": [
                {"id": "P1", "timeline": [_window(0.0, left, "happy", not credit_right_first),
                                          _window(3.0, left, "angry", False)]},
                {"id": "P2", "timeline": [_window(0.0, right, "sad", credit_right_first),
                                          _window(3.0, right, "sad", False)]}],
            "unseen_speaker": {"timeline": [{"start": 3.0, "end": 6.0}]}}


def test_a_right_answer_scores_full_marks():
    m = _manifest()
    assert meeting_eval.match(m, _result()) == {"P1": "T0", "P2": "L0"}
    r = meeting_eval.score_meetings([m], {"m.mp4": _result()})
    assert r["participant_count_right"] == 1.0
    assert r["speaker_attribution"] == 1.0 and r["speech_windows"] == 2   # incl. unseen
    assert r["id_switches_per_participant_minute"] == 0.0
    assert r["speaking"]["accuracy"] == 1.0 and r["speaking"]["windows"] == 1
    assert r["listening"]["windows"] == 3
    assert r["listening"]["accuracy"] == pytest.approx(2 / 3)             # "angry" for happy
    assert r["unanswered_windows"] == 0


def test_the_wrong_speaker_and_a_missing_participant_are_counted():
    m = _manifest()
    wrong = _result(credit_right_first=True)
    r = meeting_eval.score_meetings([m], {"m.mp4": wrong})
    assert r["speaker_attribution"] == 0.5
    lone = _result()
    lone["participants"] = lone["participants"][:1]
    r = meeting_eval.score_meetings([m], {"m.mp4": lone})
    assert r["participant_count_right"] == 0.0 and r["unanswered_windows"] == 2
    r = meeting_eval.score_meetings([m, {**m, "video": "gone.mp4"}],
                                    {"m.mp4": _result(), "gone.mp4": "refused"})
    assert r["unanswered_videos"] == 1 and r["participant_count_right"] == 0.5


def test_layouts_of_a_script():
    script = {"participants": [{"id": "T0"}, {"id": "T1"}, {"id": "L0"}],
              "speakers": ["T0", "T1", "T0", "T1"], "late": "L0", "join_turn": 2,
              "event": "speaker_view", "event_turn": 3}
    assert set(meeting_eval.layout(script, 0)) == {"T0", "T1"}        # L0 joins late
    assert set(meeting_eval.layout(script, 2)) == {"T0", "T1", "L0"}
    assert meeting_eval.layout(script, 3) == {"T1": (0, 0, 960, 540)}  # speaker view
    tiles = list(meeting_eval.layout(script, 2).values())
    assert len(set(tiles)) == 3


def test_a_picture_fills_its_tile():
    rgb = np.random.default_rng(0).integers(0, 255, (360, 480, 3), dtype=np.uint8)
    assert meeting_eval.fit_tile(rgb, 480, 270).shape == (270, 480, 3)
    assert meeting_eval.still_tile(rgb[:48, :48], 320, 180, (1, 2, 3)).shape == (180, 320, 3)
