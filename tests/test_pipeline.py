"""Running stages in order and reusing what is still valid (emotion/stages/run_all.py)."""

from __future__ import annotations

import logging
import os

from emotion.stages import run_all
from emotion.stages.run_all import Stage, run_stages


def _stages(tmp_path, calls, *, flag="a", fail=False):
    src, mid, out = tmp_path / "src.txt", tmp_path / "mid.txt", tmp_path / "out.txt"

    def first(argv):
        calls.append("first")
        mid.write_text(src.read_text() + argv[0])
        return 0

    def second(argv):
        calls.append("second")
        if fail:
            return 2
        out.write_text(mid.read_text().upper())
        return 0

    return [Stage("first", first, [flag], [src], [mid]), Stage("second", second, [], [mid], [out])]


def test_second_run_reuses_everything(tmp_path, caplog):
    (tmp_path / "src.txt").write_text("x")
    calls: list[str] = []
    assert run_stages(_stages(tmp_path, calls), tmp_path) == 0
    assert calls == ["first", "second"]
    with caplog.at_level(logging.INFO):
        assert run_stages(_stages(tmp_path, calls), tmp_path) == 0
    assert calls == ["first", "second"]
    assert caplog.text.count("reusing its outputs") == 2
    assert (tmp_path / "out.txt").read_text() == "XA"


def test_changed_settings_input_or_output_rerun_and_say_why(tmp_path, caplog):
    (tmp_path / "src.txt").write_text("x")
    calls: list[str] = []
    run_stages(_stages(tmp_path, calls), tmp_path)
    with caplog.at_level(logging.INFO):
        run_stages(_stages(tmp_path, calls, flag="b"), tmp_path)
    assert calls[2:] == ["first", "second"] and "settings changed" in caplog.text
    assert (tmp_path / "out.txt").read_text() == "XB"
    caplog.clear()
    (tmp_path / "src.txt").write_text("yy")
    os.utime(tmp_path / "src.txt", ns=(1, 1))
    with caplog.at_level(logging.INFO):
        run_stages(_stages(tmp_path, calls, flag="b"), tmp_path)
    assert calls[4:] == ["first", "second"] and "input" in caplog.text
    caplog.clear()
    (tmp_path / "out.txt").unlink()
    with caplog.at_level(logging.INFO):
        run_stages(_stages(tmp_path, calls, flag="b"), tmp_path)
    assert calls[6:] == ["second"] and "is missing" in caplog.text


def test_a_failure_stops_the_run_and_is_not_recorded(tmp_path):
    (tmp_path / "src.txt").write_text("x")
    calls: list[str] = []
    assert run_stages(_stages(tmp_path, calls, fail=True), tmp_path) == 2
    assert run_stages(_stages(tmp_path, calls), tmp_path) == 0
    assert calls == ["first", "second", "second"]  # first reused, second redone


def test_a_stage_run_by_other_code_runs_again(tmp_path, caplog, monkeypatch):
    (tmp_path / "src.txt").write_text("x")
    calls: list[str] = []
    run_stages(_stages(tmp_path, calls), tmp_path)
    monkeypatch.setattr(run_all, "CODE_VERSION", "9.9.9, HDF5 schema 99")
    with caplog.at_level(logging.INFO):
        run_stages(_stages(tmp_path, calls), tmp_path)
    assert calls == ["first", "second", "first", "second"]
    assert "made by other code" in caplog.text and "9.9.9" in caplog.text
