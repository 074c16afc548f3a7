# Commands: `make run` (everything on the embedded defaults), `make test` (the whole suite), `make lint`.
# Dependencies come from the hash-pinned locks in requirements/ (`make lock` after changing them in pyproject.toml).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
PG_TEST_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test

# The locks are for Linux / CPython 3.11; uv resolves for that target wherever `make lock` runs.
# `make lock` keeps the current pins where it can; `make lock LOCK_FLAGS=--upgrade` takes the newest allowed.
LOCK_VENV := .venv-lock
UV_VERSION := 0.13.9
LOCK_FLAGS ?=
UV_COMPILE := $(LOCK_VENV)/bin/uv pip compile pyproject.toml --quiet --generate-hashes \
	--python-version 3.11 --python-platform x86_64-unknown-linux-gnu --custom-compile-command "make lock" $(LOCK_FLAGS)

.PHONY: run test lint lock install install-test install-dev demo bench clean

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Runtime dependencies exactly as locked, then the project itself without resolving anything.
$(VENV)/.installed: $(VENV)/bin/activate requirements/runtime.lock pyproject.toml
	$(PY) -m pip install --quiet --require-hashes -r requirements/runtime.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

# Runtime + the `test` and `dev` extras (pytest, ruff, mypy, import-linter, pre-commit), exactly as locked.
$(VENV)/.installed-dev: $(VENV)/.installed requirements/dev.lock
	$(PY) -m pip install --quiet --require-hashes -r requirements/dev.lock
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev
install-test: install-dev

run: install
	$(VENV)/bin/aftercare run --port $(PORT)

demo: install
	$(VENV)/bin/aftercare demo

# The suite twice: on SQLite, then on PostgreSQL (see README, "Tests").
test: install-dev
	$(PY) -m pytest
	@$(PY) tests/support/services.py postgres "$(PG_TEST_URL)"; rc=$$?; \
	if [ $$rc -eq 0 ]; then \
		echo "== PostgreSQL pass ($(PG_TEST_URL)) =="; \
		TEST_DATABASE_URL="$(PG_TEST_URL)" $(PY) -m pytest || exit 1; \
	elif [ $$rc -ne 1 ]; then exit $$rc; fi

# Style, types and layering (mypy and import-linter are configured in pyproject.toml).
# All four run even when one fails; the target fails if any did.
LINT_CMDS := "ruff check worker tests bench" "ruff format --check worker" "mypy" "lint-imports"
lint: install-dev
	@rc=0; for cmd in $(LINT_CMDS); do \
		echo "== $$cmd"; $(VENV)/bin/$$cmd || rc=1; \
	done; exit $$rc

bench: install-dev
	$(PY) bench/dispatch.py

# dev.lock first; runtime.lock is constrained by it so both install the same versions.
lock:
	test -x $(LOCK_VENV)/bin/uv || $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet "uv==$(UV_VERSION)"
	mkdir -p requirements
	$(UV_COMPILE) --extra test --extra dev -o requirements/dev.lock
	$(UV_COMPILE) --constraint requirements/dev.lock -o requirements/runtime.lock

clean:
	rm -rf $(VENV) $(LOCK_VENV) *.egg-info .pytest_cache
