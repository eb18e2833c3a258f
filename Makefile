# Two commands do all the set-up on a fresh clone:
#   make demo   create .venv, install, decompose the example scenes with the shipped 3D model
#   make test   create .venv, install, run the test suite
# and CI (.ci/run) also runs
#   make wheel-test   build the wheel, install it into a fresh venv outside the checkout, use it
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CLI := $(VENV)/bin/inverse-air
DEMO ?= out/demo
WHEEL_TEST ?= $(shell mktemp -d -u /tmp/inverse-air-wheel-test.XXXXXX)

.PHONY: install demo test wheel-test bench clean-demo

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,tensorboard]'
	touch $@

demo: install
	mkdir -p $(DEMO)
	$(CLI) decompose scenes/ --overlay $(DEMO)/decompose.png
	@echo "demo: the picture is $(DEMO)/decompose.png (input, reconstruction, objects outlined by step)"

test: install
	$(PY) -m pytest -q

# The wheel as a user gets it: built from this checkout, installed (without its dependencies,
# which are the test venv's torch and PyTorch3D) into a fresh venv outside the checkout, and
# used from another directory: render-scene, decompose with both shipped models, a tiny 3D and
# 2D render-dataset, the Python API. Prints the wheel's and the installed package's sizes.
wheel-test: install
	$(PY) tools/wheel_test.py --python $(PY) --work $(WHEEL_TEST)

bench: install
	$(PY) benchmarks/render.py

clean-demo:
	rm -rf $(DEMO)
