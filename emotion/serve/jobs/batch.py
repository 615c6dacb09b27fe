"""predict.py --batch: a folder (or a list) of recordings through the job queue.

    python predict.py --batch recordings/ --out results/batch            # 1 local worker
    python predict.py --batch list.txt --out results/batch --workers 2
    python predict.py --batch recordings/ --out results/batch --workers 0 \
        --redis redis://queue-host:6379/0 --jobs_dir /mnt/jobs          # workers elsewhere

Each recording becomes a job of the same queue the service uses (a private SQLite
queue in OUT/.jobs unless --jobs_dir or --redis say otherwise), analysed by local
worker processes (--workers; 0: workers already running take them). A progress
bar counts media seconds analysed; each result is written as OUT/<name>.json
when its job is done (atomically), and a summary table is printed and written to
OUT/summary.csv. A second run skips the recordings whose JSON is there.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from emotion.core.atomic import write_json, write_text_atomic
from emotion.core.errors import EmotionError, MediaError
from emotion.media.decode import probe
from emotion.serve.jobs.local import LocalWorkers
from emotion.serve.jobs.queue import JobQueue
from emotion.serve.jobs.store import ENDED, new_job_id
from emotion.serve.settings import load_settings

log = logging.getLogger(__name__)

MEDIA = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".wav", ".flac", ".ogg", ".mp3",
         ".m4a", ".aac", ".opus"}
POLL = 0.5


@dataclass
class Item:
    path: Path
    name: str                     # OUT/<name>.json
    seconds: float = 0.0
    kind: str = "video"
    job: str | None = None
    state: str = "pending"        # skipped (done before), queued ... done, failed, refused
    detail: str = ""
    record: dict | None = None


def recordings(source: str) -> list[Path]:
    """Media files in a folder (recursively, by extension), or the paths listed in a file."""
    src = Path(source)
    if src.is_dir():
        return sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA)
    if src.is_file():
        lines = [ln.strip() for ln in src.read_text().splitlines()]
        return [Path(ln) if Path(ln).is_absolute() else src.parent / ln
                for ln in lines if ln and not ln.startswith("#")]
    raise EmotionError(f"--batch {source}: no such folder or list file")


def _name(path: Path, root: Path | None) -> str:
    rel = path.relative_to(root) if root and path.is_relative_to(root) else Path(path.name)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(rel.with_suffix("")).replace(os.sep, "__"))


def _settings(args) -> dict:
    over = {"JOBS_DIR": args.jobs_dir or str(Path(args.out) / ".jobs"),
            "JOBS_REDIS_URL": args.redis or "", "EMBEDDER_PATH": args.embedder,
            "MULTIMODAL_PATH": args.multimodal, "ISOLATION_PATH": args.isolation,
            "JOBS_MEDIA_BUDGET_MB": 1e12}   # the media are links to the user's files
    return load_settings(over)


def _place(path: Path, dest: Path) -> None:
    """The job's own name for the media: a hard link (no copy) where the file system allows."""
    try:
        os.link(path, dest)
    except OSError:
        shutil.copyfile(path, dest)


def submit(queue: JobQueue, items: list[Item], meeting: str) -> None:
    for it in items:
        try:
            info = probe(it.path)
        except MediaError as e:
            it.state, it.detail = "refused", str(e)
            continue
        it.seconds, it.kind = info.duration, "video" if info.has_video else "audio"
        it.job = new_job_id()
        media = queue.media_dir / it.job
        _place(it.path, media)
        participant = re.sub(r"[^A-Za-z0-9._:-]", "_", it.path.stem)[:128] or "participant"
        queue.submit(it.job, {"meeting_id": meeting, "participant_id": participant,
                              "type": it.kind}, media)
        it.state = "queued"


def follow(queue: JobQueue, items: list[Item], out: Path, workers: LocalWorkers | None) -> None:
    """Until every job ends: the progress bar, and each result written as it is done."""
    from tqdm import tqdm

    live = [it for it in items if it.job]
    total = sum(it.seconds for it in live)
    with tqdm(total=round(total, 1), unit="s", desc="media analysed", file=sys.stderr,
              dynamic_ncols=True, mininterval=1.0) as bar:
        while True:
            done_s = 0.0
            for it in live:
                if it.state in ENDED:
                    done_s += it.seconds
                    continue
                it.record = queue.store.get(it.job) or it.record
                rec = it.record or {}
                it.state = rec.get("state", it.state)
                if it.state == "done":
                    write_json(out / f"{it.name}.json", queue.store.result(it.job))
                elif it.state in ("failed", "cancelled"):
                    it.detail = (rec.get("error") or {}).get("detail", it.state)
                done_s += it.seconds if it.state in ENDED else \
                    rec.get("progress", {}).get("media_seconds_done", 0.0)
            bar.n = round(min(done_s, total), 1)
            bar.set_postfix(done=sum(it.state == "done" for it in live),
                            failed=sum(it.state == "failed" for it in live))
            bar.refresh()
            if all(it.state in ENDED for it in live):
                return
            if workers is not None and workers.proc.poll() is not None:
                raise EmotionError(f"the local workers stopped:\n{workers.tail()}")
            time.sleep(POLL)


def table(items: list[Item]) -> tuple[str, str]:
    """(the summary as text, as CSV)."""
    rows = []
    for it in items:
        res = it.record or {}
        p = res.get("progress", {})
        rows.append([it.name, it.state, f"{it.seconds:.1f}", str(p.get("windows_done", "")),
                     str(res.get("attempts", "")), it.detail[:80]])
    head = ["recording", "state", "seconds", "windows", "attempts", "detail"]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    text = "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in [head, *rows])
    buf = io.StringIO()
    csv.writer(buf).writerows([head, *rows])
    return text, buf.getvalue()


def run_batch(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = recordings(args.batch)
    root = Path(args.batch) if Path(args.batch).is_dir() else None
    items = [Item(p, _name(p, root)) for p in paths]
    if not items:
        raise EmotionError(f"--batch {args.batch}: no recordings ({', '.join(sorted(MEDIA))})")
    for it in items:
        if (out / f"{it.name}.json").exists():
            it.state, it.detail = "skipped", "done in an earlier run"
    todo = [it for it in items if it.state == "pending"]
    print(f"{len(items)} recordings: {len(items) - len(todo)} done before, {len(todo)} to "
          f"analyse", file=sys.stderr)
    settings = _settings(args)
    queue = JobQueue(settings)
    submit(queue, todo, args.meeting_id)
    workers = None
    if args.workers and any(it.job for it in todo):
        env = {k: str(settings[k]) for k in ("JOBS_DIR", "JOBS_REDIS_URL", "EMBEDDER_PATH",
                                             "MULTIMODAL_PATH", "ISOLATION_PATH")}
        workers = LocalWorkers(env, out / ".jobs-workers.log", workers=args.workers).start()
    try:
        if any(it.job for it in todo):
            follow(queue, todo, out, workers)
    finally:
        if workers is not None:
            workers.stop()
    text, rows = table(items)
    print(text)
    write_text_atomic(rows, out / "summary.csv")
    failed = sum(it.state in ("failed", "refused", "cancelled") for it in items)
    print(f"{sum(it.state == 'done' for it in items)} analysed, "
          f"{sum(it.state == 'skipped' for it in items)} skipped, {failed} failed; "
          f"results in {out}", file=sys.stderr)
    return 1 if failed else 0
