# privacy-pipeline: `make run` runs the main job, `make test` the tests. Both create .venv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SHARED ?= ../shared

.PHONY: install run test test-fast eval bench clean browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[local,test,dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/privacy-pipeline run $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not broker and not slow" $(PYTEST_ARGS)

eval: $(STAMP)
	$(BIN)/privacy-pipeline eval $(ARGS)

bench: $(STAMP)
	$(BIN)/privacy-pipeline bench $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info

# Headless Chromium for the dashboard browser test (Debian packages; needs root).
browser:
	command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver)
