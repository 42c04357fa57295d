PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Two stamps, so `make run` installs only what the stack needs and a second run installs
# nothing: RUN_STAMP for requirements-run.txt, STAMP for everything `make test` needs on top.
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: install run test test-fast lint format bench package diagrams clean

# Order-only: creating the virtualenv must not make the stamps look stale.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(RUN_STAMP): requirements.txt requirements-run.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-run.txt
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP) requirements-dev.txt
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

# checkov in a virtualenv of its own (its boto3 pin conflicts with requirements.txt).
SCAN_VENV := .venv-scan
SCAN_STAMP := $(SCAN_VENV)/.installed

$(SCAN_STAMP): requirements-scan.txt
	$(PYTHON) -m venv $(SCAN_VENV)
	$(SCAN_VENV)/bin/pip install --quiet -r requirements-scan.txt
	touch $(SCAN_STAMP)

# The virtualenv with everything `make test` needs (CI and tools use it).
install: $(STAMP) $(SCAN_STAMP)

run: $(RUN_STAMP)
	$(BIN)/python -m scripts.local_stack $(ARGS)

# pytest-xdist: one worker per core (2 here), each with its own moto server; a test file stays
# on one worker, so a module's stack or stage is set up once.
PYTEST_WORKERS ?= auto
XDIST := -n $(PYTEST_WORKERS) --dist loadfile

test: $(STAMP) $(SCAN_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

# The inner loop: every suite except those marked slow (soak, local-stack subprocesses).
test-fast: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest $(XDIST) -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# docs/img/data-flow.png and sequence-late.png from their source, docs/img/diagrams.py.
diagrams: $(STAMP)
	$(BIN)/python docs/img/diagrams.py

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run $(ARGS)

clean:
	rm -rf $(VENV) .local dist .pytest_cache .ruff_cache

# One SAM template with the whole system: Chalice's functions and API merged with the resources
# generated from the stage's resource specification (see scripts/package.py).
STAGE ?= dev

package: $(STAMP)
	$(BIN)/python -m scripts.package --stage $(STAGE) --out dist/merge-template.json
	$(BIN)/chalice package --stage $(STAGE) --merge-template dist/merge-template.json dist/
	$(BIN)/cfn-lint dist/sam.json
