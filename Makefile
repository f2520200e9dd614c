# The two commands the README opens with. Both set up .venv from scratch when needed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
SPEC ?= study/examples/quickstart.yaml

.PHONY: study test lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Runs a real study locally (embedded Ray, Optuna file storage, sqlite:///mlflow.db).
study: $(BIN)/python
	$(BIN)/pip install -q -e .
	$(BIN)/study launch $(SPEC)

# Installs what the tests need (torch as its CPU build, first) and runs the whole suite.
# pytest's exit code 5 (no tests ran) fails this target like any other failure.
test: $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[torch,test,dev]'
	$(BIN)/python -m pytest -q

lint: $(BIN)/python
	$(BIN)/ruff check trainers search_spaces study tests benchmarks
	$(BIN)/ruff format --check trainers search_spaces study tests benchmarks

bench: $(BIN)/python
	$(BIN)/python benchmarks/trainer_throughput.py

clean:
	rm -rf $(VENV) mlflow.db mlruns .hpstudy
