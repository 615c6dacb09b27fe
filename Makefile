# Two commands do all the set-up on a fresh machine with Python 3.11:
#   make demo   generate the sample set and run the pipeline on it
#   make test   lint and run the whole test suite (what CI runs)
#   make serve  the service and its page on http://127.0.0.1:5002/ with the demo's models
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SAMPLE := data/sample
DEMO   := results/demo

.PHONY: venv demo test lint serve clean

# make serve: the artifacts (the demo's unless given, e.g. make serve EMBEDDER_PATH=...)
EMBEDDER_PATH   ?= $(DEMO)/saved_models/embedder.pt
MULTIMODAL_PATH ?= $(DEMO)/saved_models/multimodal_best.pth
ISOLATION_PATH  ?= $(DEMO)/anomaly/isolation_forest.joblib
HOST ?= 127.0.0.1
PORT ?= 5002
# make serve's job queue: a SQLite file and the queued media here, and its worker processes
JOBS_DIR ?= results/jobs
JOB_WORKERS ?= 1

venv: $(STAMP)

# Refreshed whenever the requirements or the package's metadata change. The
# project is installed editable, so the stage commands (emotion-*) are on the
# venv's PATH and `import emotion` works from anywhere.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/python demo.py --sample $(SAMPLE) --out $(DEMO)

# One gunicorn worker (about 1 GB) is plenty for a person at the page, and one job
# worker process (emotion-worker, about 1 GB more) takes the jobs from the SQLite queue in
# JOBS_DIR; it is stopped with the service (a job it was running is taken up again at the
# next start).
serve: $(STAMP)
	@test -f $(MULTIMODAL_PATH) || { echo "make serve: no $(MULTIMODAL_PATH): run make demo first"; exit 2; }
	@echo "The page: http://$(HOST):$(PORT)/  (Ctrl-C stops the service and its job workers)"
	EMBEDDER_PATH=$(EMBEDDER_PATH) MULTIMODAL_PATH=$(MULTIMODAL_PATH) \
	ISOLATION_PATH=$(ISOLATION_PATH) HOST=$(HOST) PORT=$(PORT) JOBS_DIR=$(JOBS_DIR) \
	WEB_CONCURRENCY=$${WEB_CONCURRENCY:-1} sh -c '\
	  setsid $(BIN)/python -m emotion.serve.jobs.worker --workers $(JOB_WORKERS) & worker=$$!; \
	  trap "kill $$worker 2>/dev/null; wait $$worker" EXIT; \
	  $(BIN)/gunicorn app:app'

clean:
	rm -rf $(DEMO) $(SAMPLE)
