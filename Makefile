# Two commands for a newcomer: `make demo` and `make test`. Both install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test lint typecheck pytest demo bench serve clean

# Install steps report on stderr: `make demo`'s standard output is the data messages only.
$(PY):
	@echo "creating $(VENV)" >&2
	@$(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip >&2

$(STAMP): pyproject.toml | $(PY)
	@echo "installing the project with its extras into $(VENV) (a few minutes the first time)" >&2
	@$(PY) -m pip install --quiet -e '.[dev,embedded,vision,redis]' >&2
	@touch $(STAMP)

# The Smart Turn end-of-turn model (turn.detector: smart-turn), from the pipecat-ai wheel
# without pipecat itself; checksummed. See scripts/fetch_smart_turn.py.
SMART_TURN := agents/providers/models/smart-turn-v3.2-cpu.onnx
$(SMART_TURN): scripts/fetch_smart_turn.py | $(PY)
	@$(PY) scripts/fetch_smart_turn.py

install: $(STAMP) $(SMART_TURN)

lint: install
	$(VENV)/bin/ruff check app agents tests bench

typecheck: install
	$(VENV)/bin/mypy

pytest: install
	$(VENV)/bin/pytest -q

test: lint typecheck pytest

demo: install
	@$(PY) -m app.demo

bench: install
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

serve: install
	$(VENV)/bin/external-agent serve

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache demo-output .cache
