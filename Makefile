# Attention, from scratch. `make book` and `make test` are the two commands; the rest are building blocks.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(abspath $(VENV))/bin
STAMP  := $(VENV)/installed-requirements.lock
# Jupyter, IPython and matplotlib write under $$HOME unless told otherwise: keep them in the build tree.
HOMEDIR := $(CURDIR)/_build/home
export JUPYTER_CONFIG_DIR   := $(HOMEDIR)/jupyter-config
export JUPYTER_DATA_DIR     := $(HOMEDIR)/jupyter-data
export JUPYTER_RUNTIME_DIR  := $(HOMEDIR)/jupyter-runtime
export IPYTHONDIR           := $(HOMEDIR)/ipython
export MPLCONFIGDIR         := $(HOMEDIR)/matplotlib
export PYDEVD_DISABLE_FILE_VALIDATION := 1
export PATH := $(BIN):$(PATH)
# The course package from this checkout (also installed editable, for Jupyter started by hand).
export PYTHONPATH := $(CURDIR)

ASSIGNMENTS := $(notdir $(wildcard solutions/*))

.PHONY: help venv book test test-fast lint format exercises normalize lock clean system-deps browser-deps student-repo bench grade collect export-grades similarity bench-grading

help:
	@echo "make book   - set up .venv if needed, execute every page, build the site into _build/html"
	@echo "make test   - set up .venv if needed, run every test (book build included)"
	@echo "make test-fast - the tests that need no root, browser, sandbox or database, and are quick (CONTRIBUTING.md)"
	@echo "make lint   - ruff: lint and format check (make format rewrites); mypy: types of the grader"
	@echo "make exercises - regenerate exercises/ from solutions/ with nbgrader"
	@echo "make normalize - strip outputs and fix cell ids of every source notebook"
	@echo "make lock   - re-resolve requirements.txt into requirements.lock"
	@echo "make student-repo DEST=<dir> - the public student repository (no solutions/, tests/, grading state)"
	@echo "make system-deps  - apt-get install chromium, bubblewrap, postgresql when missing (root or sudo)"
	@echo "make browser-deps - axe-core from the npm registry into _build/node (for the browser tests)"
	@echo "make bench  - measure attention implementations and the course (book build, grading) into benchmarks/results.json"
	@echo "make collect ASSIGNMENT=<name> ZIP=<lms-download.zip> - place a Canvas/Moodle bulk download into submitted/"
	@echo "make grade ASSIGNMENT=<name> [JOBS=<n>] - grade every submission (sandboxed, parallel), feedback, grades.csv"
	@echo "make export-grades [ASSIGNMENT=<name>] - rewrite grades.csv from the gradebook (and that assignment's Canvas, Moodle, per-question files)"
	@echo "make similarity ASSIGNMENT=<name> - the most similar pairs of answers, side by side (similarity/<name>.html)"
	@echo "make bench-grading - time plain nbgrader autograde against make grade on a synthetic class"

# The environment is (re)installed when requirements.lock differs from the copy kept inside it.
venv:
	@mkdir -p $(HOMEDIR)
	@if ! cmp -s requirements.lock $(STAMP); then \
	  set -e; \
	  test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); \
	  echo "Installing requirements.lock into $(VENV) (a few minutes the first time)"; \
	  $(BIN)/python -m pip install --quiet --no-deps -r requirements.lock; \
	  $(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e . 2>/dev/null; \
	  cp requirements.lock $(STAMP); \
	fi

# The execution cache keys each page on its own code only; pages also run the course package (plots, diagrams),
# so the cache is emptied whenever that package's code changed since the last build (no page shows a stale figure).
book: venv
	@sha=$$(cat $$(ls attention_course/*.py | sort) | sha256sum | cut -c1-16); mkdir -p _build; \
	if [ "$$(cat _build/.course-code 2>/dev/null)" != "$$sha" ]; then rm -rf _build/.jupyter_cache; fi; \
	echo "$$sha" > _build/.course-code
	$(BIN)/jupyter-book build . --builder html -W -n --keep-going

test: venv system-deps browser-deps
	$(BIN)/python -m pytest tests

# Markers (pyproject.toml): slow, browser, sandbox, postgres. What is left runs in a few minutes without root.
test-fast: venv
	$(BIN)/python -m pytest -q -m "not slow and not browser and not sandbox and not postgres" tests

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

exercises: venv
	@for a in $(ASSIGNMENTS); do \
	  $(BIN)/nbgrader generate_assignment "$$a" --force --CourseDirectory.db_url=sqlite:///$(HOMEDIR)/generate.db || exit 1; \
	done

normalize: venv
	$(BIN)/python -m attention_course.notebooks normalize $(wildcard solutions/*/*.ipynb) $(wildcard book/*/*.ipynb)

# The Performance page renders benchmarks/results.json; the book build never runs this. BENCH_FLAGS=--skip-book etc.
bench: venv
	$(BIN)/python benchmarks/bench.py $(BENCH_FLAGS)

# Re-resolve the requirements (needs network access to the registries) and record every version.
lock:
	rm -rf _build/lock-venv && $(PYTHON) -m venv _build/lock-venv
	_build/lock-venv/bin/python -m pip install --quiet --upgrade pip setuptools wheel
	_build/lock-venv/bin/python -m pip install --quiet -r requirements.txt
	_build/lock-venv/bin/python -m pip install --quiet --no-deps -r requirements-d2l.txt
	( echo "# Generated by 'make lock' from requirements.txt + requirements-d2l.txt (pip freeze --all). Do not edit."; \
	  _build/lock-venv/bin/python -m pip freeze --all --exclude-editable ) > requirements.lock

clean:
	rm -rf _build

# Programs the tests drive: Debian's Chromium (browser tests), bubblewrap (grading sandbox), PostgreSQL (shared
# gradebook), npm (fetches axe-core). Each package is installed with apt-get only when its program is missing
# (package:program); needs root or sudo.
SYSTEM_PACKAGES := chromium:/usr/bin/chromium bubblewrap:bwrap postgresql:pg_ctlcluster npm:npm
system-deps:
	@missing=""; for pair in $(SYSTEM_PACKAGES); do \
	  command -v "$${pair#*:}" >/dev/null || missing="$$missing $${pair%%:*}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo="sudo"; \
	  echo "Installing$$missing with apt-get"; \
	  $$sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q $$missing; \
	fi

# axe-core (accessibility rules) from the npm registry; the browser tests inject axe.min.js into every page.
AXE := _build/node/node_modules/axe-core/axe.min.js
browser-deps: $(AXE)
$(AXE):
	npm install --prefix _build/node --no-save --no-audit --no-fund --loglevel=error axe-core@4

# The public student repository: everything but solutions/, tests/, tools/ and grading state, checked for leaks.
student-repo: venv
	@test -n "$(DEST)" || { echo "usage: make student-repo DEST=<dir>"; exit 2; }
	$(BIN)/python -m tools.student_repo "$(DEST)"

# Grading (attention_course/grading/README.md). COURSE: the course root (default: this checkout).
COURSE ?= .
JOBS ?= 0
GRADE_FLAGS ?=
DASK_SCHEDULER ?=
JUDGE_ADDRESS ?=
grade: venv
	@test -n "$(ASSIGNMENT)" || { echo "usage: make grade ASSIGNMENT=<name> [JOBS=<n>] [DASK_SCHEDULER=tls://host:8786]"; exit 2; }
	$(BIN)/python -m attention_course.grading --course "$(COURSE)" grade "$(ASSIGNMENT)" --jobs $(JOBS) \
		$(if $(DASK_SCHEDULER),--scheduler "$(DASK_SCHEDULER)") $(if $(JUDGE_ADDRESS),--judge-address "$(JUDGE_ADDRESS)") $(GRADE_FLAGS)

collect: venv
	@test -n "$(ASSIGNMENT)" -a -n "$(ZIP)" || { echo "usage: make collect ASSIGNMENT=<name> ZIP=<lms-download.zip>"; exit 2; }
	$(BIN)/python -m attention_course.grading --course "$(COURSE)" collect "$(ASSIGNMENT)" "$(ZIP)"

similarity: venv
	@test -n "$(ASSIGNMENT)" || { echo "usage: make similarity ASSIGNMENT=<name>"; exit 2; }
	$(BIN)/python -m attention_course.grading --course "$(COURSE)" similarity "$(ASSIGNMENT)"

export-grades: venv
	$(BIN)/python -m attention_course.grading --course "$(COURSE)" export $(if $(ASSIGNMENT),--assignment "$(ASSIGNMENT)")

bench-grading: venv
	$(BIN)/python benchmarks/grading.py $(BENCH_FLAGS)
