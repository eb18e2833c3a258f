# Two commands do all the set-up on a fresh clone:
#   make demo   create .venv, install, decompose the example scenes with the shipped 3D model
#   make test   create .venv, install, run the test suite
# and CI (.ci/run) also runs
#   make test-portable   the test suite again under other float kernels (see below)
#   make wheel-test   build the wheel, install it into a fresh venv outside the checkout, use it
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CLI := $(VENV)/bin/inverse-air
DEMO ?= out/demo
WHEEL_TEST ?= $(shell mktemp -d -u /tmp/inverse-air-wheel-test.XXXXXX)

.PHONY: install demo test test-portable wheel-test bench clean-demo

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

# Float results differ in the last bits between CPUs (AVX2, AVX-512, AMX kernels), thread
# counts and batch sizes; tests compare them within tolerances (tests/conftest.py). This runs
# the suite once more on other kernels, so a test that compares floats exactly fails here and
# not first on someone else's machine: PyTorch's scalar kernels instead of its AVX-512/AVX2
# ones, oneDNN's SSE4.1 convolutions, MKL's reproducible (CBWR) mode (on AMD CPUs, the one MKL
# setting that changes its results), MKL limited to SSE4.2 (on Intel CPUs), one thread. Each
# of the first three changes decompose's positions by up to 1.5e-6 (docs/reproducibility.md).
PORTABLE_ENV := ATEN_CPU_CAPABILITY=default DNNL_MAX_CPU_ISA=SSE41 MKL_CBWR=COMPATIBLE \
	MKL_ENABLE_INSTRUCTIONS=SSE4_2 INVERSE_AIR_TEST_THREADS=1
test-portable: install
	$(PORTABLE_ENV) $(PY) -m pytest -q

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
