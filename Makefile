# workforce — `make setup` then `make demo`; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
WORKERS ?= ai-workers/workers
PRIORITY ?= 1
PROVIDER ?=
Q ?= semantic analyzer class skeleton
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False
export MEM0_TELEMETRY := False
export TOKENIZERS_PARALLELISM := false

DEMO_TARGET ?= validation_build/demo-target
LAUNCH := $(PY) orchestration/launch_workforce.py

.PHONY: setup test check dry-run wave demo resume bench similar status clean

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
	$(LAUNCH) --all --dry-run --workers-dir $(WORKERS)

wave: setup
	$(LAUNCH) --priority $(PRIORITY) --workers-dir $(WORKERS) $(if $(PROVIDER),--provider $(PROVIDER))

# The offline demo: the bundled workforce with recorded model replies, into a fresh target tree.
demo: setup
	rm -rf $(DEMO_TARGET)
	$(LAUNCH) --all --provider replay --workers-dir ai-workers/workers --target $(DEMO_TARGET)
	cd $(DEMO_TARGET) && ../../$(PY) -m pytest -q -p no:cacheprovider

resume: setup
	$(LAUNCH) --resume

status: setup
	$(LAUNCH) status

similar: setup
	$(LAUNCH) similar "$(Q)"

bench: setup
	$(PY) bench/load_plan.py
	$(PY) bench/makespan.py --workers 100
	$(PY) bench/makespan.py --workers 225 --compare-graphflow
	$(PY) bench/makespan.py --workers 450 --compare-graphflow
	$(PY) bench/makespan.py --workers 1000
	$(PY) bench/resume.py
	$(PY) bench/knowledge.py

clean:
	rm -rf validation_build/*/ ai-workers/results .workforce
