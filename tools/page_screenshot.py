"""Analyse a recording through the service's page in headless Chromium; save a screenshot.

    python tools/page_screenshot.py --video meeting.mp4 --out docs/page.png \\
        --embedder results/real/saved_models/embedder.pt \\
        --multimodal results/real/saved_models/multimodal_best.pth \\
        --isolation results/real/anomaly/isolation_forest.joblib
    python tools/page_screenshot.py --generate 30 --out page.png   # a generated 30 s video

It starts the app in this process (the artifacts: the flags, else EMBEDDER_PATH,
MULTIMODAL_PATH and ISOLATION_PATH as for the service), opens the page, chooses
the file, presses Analyse, waits for the chart, points at one window so that its
details show, and saves the page as a small palette PNG. It prints the bytes the
page took over the network and the seconds from choosing the file to the chart.
Needs Debian's chromium and chromium-driver, and selenium (requirements-dev.txt).
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools import browser  # noqa: E402


def _generated(seconds: float, folder: Path) -> Path:
    from emotion.stages.sample_data import make_video

    emotions = ["happy", "neutral", "sad", "angry", "fear", "disgust"]
    n = max(1, round(seconds / 6))
    return make_video(folder / f"generated_{seconds:g}s.mp4",
                      [(emotions[i % len(emotions)], seconds / n) for i in range(n)], seed=1)


def _save_small_png(png: bytes, out: Path) -> int:
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=128)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out, optimize=True)
    return out.stat().st_size


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--video", type=Path, help="the recording to analyse")
    src.add_argument("--generate", type=float, metavar="SECONDS",
                     help="analyse a generated video of this length instead")
    p.add_argument("--out", type=Path, default=Path("docs/page.png"))
    p.add_argument("--embedder")
    p.add_argument("--multimodal")
    p.add_argument("--isolation")
    p.add_argument("--width", type=int, default=1100, help="the browser window's width")
    p.add_argument("--hover", type=int, default=None,
                   help="the window to point at (default: the first anomaly, else the middle)")
    args = p.parse_args(argv)

    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from emotion.serve.app import create_app

    config = {k: v for k, v in (("EMBEDDER_PATH", args.embedder),
                                ("MULTIMODAL_PATH", args.multimodal),
                                ("ISOLATION_PATH", args.isolation)) if v}
    with tempfile.TemporaryDirectory() as tmp:
        video = args.video or _generated(args.generate, Path(tmp))
        app = create_app(config)
        with browser.serve(app) as base, browser.chromium(args.width, 900) as driver:
            browser.open_page(driver, f"{base}/")
            seconds = browser.analyse(driver, video, meeting="meeting-1",
                                      participant=re.sub(r"[^A-Za-z0-9._:-]", "_", video.stem)[:64])
            error = driver.find_element(By.ID, "error")
            if error.is_displayed():
                print(f"page_screenshot: {error.text}", file=sys.stderr)
                return 1
            result = browser.shown_result(driver)
            sizes = browser.page_bytes(driver)
            timeline = result["timeline"]
            flagged = [i for i, w in enumerate(timeline) if w["anomaly_flag"] == "anomaly"]
            index = args.hover if args.hover is not None else \
                (flagged[0] if flagged else len(timeline) // 2)
            height = browser.js(driver, "return document.getElementById('results')"
                                        ".getBoundingClientRect().bottom + window.scrollY")
            driver.set_window_size(args.width, int(height) + 200)  # + the window frame
            browser.js(driver, "document.querySelector('#chart g').dataset.old = 1;"
                               "window.dispatchEvent(new Event('resize'))")
            browser.wait(driver, lambda d: browser.js(
                d, "return !document.querySelector('#chart [data-old]')"), "the redraw", 10)
            win = driver.find_element(By.CSS_SELECTOR, f"#chart .win[data-index='{index}']")
            ActionChains(driver).move_to_element(win).perform()
            png = driver.find_element(By.TAG_NAME, "main").screenshot_as_png
    size = _save_small_png(png, args.out)
    print(f"page: {sum(sizes.values())} bytes over the network "
          + ", ".join(f"{url.rsplit('/', 1)[1] or '/'} {n}" for url, n in sizes.items()))
    print(f"{video.name}: {result['duration']:.1f} s, {len(timeline)} windows, "
          f"{len(flagged)} anomalies; from choosing the file to the chart {seconds:.1f} s "
          f"(analysis {result['processing_seconds']:.1f} s)")
    print(f"screenshot: {args.out} ({size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
