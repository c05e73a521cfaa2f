# dermsight — the two Quickstart commands are `make quickstart` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup setup-serve quickstart demo-train test test-fast lint bench clean

## everything: training (PyTorch), export, serving and the tests
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[train,export,serve,dev]"
	touch $@ $(VENV)/.installed-serve

## only what serving needs (onnxruntime, FastAPI; no PyTorch): what `make quickstart` installs
setup-serve: $(VENV)/.installed-serve

$(VENV)/.installed-serve: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[serve]"
	touch $@

## the main job on the embedded default (the committed HAM10000 model, no download):
## the web app and REST API at http://127.0.0.1:8000 (Ctrl-C stops it)
quickstart: setup-serve
	$(BIN)/dermsight serve

## prepare + train on the synthetic default dataset (no data, no download; about a minute)
demo-train: setup
	$(BIN)/dermsight train --config configs/quickstart.yaml

## the whole test suite (tests needing ../shared/data skip when it is absent)
test: setup
	$(BIN)/python -m pytest -q -n 2

test-fast: setup
	$(BIN)/python -m pytest -q -n 2 -m "not slow"

lint: setup
	$(BIN)/ruff check src tests benchmarks

## benchmark figures quoted in the README (need ../shared/data)
bench: setup
	$(BIN)/python benchmarks/prepare_throughput.py
	$(BIN)/python benchmarks/ita_agreement.py
	$(BIN)/python benchmarks/quality_degradations.py

clean:
	rm -rf runs .pytest_cache
