"""gunicorn's settings for the emotion service; gunicorn reads this file from the
current folder by itself (`gunicorn -w 4 app:app`); flags on the command line win.

Each worker loads the models itself (preload_app False): torch's thread pools
do not survive a fork, and the weights would not stay shared copy-on-write
anyway. A worker that cannot load them exits with gunicorn's boot-error code,
which stops the server with the reason in the log.

Workers are threaded (gthread). A worker admits MAX_CONCURRENT uploads at once
and lets MAX_QUEUE more wait for a slot (emotion/serve/admission.py), each on a
thread of its own; one thread more answers /health, /ready and the quick 503s
past that, and the main thread keeps the worker's heartbeat going through long
analyses. So the threads default to MAX_CONCURRENT + MAX_QUEUE + 1 (9 with the
defaults); GUNICORN_THREADS (or --threads) sets them, with a warning when fewer.
Connections beyond a worker's threads wait, accepted, for a thread, and are
then admitted, queued or refused like any other.
"""

import os

from emotion.core.errors import EmotionError
from emotion.serve.settings import load_settings, threads_needed

try:
    _NEEDED = threads_needed(load_settings())
except EmotionError:
    _NEEDED = 1   # the worker then stops with the reason (emotion/serve/wsgi.py)

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '5002')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS") or _NEEDED)
worker_connections = 4 * threads   # connections a worker holds; more wait in the backlog
backlog = 64
preload_app = False
timeout = 120                      # a silent worker is restarted (gthread keeps talking)
graceful_timeout = 60
keepalive = 5
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
accesslog = None                   # the app logs one line per request, with its id
control_socket_disable = True      # gunicorn 27's runtime control socket: not used here


def on_starting(server):
    """Say so when the threads cannot hold the admitted and waiting uploads."""
    if server.cfg.threads < _NEEDED:
        server.log.warning(
            "%d threads per worker, fewer than MAX_CONCURRENT + MAX_QUEUE + 1 = %d: an upload "
            "waiting for a slot can keep /health waiting too; raise GUNICORN_THREADS (or "
            "lower MAX_QUEUE)", server.cfg.threads, _NEEDED)


def post_fork(server, worker):
    """Each worker's torch takes its share of the cores (unless TORCH_THREADS says)."""
    share = (os.cpu_count() or 1) // max(1, server.cfg.workers)
    os.environ.setdefault("TORCH_THREADS", str(max(1, share)))
