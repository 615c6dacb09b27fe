"""Requests per second and latency of the service under gunicorn, and each worker's memory.

    python bench/bench_service.py --artifacts results/demo     # after `make demo`

Starts `gunicorn -w 2 -c gunicorn.conf.py app:app` on a free port of 127.0.0.1,
generates a 5 s speech clip (wav) and a 10 s video (mp4, 640x360, 25 fps, a
drawn face and a voice), and sends each `--requests` times at each concurrency
(default 1 and 4), after two warm-up requests of each. Reports requests per
second, p50/p95 latency, and the resident memory (VmRSS, and its peak VmHWM) of
each worker process. MAX_CONCURRENT is raised to the highest concurrency so
that no request is answered 503. The machine may be shared: run it on a quiet one.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

from emotion.serve.localserver import LocalServer, artifacts_env


def make_media(folder: Path) -> dict[str, tuple[str, bytes]]:
    import soundfile as sf

    from emotion.stages.sample_data import make_video, speech_like

    sf.write(folder / "speech.wav", speech_like("happy", duration=5.0,
                                                rng=np.random.default_rng(0)), 16_000)
    make_video(folder / "talk.mp4", [("happy", 5.0), ("sad", 5.0)], fps=25, size=160,
               frame_size=(640, 360), seed=3)
    return {"audio 5 s": ("audio", (folder / "speech.wav").read_bytes()),
            "video 10 s": ("video", (folder / "talk.mp4").read_bytes())}


def memory_mb(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return fields


def run(url: str, kind: str, content: bytes, n: int, concurrency: int) -> dict:
    def one(i: int) -> tuple[int, float]:
        t = time.perf_counter()
        r = requests.post(url, data={"meeting_id": "bench", "participant_id": f"p{i}",
                                     "type": kind},
                          files={"file": ("upload", content)}, timeout=600)
        return r.status_code, time.perf_counter() - t

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(n)))
    wall = time.perf_counter() - started
    lat = np.array([s for _, s in results])
    return {"requests": n, "concurrency": concurrency,
            "ok": sum(c == 200 for c, _ in results), "rps": round(n / wall, 2),
            "p50_s": round(float(np.percentile(lat, 50)), 3),
            "p95_s": round(float(np.percentile(lat, 95)), 3)}


def service_parser(doc: str) -> argparse.ArgumentParser:
    """The options of the service benchmarks: --artifacts, --workers."""
    p = argparse.ArgumentParser(description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifacts", default="results/demo", type=Path,
                   help="folder with saved_models/ and anomaly/ (what `make demo` writes)")
    p.add_argument("--workers", type=int, default=2)
    return p


def main(argv: list[str] | None = None) -> int:
    p = service_parser(__doc__)
    p.add_argument("--requests", type=int, default=20, help="per media and concurrency")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    p.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = p.parse_args(argv)

    env = {**artifacts_env(args.artifacts), "MAX_CONCURRENT": str(max(args.concurrency)),
           "LOG_LEVEL": "WARNING"}
    with tempfile.TemporaryDirectory() as tmp:
        media = make_media(Path(tmp))
        env["UPLOAD_DIR"] = str(Path(tmp) / "uploads")
        server = LocalServer(env, Path(tmp) / "gunicorn.log", workers=args.workers).start()
        try:
            ready_s = server.wait_ready()
            base = server.url
            workers = server.worker_pids()
            idle = {pid: memory_mb(pid) for pid in workers}
            rows = []
            for name, (kind, content) in media.items():
                run(f"{base}/analyze", kind, content, 2 * args.workers, args.workers)  # warm-up
                for c in args.concurrency:
                    rows.append({"media": name, **run(f"{base}/analyze", kind, content,
                                                      args.requests, c)})
                    print(json.dumps(rows[-1]), flush=True)
            loaded = {pid: memory_mb(pid) for pid in workers}
        finally:
            server.stop()

    print(f"\ngunicorn -w {args.workers} (gthread), {os.cpu_count()} CPUs; ready in "
          f"{ready_s:.1f} s; {args.requests} requests per row")
    print(f"{'media':<12}{'conc':>5}{'ok':>5}{'req/s':>8}{'p50 s':>8}{'p95 s':>8}")
    for r in rows:
        print(f"{r['media']:<12}{r['concurrency']:>5}{r['ok']:>5}{r['rps']:>8.2f}"
              f"{r['p50_s']:>8.2f}{r['p95_s']:>8.2f}")
    print("worker memory (MB): " + "; ".join(
        f"pid {pid}: idle RSS {idle[pid].get('VmRSS')}, after RSS {loaded[pid].get('VmRSS')} "
        f"peak {loaded[pid].get('VmHWM')}" for pid in workers))
    if args.out:
        args.out.write_text(json.dumps({"workers": args.workers, "ready_seconds": ready_s,
                                        "rows": rows, "memory_idle_mb": idle,
                                        "memory_after_mb": loaded}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
