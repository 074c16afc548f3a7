# Two commands: `make run` (everything on the embedded defaults) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PG_TEST_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test

.PHONY: run test install install-test demo bench clean

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(VENV)/bin/activate pyproject.toml
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

run: install
	$(VENV)/bin/aftercare run

demo: install
	$(VENV)/bin/aftercare demo

# The suite twice: on SQLite, then on PostgreSQL (see README, "Tests").
test: install-test
	$(PY) -m pytest
	@$(PY) tests/services.py postgres "$(PG_TEST_URL)"; rc=$$?; \
	if [ $$rc -eq 0 ]; then \
		echo "== PostgreSQL pass ($(PG_TEST_URL)) =="; \
		TEST_DATABASE_URL="$(PG_TEST_URL)" $(PY) -m pytest || exit 1; \
	elif [ $$rc -ne 1 ]; then exit $$rc; fi

bench: install-test
	$(PY) bench/dispatch.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
