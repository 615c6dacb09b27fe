"""The page at / in a real browser: headless Chromium (Debian's chromium and
chromium-driver) driven by Selenium (tools/browser.py), against the app on the
session's tiny models, serving in this process.

Without Chromium the tests skip, saying why; under CI (CI set) they fail instead:
.ci/run installs it. Every wait has a limit (tools/browser.py: WAIT_S).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emotion.core.labels import EMOTIONS
from emotion.serve.app import create_app
from emotion.serve.jobs.queue import JobQueue
from emotion.serve.settings import load_settings
from emotion.stages.sample_data import make_video, speech_like
from tools import browser

pytestmark = pytest.mark.slow
LIMIT_MB = 5


@pytest.fixture(scope="module")
def driver():
    if browser.find_chromium() is None:
        reason = "chromium and chromedriver are not installed (apt-get install chromium " \
                 "chromium-driver; .ci/run does it)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    pytest.importorskip("selenium", reason="selenium is not installed (requirements-dev.txt)")
    with browser.chromium(width=1200, height=1000) as d:
        yield d


@pytest.fixture(scope="module")
def site(artifacts, tmp_path_factory):
    uploads = tmp_path_factory.mktemp("page_uploads")
    app = create_app({"EMBEDDER_PATH": artifacts["embedder"],
                      "MULTIMODAL_PATH": artifacts["multimodal"],
                      "ISOLATION_PATH": artifacts["isolation"], "UPLOAD_DIR": str(uploads),
                      "MAX_UPLOAD_MB": LIMIT_MB})
    with browser.serve(app) as base:
        yield base


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("page_media")
    make_video(d / "meeting.mp4", [("happy", 3.0), ("sad", 3.0), (None, 3.0), ("angry", 3.0)],
               seed=5)
    sf.write(d / "voice.wav", speech_like("angry", duration=4.0,
                                          rng=np.random.default_rng(6)), 16_000)
    (d / "notes.mp4").write_text("minutes of the meeting, not a video\n" * 20)
    (d / "huge.mp4").write_bytes(b"\0" * (LIMIT_MB * 2**20 + 1))
    return {p.stem: p for p in d.iterdir()}


def _count(driver, selector: str) -> int:
    return browser.js(driver, "return document.querySelectorAll(arguments[0]).length", selector)


def _texts(driver, selector: str, attr: str | None = None) -> list[str]:
    return browser.js(driver, "return [...document.querySelectorAll(arguments[0])].map((e) => "
                              "arguments[1] ? e.getAttribute(arguments[1]) : e.textContent)",
                      selector, attr)


def _summary(driver) -> dict[str, str]:
    keys = _texts(driver, "#summary dd", "data-key")
    return dict(zip(keys, _texts(driver, "#summary dd"), strict=True))


def _blob(driver, link_id: str) -> str:
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(document.getElementById(arguments[0]).href).then((r) => r.text()).then(done);",
        link_id)


def _hover_window(driver, index: int) -> str:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    win = driver.find_element(By.CSS_SELECTOR, f"#chart .win[data-index='{index}']")
    ActionChains(driver).move_to_element(win).perform()
    browser.wait(driver, lambda d: not browser.js(d, "return document.getElementById('tip')"
                                                     ".hidden"), "the tooltip", 10)
    return driver.find_element(By.ID, "tip").text


def _assert_page_shows(driver, result: dict) -> None:
    """What the chart and the summary draw, against the JSON they were drawn from."""
    timeline, n = result["timeline"], len(result["timeline"])
    flagged = [w for w in timeline if w["anomaly_flag"] == "anomaly"]
    assert _count(driver, "#chart .band") == _count(driver, "#chart .win") == n
    assert _texts(driver, "#chart .band", "data-emotion") == [w["emotion"] or ""
                                                              for w in timeline]
    assert _count(driver, "#chart .anomaly-mark") == len(flagged) == len(result["anomalies"])
    assert _count(driver, "#chart .empty") == sum(w["emotion_probs"] is None for w in timeline)
    assert _count(driver, "#chart .face.on") == sum(w["face_found"] for w in timeline)
    assert _count(driver, "#chart .speech.on") == sum(w["speech_found"] for w in timeline)
    names = list(result["emotions"]["probabilities"])
    assert _texts(driver, "#legend li", "data-emotion")[:len(names)] == names
    assert _texts(driver, "#chart .series", "data-emotion") == names
    counts = Counter(w["emotion"] for w in timeline if w["emotion"])
    best = max(counts.values())
    top = [e for e in counts if counts[e] == best]
    summary = _summary(driver)
    assert summary["windows"] == str(n)
    assert summary["anomalies"] == f"{len(flagged)} of {n} windows"
    assert summary["time"] == f"{result['processing_seconds']:.1f} s"
    assert summary["overall"] == result["emotions"]["dominant"]
    assert summary["frequent"].startswith(f"{', '.join(top)} ({best} of {n} windows")
    shown = dict(zip(_texts(driver, "#distribution tbody tr", "data-emotion"),
                     _texts(driver, "#distribution tbody .value"), strict=True))
    assert shown == {e: f"{100 * p:.1f} %" for e, p in result["emotions"]["probabilities"].items()}


def test_page_uploads_a_video_and_draws_its_timeline(driver, site, files, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.open_page(driver, f"{site}/")
    assert _count(driver, "#chart .band") == 0 and driver.find_element(By.ID, "meeting") \
        .get_attribute("value").startswith("meeting-")                 # a default id
    browser.analyse(driver, files["meeting"], meeting="m-42", participant="alice")
    assert driver.find_element(By.ID, "error").get_attribute("hidden") is not None, \
        driver.find_element(By.ID, "error").text
    result = browser.shown_result(driver)
    assert (result["meeting_id"], result["participant_id"], result["type"]) == \
        ("m-42", "alice", "video")                                     # type from the file
    assert len(result["timeline"]) == result["windows"]["total"] == 4
    _assert_page_shows(driver, result)

    # a window's time range and probabilities: by the mouse, then by the keyboard
    w = result["timeline"][1]
    text = _hover_window(driver, 1)
    assert f"{w['start']:.1f}–{w['end']:.1f} s" in text
    top = max(w["emotion_probs"], key=w["emotion_probs"].get)
    assert f"{top} {100 * w['emotion_probs'][top]:.1f} %" in text
    chart = driver.find_element(By.ID, "chart")
    chart.send_keys(Keys.HOME, Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)
    last = result["timeline"][2]
    assert driver.find_element(By.ID, "tip").text.startswith(
        f"{last['start']:.1f}–{last['end']:.1f} s")

    rows = _blob(driver, "download-csv").splitlines()
    assert rows[0].startswith("meeting_id,participant_id,start,end,emotion,angry,")
    assert len(rows) == 1 + len(result["timeline"])
    assert [r.split(",")[4] for r in rows[1:]] == [w["emotion"] or ""
                                                   for w in result["timeline"]]
    assert json.loads(_blob(driver, "download-json")) == result
    assert all(url.startswith(site) for url in browser.page_bytes(driver))  # nothing else
    shot = tmp_path / "page.png"
    driver.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot: {shot}")


def test_page_shows_errors_and_stays_usable(driver, site, files):
    from selenium.webdriver.common.by import By

    browser.open_page(driver, f"{site}/")
    error = driver.find_element(By.ID, "error")
    posts = "return performance.getEntriesByType('resource')" \
            ".filter((e) => e.name.endsWith('/analyze')).length"

    browser.analyse(driver, files["notes"])                  # not media: the service says so
    assert error.is_displayed()
    assert "unsupported or undecodable media" in error.text and "HTTP 415" in error.text
    assert driver.find_element(By.ID, "results").get_attribute("hidden") is not None
    assert browser.js(driver, posts) == 1

    browser.analyse(driver, files["huge"])                   # refused before it is sent
    assert f"larger than this service's limit of {LIMIT_MB} MB" in error.text
    assert browser.js(driver, posts) == 1

    browser.choose(driver, files["voice"], meeting="not an id!")
    driver.find_element(By.ID, "analyse").click()            # the browser flags the field
    assert browser.js(driver, "return document.getElementById('meeting').validity"
                              ".patternMismatch")
    assert not error.is_displayed() and browser.js(driver, posts) == 1

    # the page still works; a second Analyse while the first runs is refused
    browser.choose(driver, files["voice"], meeting="m-2", participant="bob")
    notice = browser.js(driver, "const b = document.getElementById('analyse');"
                                "b.click(); b.click();"
                                "return document.getElementById('notice').textContent")
    assert "already running" in notice
    browser.wait(driver, lambda d: _count(d, "#chart .band") > 0 and not browser.js(
        d, "return !!document.getElementById('cancel').offsetParent"), "the second chart")
    assert not error.is_displayed() and browser.js(driver, posts) == 2
    result = browser.shown_result(driver)
    assert (result["participant_id"], result["type"]) == ("bob", "audio")
    _assert_page_shows(driver, result)


def _known_result() -> dict:
    """An answer with two anomalous windows and one with neither face nor speech."""
    def probs(top):
        return {e: (0.75 if e == top else 0.05) for e in EMOTIONS}

    timeline = []
    for i, (emotion, flag) in enumerate([("happy", "normal"), ("angry", "anomaly"),
                                         (None, None), ("sad", "anomaly"),
                                         ("happy", "normal")]):
        timeline.append({
            "start": 3.0 * i, "end": 3.0 * i + 3.0, "emotion": emotion,
            "emotion_probs": probs(emotion) if emotion else None,
            "anomaly_score": (0.12 if flag == "anomaly" else -0.1) if flag else None,
            "anomaly_flag": flag, "face_found": emotion is not None,
            "face_detected": emotion is not None, "speech_found": emotion == "angry",
            "modalities": "both" if emotion == "angry" else "image_only" if emotion else "none"})
    return {
        "request_id": "known", "meeting_id": "m-known", "participant_id": "p1",
        "type": "video", "duration": 15.0,
        "emotions": {"dominant": "happy", "probabilities": probs("happy")},
        "anomaly": {"score": 0.12, "flag": "anomaly"}, "modalities": "both",
        "warnings": ["no speech in 4 of 5 windows"], "timeline": timeline,
        "anomalies": [w for w in timeline if w["anomaly_flag"] == "anomaly"],
        "windows": {"total": 5, "scored": 4, "with_face": 4, "with_face_detected": 4,
                    "with_speech": 1},
        "models": {}, "processing_seconds": 1.234, "forwarded": {"enabled": False}}


def test_page_marks_known_anomalies_and_fits_a_phone(driver, site):
    from selenium.webdriver.common.by import By

    browser.open_page(driver, f"{site}/")
    result = _known_result()
    browser.js(driver, "window.emotionPage.render(arguments[0])", result)
    _assert_page_shows(driver, result)
    assert _count(driver, "#chart .anomaly-mark") == 2 and _count(driver, "#chart .empty") == 1
    assert "anomaly: anomaly (score 0.120)" in _hover_window(driver, 3)
    assert _summary(driver)["frequent"] == "happy (2 of 5 windows)"
    assert [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#warnings li")] == \
        result["warnings"]

    size = driver.get_window_size()
    try:
        driver.set_window_size(390, 844)                     # a phone's width
        browser.wait(driver, lambda d: int(browser.js(
            d, "return document.getElementById('chart').getAttribute('width')")) <= 390,
            "the chart redrawn at the phone's width", 20)
        assert browser.js(driver, "return document.documentElement.scrollWidth "
                                  "<= window.innerWidth")     # nothing to scroll sideways
        _assert_page_shows(driver, result)
    finally:
        driver.set_window_size(size["width"], size["height"])


# ----------------------------------------------------------------- jobs (web/jobs.js)
class _Stepped:
    """The real analyzer, each window held until the test releases it (`steps`)."""

    def __init__(self, analyzer, steps: threading.Semaphore):
        self.analyzer, self.steps = analyzer, steps
        self.hop = analyzer.hop

    def analyze_file(self, path, kind, on_window=None):
        def each(window, done, total):
            assert self.steps.acquire(timeout=120), "the test released no window"
            on_window(window, done, total)
        return self.analyzer.analyze_file(path, kind, on_window=each)


@pytest.fixture(scope="module")
def job_site(artifacts, tmp_path_factory):
    """The page with a job queue, and a worker thread taking its jobs one window at a time."""
    d = tmp_path_factory.mktemp("page_jobs")
    config = {"EMBEDDER_PATH": artifacts["embedder"], "MULTIMODAL_PATH": artifacts["multimodal"],
              "ISOLATION_PATH": artifacts["isolation"], "UPLOAD_DIR": str(d / "uploads"),
              "JOBS_DIR": str(d / "jobs")}
    app = create_app(config)
    steps = threading.Semaphore(0)
    worker = JobQueue(load_settings({"JOBS_DIR": config["JOBS_DIR"]}),
                      analyzer=_Stepped(app.extensions["emotion"].analyzer, steps))
    stop = threading.Event()

    def work():
        while not stop.is_set():
            task = worker.huey.dequeue()
            if task is None:
                time.sleep(0.05)
            else:
                worker.huey.execute(task)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    with browser.serve(app) as base:
        yield base, steps
    stop.set()
    for _ in range(20):
        steps.release()
    thread.join(60)


def _progress(driver) -> tuple[str, int | None]:
    return (browser.js(driver, "return document.getElementById('progress-label').textContent"),
            browser.js(driver, "const p = document.getElementById('progress');"
                               "return p.hasAttribute('value') ? p.value : null"))


def test_page_follows_a_job_and_draws_windows_as_they_complete(driver, job_site, files):
    from selenium.webdriver.common.by import By

    base, steps = job_site
    browser.open_page(driver, f"{base}/")
    assert driver.find_element(By.ID, "as-job").is_displayed()
    assert driver.find_element(By.ID, "as-job").is_selected()
    browser.choose(driver, files["meeting"], meeting="m-job", participant="carol")
    driver.find_element(By.ID, "analyse").click()
    browser.wait(driver, lambda d: _progress(d)[0].startswith(("Queued", "Analysing")),
                 "the job's progress")
    for k in (1, 2, 3):
        steps.release()
        browser.wait(driver, lambda d, k=k: _count(d, "#chart .band") == k
                     and _progress(d)[0].startswith(f"Analysing: {k} of "), f"window {k}")
        text, value = _progress(driver)
        total = int(re.search(r" of (\d+) windows", text).group(1))
        assert value == round(100 * k / total) and " s of media)" in text
        assert re.search(r"about (\d+ min )?\d+ s left$", text), text
        assert not driver.find_element(By.ID, "cancel").get_attribute("hidden")
    steps.release()
    browser.wait(driver, lambda d: "Done:" in browser.js(
        d, "return document.getElementById('status').textContent"), "the job's end")
    result = browser.shown_result(driver)
    assert (result["meeting_id"], result["participant_id"], result["type"]) == \
        ("m-job", "carol", "video")
    assert len(result["timeline"]) == 4
    _assert_page_shows(driver, result)
    assert driver.find_element(By.ID, "progress-box").get_attribute("hidden") is not None
    posts = browser.js(driver, "return performance.getEntriesByType('resource')"
                               ".map((e) => new URL(e.name).pathname)")
    assert "/jobs" in posts and "/analyze" not in posts

    # a second job, cancelled while it runs
    browser.choose(driver, files["meeting"], meeting="m-job", participant="dave")
    driver.find_element(By.ID, "analyse").click()
    steps.release()
    browser.wait(driver, lambda d: _progress(d)[0].startswith("Analysing: 1 of "), "window 1")
    driver.find_element(By.ID, "cancel").click()
    # the page does not wait for its DELETE; the worker must not pass its next window first
    browser.wait(driver, lambda d: browser.js(
        d, "return performance.getEntriesByType('resource').some((e) => {"
           "const u = new URL(e.name); return u.pathname.startsWith('/jobs/') && !u.search; })"),
        "the DELETE's answer")
    steps.release()                       # the worker sees the flag at its next window
    browser.wait(driver, lambda d: browser.js(
        d, "return document.getElementById('status').textContent") == "Cancelled.",
        "the cancelled job")
    assert driver.find_element(By.ID, "error").get_attribute("hidden") is not None
