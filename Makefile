# The two commands of the README: `make demo` and `make test`. Everything they
# need is installed here, from Debian packages and requirements.txt.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
# Debian packages: real audio for tests and the demo, TTS, and the browser tests.
SYSTEM_PACKAGES := sox espeak-ng asterisk-core-sounds-en asterisk-core-sounds-en-wav asterisk-moh-opsound-wav chromium
# Only the detector evaluation needs these (actors' dialogue standing in for agents).
EVAL_PACKAGES := fillets-ng-data fillets-ng-data-nl

.PHONY: setup system-deps demo demo-once test lint typecheck bench eval

$(VENV)/.installed: requirements.txt
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || bash .ci/system-deps python3-venv
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	touch $@

system-deps:
	@bash .ci/system-deps $(SYSTEM_PACKAGES)

setup: system-deps $(VENV)/.installed

demo: setup
	$(PY) -m sim.demo

demo-once: setup
	$(PY) -m sim.demo --once

test: setup
	@bash .ci/pytest $(PY)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: setup
	$(PY) bench/detector.py
	$(PY) bench/concurrency.py --calls 50

eval: setup
	@bash .ci/system-deps $(EVAL_PACKAGES)
	@$(PY) -c 'import scipy' 2>/dev/null || $(VENV)/bin/pip install -q scipy  # the generator's filters only
	rm -rf /tmp/hs-dev && $(PY) ../shared/eval/scenarios.py /tmp/hs-dev --count 64
	$(PY) ../shared/eval/score.py /tmp/hs-dev --project . --python $(PY) --causal 5
