# Two commands for a newcomer: `make demo` runs the main job, `make test` passes the tests.
# Both create .venv and install what they need first (only when pyproject.toml changed).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck layers unit bench audit slow clean manifests

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@# The CSI driver's FUSE daemon (pyfuse3) builds against libfuse3: the csi extra is installed when
	@# pkg-config finds it (.ci/run installs libfuse3-dev first); without it the FUSE tests skip and say why.
	if pkg-config --exists fuse3 2>/dev/null; then $(BIN)/python -m pip install --quiet -e '.[dev,csi]'; fi
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/kbl demo

test: $(STAMP) lint typecheck layers unit

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

layers: $(STAMP)
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/python -m pytest

# Dependency audit (pip-audit): fails on a known vulnerability, reports what could not be audited.
audit: $(STAMP)
	$(BIN)/python .ci/audit.py

# The opt-in long runs: 60 s soak at 5,000 nodes, 1,000 schemathesis cases per verb and mode, long loss simulation.
slow: $(STAMP)
	KBL_SLOW=1 $(BIN)/python -m pytest tests/reliability

# Every benchmark back to back, figures as JSON into out/bench/ (about 5 minutes on 2 cores).
BENCHES := model placement extender locality controller reliability data interruptions
bench: $(STAMP)
	mkdir -p out/bench
	for b in $(BENCHES); do $(BIN)/kbl bench $$b --json out/bench/$$b.json || exit 1; done

clean:
	rm -rf $(VENV) *.egg-info .mypy_cache .ruff_cache

# Regenerate the plain YAML in manifests/ from the Helm chart (tests check they agree).
manifests: $(STAMP)
	$(BIN)/python manifests/generate.py
