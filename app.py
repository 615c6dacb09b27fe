"""The emotion service over HTTP: POST /analyze, GET /health, /ready, /openapi.json.

    python app.py                              # Flask's server on 0.0.0.0:5002 (HOST, PORT)
    gunicorn -w 4 app:app                      # production; reads ./gunicorn.conf.py

    curl -F meeting_id=m1 -F participant_id=p1 -F type=video -F file=@talk.mp4 \
        http://localhost:5002/analyze

The artifacts come from EMBEDDER_PATH, MULTIMODAL_PATH and ISOLATION_PATH
(default: the paths the stages write: saved_models/embedder.pt,
saved_models/multimodal_best.pth, results/anomaly/isolation_forest.joblib); a
missing or mismatched one stops start-up with a one-line reason. The other
settings (limits, CORS, forwarding to BACKEND_URL, LOG_LEVEL) are listed in
emotion/serve/settings.py; the API is described in emotion/serve/openapi.json.

Importing this module builds nothing: the app is built on first access to
``app.app``, which gunicorn makes once in each worker after the fork.
"""

from emotion.serve.wsgi import main, worker_app


def __getattr__(name: str):
    # `gunicorn app:app` reads this attribute in each worker, after the fork.
    if name == "app":
        return worker_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    raise SystemExit(main())
