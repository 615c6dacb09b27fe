# Two commands do all the set-up on a fresh machine with Python 3.11:
#   make demo   generate the sample set and run the pipeline on it
#   make test   lint and run the whole test suite (what CI runs)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SAMPLE := data/sample
DEMO   := results/demo

.PHONY: venv demo test lint clean

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

clean:
	rm -rf $(DEMO) $(SAMPLE)
