# Two commands do all the set-up on a fresh clone:
#   make demo   create .venv, install, decompose the example scenes with the shipped 3D model
#   make test   create .venv, install, run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CLI := $(VENV)/bin/inverse-air
DEMO ?= out/demo

.PHONY: install demo test bench clean-demo

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

demo: install
	mkdir -p $(DEMO)
	$(CLI) decompose scenes/ --overlay $(DEMO)/decompose.png
	@echo "demo: the picture is $(DEMO)/decompose.png (input, reconstruction, objects outlined by step)"

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/render.py

clean-demo:
	rm -rf $(DEMO)
