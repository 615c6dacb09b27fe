"""The service under load: N concurrent clients, each sending a mix of valid and malformed uploads.

    PYTHONPATH=. python bench/bench_load.py --artifacts results/demo          # after `make demo`
    PYTHONPATH=. python bench/bench_load.py --artifacts results/demo --set MAX_QUEUE=0

Starts `gunicorn -w 2 -c gunicorn.conf.py app:app` on a free port of 127.0.0.1
with the shipped settings (`--set NAME=VALUE` changes one; MAX_QUEUE=0 is the
admission before the queue existed: refuse at once when the slots are taken).
For each concurrency (default 1, 4, 8, 16), that many clients each send
`--per_client` uploads, in turn a 10 s video, a 5 s speech clip and a malformed
file (random bytes, a truncated video, a voice sent as type=video, an empty
file, text), no retries. Per concurrency it reports the answers (200, 4xx for
the malformed ones, any other 4xx, 503, connection errors and timeouts, and
how many valid uploads failed otherwise: must be 0), the p50/p95 latency of the
200s, their p50/p95 queue_seconds, the slowest 503, and requests per second.
After all: /health, /ready, whether the workers are those it started with, the
upload files left behind, and whether the log holds a traceback.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

from emotion.serve.localserver import LocalServer, artifacts_env

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_service import make_media, service_parser  # noqa: E402 - the same media, options


def malformed(valid: dict[str, tuple[str, bytes]], seed: int = 0) -> list[tuple[str, bytes]]:
    """(type, content) of uploads that must be refused with a 4xx."""
    rng = np.random.default_rng(seed)
    video, voice = valid["video 10 s"][1], valid["audio 5 s"][1]
    return [("video", rng.bytes(200_000)), ("video", video[: len(video) // 2]),
            ("video", voice), ("audio", b""), ("audio", b"meeting notes, not audio\n" * 400)]


def plan(clients: int, per_client: int, valid: dict, bad: list) -> list[list[tuple]]:
    """Per client, its uploads in order: (label, type, content), valid and malformed in turn."""
    cycle = [("video", *valid["video 10 s"]), ("clip", *valid["audio 5 s"]), None]
    out = []
    for c in range(clients):
        jobs = []
        for i in range(per_client):
            job = cycle[(c + i) % 3]
            jobs.append(job or ("malformed", *bad[(c + i) % len(bad)]))
        out.append(jobs)
    return out


def send(url: str, label: str, kind: str, content: bytes, participant: str) -> dict:
    started = time.perf_counter()
    out = {"label": label, "status": None, "queue": None}
    try:
        r = requests.post(url, data={"meeting_id": "load", "participant_id": participant,
                                     "type": kind},
                          files={"file": ("upload", content)}, timeout=120)
        out["status"] = r.status_code
        if r.status_code == 200:
            out["queue"] = r.json()["queue_seconds"]
        elif r.status_code == 503:
            out["retry_after"] = r.headers.get("Retry-After")
    except requests.RequestException as e:
        out["error"] = type(e).__name__
    out["seconds"] = time.perf_counter() - started
    return out


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def run_level(url: str, clients: int, per_client: int, valid: dict, bad: list) -> dict:
    jobs = plan(clients, per_client, valid, bad)

    def client(c: int) -> list[dict]:
        return [send(url, label, kind, content, f"c{c}-{i}")
                for i, (label, kind, content) in enumerate(jobs[c])]

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for rs in pool.map(client, range(clients)) for r in rs]
    wall = time.perf_counter() - started
    good = [r for r in results if r["status"] == 200]
    is_valid = [r for r in results if r["label"] != "malformed"]
    return {
        "clients": clients, "requests": len(results), "ok": len(good),
        "4xx_malformed": sum(r["label"] == "malformed" and r["status"] is not None
                             and 400 <= r["status"] < 500 for r in results),
        "4xx_other": sum(r["label"] != "malformed" and r["status"] is not None
                         and 400 <= r["status"] < 500 for r in results),
        "503": sum(r["status"] == 503 for r in results),
        "503_without_retry_after": sum(r["status"] == 503 and not r.get("retry_after")
                                       for r in results),
        "errors": sum("error" in r for r in results),
        "valid_failed": sum(r["status"] not in (200, 503) for r in is_valid),
        "malformed_answered_200": sum(r["label"] == "malformed" and r["status"] == 200
                                      for r in results),
        "p50_s": pct([r["seconds"] for r in good], 50),
        "p95_s": pct([r["seconds"] for r in good], 95),
        "queue_p50_s": pct([r["queue"] for r in good], 50),
        "queue_p95_s": pct([r["queue"] for r in good], 95),
        "slowest_503_s": round(max((r["seconds"] for r in results if r["status"] == 503),
                                   default=0.0), 3),
        "rps": round(len(results) / wall, 2),
    }


def health(server: LocalServer, workers_before: list[int]) -> dict:
    def status(path: str) -> int | str:
        try:
            return requests.get(server.url + path, timeout=10).status_code
        except requests.RequestException as e:
            return type(e).__name__

    uploads = Path(server.env["UPLOAD_DIR"])
    return {"health": status("/health"), "ready": status("/ready"),
            "same_workers": server.worker_pids() == workers_before,
            "upload_files_left": sum(p.is_file() for p in uploads.rglob("*")),
            "traceback_in_log": "Traceback" in server.log.read_text(errors="replace")}


def table(rows: list[dict]) -> str:
    cols = ["clients", "requests", "ok", "4xx_malformed", "4xx_other", "503", "errors",
            "valid_failed", "p50_s", "p95_s", "queue_p50_s", "queue_p95_s", "slowest_503_s",
            "rps"]
    lines = ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    lines += ["| " + " | ".join("-" if r[c] is None else str(r[c]) for c in cols) + " |"
              for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = service_parser(__doc__)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8, 16])
    p.add_argument("--per_client", type=int, default=6, help="uploads each client sends")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a service setting for the server (repeatable), e.g. MAX_QUEUE=0")
    p.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = p.parse_args(argv)

    env = {**artifacts_env(args.artifacts), "LOG_LEVEL": "WARNING",
           **dict(kv.split("=", 1) for kv in args.set)}
    with tempfile.TemporaryDirectory() as tmp:
        valid = make_media(Path(tmp))
        bad = malformed(valid)
        env["UPLOAD_DIR"] = str(Path(tmp) / "uploads")
        with LocalServer(env, Path(tmp) / "gunicorn.log", workers=args.workers) as server:
            before = server.worker_pids()
            url = f"{server.url}/analyze"
            run_level(url, args.workers, 2, valid, bad)   # warm-up: each worker's first calls
            rows = []
            for c in args.concurrency:
                rows.append(run_level(url, c, args.per_client, valid, bad))
                print(json.dumps(rows[-1]), flush=True)
            after = health(server, before)

    settings = ", ".join(args.set) or "shipped defaults"
    print(f"\ngunicorn -w {args.workers} ({settings}), {os.cpu_count()} CPUs; "
          f"{args.per_client} uploads per client (video, clip, malformed in turn)\n")
    print(table(rows))
    print(f"\nafter: {json.dumps(after)}")
    if args.out:
        args.out.write_text(json.dumps({"workers": args.workers, "set": args.set,
                                        "rows": rows, "after": after}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
