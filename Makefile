# Set-up and everyday commands. Everything a fresh machine needs is installed from here:
# Python 3.11 with pip and venv, gcc and make are the only prerequisites.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# numba's on-disk cache, kept inside the tree so CI and later runs reuse compiled kernels.
export NUMBA_CACHE_DIR ?= $(CURDIR)/.numba-cache

.PHONY: install browser demo test lint bench clean vendor-maplibre

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

# MapLibre GL JS for the results page, from the npm registry (`npm pack`), into the package's
# static files. The committed copy is what the service serves (CI needs no network); this
# target only refreshes it. 5.x: the last line with a single-file UMD build (6.x ships ES modules).
MAPLIBRE_VERSION ?= 5.24.1
MAPLIBRE_DIR := ruinmap/cluster/service/static/vendor/maplibre-gl
vendor-maplibre:
	@tmp=$$(mktemp -d) && cd $$tmp && npm pack --silent maplibre-gl@$(MAPLIBRE_VERSION) >/dev/null && \
	  tar xzf maplibre-gl-$(MAPLIBRE_VERSION).tgz && cd $(CURDIR) && mkdir -p $(MAPLIBRE_DIR) && \
	  cp $$tmp/package/dist/maplibre-gl.js $$tmp/package/dist/maplibre-gl.css \
	     $$tmp/package/LICENSE.txt $(MAPLIBRE_DIR)/ && \
	  { echo "maplibre-gl $(MAPLIBRE_VERSION) from the npm registry (npm pack maplibre-gl@$(MAPLIBRE_VERSION))"; \
	    echo "tarball: https://registry.npmjs.org/maplibre-gl/-/maplibre-gl-$(MAPLIBRE_VERSION).tgz"; \
	    echo "integrity: $$(npm view maplibre-gl@$(MAPLIBRE_VERSION) dist.integrity)"; \
	    echo "licence: BSD-3-Clause (LICENSE.txt)"; \
	    echo "files: dist/maplibre-gl.js, dist/maplibre-gl.css, LICENSE.txt, unchanged"; \
	    echo "sha256:"; cd $(MAPLIBRE_DIR) && sha256sum maplibre-gl.js maplibre-gl.css LICENSE.txt; \
	  } > $(MAPLIBRE_DIR)/PROVENANCE && rm -rf $$tmp

# Two test processes (pytest-xdist), each given whole files (`loadfile`): a file's module
# fixtures are set up once, and the session's cluster, jobs and services once per process.
TEST_WORKERS ?= 2
test: $(VENV)/.installed browser
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy ruinmap

bench: $(VENV)/.installed
	$(VENV)/bin/ruinmap bench --size 4096

clean:
	rm -rf $(VENV) .numba-cache .pytest_cache .mypy_cache .ruff_cache build *.egg-info
