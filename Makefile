# One project-local virtualenv, created once and reused: llama-cpp-python compiles only the first
# time (pip keeps the built wheel in its cache, so even a fresh clone on this machine reuses it).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
QUESTION ?= How often should the silica gel desiccant pack in the mast be replaced?

.PHONY: setup demo test lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned, so no dependency can pull the CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev,formats,openai,llama-server,eval,server]'
	touch $(STAMP)

demo: setup
	$(BIN)/indexer build configs/sample.yaml
	$(BIN)/indexer query configs/sample.yaml "$(QUESTION)"

test: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check indexer tests benchmarks

clean:
	rm -rf storage runs .pytest_cache

.PHONY: bench-build
bench-build: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m benchmarks.build

.PHONY: bench-hnsw
bench-hnsw: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m benchmarks.hnsw_recall
