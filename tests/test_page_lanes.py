"""The page's participant lanes in a real browser (headless Chromium, as
tests/test_page_browser.py, whose driver and site fixtures these tests share): one lane
per participant with their face, a block per answered window, the speaking stretches
marked, and a lane hidden by its checkbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from emotion.stages.sample_data import make_meeting
from tests.test_page_browser import driver, site  # noqa: F401  (shared fixtures)
from tools import browser

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def meeting(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("page_meeting")
    return make_meeting(d / "two.mp4", [(0, ["happy", "neutral"], 3.0),
                                        (1, ["happy", "sad"], 3.0),
                                        (0, ["angry", "sad"], 3.0)], seed=8)


def _count(driver, selector: str) -> int:  # noqa: F811
    return browser.js(driver, "return document.querySelectorAll(arguments[0]).length", selector)


def test_page_draws_a_lane_per_participant(driver, site, meeting):  # noqa: F811
    from selenium.webdriver.common.by import By

    browser.open_page(driver, f"{site}/")
    browser.analyse(driver, meeting, meeting="m-7", participant="room")
    result = browser.shown_result(driver)
    people = result["participants"]
    assert len(people) == 2
    unseen = result["unseen_speaker"]["timeline"]
    lanes = driver.find_elements(By.CSS_SELECTOR, "#lanes .lane")
    assert [e.get_attribute("data-id") for e in lanes] == \
        [p["id"] for p in people] + (["unseen"] if unseen else [])
    assert driver.find_element(By.ID, "participants").is_displayed()
    for p in people:
        lane = f"#lanes .lane[data-id='{p['id']}']"
        src = browser.js(driver, "return document.querySelector(arguments[0]).src",
                         f"{lane} img")
        assert src == p["thumbnail"]
        assert _count(driver, f"{lane} .lane-win") == sum(bool(w["emotion"])
                                                          for w in p["timeline"])
        assert _count(driver, f"{lane} .lane-speaking") == sum(w["speech_found"]
                                                               for w in p["timeline"])
        assert f"{p['talk_seconds']:.0f} s talk" in driver.find_element(
            By.CSS_SELECTOR, f"{lane} .lane-name").text
    # a lane can be hidden, and shown again
    first = f"#lanes .lane[data-id='{people[0]['id']}']"
    toggle = driver.find_element(By.CSS_SELECTOR, f"{first} .lane-toggle")
    body = driver.find_element(By.CSS_SELECTOR, f"{first} .lane-body")
    toggle.click()
    assert not body.is_displayed()
    toggle.click()
    assert body.is_displayed()
    summary = browser.js(driver, "return document.querySelector(\"#summary dd[data-key="
                                 "'participants']\").textContent")
    assert summary == "2"
