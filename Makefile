# rke2ha: `make demo` brings up the local lab and verifies it; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: venv system-deps test demo bench lint spec-reference clean

venv: $(STAMP)

# Reinstall only when pyproject.toml changed; the package itself is installed editable.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

system-deps:
	@scripts/system-deps.sh

test: venv system-deps
	$(BIN)/python -m pytest

demo: venv
	@scripts/demo.sh

bench: venv system-deps
	$(BIN)/python -m bench

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

# docs/spec-reference.md from the spec's models (a test fails when the two differ).
spec-reference: venv
	$(BIN)/python -m rke2ha.specdoc

clean:
	rm -rf $(VENV) demo-out .pytest_cache .mypy_cache .ruff_cache
