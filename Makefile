# Postman Email. `make run` starts the whole service locally; `make test` runs the test suite.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := run

PYTHON ?= python3
VENV := .venv
# Recipes and honcho's children (gunicorn, manage.py, the worker) use the venv's programs.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: run test lint bench

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Stamps: reinstall only when a requirements file changes.
$(VENV)/.installed: requirements.txt | $(VENV)/bin/python
	python -m pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(VENV)/bin/python
	python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	python manage.py migrate --noinput --verbosity 0
	key=$$(python manage.py create_api_key --email demo@demo.gov.sg --label "Demo key" | tail -n 1); \
	scripts/demo-banner "$$key"
	exec honcho start -f Procfile

test: export DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postman_email
test: $(VENV)/.installed-dev
	scripts/services-up
	status=0; python -m pytest $(PYTEST_ARGS) || status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest ran no tests (exit 5): failing" >&2; fi; \
	exit $$status

lint: $(VENV)/.installed-dev
	ruff check .
	ruff format --check .

# `make bench` measures the running service against this machine's limits (docs/performance.md);
# `make bench QUICK=1` runs it scaled down (CI's smoke run); BENCH_ARGS passes more options.
$(VENV)/.installed-bench: requirements.txt requirements-dev.txt bench/requirements.txt | $(VENV)/bin/python
	python -m pip install -q --disable-pip-version-check -r bench/requirements.txt
	touch $@ $(VENV)/.installed $(VENV)/.installed-dev

bench: $(VENV)/.installed-bench
	scripts/services-up
	bench/install-tools
	python bench/run.py $(if $(filter 1 true yes,$(QUICK)),--quick) $(BENCH_ARGS)
