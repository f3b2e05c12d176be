# Set-up and everyday commands. Everything a fresh machine needs is installed from here:
# Python 3.11 with pip and venv, gcc and make are the only prerequisites.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# numba's on-disk cache, kept inside the tree so CI and later runs reuse compiled kernels.
export NUMBA_CACHE_DIR ?= $(CURDIR)/.numba-cache

.PHONY: install demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $@

install: $(VENV)/.installed

# The main command: a synthetic city with known damage, mapped end to end, with its accuracy.
demo: $(VENV)/.installed
	$(VENV)/bin/ruinmap demo

test: $(VENV)/.installed
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy ruinmap

bench: $(VENV)/.installed
	$(VENV)/bin/ruinmap bench --size 4096

clean:
	rm -rf $(VENV) .numba-cache .pytest_cache .mypy_cache .ruff_cache build *.egg-info
