# `make demo` and `make test` each create or refresh .venv on their own (when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
JARS := $(VENV)/.jars-stamp
PEOPLE ?= 20000

.PHONY: demo test lint model clean jars

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[spark,test,bench]"
	touch $(STAMP)

# The JVM backends' packages (resolution/packages.py), fetched by Maven into ~/.m2/repository,
# where a local session resolves them offline. A package Maven cannot fetch is reported and its
# backend stays unavailable (its tests skip with that reason).
$(JARS): $(STAMP) resolution/packages.py
	$(BIN)/python -m resolution.packages fetch
	touch $(JARS)

jars: $(JARS)  ## fetch Delta Lake's and GraphFrames' JVM packages with Maven

demo: $(JARS)  ## resolve the bundled sample data into ./lakehouse and show the entities
	$(BIN)/idr run --config conf/example.yml
	$(BIN)/idr show --config conf/example.yml --table resolved_membership --limit 40

test: $(JARS)  ## lint, then the whole test suite
	$(BIN)/ruff check resolution jobs tests
	$(BIN)/python -m pytest

model: $(STAMP)  ## regenerate conf/models/example_model.json from generated data
	$(BIN)/idr generate --people $(PEOPLE) --output data/generated
	$(BIN)/idr train --config conf/generated.yml --output conf/models/example_model.json

clean:
	rm -rf lakehouse lakehouse-generated data/generated spark-warehouse
