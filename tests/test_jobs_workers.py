"""Jobs through real emotion-worker processes, on the session's tiny models.

- the embedded queue (SQLite in JOBS_DIR): a worker SIGKILLed mid-job, its job taken
  up again and done, the result written once; a malformed file fails its job with
  /analyze's message and the worker goes on; the service restarted keeps it all;
- a real Redis server that the test starts (Debian's redis-server; .ci/run installs
  it) with two worker processes started separately, as on two machines.

Without redis-server the Redis test skips, saying why; under CI (CI set) it fails.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import time

import pytest

from emotion.serve.app import create_app
from emotion.serve.jobs.local import LocalRedis, LocalWorkers
from emotion.stages.sample_data import make_video

pytestmark = pytest.mark.slow
FIELDS = {"meeting_id": "m-1", "participant_id": "p-1"}
FAST = {"JOBS_STALE_SECONDS": "3", "JOBS_HEARTBEAT_SECONDS": "0.5", "LOG_LEVEL": "INFO"}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("job_media")
    make_video(d / "long.mp4", [("happy", 6.0), ("sad", 6.0), ("angry", 6.0)], seed=8)
    make_video(d / "short.mp4", [("happy", 3.0)], seed=9)
    (d / "notes.mp4").write_text("minutes of the meeting, not a video\n" * 20)
    return {p.stem: p for p in d.iterdir()}


def _env(artifacts, jobs_dir, **more) -> dict[str, str]:
    return {"EMBEDDER_PATH": artifacts["embedder"], "MULTIMODAL_PATH": artifacts["multimodal"],
            "ISOLATION_PATH": artifacts["isolation"], "JOBS_DIR": str(jobs_dir), **FAST, **more}


def _client(env: dict, tmp_path):
    config = {k: v for k, v in env.items() if k.startswith("JOBS_")}
    app = create_app({**config, "LOAD_MODELS": False, "UPLOAD_DIR": str(tmp_path / "up")})
    return app.test_client()


def _submit(client, path, kind="video") -> str:
    r = client.post("/jobs", data={**FIELDS, "type": kind,
                                   "file": (io.BytesIO(path.read_bytes()), path.name)},
                    content_type="multipart/form-data")
    assert r.status_code == 202, r.get_json()
    return r.get_json()["status_url"]


def _until(client, url, ok, what, workers: LocalWorkers, seconds=240) -> dict:
    end = time.monotonic() + seconds
    while True:
        body = client.get(url).get_json()
        if ok(body):
            return body
        assert time.monotonic() < end, f"{what} not reached: {body}\n{workers.tail()}"
        assert workers.proc.poll() is None, workers.tail()
        time.sleep(0.1)


def test_a_killed_worker_loses_nothing(artifacts, videos, tmp_path):
    env = _env(artifacts, tmp_path / "jobs")
    client = _client(env, tmp_path)
    with LocalWorkers(env, tmp_path / "worker.log", workers=1, torch_threads=1) as workers:
        workers.wait_loaded()
        url = _submit(client, videos["long"])
        body = _until(client, url, lambda b: b["progress"]["windows_done"] >= 1,
                      "a window done", workers)
        pid = int(body["worker"].rsplit(":", 1)[1])
        assert pid in workers.worker_pids()
        os.kill(pid, signal.SIGKILL)                      # mid-job
        done = _until(client, url, lambda b: b["state"] in ("done", "failed"), "the job's end",
                      workers)
        assert done["state"] == "done", done
        assert done["attempts"] == 2 and len(done["retries"]) == 1
        assert str(pid) in done["retries"][0]["reason"]
        assert len(done["result"]["timeline"]) == done["result"]["windows"]["total"] == 6

        bad = _submit(client, videos["notes"])             # the worker goes on after it
        good = _submit(client, videos["short"])
        failed = _until(client, bad, lambda b: b["state"] == "failed", "the failure", workers)
        assert failed["error"]["status"] == 415
        assert failed["error"]["detail"].startswith("unsupported or undecodable media")
        assert _until(client, good, lambda b: b["state"] == "done", "the next job",
                      workers)["attempts"] == 1
        assert "Traceback" not in workers.tail(10**6)
    assert list((tmp_path / "jobs" / "media").iterdir()) == []

    again = _client(env, tmp_path)                         # a restarted service
    kept = again.get(url).get_json()
    assert kept["state"] == "done" and kept["result"] == done["result"]
    assert again.get("/jobs").get_json()["total"] == 3


@pytest.fixture
def redis_server(tmp_path):
    if shutil.which("redis-server") is None:
        reason = "redis-server is not installed (apt-get install redis-server; .ci/run does it)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    with LocalRedis(tmp_path) as server:
        yield server


def test_two_workers_take_jobs_from_one_redis(artifacts, videos, tmp_path, redis_server):
    env = _env(artifacts, tmp_path / "jobs", JOBS_REDIS_URL=redis_server.url)
    client = _client(env, tmp_path)
    with LocalWorkers(env, tmp_path / "a.log", torch_threads=1) as one, \
            LocalWorkers(env, tmp_path / "b.log", torch_threads=1) as two:
        one.wait_loaded()
        two.wait_loaded()
        urls = [_submit(client, videos["short"]) for _ in range(6)]
        ended = [_until(client, u, lambda b: b["state"] == "done", "done", one) for u in urls]
    assert {b["attempts"] for b in ended} == {1}
    pids = {b["worker"].rsplit(":", 1)[1] for b in ended}
    assert len(pids) == 2, pids                            # both workers took jobs
    assert not (tmp_path / "jobs" / "queue.db").exists()   # all in Redis
    assert list((tmp_path / "jobs" / "media").iterdir()) == []
