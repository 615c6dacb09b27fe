"""The page for people: GET / and its static files (emotion/serve/web/).

One HTML page, one style sheet and two scripts, shipped in the package: no
network, no CDN, no build step. The page posts to /analyze like any client and
draws the answer itself (web/chart.js draws the SVG timeline). The service's
upload limit is written into the page, so that a file too large is refused
before it is sent.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Flask, current_app

WEB = Path(__file__).resolve().parent / "web"
# Everything the page loads comes from this origin; nothing runs inline.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self' blob:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")

page = Blueprint("page", __name__, static_folder="web", static_url_path="/assets")


@page.get("/")
def index():
    settings = current_app.extensions["emotion"].settings
    html = (WEB / "index.html").read_text(encoding="utf-8")
    html = html.replace("{{MAX_UPLOAD_MB}}", f"{float(settings['MAX_UPLOAD_MB']):g}")
    jobs = current_app.extensions.get("emotion_jobs") is not None
    html = html.replace("{{JOBS}}", "on" if jobs else "off")
    response = current_app.response_class(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-cache"
    return response


def register_page(app: Flask) -> None:
    """Serve the page at / and its files at /assets/ (a blueprint of its own)."""
    app.register_blueprint(page)
