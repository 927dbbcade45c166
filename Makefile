# deqode — the only entry points a reader needs.
#
#   make book                  execute every notebook (cpu profile, about an hour on 2 cores) and build
#                              the site readers get in _build/html
#   make book PROFILE=smoke    the quick check (minutes): does the code run? -> _build/smoke/_build/html
#   make book PROFILE=paper    the papers' scale (GPU, datasets on disk) -> _build/paper/_build/html
#   make book PROFILE=paper CHAPTERS="homoode nag"   only these chapters (their datasets only, no
#                              benchmark run); DATA_ROOT=DIR reads the datasets from DIR, not data/
#   make rehearse              every paper experiment and notebook, 2 steps each, on stand-in data
#   make test                  ruff, unit tests, the smoke book under nbval and in Chromium, rehearsals
#   make lock                  after changing pyproject.toml's dependencies: write requirements/*.txt
#
# Setup (a .venv from the lock: book targets the book's, test targets the dev one) is part of every
# target.

PROFILES := smoke cpu paper
PROFILE ?= cpu
ifeq ($(filter $(PROFILE),$(PROFILES)),)
$(error unknown PROFILE '$(PROFILE)'; valid profiles: $(PROFILES))
endif
ifneq ($(words $(PROFILE)),1)
$(error PROFILE must be one word; valid profiles: $(PROFILES))
endif

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.deqode-installed

EXEC_DIR := _build/executed/$(PROFILE)
STAGE := _build/site/$(PROFILE)
# cpu (the site readers get) renders to _build/html; other profiles to _build/<profile>/_build/html
ifeq ($(PROFILE),cpu)
OUTPUT := .
else
OUTPUT := _build/$(PROFILE)
endif
HTML := $(OUTPUT)/_build/html
HTML_STAMP := $(HTML)/.deqode-built

NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))
EXECUTED := $(patsubst notebooks/%.ipynb,$(EXEC_DIR)/%.ipynb,$(NOTEBOOKS))
LIBRARY := $(shell find src -name '*.py' -not -path '*/__pycache__/*') $(wildcard data/reference/*.csv)
BOOK_SOURCES := _config.yml $(shell find book -type f)
BENCHMARKS := $(sort $(wildcard benchmarks/bench_*.py))
BENCH_DIR := results/$(PROFILE)/benchmarks
BENCH_RESULTS := $(patsubst benchmarks/bench_%.py,$(BENCH_DIR)/%.md,$(BENCHMARKS))

JB_FLAGS := -W -n --keep-going

# Smoke and cpu notebooks run side by side, one torch thread each (small models run fastest on one
# thread, and two threads per process oversubscribe the cores); paper runs them one at a time.
ifneq ($(filter $(PROFILE),smoke cpu),)
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
export DEQODE_THREADS ?= 1
else
JOBS ?= 1
endif

.PHONY: preflight setup setup-book install-book-lock lock measure-install book results benchmarks \
	test lint unit nbval pipeline-test rehearse-cpu rehearse clean help site-test chromium

help:
	@sed -n '2,15p' Makefile

# The venv installs a lock (requirements/, written by `make lock` from pyproject.toml's ranges):
# every package pinned and hashed, then deqode itself as an editable install. `make setup` installs
# the dev lock (everything), `make setup-book` only what the book needs (no test tools): the book's
# targets need only that, the test targets the dev lock. `make measure-install` times the book's
# install in a fresh clone and measures its venv, for the reproducibility page.
BOOK_STAMP := $(VENV)/.deqode-book-installed
PIP_INSTALL := $(PY) -m pip install --quiet --disable-pip-version-check

setup: $(STAMP)
setup-book: $(BOOK_STAMP)

define install_lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --require-hashes -r requirements/$(1).txt
	$(PIP_INSTALL) --no-deps --no-build-isolation -e .
endef

$(STAMP): requirements/dev.txt pyproject.toml
	$(call install_lock,dev)
	@touch $@

# the dev lock holds the book's at the same versions: a venv set up for dev is set up for the book
$(BOOK_STAMP): requirements/book.txt pyproject.toml
	@if test $(STAMP) -nt requirements/dev.txt -a $(STAMP) -nt pyproject.toml; then :; else \
		$(MAKE) --no-print-directory install-book-lock; fi
	@touch $@

install-book-lock:
	$(call install_lock,book)

LOCK_TOOLS := _build/lock-tools
lock:
	@test -x $(LOCK_TOOLS)/bin/pip-compile || { $(PYTHON) -m venv $(LOCK_TOOLS) && \
		$(LOCK_TOOLS)/bin/pip install --quiet --disable-pip-version-check pip-tools==7.6.2; }
	$(LOCK_TOOLS)/bin/python src/deqode/lock.py compile --pip-compile $(LOCK_TOOLS)/bin/pip-compile

measure-install:
	nice $(PYTHON) src/deqode/lock.py measure --target setup-book --python $(PYTHON)

# --- notebooks ----------------------------------------------------------------------------------
# The plan (python -m deqode.chapters plan) picks the chapters: those of CHAPTERS, whose datasets
# must be on disk, or by default every chapter whose datasets are (the others are listed on the
# book's front page, with the reason). A chapter is a package of src/deqode/chapters; its notebooks
# are deqode.book.build.CHAPTER_NOTEBOOKS. Only the planned notebooks are executed.
CHAPTERS ?=
DATA_ROOT ?= data
PLAN_DIR := _build/plan
PLAN := $(PLAN_DIR)/$(PROFILE).json
PLAN_TARGETS := $(PLAN_DIR)/$(PROFILE).targets
PLAN_PARAMS := $(PLAN_DIR)/$(PROFILE).mk
-include $(PLAN_PARAMS)

results: $(BOOK_STAMP)
	$(PY) -m deqode.chapters plan --profile $(PROFILE) --chapters "$(CHAPTERS)" --out $(PLAN) \
		--targets $(PLAN_TARGETS) --executed $(EXEC_DIR) --make-params $(PLAN_PARAMS) \
		--data-root $(DATA_ROOT)
	@targets="$$(cat $(PLAN_TARGETS))"; test -z "$$targets" || \
		$(MAKE) --no-print-directory -j$(JOBS) $$targets

preflight: $(BOOK_STAMP)
	$(PY) -m deqode preflight --profile $(PROFILE)

# PARAMS_<notebook> (from the plan): e.g. the datasets present when a chapter's are only in part.
$(EXEC_DIR)/%.ipynb: notebooks/%.ipynb $(LIBRARY) $(BOOK_STAMP) $(wildcard $(PLAN))
	$(PY) -m deqode.book execute $< --profile $(PROFILE) --out $@ -p data_root $(DATA_ROOT) \
		$(PARAMS_$*)

# --- benchmarks ---------------------------------------------------------------------------------
benchmarks: $(BENCH_RESULTS)

$(BENCH_DIR)/%.md: benchmarks/bench_%.py $(LIBRARY) $(BOOK_STAMP)
	$(PY) $< --profile $(PROFILE) --out $(BENCH_DIR)

# --- the book -----------------------------------------------------------------------------------
# The site carries its own MathJax: the pinned npm release, its hash checked, unpacked into
# book/_static/mathjax (not in git). MATHJAX_TARBALL=FILE uses a local mathjax-<version>.tgz.
MATHJAX_DIR := book/_static/mathjax
MATHJAX := $(MATHJAX_DIR)/VERSION
MATHJAX_TARBALL ?=

$(MATHJAX): src/deqode/book/mathjax.py | $(BOOK_STAMP)
	$(PY) -m deqode.book.mathjax --out $(MATHJAX_DIR) $(if $(MATHJAX_TARBALL),--tarball $(MATHJAX_TARBALL))

book: results
	@$(MAKE) --no-print-directory $(HTML_STAMP) SELECTED="$$(tr '\n' ' ' < $(PLAN_TARGETS))"
	@echo "book ($(PROFILE)): $(HTML)/index.html"

SELECTED ?= $(EXECUTED)
# A book of some chapters (CHAPTERS=...) runs no benchmark: it shows the tables there are.
BOOK_BENCH := $(if $(strip $(CHAPTERS)),,$(BENCH_RESULTS))
$(HTML_STAMP): $(SELECTED) $(wildcard $(PLAN)) $(BOOK_BENCH) $(BOOK_SOURCES) $(MATHJAX) $(BOOK_STAMP)
	$(PY) -m deqode.book assemble --profile $(PROFILE) --stage $(STAGE) --executed $(EXEC_DIR) \
		--plan $(PLAN)
	$(VENV)/bin/jupyter-book build $(STAGE) --toc $(abspath $(STAGE))/book/_toc.yml \
		--config $(abspath $(STAGE))/_config.yml --path-output $(OUTPUT) $(JB_FLAGS)
	@touch $@

# --- tests --------------------------------------------------------------------------------------
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks notebooks

unit: $(STAMP)
	$(VENV)/bin/pytest tests -q -n $(JOBS) --dist loadfile

nbval: results $(STAMP)
	$(VENV)/bin/pytest -q -p no:cacheprovider -n $(JOBS) --dist loadfile --nbval-lax \
		--nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg $(EXECUTED)

pipeline-test: book $(STAMP)
	DEQODE_BUILT_PROFILE=$(PROFILE) $(VENV)/bin/pytest -q tests/test_build.py

# Every page of the built site in headless Chromium with the network off (typeset math, images,
# console, links); one full-page screenshot per chapter in _build/screenshots.
CHROMIUM ?= /usr/bin/chromium
SCREENSHOTS := _build/screenshots

site-test: book chromium
	DEQODE_SITE_HTML=$(HTML) DEQODE_SCREENSHOTS=$(SCREENSHOTS) DEQODE_CHROMIUM=$(CHROMIUM) \
		$(VENV)/bin/pytest -q -p no:cacheprovider -s tests/test_site_browser.py

# Installed with apt-get when missing and make runs as root; otherwise it says how.
chromium:
	@command -v $(CHROMIUM) >/dev/null || { test "$$(id -u)" = 0 && command -v apt-get >/dev/null \
		&& apt-get update -qq && apt-get install -y -qq chromium; } || { echo "$(CHROMIUM_HINT)" >&2; \
		exit 1; }
CHROMIUM_HINT := make site-test needs Chromium at $(CHROMIUM): sudo apt-get install -y chromium \
	(Debian), or make site-test CHROMIUM=/path/to/chromium

# --- rehearsal of the cpu profile -----------------------------------------------------------------
# Every notebook with profile cpu, every training loop capped at 2 steps (DEQODE_REHEARSAL_STEPS), in
# a results folder of its own: a broken cpu configuration fails here in minutes. Not results.
REHEARSAL := _build/rehearsal
REHEARSED := $(patsubst notebooks/%.ipynb,$(REHEARSAL)/cpu/%.ipynb,$(NOTEBOOKS))

rehearse-cpu: $(BOOK_STAMP)
	@rm -rf $(REHEARSAL)
	@$(MAKE) --no-print-directory -j$(JOBS) $(REHEARSED)
	$(PY) -m deqode.book check-claims --profile cpu --executed $(REHEARSAL)/cpu \
		--results $(REHEARSAL)/results

$(REHEARSAL)/cpu/%.ipynb: notebooks/%.ipynb $(BOOK_STAMP)
	DEQODE_REHEARSAL_STEPS=2 DEQODE_THREADS=1 $(PY) -m deqode.book execute $< --profile cpu \
		--out $@ -p results_dir $(REHEARSAL)/results

# --- rehearsal of the paper profile ---------------------------------------------------------------
# Stand-in datasets (random pixels in each set's real on-disk format) in $(REHEARSAL_PAPER)/data;
# every experiment of `python -m deqode list --profile paper` at its paper configuration, capped
# only in optimiser steps and evaluation batches (2) and batch size (2: a paper-size model on a
# batch of 128 takes minutes per step on a CPU core), two worker processes running many
# experiments each; then every notebook under --profile paper reading those runs, and the book,
# labelled "rehearsal: not results". Runtimes: $(REHEARSAL_PAPER)/timings.md.
REHEARSAL_PAPER := _build/rehearsal-paper
REHEARSAL_WORKERS ?= 2

rehearse: $(BOOK_STAMP) $(MATHJAX)
	@rm -rf $(REHEARSAL_PAPER)
	DEQODE_REHEARSAL_STEPS=2 DEQODE_REHEARSAL_BATCH=2 DEQODE_THREADS=1 $(PY) -m deqode.rehearse \
		--profile paper --out $(REHEARSAL_PAPER) --workers $(REHEARSAL_WORKERS)

# make test always checks the smoke book (minutes); the cpu and paper profiles are rehearsed.
test: $(STAMP)
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory book PROFILE=smoke
	@$(MAKE) --no-print-directory nbval PROFILE=smoke
	@$(MAKE) --no-print-directory pipeline-test PROFILE=smoke
	@$(MAKE) --no-print-directory site-test PROFILE=smoke
	@$(MAKE) --no-print-directory rehearse-cpu
	@$(MAKE) --no-print-directory rehearse
	@echo "make test: all checks passed (smoke book, cpu and paper rehearsals)"

clean:
	rm -rf _build results
