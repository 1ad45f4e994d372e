# One project-local virtualenv, created once and reused. llama-cpp-python is compiled once per CPU
# class and set of flags by tools/llama_cpp_wheel.py (portable flags, never AMX, never
# -march=native) and kept in ~/.cache/indexer/wheels/ under a key of those flags, so a fresh clone
# on this machine reuses it and other flags always mean a new build.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS ?= dev,formats,openai,llama-server,eval,server,demo-model,test-models,mcp,watch,browser-test,ray
QUESTION ?= How often should the silica gel desiccant pack in the mast be replaced?

.PHONY: setup llama-cpp browser demo test test-fast lint clean doctor

setup: $(STAMP) llama-cpp

$(STAMP): pyproject.toml tools/llama_cpp_wheel.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned, so no dependency can pull the CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	rm -f $(VENV)/.llama-wheel
	$(MAKE) --no-print-directory llama-cpp
	$(BIN)/python -m pip install --quiet --find-links "$$(cat $(VENV)/.llama-wheel)" -e '.[$(EXTRAS)]'
	$(BIN)/python -m pip check
	touch $(STAMP)

# Runs on every setup (it only prints a folder when the wheel is cached): changing
# INDEXER_LLAMA_CPU or INDEXER_LLAMA_CMAKE_ARGS swaps in the matching build.
llama-cpp:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@wheels="$$($(BIN)/python tools/llama_cpp_wheel.py | tail -n 1)" && \
	if [ "$$(cat $(VENV)/.llama-wheel 2>/dev/null)" != "$$wheels" ]; then \
	  $(BIN)/python -m pip install --quiet --no-index --no-deps --force-reinstall "$$wheels"/*.whl && \
	  echo "$$wheels" > $(VENV)/.llama-wheel; \
	fi

demo: setup
	$(BIN)/indexer build configs/sample.yaml
	$(BIN)/indexer query configs/sample.yaml "$(QUESTION)"

# The web page's test drives Debian's Chromium (Playwright's own browser download is unreachable
# here); without it that test fails and says why.
browser:
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || \
	  { apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	  echo "warning: could not install chromium and chromium-driver (run as root?): the web page test will fail"

test: setup browser
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

# The inner loop: every test that no tier marker (pyproject.toml) sets aside; a few minutes.
test-fast: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow and not browser and not cluster and not real_models"

lint: setup
	$(BIN)/ruff check indexer tests benchmarks tools
	$(BIN)/mypy indexer

doctor: setup
	$(BIN)/indexer doctor configs/sample.yaml

clean:
	rm -rf storage runs .pytest_cache

.PHONY: bench-build
bench-build: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m benchmarks.build

.PHONY: bench-hnsw
bench-hnsw: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m benchmarks.hnsw_recall

.PHONY: bench-cold-start
bench-cold-start: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m benchmarks.cold_start

.PHONY: bench-ray
bench-ray: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m benchmarks.ray_build
