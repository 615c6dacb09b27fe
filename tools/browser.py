"""Headless Chromium driving the service's page: for tests/test_page_browser.py and
tools/page_screenshot.py.

Debian's chromium and chromium-driver (``apt-get install chromium chromium-driver``;
.ci/run installs them when missing), driven by Selenium through that chromedriver:
Selenium Manager is never asked to download anything. The app runs in this process
on Werkzeug's threaded server, at a free port on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--force-device-scale-factor=1")
WAIT_S = 180  # the longest any wait for the page may take (a tiny model's analysis: seconds)


def find_chromium() -> tuple[str, str] | None:
    """(chromium, chromedriver) when both are installed, else None."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@contextlib.contextmanager
def chromium(width: int = 1200, height: int = 1000) -> Iterator:
    """A headless Chromium with a fresh profile, closed (and its profile removed) after."""
    from selenium import webdriver

    found = find_chromium()
    if found is None:
        raise RuntimeError("chromium and chromedriver are not installed "
                           "(apt-get install chromium chromium-driver)")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = found[0]
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                     f"--window-size={width},{height}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options,
                                  service=webdriver.ChromeService(executable_path=found[1]))
        try:
            driver.set_page_load_timeout(60)
            driver.set_script_timeout(60)
            yield driver
        finally:
            driver.quit()


@contextlib.contextmanager
def serve(app) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 at a free port in a thread; yields the base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(30)


def wait(driver, condition, what: str, seconds: float = WAIT_S):
    """WebDriverWait with a message that says what did not happen, and what the page shows."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, seconds, poll_frequency=0.1).until(condition)
    except TimeoutException:
        shown = driver.execute_script(
            "return ['status', 'error', 'notice'].map((id) => "
            "id + ': ' + document.getElementById(id).textContent).join('; ')")
        raise AssertionError(f"{what}: not within {seconds:g} s ({shown})") from None


def open_page(driver, url: str) -> None:
    """Load the page at `url` and wait until its scripts have run (window.emotionPage set).

    driver.get alone was not enough on CI: reloading the URL the browser already showed
    returned before the new document's deferred scripts had run ("Cannot read properties
    of undefined (reading 'render')"). Going through about:blank first means the document
    that passes the wait is the new one, never the old page."""
    driver.get("about:blank")
    driver.get(url)
    wait(driver, lambda d: js(d, "return document.readyState === 'complete' "
                                 "&& !!window.emotionPage && !!window.EmotionChart"),
         f"the page's scripts at {url}", 30)


def js(driver, script: str, *args):
    return driver.execute_script(script, *args)


def choose(driver, path: str | Path, meeting: str = "m-1", participant: str = "alice") -> None:
    """Fill in the form and choose `path` in the file input."""
    from selenium.webdriver.common.by import By

    for field, value in (("meeting", meeting), ("participant", participant)):
        box = driver.find_element(By.ID, field)
        box.clear()
        box.send_keys(value)
    driver.find_element(By.ID, "file").send_keys(str(Path(path).resolve()))


def analyse(driver, path: str | Path, **ids) -> float:
    """Choose `path`, press Analyse, wait for the chart or an error; seconds it took."""
    from selenium.webdriver.common.by import By

    started = time.perf_counter()
    js(driver, "document.getElementById('chart').replaceChildren();")
    choose(driver, path, **ids)
    driver.find_element(By.ID, "analyse").click()
    wait(driver, lambda d: js(d, "return document.querySelectorAll('#chart .band').length > 0"
                                 " || !document.getElementById('error').hidden"),
         f"the chart or an error for {Path(path).name}")
    return time.perf_counter() - started


def shown_result(driver) -> dict:
    """The answer the page shows as raw JSON."""
    import json

    return json.loads(js(driver, "return document.getElementById('raw').textContent"))


def page_bytes(driver) -> dict[str, int]:
    """Bytes the page itself took over the network: {url: transfer size} of the document
    and every file it loaded (not the uploads)."""
    return js(driver, """
        const out = {};
        for (const e of performance.getEntriesByType('navigation')
                        .concat(performance.getEntriesByType('resource'))) {
          if (!e.name.endsWith('/analyze')) out[e.name] = e.transferSize;
        }
        return out;""")
