# Two commands do all the set-up on a fresh clone:
#   make demo   create .venv, install, render the example scenes and small 3D and 2D datasets
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
	mkdir -p $(DEMO)/scenes
	for scene in scenes/*.json; do \
	  $(CLI) render-scene $$scene -o $(DEMO)/scenes/$$(basename $$scene .json).png || exit 1; \
	done
	$(CLI) render-dataset $(DEMO)/data3d --model 3d --num 200 --counts 0,1,2,3 --seed 0
	$(CLI) render-dataset $(DEMO)/data2d --model 2d --num 1000 --counts 0,1,2 --seed 0
	@echo "demo: renders in $(DEMO)/scenes; datasets (with preview.png) in $(DEMO)/data3d and $(DEMO)/data2d"

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/render.py

clean-demo:
	rm -rf $(DEMO)
