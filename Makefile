# The book's commands. The two a new reader needs: `make book` (build the website) and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
MATHJAX := _vendor/mathjax/tex-chtml.js
SMOKE_SITE := _build/smoke/html
NBVAL_DIR := _build/nbval
# The runner runs where there is no .venv (a lent GPU machine: python3, torch, no Jupyter); here it uses .venv.
RUNNER_PY = $(if $(wildcard $(PY)),$(PY),python3)

.PHONY: help setup data export book test lint nbval-outputs bench bench-quality results runtime execute import \
	publish clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -e 's/:.*## /\t/' | expand -t 16

setup: $(INSTALLED) $(MATHJAX)  ## create .venv with the pinned packages, install `book` (editable), fetch MathJax

$(INSTALLED): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

$(MATHJAX): | $(INSTALLED)
	$(PY) -m tools.site mathjax

data: setup  ## find or fetch MNIST and Fashion-MNIST into data/ and verify their SHA-256
	$(PY) -m book.data

export: setup  ## regenerate book/ from the chapters' exported cells
	$(PY) -m tools.export

book: setup data  ## execute every chapter (cached) into the website _build/html; BOOK_PROFILE=gpu renders editions/gpu
	$(PY) -m tools.site build --out _build/html

lint: setup
	$(PY) -m ruff check book tools tests benchmarks

test: setup data  ## lint, export check, unit tests, nbval over the chapters (smoke), browser test of the site
	$(PY) -m ruff check book tools tests benchmarks
	$(PY) -m tools.export --check
	$(PY) -m tools.site build --profile smoke --out $(SMOKE_SITE)
	$(PY) tests/nbval_harness.py prepare --out $(NBVAL_DIR)
	BOOK_PROFILE=smoke BOOK_BUILD=1 BOOK_SITE=$(SMOKE_SITE) $(PY) -m pytest tests $(NBVAL_DIR) \
		--nbval-lax --nbval-current-env --nbval-cell-timeout=600 -p no:cacheprovider

nbval-outputs: setup data  ## re-record the outputs nbval checks (CHAPTERS=chapters/01_x.md for some); review the diff
	BOOK_PROFILE=smoke BOOK_BUILD=1 $(PY) tests/nbval_harness.py record $(CHAPTERS)

bench: setup  ## sampler overhead, training throughput per precision, chapter times (see README)
	$(PY) -m benchmarks.run

bench-quality: setup data  ## sample quality per training minute of chapter 3's U-Net, with and without each kept lever
	$(PY) -m benchmarks.quality

results: setup  ## print the headline numbers the latest builds recorded (_build/results/<profile>.json)
	$(PY) -m book.results

runtime: setup  ## download the runner's wheels (kernel, nbclient, jupytext; CPython 3.12) into _build/runtime/wheels
	$(PY) -m tools.runtime

execute:  ## execute every chapter into OUT=<folder> (notebooks, manifest.json, results); needs no Jupyter Book
	@test -n "$(OUT)" || { echo "usage: make execute OUT=<folder> [BOOK_PROFILE=gpu]"; exit 2; }
	$(RUNNER_PY) -m tools.execute --out "$(OUT)"

import: setup  ## copy a `make execute` folder (FROM=<folder>) into editions/<profile>/, refusing stale chapters
	@test -n "$(FROM)" || { echo "usage: make import FROM=<folder>"; exit 2; }
	$(PY) -m tools.edition import "$(FROM)"

publish: setup data  ## push the gpu edition to gh-pages if it matches the chapters (EDITION=cpu: the cpu edition)
	$(PY) -m tools.site publish $(if $(EDITION),--edition $(EDITION))

clean:  ## remove builds, caches and trained models (keeps .venv and data/)
	rm -rf _build .cache
