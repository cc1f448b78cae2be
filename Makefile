# The two commands from the README: `make demo` and `make test`.
# Both create .venv/ and install what they need on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test venv proto check-proto bench-mul bench-dot clean unit integration

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m mpcnet.cli demo

test: $(STAMP)
	$(PY) -m pytest -q tests

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

integration: $(STAMP)
	$(PY) -m pytest -q tests/integration

proto: $(STAMP)
	PYTHON=$(PY) scripts/gen_proto.sh

bench-mul: $(STAMP)
	$(PY) -m mpcnet.cli bench mul --size 1000000

bench-dot: $(STAMP)
	$(PY) -m mpcnet.cli bench dot --size 1000000

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
