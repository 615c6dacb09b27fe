"""/jobs with the Flask test client and a fake analyzer; the worker's task run in-process.

The service and a "worker" JobQueue share one JOBS_DIR (the SQLite queue and store),
as `make serve` and emotion-worker do; `drain` runs what the queue holds, as a
worker would. The real worker processes are in test_jobs_workers.py.
"""

from __future__ import annotations

import datetime
import io
import json
import re
import threading
import time

import pytest
from serve_support import FIELDS, FakeAnalyzer, assert_error, make_app, post
from test_app_traffic import Backend

from emotion.core.errors import MediaError
from emotion.serve.jobs.queue import JobQueue
from emotion.serve.settings import load_settings


def _settings(tmp_path, **over) -> dict:
    return load_settings({"JOBS_DIR": str(tmp_path / "jobs"), **over})


def _service(tmp_path, **over):
    app = make_app(tmp_path, FakeAnalyzer(), JOBS_DIR=str(tmp_path / "jobs"), **over)
    return app, app.test_client()


def _worker(tmp_path, analyzer=None, **over) -> JobQueue:
    return JobQueue(_settings(tmp_path, **over), analyzer=analyzer or FakeAnalyzer(windows=4))


def drain(queue: JobQueue) -> int:
    """Run every queued message, as a worker would; how many."""
    n = 0
    while (task := queue.huey.dequeue()) is not None:
        queue.huey.execute(task)
        n += 1
    return n


def submit(client, file, kind="audio", **fields) -> dict:
    data = {**FIELDS, "type": kind, **fields,
            "file": (io.BytesIO(file.read_bytes()), file.name)}
    r = client.post("/jobs", data=data, content_type="multipart/form-data")
    assert r.status_code == 202, r.get_json()
    return r.get_json()


def media_left(tmp_path) -> list:
    return list((tmp_path / "jobs" / "media").iterdir())


def test_a_job_is_queued_runs_and_answers_what_analyze_answers(media, tmp_path, api_schema):
    app, client = _service(tmp_path)
    job = submit(client, media["speech"])
    assert len(job["id"]) >= 22 and job["status_url"] == f"/jobs/{job['id']}"
    assert job["state"] == "queued" and job["eta_seconds"] is None
    r = client.get(job["status_url"])
    api_schema["/jobs/{job_id}"]["GET"].validate_response(r)
    assert r.get_json()["state"] == "queued" and r.get_json()["windows"] == []
    assert len(media_left(tmp_path)) == 1

    worker = _worker(tmp_path)
    assert drain(worker) == 1
    r = client.get(job["status_url"])
    api_schema["/jobs/{job_id}"]["GET"].validate_response(r)
    body = r.get_json()
    assert body["state"] == "done" and body["attempts"] == 1 and body["error"] is None
    assert body["progress"]["windows_done"] == body["progress"]["windows_total"] == 4
    assert body["eta_seconds"] == 0.0
    result = body["result"]
    assert result["request_id"] == job["id"]
    assert (result["meeting_id"], result["participant_id"], result["type"]) == \
        (FIELDS["meeting_id"], FIELDS["participant_id"], "audio")
    assert len(result["timeline"]) == 4 and body["windows"] == result["timeline"]
    analysed = post(make_app(tmp_path, FakeAnalyzer(windows=4)).test_client(),
                    media["speech"]).get_json()
    assert set(result) == set(analysed)                  # the same JSON as /analyze
    assert client.get(f"{job['status_url']}?windows_from=3").get_json()["windows"] == \
        result["timeline"][3:]
    assert media_left(tmp_path) == []                    # the media go when the job ends

    listed = client.get("/jobs")
    api_schema["/jobs"]["GET"].validate_response(listed)
    assert [j["id"] for j in listed.get_json()["jobs"]] == [job["id"]]


def watched(client, job: dict, windows: int) -> tuple[FakeAnalyzer, list[dict]]:
    """A fake analyzer whose every window is followed by a status read (kept in the list)."""
    seen: list[dict] = []

    class Watched(FakeAnalyzer):
        def analyze_file(self, path, kind, on_window=None):
            def each(w, done, total):
                on_window(w, done, total)
                seen.append(client.get(job["status_url"]).get_json())
            return super().analyze_file(path, kind, each)

    return Watched(windows=windows), seen


def test_progress_is_visible_while_the_job_runs(media, tmp_path):
    _, client = _service(tmp_path)
    job = submit(client, media["long"])
    analyzer, seen = watched(client, job, 3)
    drain(_worker(tmp_path, analyzer))
    # the record is saved at most every 0.5 s (and at the last window), the windows as
    # they end: a reader sees every window stored, counted, even between two saves
    states = [(s["state"], s["progress"]["windows_done"], len(s["windows"])) for s in seen]
    assert states == [("running", k, k) for k in (1, 2, 3)]
    assert [s["progress"]["media_seconds_done"] for s in seen] == \
        [s["windows"][-1]["end"] for s in seen]
    assert all(s["progress"]["media_seconds_total"] > 0 for s in seen)
    assert seen[-1]["eta_seconds"] is not None and seen[-1]["eta_seconds"] >= 0


def test_a_new_attempt_shows_its_own_windows_not_a_dead_ones(media, tmp_path):
    _, client = _service(tmp_path)
    job = submit(client, media["long"])
    worker = _worker(tmp_path)
    for n in range(1, 6):                    # what a killed attempt left behind
        worker.store.put_window(job["id"], n, {"start": 99.0, "end": 99.0, "stale": True})
    worker.analyzer, seen = watched(client, job, 3)
    drain(worker)
    assert [len(s["windows"]) for s in seen] == [1, 2, 3]
    assert not any(w.get("stale") for s in seen for w in s["windows"])
    assert worker.store.windows(job["id"], 0, 10) == []      # dropped with the result


def test_a_malformed_file_fails_its_job_as_analyze_refuses_it(media, tmp_path):
    _, client = _service(tmp_path)
    bad = submit(client, media["notes"], kind="video")       # not media: judged, 415
    mute = submit(client, media["mute"], kind="audio")       # the analysis refuses it: 422
    good = submit(client, media["talk"], kind="video")
    refusal = MediaError("no face in any frame and no speech: nothing to analyse")

    class Picky(FakeAnalyzer):
        def analyze_file(self, path, kind, on_window=None):
            if kind == "audio":
                raise refusal
            return super().analyze_file(path, kind, on_window)

    assert drain(_worker(tmp_path, Picky())) == 3           # the worker goes on
    for job, file, kind, fake in ((bad, "notes", "video", FakeAnalyzer()),
                                  (mute, "mute", "audio", FakeAnalyzer(error=refusal))):
        failed = client.get(job["status_url"]).get_json()
        assert failed["state"] == "failed" and "result" not in failed
        analyse = post(make_app(tmp_path / "a", fake).test_client(), media[file], kind=kind)
        assert failed["error"] == {"status": analyse.status_code, **analyse.get_json()}
    assert client.get(good["status_url"]).get_json()["state"] == "done"
    assert media_left(tmp_path) == []


def test_cancel_a_queued_and_a_running_job(media, tmp_path):
    _, client = _service(tmp_path)
    queued = submit(client, media["speech"])
    r = client.delete(queued["status_url"])
    assert r.status_code == 200 and r.get_json()["state"] == "cancelled"
    assert media_left(tmp_path) == []
    assert_error(client.delete(queued["status_url"]), 409, "job_ended", "cancelled")

    running = submit(client, media["speech"])
    gate = threading.Event()
    fake = FakeAnalyzer(windows=5, gate=gate)
    worker = _worker(tmp_path, fake)
    t = threading.Thread(target=drain, args=(worker,))
    t.start()
    assert fake.entered.wait(20)
    r = client.delete(running["status_url"])
    assert r.get_json()["cancel_requested"] and r.get_json()["state"] == "running"
    gate.set()
    t.join(20)
    body = client.get(running["status_url"]).get_json()
    assert body["state"] == "cancelled" and body["progress"]["windows_done"] == 1
    assert media_left(tmp_path) == []


def test_ids_are_unguessable_and_unknown_ones_404(media, tmp_path):
    _, client = _service(tmp_path)
    ids = {submit(client, media["speech"])["id"] for _ in range(3)}
    assert len(ids) == 3 and all(len(i) >= 22 for i in ids)
    assert_error(client.get("/jobs/" + "A" * 22), 404, "not_found")
    assert_error(client.get("/jobs/../etc"), 404, "not_found")
    assert_error(client.delete("/jobs/nope"), 404, "not_found")
    assert_error(client.get("/jobs?state=lost"), 400, "invalid_request")


def test_queued_media_past_the_budget_are_refused(media, tmp_path):
    size_mb = media["speech"].stat().st_size / 2**20
    _, client = _service(tmp_path, JOBS_MEDIA_BUDGET_MB=size_mb * 1.5)
    submit(client, media["speech"])
    data = {**FIELDS, "type": "audio",
            "file": (io.BytesIO(media["speech"].read_bytes()), "clip.wav")}
    r = client.post("/jobs", data=data, content_type="multipart/form-data")
    body = assert_error(r, 507, "media_budget_full", "JOBS_MEDIA_BUDGET_MB")
    assert "retry" in body["detail"] and r.headers["Retry-After"]
    assert len(media_left(tmp_path)) == 1
    assert [p for p in (tmp_path / "uploads").rglob("*") if p.is_file()] == []


def test_a_job_whose_worker_died_is_retried_then_failed(media, tmp_path):
    """What a SIGKILLed worker leaves: its message taken, its record 'running' and
    unheard of. The housekeeping queues it again, at most JOBS_MAX_ATTEMPTS runs."""
    _, client = _service(tmp_path, JOBS_MAX_ATTEMPTS=2)
    job = submit(client, media["speech"])
    worker = _worker(tmp_path, JOBS_MAX_ATTEMPTS=2, JOBS_STALE_SECONDS=5)

    def die_mid_job():
        task = worker.huey.dequeue()
        attempt = task.args[1]
        assert worker.store.claim(job["id"], f"run{attempt}", "dead:1")
        record = worker.store.get(job["id"])
        record.update(state="running", attempts=attempt, started=time.time() - 60,
                      updated=time.time() - 60, worker="dead:1")
        worker.store.put(record)

    die_mid_job()
    counts = worker.housekeeping()
    assert counts["retried"] == 1
    assert worker.housekeeping()["retried"] == 0             # claimed once, queued once
    die_mid_job()                                            # attempt 2 dies too
    assert worker.housekeeping()["failed"] == 1
    body = client.get(job["status_url"]).get_json()
    assert body["state"] == "failed" and body["error"]["error"] == "worker_lost"
    assert "tried 2 times" in body["error"]["detail"] and len(body["retries"]) == 2
    assert drain(worker) == 0 and media_left(tmp_path) == []


def test_a_retried_job_completes_and_its_result_is_written_once(media, tmp_path):
    _, client = _service(tmp_path)
    job = submit(client, media["speech"])
    worker = _worker(tmp_path, JOBS_STALE_SECONDS=5)
    task = worker.huey.dequeue()                             # taken, then the worker died
    record = worker.store.get(job["id"])
    record.update(state="running", attempts=1, updated=time.time() - 60)
    worker.store.put(record)
    assert worker.store.claim(job["id"], "run1", "dead:1")
    assert worker.housekeeping()["retried"] == 1
    assert drain(worker) == 1
    worker.huey.execute(task)                                # the old message again: ignored
    body = client.get(job["status_url"]).get_json()
    assert body["state"] == "done" and body["attempts"] == 2 and len(body["retries"]) == 1
    assert not worker.store.put_result(job["id"], {"other": 1})   # never a second result
    assert worker.store.result(job["id"])["request_id"] == job["id"]


def test_jobs_survive_a_restart_and_expire_after_the_retention(media, tmp_path):
    _, client = _service(tmp_path, JOBS_RETENTION_HOURS=1)
    job = submit(client, media["speech"])
    drain(_worker(tmp_path))
    _, again = _service(tmp_path, JOBS_RETENTION_HOURS=1)     # a new service, same JOBS_DIR
    body = again.get(job["status_url"]).get_json()
    assert body["state"] == "done" and body["result"]["request_id"] == job["id"]
    worker = _worker(tmp_path, JOBS_RETENTION_HOURS=1)
    assert worker.housekeeping(now=time.time() + 1800)["expired"] == 0
    assert worker.housekeeping(now=time.time() + 3700)["expired"] == 1
    assert_error(again.get(job["status_url"]), 404, "not_found")
    assert worker.store.result(job["id"]) is None


def test_without_jobs_dir_the_routes_say_so(tmp_path):
    client = make_app(tmp_path, FakeAnalyzer()).test_client()
    assert_error(client.get("/jobs"), 503, "jobs_disabled", "JOBS_DIR")


@pytest.fixture
def failing_backend():
    server = Backend(status=503)
    yield server
    server.shutdown()
    server.server_close()


def test_a_result_is_delivered_with_retries_that_hold_no_worker(media, tmp_path,
                                                                failing_backend):
    server = failing_backend
    over = {"BACKEND_URL": server.url, "BACKEND_RETRIES": 2, "BACKEND_TIMEOUT": 2}
    _, client = _service(tmp_path, **over)
    job = submit(client, media["speech"])
    worker = _worker(tmp_path, **over)
    assert drain(worker) == 2                                # the job, then one delivery
    body = client.get(job["status_url"]).get_json()
    assert body["state"] == "done"
    assert body["delivery"]["ok"] is False and body["delivery"]["attempts"] == 1
    assert body["delivery"]["status"] == 503
    assert worker.huey.scheduled_count() == 1                # the retry waits, unqueued
    assert drain(worker) == 0
    server.status = 200
    later = worker.huey._get_timestamp() + datetime.timedelta(minutes=5)
    for task in worker.huey.read_schedule(later):          # what huey's scheduler does
        worker.huey.execute(task, later)
    body = client.get(job["status_url"]).get_json()
    assert body["delivery"]["ok"] is True and body["delivery"]["attempts"] == 2
    assert [r["body"]["request_id"] for r in server.received] == [job["id"]] * 2


def test_predict_batch_through_the_queue_skips_what_is_done(media, tmp_path, capsys):
    from emotion.serve import predict

    folder = tmp_path / "recordings"
    (folder / "day2").mkdir(parents=True)
    for name, dest in (("speech", "a.wav"), ("talk", "day2/b.mp4"), ("notes", "c.mp4")):
        (folder / dest).write_bytes(media[name].read_bytes())
    out = tmp_path / "out"
    worker = _worker(tmp_path, FakeAnalyzer(windows=2), JOBS_DIR=str(out / ".jobs"))
    stop = threading.Event()

    def work():                                   # a worker already running: --workers 0
        while not stop.is_set():
            if not drain(worker):
                time.sleep(0.05)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        args = ["--batch", str(folder), "--out", str(out), "--workers", "0"]
        assert predict.main(args) == 2                          # c.mp4 is not media
        table = capsys.readouterr().out
        assert sorted(p.name for p in out.glob("*.json")) == ["a.json", "day2__b.json"]
        assert re.search(r"^c\s+refused", table, re.M) and re.search(r"^a\s+done", table, re.M)
        result = json.loads((out / "day2__b.json").read_text())
        assert result["type"] == "video" and len(result["timeline"]) == 2
        assert "day2__b,done" in (out / "summary.csv").read_text()
        (folder / "c.mp4").unlink()
        assert predict.main(args) == 0                          # a second run: all done
        table = capsys.readouterr().out
        assert len(re.findall(r"skipped\s", table)) == 2
        assert len(worker.store.all()) == 2                     # nothing submitted again
    finally:
        stop.set()
        thread.join(10)
    assert list((out / ".jobs" / "media").iterdir()) == []
    assert (folder / "a.wav").exists()                          # the user's files stay
