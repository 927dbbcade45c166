# deqode — the only entry points a reader needs.
#
#   make book                  execute every notebook (cpu profile, about an hour on 2 cores) and build
#                              the site readers get in _build/html
#   make book PROFILE=smoke    the quick check (minutes): does the code run? -> _build/smoke/_build/html
#   make book PROFILE=paper    the papers' scale (GPU, datasets on disk) -> _build/paper/_build/html
#   make book PROFILE=paper CHAPTERS="homoode nag"   only these chapters (their datasets only, no
#                              benchmark run); DATA_ROOT=DIR reads the datasets from DIR, not data/
#   make rehearse              every paper experiment and notebook, 2 steps each, on stand-in data
#   make test                  ruff, unit tests, the smoke book under nbval, both rehearsals
#
# Setup (a .venv with the pinned dependencies) is part of every target.

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

.PHONY: preflight setup book results benchmarks test lint unit nbval pipeline-test rehearse-cpu \
	rehearse clean help

help:
	@sed -n '2,11p' Makefile

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	@touch $@

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

results: $(STAMP)
	$(PY) -m deqode.chapters plan --profile $(PROFILE) --chapters "$(CHAPTERS)" --out $(PLAN) \
		--targets $(PLAN_TARGETS) --executed $(EXEC_DIR) --make-params $(PLAN_PARAMS) \
		--data-root $(DATA_ROOT)
	@targets="$$(cat $(PLAN_TARGETS))"; test -z "$$targets" || \
		$(MAKE) --no-print-directory -j$(JOBS) $$targets

preflight: $(STAMP)
	$(PY) -m deqode preflight --profile $(PROFILE)

# PARAMS_<notebook> (from the plan): e.g. the datasets present when a chapter's are only in part.
$(EXEC_DIR)/%.ipynb: notebooks/%.ipynb $(LIBRARY) $(STAMP) $(wildcard $(PLAN))
	$(PY) -m deqode.book execute $< --profile $(PROFILE) --out $@ -p data_root $(DATA_ROOT) \
		$(PARAMS_$*)

# --- benchmarks ---------------------------------------------------------------------------------
benchmarks: $(BENCH_RESULTS)

$(BENCH_DIR)/%.md: benchmarks/bench_%.py $(LIBRARY) $(STAMP)
	$(PY) $< --profile $(PROFILE) --out $(BENCH_DIR)

# --- the book -----------------------------------------------------------------------------------
book: results
	@$(MAKE) --no-print-directory $(HTML_STAMP) SELECTED="$$(tr '\n' ' ' < $(PLAN_TARGETS))"
	@echo "book ($(PROFILE)): $(HTML)/index.html"

SELECTED ?= $(EXECUTED)
# A book of some chapters (CHAPTERS=...) runs no benchmark: it shows the tables there are.
BOOK_BENCH := $(if $(strip $(CHAPTERS)),,$(BENCH_RESULTS))
$(HTML_STAMP): $(SELECTED) $(wildcard $(PLAN)) $(BOOK_BENCH) $(BOOK_SOURCES) $(STAMP)
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

nbval: results
	$(VENV)/bin/pytest -q -p no:cacheprovider -n $(JOBS) --dist loadfile --nbval-lax \
		--nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg $(EXECUTED)

pipeline-test: book
	DEQODE_BUILT_PROFILE=$(PROFILE) $(VENV)/bin/pytest -q tests/test_build.py

# --- rehearsal of the cpu profile -----------------------------------------------------------------
# Every notebook with profile cpu, every training loop capped at 2 steps (DEQODE_REHEARSAL_STEPS), in
# a results folder of its own: a broken cpu configuration fails here in minutes. Not results.
REHEARSAL := _build/rehearsal
REHEARSED := $(patsubst notebooks/%.ipynb,$(REHEARSAL)/cpu/%.ipynb,$(NOTEBOOKS))

rehearse-cpu: $(STAMP)
	@rm -rf $(REHEARSAL)
	@$(MAKE) --no-print-directory -j$(JOBS) $(REHEARSED)
	$(PY) -m deqode.book check-claims --profile cpu --executed $(REHEARSAL)/cpu \
		--results $(REHEARSAL)/results

$(REHEARSAL)/cpu/%.ipynb: notebooks/%.ipynb $(STAMP)
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

rehearse: $(STAMP)
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
	@$(MAKE) --no-print-directory rehearse-cpu
	@$(MAKE) --no-print-directory rehearse
	@echo "make test: all checks passed (smoke book, cpu and paper rehearsals)"

clean:
	rm -rf _build results
