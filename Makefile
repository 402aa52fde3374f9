# Two commands for a newcomer: `make demo` and `make test`. Both install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test lint typecheck pytest test-livekit livekit-server bench-room browser redis-server test-packaging test-deploy tools demo bench bench-sounds bench-voice bench-density bench-failover serve clean web

# CI-only tools, git-ignored under .tools/: kustomize (Go module proxy) and checkov (its own venv,
# PyPI; its pinned dependencies would clash with the project's).
TOOLS := .tools
KUSTOMIZE_VERSION := v5.8.0
CHECKOV_VERSION := 3.3.30
KUSTOMIZE := $(TOOLS)/kustomize-$(KUSTOMIZE_VERSION)/kustomize
CHECKOV := $(TOOLS)/checkov-$(CHECKOV_VERSION)/bin/checkov

# Install steps report on stderr: `make demo`'s standard output is the data messages only.
$(PY):
	@echo "creating $(VENV)" >&2
	@$(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip >&2

$(STAMP): pyproject.toml | $(PY)
	@echo "installing the project with its extras into $(VENV) (a few minutes the first time)" >&2
	@$(PY) -m pip install --quiet -e '.[dev,embedded,vision,redis,knowledge,mcp]' >&2
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

# The real-server tier: a real livekit-server, the service and SDK clients in a private network
# namespace made for the run (scripts/netns-run). It runs whenever the server binary exists or Go
# can build it; without either it says so and is skipped, except under CI (or
# LIVEKIT_TIER=required), where that is a failure.
LIVEKIT_VERSION := v1.13.5
TOOLS := .tools
LIVEKIT_SERVER_BIN := $(TOOLS)/livekit-server
PYTEST_ARGS ?=

livekit-server: $(LIVEKIT_SERVER_BIN)

$(LIVEKIT_SERVER_BIN):
	@mkdir -p $(TOOLS)
	@if command -v livekit-server >/dev/null 2>&1; then \
	  echo "using $$(command -v livekit-server) from PATH" >&2; \
	  ln -sf "$$(command -v livekit-server)" $@; \
	else \
	  echo "building livekit-server $(LIVEKIT_VERSION) with go install (once; cached in $(TOOLS)/)" >&2; \
	  GOBIN="$(abspath $(TOOLS))/go-bin" go install github.com/livekit/livekit-server/cmd/server@$(LIVEKIT_VERSION) \
	    && mv "$(TOOLS)/go-bin/server" $@ && rmdir "$(TOOLS)/go-bin"; \
	fi

# The browser pages' tests (in the livekit tier): Playwright's Python driver (the `browser` extra)
# driving Debian's chromium, and espeak-ng for the fake microphone's WAV; the two Debian packages
# are installed with apt when missing (as root, as CI runs). Never `playwright install`.
BROWSER_STAMP := $(VENV)/.browser
browser: $(BROWSER_STAMP)

$(BROWSER_STAMP): pyproject.toml $(STAMP)
	@$(PY) -m pip install --quiet -e '.[browser]' >&2
	@scripts/need-debian "the browser tests" chromium=/usr/bin/chromium espeak-ng=espeak-ng
	@touch $@

# The replica tests share a real redis-server (Debian package), installed here when missing and
# running as root (as CI does); otherwise those tests say how to get it.
redis-server:
	@scripts/need-debian --no-recommends "the replica tests" redis-server=redis-server

# bench_barge_in_noise's corpus: sox, espeak-ng voices and the recorded sounds of Debian's
# sound-theme-freedesktop, installed here when missing and running as root.
bench-sounds:
	@scripts/need-debian --no-recommends bench_barge_in_noise sox=sox espeak-ng=espeak-ng \
	  sound-theme-freedesktop=/usr/share/sounds/freedesktop/stereo

test-livekit: install browser redis-server
	@if [ -x $(LIVEKIT_SERVER_BIN) ] || command -v livekit-server >/dev/null 2>&1 || command -v go >/dev/null 2>&1; then \
	  $(MAKE) --no-print-directory livekit-server && \
	  scripts/netns-run $(VENV)/bin/pytest -q -m livekit -p no:cacheprovider $(PYTEST_ARGS); \
	elif [ "$${CI:-}" = "true" ] || [ "$${LIVEKIT_TIER:-}" = "required" ]; then \
	  echo "FAILED: the real-server tier cannot run: no livekit-server on PATH and no Go to build it" >&2; exit 1; \
	else \
	  echo "SKIPPED: the real-server tier (no livekit-server on PATH and no Go to build it; see README)" >&2; \
	fi

test: lint typecheck pytest test-packaging test-deploy test-livekit

# Fresh venvs (bare, embedded+redis, the image's extras) from the wheel built once per run, made
# by uv from its machine-wide cache (tests/packaging/envs.py). The image test runs the image's
# command under tini (the Debian package, installed here when missing).
test-packaging: install
	@scripts/need-debian --no-recommends "the image test" tini=tini \
		|| echo "tini not installed: the image test will fail" >&2
	$(VENV)/bin/pytest -q -m packaging tests/packaging

# The Dockerfile and deploy/k8s: kustomize build of every overlay, Kubernetes schemas
# (kubernetes-validate), agreement with the service, checkov.
test-deploy: install tools
	KUSTOMIZE=$(abspath $(KUSTOMIZE)) CHECKOV=$(abspath $(CHECKOV)) \
		$(VENV)/bin/pytest -q -m deploy tests/deploy

tools: $(KUSTOMIZE) $(CHECKOV)

$(KUSTOMIZE):
	@echo "building kustomize $(KUSTOMIZE_VERSION) into $(TOOLS) (go install)" >&2
	@mkdir -p $(dir $(KUSTOMIZE))
	GOBIN=$(abspath $(dir $(KUSTOMIZE))) go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)

$(CHECKOV):
	@echo "installing checkov $(CHECKOV_VERSION) into its own venv in $(TOOLS) (about a minute)" >&2
	@rm -rf $(TOOLS)/checkov-$(CHECKOV_VERSION)
	@$(PYTHON) -m venv $(TOOLS)/checkov-$(CHECKOV_VERSION)
	@$(TOOLS)/checkov-$(CHECKOV_VERSION)/bin/pip install --quiet --disable-pip-version-check \
		checkov==$(CHECKOV_VERSION) >&2

demo: install
	@$(PY) -m app.demo

bench: install bench-sounds
	@for b in bench/bench_*.py; do \
	  [ "$$b" = bench/bench_voice_to_voice.py ] && continue; \
	  [ "$$b" = bench/bench_room_density.py ] && continue; \
	  [ "$$b" = bench/bench_real_room.py ] && continue; \
	  [ "$$b" = bench/bench_failover.py ] && continue; \
	  echo "== $$b"; $(PY) $$b || exit 1; done

# Voice to voice on a real livekit-server (several minutes): end of speech to the agent's voice
# heard by the caller, barge-in stop time; silence vs smart-turn detector in the same run.
bench-voice: install livekit-server
	@$(PY) bench/bench_voice_to_voice.py

# What a caller measures on a real livekit-server (a few minutes): join time per door, end of
# speech to agent audio, barge-in stop; the same calls in the in-memory room as the baseline.
bench-room: install livekit-server
	@$(PY) bench/bench_real_room.py

# Listening density on a real livekit-server against livekit-agents (a few minutes; installs the
# baseline into .cache/bench-lk-agents once): core and MB per job, joins, dispatch latency.
bench-density: install livekit-server
	@$(PY) bench/bench_room_density.py

# Failover on a real livekit-server and redis-server (about 2 minutes): SIGKILL of the replica
# running a call to the agent's voice heard again, against a fresh dispatch's time to voice.
bench-failover: install livekit-server redis-server
	@$(PY) bench/bench_failover.py

serve: install
	$(VENV)/bin/external-agent serve

# The pages' livekit-client bundle (app/web/static/livekit-client.esm.js, committed): npm installs
# the versions pinned in web/package-lock.json, esbuild bundles them. Needs node and npm.
web:
	cd web && npm ci --no-audit --no-fund && npm run build

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache demo-output .cache
