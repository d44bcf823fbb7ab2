# The front door: every target builds .venv itself on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The baselines (Evidently, NannyML) live apart: never in the runtime or test environment.
BENCH_VENV  := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed

.PHONY: demo test lint unit integration bench format clean chromium prometheus report-screenshot docs

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/streamwatch demo

lint: $(STAMP)
	$(BIN)/ruff check streamwatch tests bench tools
	$(BIN)/ruff format --check streamwatch tests bench tools
	$(BIN)/mypy

test: lint chromium prometheus
	$(BIN)/pytest -q

# The report test renders the demo's report in headless Chromium (Debian's package).
chromium:
	scripts/ensure-chromium

report-screenshot: $(STAMP) chromium
	$(BIN)/streamwatch demo > /dev/null
	$(BIN)/python -m tests.chromium streamwatch-demo/report.html streamwatch-demo/report.png

# promtool's rule tests and the Alertmanager sink's test run Debian's packages.
prometheus:
	scripts/ensure-prometheus

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

$(BENCH_STAMP): pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/pip install --quiet -e . "evidently==0.7.23" "pandas<3" "nannyml==0.13.1"
	touch $(BENCH_STAMP)

bench: $(STAMP) $(BENCH_STAMP)
	$(BIN)/python bench/replay_throughput.py
	$(BIN)/python bench/kafka_throughput.py
	$(BIN)/python bench/window_close.py
	$(BIN)/python bench/memory.py
	$(BIN)/python bench/alert_latency.py
	$(BIN)/python bench/idle_cpu.py
	$(BIN)/python bench/scale_out.py
	$(BIN)/python bench/backfill.py
	$(BENCH_VENV)/bin/python bench/detection.py
	$(BENCH_VENV)/bin/python bench/cbpe.py

# docs/configuration.md is generated from the Settings model; a test fails when it is stale.
docs: $(STAMP)
	$(BIN)/python -m tools.config_reference

format: $(STAMP)
	$(BIN)/ruff format streamwatch tests bench tools
	$(BIN)/ruff check --fix streamwatch tests bench tools

clean:
	rm -rf $(VENV) $(BENCH_VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
