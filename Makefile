# Two commands for a newcomer: `make demo` and `make test`. Both install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test lint typecheck pytest demo bench serve clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev,embedded,vision,redis]'
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(VENV)/bin/ruff check app agents tests bench

typecheck: install
	$(VENV)/bin/mypy

pytest: install
	$(VENV)/bin/pytest -q

test: lint typecheck pytest

demo: install
	$(PY) -m app.demo

bench: install
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

serve: install
	$(VENV)/bin/external-agent serve

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache demo-output
