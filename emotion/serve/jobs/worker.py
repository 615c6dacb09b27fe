"""emotion-worker: worker processes that analyse queued jobs (a huey consumer).

    emotion-worker --workers 2                          # the SQLite queue in JOBS_DIR
    JOBS_REDIS_URL=redis://queue-host:6379/0 JOBS_DIR=/mnt/jobs emotion-worker

Every setting comes from the environment, as for the service (EMBEDDER_PATH,
MULTIMODAL_PATH, ISOLATION_PATH, JOBS_DIR, JOBS_REDIS_URL, JOBS_*, BACKEND_*);
the flags override a few. Each worker process loads the models once, after
the fork, and takes one job at a time; a worker process that dies is replaced
by the consumer, and its job is taken up again by the heartbeat's housekeeping
(emotion/serve/jobs/queue.py). SIGINT stops after the jobs in progress, SIGTERM
at once (the jobs in progress are then retried).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal

from emotion.core import cli
from emotion.core.errors import EmotionError
from emotion.serve.jobs.queue import JobQueue
from emotion.serve.settings import load_settings

log = logging.getLogger(__name__)

USAGE = __doc__
BOOT_ERROR = 3


def get_args_parser() -> argparse.ArgumentParser:
    p = cli.parser(USAGE)
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes on this machine (each holds the models, ~1 GB)")
    p.add_argument("--jobs_dir", help="JOBS_DIR: the SQLite queue and the queued media "
                                      "(shared with the service)")
    p.add_argument("--redis", help="JOBS_REDIS_URL: take jobs from this Redis instead")
    p.add_argument("--torch_threads", type=int, default=None,
                   help="torch threads per worker process (default: cores / workers)")
    return p


def build(args: argparse.Namespace) -> JobQueue:
    overrides = {}
    if args.jobs_dir:
        overrides["JOBS_DIR"] = args.jobs_dir
    if args.redis:
        overrides["JOBS_REDIS_URL"] = args.redis
    threads = args.torch_threads or max(1, (os.cpu_count() or 1) // max(1, args.workers))
    overrides["TORCH_THREADS"] = threads
    settings = load_settings(overrides)
    if not settings["JOBS_DIR"]:
        raise EmotionError("no JOBS_DIR: the folder of queued media the service writes "
                           "(and, without JOBS_REDIS_URL, its SQLite queue)")
    if args.workers < 1:
        raise EmotionError("--workers must be at least 1")
    for name in ("EMBEDDER_PATH", "MULTIMODAL_PATH", "ISOLATION_PATH"):
        if not os.path.isfile(settings[name]):
            raise EmotionError(f"{name}={settings[name]}: no such file (make demo writes "
                               "results/demo/...; see README, The service)")
    return JobQueue(settings)


def run(args: argparse.Namespace) -> None:
    queue = build(args)

    def startup() -> None:
        try:
            queue.load_analyzer()
        except EmotionError as e:     # stop the whole consumer, not one worker in a loop
            log.critical("emotion-worker: cannot load the models: %s", e)
            os.kill(os.getppid(), signal.SIGTERM)
            os._exit(BOOT_ERROR)

    queue.huey.on_startup("models")(startup)
    log.info("emotion-worker: %d process(es) taking jobs from %s", args.workers, queue.where)
    consumer = queue.huey.create_consumer(
        workers=args.workers, worker_type="process", periodic=False,
        initial_delay=0.05, backoff=1.15, max_delay=0.1,  # an idle worker polls SQLite
        check_worker_health=True, health_check_interval=1.0)
    consumer.run()


def main(argv: list[str] | None = None) -> int:
    return cli.run_main(argv, get_args_parser, run, "emotion-worker")


if __name__ == "__main__":
    raise SystemExit(main())
