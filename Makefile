# Two commands on a fresh machine (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A CPU build of torch on CPU machines (this version installs from local disk here); on a GPU machine
# set TORCH_SPEC to the CUDA build you want, e.g. `make test TORCH_SPEC=torch==2.13.0+cu130`.
TORCH_SPEC ?= torch==2.13.0
DEMO_OUT ?= demo

REFERENCE ?= analysis/reference/cpu
FIGURES ?= figures/cpu

.PHONY: install demo figures test test-fast test-readme lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev,slurm,tracking]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m dnahnet.demo --out $(DEMO_OUT)

# Every figure, summary.md and fits.json of the committed CPU sweeps, from their logs alone (a few minutes).
figures: install
	$(PY) -m analysis --results $(REFERENCE)/*/results.csv --out $(FIGURES) --quiet

test: install
	$(PY) -m pytest -q

# Every README command, in order, in a fresh copy of the repository (tens of minutes on 2 cores).
test-readme: install
	DNAHNET_README_TEST=1 $(PY) -m pytest -q tests/test_readme.py -k every_readme_block

test-fast: install
	$(PY) -m pytest -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check dnahnet baselines analysis sweeps tests benchmarks

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
