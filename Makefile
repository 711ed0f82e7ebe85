# The README's two commands: `make run` and `make test`. Both create .venv and install the
# pinned dependencies first when pyproject.toml is newer than the last install.

PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV := .venv
INSTALLED := $(VENV)/.installed

.PHONY: run test bench lint

run: $(INSTALLED)
	$(VENV)/bin/python manage.py launch

# The suite runs in four pytest-xdist processes: its end-to-end and fault tests spend most of
# their time waiting on the real processes they start, so four share two cores well (on two
# cores, SQLite: 13 minutes in one process, 4 to 5.5 in four). worksteal gives a process that is done the tests
# still queued behind another's long one. TEST_WORKERS=0 runs in one process (pdb, -s).
TEST_WORKERS ?= 4

test: $(INSTALLED)
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

bench: $(INSTALLED)
	@set -e; for bench in bench/bench_*.py; do [ -e "$$bench" ] || { echo "no benchmarks yet"; break; }; $(VENV)/bin/python "$$bench"; done

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

$(INSTALLED): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.version_info[:2] in ((3, 11), (3, 12)) or sys.exit("Python 3.11 or 3.12 is needed; found " + sys.version.split()[0] + " at " + sys.executable + ". Set PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet '.[local,test]'
	@touch $@
