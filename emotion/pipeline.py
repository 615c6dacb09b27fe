"""Running stages in order, and reusing what is still valid.

Each stage is a root script's ``main(argv)``. After a stage succeeds, the run
records its arguments and the size and modification time of its inputs and
outputs in ``{work}/.pipeline_state.json``. On the next run a stage is skipped
when its arguments are the same, its inputs unchanged and its outputs still
there as they were left; otherwise it runs again, and the log says why.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import write_text_atomic

log = logging.getLogger(__name__)

STATE_FILE = ".pipeline_state.json"


@dataclass
class Stage:
    name: str
    main: Callable[[list[str]], int]
    argv: list[str]
    inputs: Sequence[str | Path] = ()
    outputs: Sequence[str | Path] = ()
    always: bool = False            # e.g. a prediction: cheap, and its output is the point
    seconds: float = field(default=0.0, init=False)


def _stamp(path: str | Path) -> list | None:
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file())
        return [len(files), sum(f.stat().st_size for f in files),
                max((f.stat().st_mtime_ns for f in files), default=0)]
    if not p.exists():
        return None
    st = p.stat()
    return [st.st_size, st.st_mtime_ns]


def _record(stage: Stage) -> dict:
    return {"argv": stage.argv, "inputs": {str(p): _stamp(p) for p in stage.inputs},
            "outputs": {str(p): _stamp(p) for p in stage.outputs}}


def why_run(stage: Stage, previous: dict | None) -> str | None:
    """The reason to run `stage`, or None when its last result is still valid."""
    if stage.always:
        return "always runs"
    if previous is None:
        return "not run before"
    if previous.get("argv") != stage.argv:
        return "its settings changed"
    now = _record(stage)
    for p, s in now["outputs"].items():
        if s is None:
            return f"its output {p} is missing"
        if previous["outputs"].get(p) != s:
            return f"its output {p} changed since"
    for p, s in now["inputs"].items():
        if previous["inputs"].get(p) != s:
            return f"its input {p} changed"
    return None


def run_stages(stages: Sequence[Stage], work: str | Path, *, force: bool = False) -> int:
    """Run (or reuse) each stage in order; stop at the first failure (its exit code)."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    state_path = work / STATE_FILE
    try:
        state = json.loads(state_path.read_text())
    except (OSError, ValueError):
        state = {}
    total = len(stages)
    for i, stage in enumerate(stages, 1):
        reason = "--force" if force else why_run(stage, state.get(stage.name))
        if reason is None:
            log.info("[%d/%d] %s: reusing its outputs (settings and inputs unchanged)",
                     i, total, stage.name)
            continue
        log.info("[%d/%d] %s: running (%s)", i, total, stage.name, reason)
        t = time.perf_counter()
        rc = stage.main(list(stage.argv))
        stage.seconds = time.perf_counter() - t
        if rc:
            log.error("[%d/%d] %s failed (exit %d); fix the error above and run again: "
                      "finished stages are reused", i, total, stage.name, rc)
            state.pop(stage.name, None)
            _save(state_path, state)
            return rc
        state[stage.name] = _record(stage) | {"seconds": round(stage.seconds, 2)}
        _save(state_path, state)
        log.info("[%d/%d] %s took %.1f s", i, total, stage.name, stage.seconds)
    return 0


def _save(path: Path, state: dict) -> None:
    write_text_atomic(json.dumps(state, indent=1), path)
