# The two commands from the README: `make demo` and `make test`.
# Both create .venv/ and install what they need on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: image demo test venv proto check-proto bench-mul bench-dot bench-secagg flower-venv clean unit integration deploy drills drills-local

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,bench,drills,fl]'
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

# the full drill set against the compose cluster (docker-compose.yml + docker-compose.drills.yml), on a fresh
# image; `make drills-local` runs the drills against local processes (no docker)
drills: image
	$(PY) -m mpcnet.cli drill --compose

drills-local: $(STAMP)
	$(PY) -m mpcnet.cli drill

deploy: $(STAMP)
	$(PY) -m pytest -q tests/deploy

proto: $(STAMP)
	PYTHON=$(PY) scripts/gen_proto.sh

bench-mul: $(STAMP)
	$(PY) -m mpcnet.cli bench mul --size 1000000

bench-dot: $(STAMP)
	$(PY) -m mpcnet.cli bench dot --size 1000000

# Flower 1.42 (the SecAgg+ peer of `mpcnet bench secagg`) pins protobuf<7, so it gets its own venv.
FLOWER_VENV := .venv-flower
FLOWER_STAMP := $(FLOWER_VENV)/.installed

$(FLOWER_STAMP):
	test -x $(FLOWER_VENV)/bin/python || $(PYTHON) -m venv $(FLOWER_VENV)
	$(FLOWER_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(FLOWER_VENV)/bin/python -m pip install --quiet flwr==1.42.0 numpy
	touch $(FLOWER_STAMP)

flower-venv: $(FLOWER_STAMP)

bench-secagg: $(STAMP) $(FLOWER_STAMP)
	$(PY) -m mpcnet.cli bench secagg --clients 100 --dim 100000 --dropout 0.1 --graph sparse

clean:
	rm -rf $(VENV) $(FLOWER_VENV) build *.egg-info .pytest_cache .hypothesis

# docker-compose.yml translated for `docker stack deploy -c stack.yml mpcnet` (README, "Docker Swarm").
stack.yml: docker-compose.yml scripts/compose_to_stack.py $(STAMP)
	$(PY) scripts/compose_to_stack.py docker-compose.yml > stack.yml

# The docker image, built offline (Debian base via mmdebstrap + docker import, wheels from PyPI): see scripts/build_image.sh.
image: $(STAMP)
	PYTHON=$(PY) scripts/build_image.sh
