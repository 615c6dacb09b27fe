"""The queue engines side by side: how fast each takes a task to a worker and back.

    python bench/bench_queues.py --tasks 300 --out results/bench_queues.json

For each engine whose package is importable (huey on SQLite and on Redis, RQ,
Dramatiq and Celery on Redis), one worker process of the engine's own command
is started on a generated tasks module, then: the time to enqueue `--tasks`
no-op tasks, the time until the worker has run them all (throughput), and the
round trip of one task at a time (enqueue to done, median of `--trips`). Redis is
a redis-server this script starts on 127.0.0.1 (emotion/serve/jobs/local.py).
The project needs only huey (requirements.txt); install the others into a
throwaway environment to compare (pip install rq dramatiq celery).

What cannot be timed is in the README's table (servers needed, what a worker
killed mid-task does to its task, per each engine's documentation).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emotion.serve.jobs.local import LocalRedis  # noqa: E402

# Each task appends one byte to DONE: the parent counts bytes to know what ran.
MODULES = {
    "huey-sqlite": ("huey", """
        from huey import SqliteHuey
        huey = SqliteHuey("bench", filename={db!r}, results=False)
        @huey.task()
        def touch():
            with open({done!r}, "ab") as f:
                f.write(b"x")
        def send():
            touch()
    """, "{bin}/huey_consumer tasks.huey -w 1 -k process -d 0.01 -m 0.1"),
    "huey-redis": ("huey", """
        from huey import RedisHuey
        huey = RedisHuey("bench", url={url!r}, results=False)
        @huey.task()
        def touch():
            with open({done!r}, "ab") as f:
                f.write(b"x")
        def send():
            touch()
    """, "{bin}/huey_consumer tasks.huey -w 1 -k process"),
    "rq": ("rq", """
        from redis import Redis
        from rq import Queue
        q = Queue("bench", connection=Redis.from_url({url!r}))
        def touch():
            with open({done!r}, "ab") as f:
                f.write(b"x")
        def send():
            q.enqueue(touch)
    """, "{bin}/rq worker -u {url} bench"),
    "dramatiq": ("dramatiq", """
        import dramatiq
        from dramatiq.brokers.redis import RedisBroker
        dramatiq.set_broker(RedisBroker(url={url!r}))
        @dramatiq.actor
        def touch():
            with open({done!r}, "ab") as f:
                f.write(b"x")
        def send():
            touch.send()
    """, "{bin}/dramatiq tasks -p 1 -t 1"),
    "celery": ("celery", """
        from celery import Celery
        app = Celery("tasks", broker={url!r})
        @app.task
        def touch():
            with open({done!r}, "ab") as f:
                f.write(b"x")
        def send():
            touch.delay()
    """, "{bin}/celery -A tasks worker -c 1 -P prefork --without-gossip --without-mingle "
         "--without-heartbeat -l WARNING"),
}


def _count(done: Path) -> int:
    return done.stat().st_size if done.exists() else 0


def _wait(done: Path, n: int, seconds: float = 300) -> None:
    end = time.monotonic() + seconds
    while _count(done) < n:
        if time.monotonic() > end:
            raise TimeoutError(f"{n - _count(done)} tasks not run in {seconds:g} s")
        time.sleep(0.002)


def bench(name: str, tasks: int, trips: int, url: str, work: Path) -> dict:
    package, source, command = MODULES[name]
    folder = work / name
    folder.mkdir()
    done = folder / "done"
    (folder / "tasks.py").write_text(textwrap.dedent(source).format(
        db=str(folder / "huey.db"), done=str(done), url=url))
    sys.path.insert(0, str(folder))
    sys.modules.pop("tasks", None)
    import tasks as client  # the generated module: the client side

    log = open(folder / "worker.log", "wb")  # noqa: SIM115 - closed below
    cmd = command.format(bin=os.path.dirname(sys.executable), url=url).split()
    worker = subprocess.Popen(cmd, cwd=folder, stdout=log, stderr=subprocess.STDOUT,
                              env={**os.environ, "PYTHONPATH": str(folder)},
                              start_new_session=True)
    try:
        client.send()                                   # warm: the worker is up
        _wait(done, 1, 120)
        rtt = []
        for i in range(trips):
            t = time.perf_counter()
            client.send()
            _wait(done, 2 + i)
            rtt.append(time.perf_counter() - t)
        base = _count(done)
        t0 = time.perf_counter()
        for _ in range(tasks):
            client.send()
        t1 = time.perf_counter()
        _wait(done, base + tasks)
        t2 = time.perf_counter()
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(30)
        log.close()
        sys.path.remove(str(folder))
    return {"engine": name, "version": _version(package), "tasks": tasks,
            "enqueue_us_per_task": round(1e6 * (t1 - t0) / tasks, 1),
            "tasks_per_s": round(tasks / (t2 - t0), 1),
            "round_trip_ms_median": round(1000 * statistics.median(rtt), 2),
            "round_trip_ms_max": round(1000 * max(rtt), 2)}


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=300)
    p.add_argument("--trips", type=int, default=30)
    p.add_argument("--engines", default=",".join(MODULES))
    p.add_argument("--out", help="write the figures here as JSON")
    args = p.parse_args(argv)
    rows, skipped = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        redis = LocalRedis(work).start() if shutil.which("redis-server") else None
        try:
            for name in args.engines.split(","):
                package = MODULES[name][0]
                if importlib.util.find_spec(package) is None:
                    skipped[name] = f"{package} is not installed"
                    continue
                if "sqlite" not in name and redis is None:
                    skipped[name] = "redis-server is not installed"
                    continue
                if "sqlite" not in name:
                    import redis as client

                    client.Redis.from_url(redis.url).flushall()
                rows.append(bench(name, args.tasks, args.trips, redis.url if redis else "",
                                  work))
                print(json.dumps(rows[-1]), flush=True)
        finally:
            if redis is not None:
                redis.stop()
    for name, why in skipped.items():
        print(f"{name}: skipped ({why})")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"rows": rows, "skipped": skipped}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
