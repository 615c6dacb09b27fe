"""gunicorn's settings for the emotion service; gunicorn reads this file from the
current folder by itself (`gunicorn -w 4 app:app`); flags on the command line win.

Each worker loads the models itself (preload_app False): torch's thread pools
do not survive a fork, and the weights would not stay shared copy-on-write
anyway. A worker that cannot load them exits with gunicorn's boot-error code,
which stops the server with the reason in the log.

Workers are threaded (gthread): one thread analyses at a time, the others answer
/health, /ready and, past MAX_CONCURRENT admitted uploads, 503 at once, and the
main thread keeps the worker's heartbeat going through long analyses.
"""

import os

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '5002')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
worker_connections = 4 * threads   # connections a worker holds; more wait in the backlog
backlog = 64
preload_app = False
timeout = 120                      # a silent worker is restarted (gthread keeps talking)
graceful_timeout = 60
keepalive = 5
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
accesslog = None                   # the app logs one line per request, with its id
control_socket_disable = True      # gunicorn 27's runtime control socket: not used here


def post_fork(server, worker):
    """Each worker's torch takes its share of the cores (unless TORCH_THREADS says)."""
    share = (os.cpu_count() or 1) // max(1, server.cfg.workers)
    os.environ.setdefault("TORCH_THREADS", str(max(1, share)))
