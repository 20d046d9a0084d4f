# Two commands: `make run` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint demo-data system-deps bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch/torchvision are pinned in pyproject.toml; pip takes them from the local disk.
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo-data: $(STAMP)
	$(PY) -m trainyard.cli demo-data

run: demo-data
	$(PY) app.py $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check trainyard tests bench app.py
	$(VENV)/bin/ruff format --check trainyard tests bench app.py
	$(VENV)/bin/mypy

# Debian's chromium drives the browser tests (never `playwright install`: no downloads).
system-deps:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "browser tests need Debian's chromium: sudo apt-get install chromium"; fi; }

test: lint demo-data system-deps
	$(PY) -m pytest -q -ra

bench: demo-data
	$(PY) -m pip install -q -e '.[test,bench]'
	$(PY) bench/trainer.py --cifar ../shared/datasets/cifar10
	$(PY) bench/control_plane.py
	$(PY) bench/control_plane_ray.py

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
