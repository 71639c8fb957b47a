# Everyday entry points. `make demo` and `make test` set up everything they
# need on a fresh machine (venv, Kafka, PostgreSQL, Redis).
VENV    ?= .venv
PYTHON  ?= python3
LLMOBS  := $(VENV)/bin/llmobs
PYTEST  := $(VENV)/bin/pytest

.PHONY: install services up down status demo test test-unit bench lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[workload,dev]'
	touch $@

services: install
	infra/stack.sh services

up: install
	infra/stack.sh up

down:
	infra/stack.sh down

status:
	infra/stack.sh status

# One tenant per demo run, so the summary shows this run's spans only.
demo: up
	@tenant=demo-$$(date +%s); \
	$(LLMOBS) workload --rounds 2 --tenant $$tenant && \
	echo "waiting for the pipeline to write tenant $$tenant's spans to PostgreSQL..." && \
	$(LLMOBS) summary --tenant $$tenant --since all --wait-s 120

test: services
	$(PYTEST) -q $(PYTEST_ARGS)

test-unit: install
	$(PYTEST) -q -m "not integration"

bench: services
	$(VENV)/bin/python -m bench

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy llmobs ingest streams sinks schemas

clean: down
	rm -rf .local
