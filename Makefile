# workforce — `make setup` then `make demo`; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
WORKERS ?= ai-workers/workers
PRIORITY ?= 1
Q ?= semantic analyzer class skeleton
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False
export MEM0_TELEMETRY := False
export TOKENIZERS_PARALLELISM := false

.PHONY: setup test check dry-run wave demo bench similar status clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

test: setup
	$(PY) -m pytest -q -p no:cacheprovider

check: setup
	$(VENV)/bin/ruff check orchestration agents tests bench
	$(VENV)/bin/mypy

dry-run: setup
	$(PY) orchestration/launch_workforce.py --all --dry-run --workers-dir $(WORKERS)

wave: setup
	$(PY) orchestration/launch_workforce.py --priority $(PRIORITY) --workers-dir $(WORKERS)

bench: setup
	$(PY) bench/load_plan.py

clean:
	rm -rf validation_build/*/ ai-workers/results .workforce
