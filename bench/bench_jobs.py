"""Jobs measured: throughput with 1 and 2 workers and on Redis, /jobs against /analyze,
and what a killed or restarted worker does to a batch of jobs.

    python bench/bench_jobs.py --artifacts results/demo --out results/bench_jobs.json
    python bench/bench_jobs.py --part throughput --recordings 20 --min_seconds 60 \
        --max_seconds 300                                     # the issue's full size

Parts (--part, default all):
- throughput: `--recordings` generated videos of `--min_seconds` to `--max_seconds`
  (seeded), submitted to POST /jobs at once, analysed by (a) one worker process,
  (b) two worker processes on the SQLite queue, (c) two worker processes started
  separately (as on two machines) on a redis-server this script starts; media-hours
  analysed per hour of wall time, from the first submission to the last job done;
- overhead: one `--overhead_seconds` video (30) through a real gunicorn's /analyze
  and through its /jobs (POST, then GET every 0.1 s until done), alternating,
  `--repeats` times each, one analysing process each with the same torch threads;
- kill: `--kill_jobs` short videos on two workers; a running worker process is
  SIGKILLed `--kills` times, the worker command restarted once, the service (a new
  app) once; then jobs submitted, done, retried, failed, lost (never ended) and
  results written twice (the workers' logs say so when a result was there already).

Every figure is measured in this run, on this machine, with the artifacts given.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emotion.core.labels import EMOTIONS  # noqa: E402
from emotion.serve.app import create_app  # noqa: E402
from emotion.serve.jobs.local import LocalRedis, LocalWorkers  # noqa: E402
from emotion.serve.localserver import LocalServer, artifacts_env  # noqa: E402
from emotion.stages.sample_data import make_video  # noqa: E402

FIELDS = {"meeting_id": "bench", "participant_id": "p1", "type": "video"}


def videos(folder: Path, n: int, lo: float, hi: float, seed: int) -> list[Path]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        seconds = rng.uniform(lo, hi)
        segments, t = [], 0.0
        while t < seconds - 1e-6:
            step = min(rng.choice([3.0, 6.0, 9.0]), seconds - t)
            segments.append((rng.choice(EMOTIONS), step))
            t += step
        out.append(make_video(folder / f"rec{i:02d}.mp4", segments, seed=seed + i))
    return out


def _client(env: dict, upload: Path):
    config = {k: v for k, v in env.items() if k.startswith("JOBS_")}
    return create_app({**config, "LOAD_MODELS": False, "UPLOAD_DIR": str(upload)}).test_client()


def _submit(client, path: Path) -> str:
    r = client.post("/jobs", data={**FIELDS, "file": (io.BytesIO(path.read_bytes()), path.name)},
                    content_type="multipart/form-data")
    assert r.status_code == 202, r.get_json()
    return r.get_json()["status_url"]


def _wait_all(client, urls: list[str], seconds: float, poll: float = 0.5) -> list[dict]:
    end = time.monotonic() + seconds
    while True:
        bodies = [client.get(u).get_json() for u in urls]
        if all(b["state"] in ("done", "failed", "cancelled") for b in bodies):
            return bodies
        if time.monotonic() > end:
            return bodies
        time.sleep(poll)


def throughput(args, work: Path, env: dict) -> list[dict]:
    recs = videos(work / "media", args.recordings, args.min_seconds, args.max_seconds, 1)
    from emotion.media.decode import probe

    media_s = sum(probe(p).duration for p in recs)
    rows = []
    setups = [("sqlite, 1 worker process", 1, None), ("sqlite, 2 worker processes", 2, None),
              ("redis, 2 worker processes started separately", 2, "redis")]
    for label, n, broker in setups:
        jobs_dir = work / re.sub(r"\W+", "_", label)
        redis = None
        if broker:
            (work / "redis").mkdir(exist_ok=True)
            redis = LocalRedis(work / "redis").start()
        e = {**env, "JOBS_DIR": str(jobs_dir), "JOBS_REDIS_URL": redis.url if redis else ""}
        threads = max(1, (os.cpu_count() or 2) // n)
        if broker:
            workers = [LocalWorkers(e, work / f"{jobs_dir.name}_{i}.log", 1, threads).start()
                       for i in range(n)]
        else:
            workers = [LocalWorkers(e, work / f"{jobs_dir.name}.log", n, threads).start()]
        try:
            for w in workers:
                w.wait_loaded()
            client = _client(e, work / "uploads")
            started = time.perf_counter()
            urls = [_submit(client, p) for p in recs]
            bodies = _wait_all(client, urls, args.timeout)
            wall = time.perf_counter() - started
        finally:
            for w in workers:
                w.stop()
            if redis:
                redis.stop()
        done = sum(b["state"] == "done" for b in bodies)
        rows.append({"setup": label, "recordings": len(recs), "done": done,
                     "media_seconds": round(media_s, 1), "wall_seconds": round(wall, 1),
                     "media_hours_per_hour": round(media_s / wall, 3),
                     "torch_threads_per_worker": threads})
        print(json.dumps(rows[-1]), flush=True)
    rows.append({"ratio_2_to_1_workers": round(rows[1]["media_hours_per_hour"]
                                               / rows[0]["media_hours_per_hour"], 3),
                 "ratio_redis_to_sqlite_2_workers": round(rows[2]["media_hours_per_hour"]
                                                          / rows[1]["media_hours_per_hour"], 3)})
    print(json.dumps(rows[-1]), flush=True)
    return rows


def overhead(args, work: Path, env: dict) -> dict:
    video = videos(work / "one", 1, args.overhead_seconds, args.overhead_seconds, 7)[0]
    data = video.read_bytes()
    e = {**env, "JOBS_DIR": str(work / "overhead_jobs"), "TORCH_THREADS": "2",
         "UPLOAD_DIR": str(work / "overhead_up")}
    (work / "overhead_up").mkdir(parents=True, exist_ok=True)
    times = {"analyze": [], "jobs": []}
    analysis = {"analyze": [], "jobs": []}   # the answers' processing_seconds
    with LocalServer(e, work / "gunicorn.log", workers=1) as server, \
            LocalWorkers(e, work / "overhead_worker.log", 1, 2) as worker:
        worker.wait_loaded()
        files = lambda: {"file": ("v.mp4", data, "video/mp4")}  # noqa: E731
        for _ in range(args.repeats):
            t = time.perf_counter()
            r = requests.post(f"{server.url}/analyze", data=FIELDS, files=files(), timeout=600)
            assert r.status_code == 200, r.text
            times["analyze"].append(time.perf_counter() - t)
            analysis["analyze"].append(r.json()["processing_seconds"])
            t = time.perf_counter()
            r = requests.post(f"{server.url}/jobs", data=FIELDS, files=files(), timeout=60)
            assert r.status_code == 202, r.text
            url = server.url + r.json()["status_url"]
            while (b := requests.get(url, timeout=30).json())["state"] not in ("done", "failed"):
                time.sleep(0.1)
            assert b["state"] == "done", b
            times["jobs"].append(time.perf_counter() - t)
            analysis["jobs"].append(b["result"]["processing_seconds"])
            print(f"overhead: /analyze {times['analyze'][-1]:.2f} s, "
                  f"/jobs {times['jobs'][-1]:.2f} s", file=sys.stderr, flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    # wall time less the analysis' own: what the route, the queue and the polling add
    # (the analysis' time swings with the machine's other load; this part does not)
    around = {k: statistics.median(w - a for w, a in zip(times[k], analysis[k], strict=True))
              for k in times}
    out = {"video_seconds": args.overhead_seconds, "repeats": args.repeats,
           "analyze_seconds": [round(x, 2) for x in times["analyze"]],
           "jobs_seconds": [round(x, 2) for x in times["jobs"]],
           "analyze_processing": analysis["analyze"], "jobs_processing": analysis["jobs"],
           "analyze_median": round(med["analyze"], 2), "jobs_median": round(med["jobs"], 2),
           "jobs_over_analyze": round(med["jobs"] / med["analyze"], 3),
           "seconds_around_the_analysis_median": {k: round(v, 3) for k, v in around.items()},
           "jobs_over_analyze_at_equal_analysis": round(
               (statistics.median(analysis["analyze"]) + around["jobs"])
               / (statistics.median(analysis["analyze"]) + around["analyze"]), 3)}
    print(json.dumps(out), flush=True)
    return out


def kill(args, work: Path, env: dict) -> dict:
    recs = videos(work / "kill_media", args.kill_jobs, 6.0, 12.0, 3)
    e = {**env, "JOBS_DIR": str(work / "kill_jobs"), "JOBS_STALE_SECONDS": "5",
         "JOBS_HEARTBEAT_SECONDS": "1", "JOBS_MAX_ATTEMPTS": "3"}
    logs = []

    def start(i: int) -> LocalWorkers:
        logs.append(work / f"kill_worker_{i}.log")
        w = LocalWorkers(e, logs[-1], 2, 1).start()
        w.wait_loaded()
        return w

    client = _client(e, work / "kill_up")
    workers = start(0)
    urls = [_submit(client, p) for p in recs]
    kills, restarted, rng = 0, False, random.Random(5)
    end = time.monotonic() + args.timeout
    try:
        while time.monotonic() < end:
            bodies = [client.get(u).get_json() for u in urls]
            if all(b["state"] in ("done", "failed", "cancelled") for b in bodies):
                break
            running = [b for b in bodies if b["state"] == "running"
                       and b["progress"]["windows_done"] >= 1]
            if running and kills < args.kills:
                pid = int(rng.choice(running)["worker"].rsplit(":", 1)[1])
                if pid in workers.worker_pids():
                    os.kill(pid, signal.SIGKILL)
                    kills += 1
                    time.sleep(2)
                    continue
            if kills >= args.kills and not restarted and running:
                workers.stop()                       # the worker command restarted
                workers = start(1)
                client = _client(e, work / "kill_up")  # and the service
                restarted = True
            time.sleep(0.3)
    finally:
        workers.stop()
    bodies = [client.get(u).get_json() for u in urls]
    twice = sum(p.read_text().count("a result is stored already") for p in logs)
    out = {"submitted": len(urls), "done": sum(b["state"] == "done" for b in bodies),
           "failed": sum(b["state"] == "failed" for b in bodies),
           "retried": sum(len(b["retries"]) for b in bodies),
           "jobs_retried": sum(bool(b["retries"]) for b in bodies),
           "lost": sum(b["state"] not in ("done", "failed", "cancelled") for b in bodies),
           "results_written_twice": twice, "worker_processes_killed": kills,
           "worker_command_restarted": restarted, "service_restarted": restarted,
           "media_left": len(list((work / "kill_jobs" / "media").iterdir()))}
    print(json.dumps(out), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifacts", default="results/demo")
    p.add_argument("--part", choices=("all", "throughput", "overhead", "kill"), default="all")
    p.add_argument("--recordings", type=int, default=20)
    p.add_argument("--min_seconds", type=float, default=60.0)
    p.add_argument("--max_seconds", type=float, default=300.0)
    p.add_argument("--overhead_seconds", type=float, default=30.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--kill_jobs", type=int, default=12)
    p.add_argument("--kills", type=int, default=3)
    p.add_argument("--timeout", type=float, default=3600.0)
    p.add_argument("--out")
    args = p.parse_args(argv)
    env = {**artifacts_env(Path(args.artifacts)), "LOG_LEVEL": "INFO"}
    results = {"args": vars(args), "cpus": os.cpu_count(), "load_before": os.getloadavg()}
    work = Path(tempfile.mkdtemp(prefix="bench_jobs-"))
    try:
        for part, fn in (("throughput", throughput), ("overhead", overhead), ("kill", kill)):
            if args.part in ("all", part):
                results[part] = fn(args, work, env)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["load_after"] = os.getloadavg()
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
