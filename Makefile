# Set-up and everyday commands. Everything a fresh machine needs is installed from here:
# Python 3.11 with pip and venv, gcc and make are the only prerequisites.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# numba's on-disk cache, kept inside the tree so CI and later runs reuse compiled kernels.
export NUMBA_CACHE_DIR ?= $(CURDIR)/.numba-cache

.PHONY: install browser demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $@

install: $(VENV)/.installed

# The main command: a synthetic city with known damage, mapped end to end, with its accuracy.
demo: $(VENV)/.installed
	$(VENV)/bin/ruinmap demo

# The results-page test drives a real headless Chromium: Debian's chromium and chromedriver,
# installed here when this is a Debian machine we may install on; otherwise that test skips.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    { apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || \
	      { apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; }; }; } || \
	  echo "no chromium/chromedriver: the results-page browser test will be skipped"

test: $(VENV)/.installed browser
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy ruinmap

bench: $(VENV)/.installed
	$(VENV)/bin/ruinmap bench --size 4096

clean:
	rm -rf $(VENV) .numba-cache .pytest_cache .mypy_cache .ruff_cache build *.egg-info
