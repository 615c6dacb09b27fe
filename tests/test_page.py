"""The page at / (emotion/serve/page.py, emotion/serve/web/) without a browser: what
the server sends, that it needs nothing from the network, and that it ships in the
package. tests/test_page_browser.py drives it in Chromium."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from emotion.serve.app import create_app
from emotion.serve.page import WEB

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def client():
    return create_app({"LOAD_MODELS": False, "MAX_UPLOAD_MB": 7.5}).test_client()


class _Controls(HTMLParser):
    """The form controls, the labels' targets and every src/href of a page."""

    def __init__(self):
        super().__init__()
        self.controls, self.labelled, self.links = [], set(), []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("input", "select", "textarea") and a.get("type") != "hidden":
            self.controls.append(a.get("id"))
        if tag == "label" and a.get("for"):
            self.labelled.add(a["for"])
        self.links += [a[k] for k in ("src", "href") if a.get(k)]


def test_page_is_served_with_its_files_and_the_upload_limit(client):
    r = client.get("/")
    assert r.status_code == 200 and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    assert "{{" not in html and 'data-max-upload-mb="7.5"' in html
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    page = _Controls()
    page.feed(html)
    assert set(page.controls) == {"meeting", "participant", "kind", "file", "as-job"}
    assert set(page.controls) <= page.labelled          # every control has a label
    files = [link for link in page.links if link.startswith("assets/")]
    assert sorted(files) == ["assets/chart.js", "assets/jobs.js", "assets/page.css",
                             "assets/page.js", "assets/participants.js"]
    types = {"css": "text/css", "js": "text/javascript"}
    for link in files:
        got = client.get(f"/{link}")
        assert got.status_code == 200, link
        assert got.mimetype == types[link.rsplit(".", 1)[1]], (link, got.mimetype)
        assert got.data == (WEB / link.split("/")[1]).read_bytes()


def test_unknown_page_files_are_json_404s(client):
    for path in ("/assets/nothing.js", "/assets/../page.py", "/nothing"):
        r = client.get(path)
        assert r.status_code == 404 and r.json["error"] == "not_found", path


def test_page_loads_nothing_from_the_network():
    svg_namespace = "http://www.w3.org/2000/svg"
    for path in WEB.iterdir():
        text = path.read_text(encoding="utf-8").replace(svg_namespace, "")
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), path.name
        assert "@import" not in text and "import(" not in text, path.name


def test_page_files_ship_in_the_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["emotion.serve"]
    serve = WEB.parent
    for path in WEB.iterdir():
        rel = path.relative_to(serve).as_posix()
        assert any(fnmatch.fnmatch(rel, p) for p in patterns), rel

