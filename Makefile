# Gaitway — short targets; see README.md.
PYTHON ?= python3.11
VENV   ?= .venv
SHARED ?= ../shared
VIDEO  ?= $(SHARED)/data/running-treadmill-phone/IMG_5396.mp4
OUT    ?= out/demo
PRESET ?= thunder
MODEL_THREADS ?= 1
BIN    := $(VENV)/bin

.PHONY: venv demo test check bench faults capacity triton up down proto clean

$(BIN)/gaitway: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[cpu,dev,export,triton]'
	touch $@

venv: $(BIN)/gaitway

demo: venv
	$(BIN)/gaitway analyze $(VIDEO) --out $(OUT) --preset $(PRESET)

check: venv
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
	$(BIN)/mypy

test: check
	GAITWAY_SHARED_DIR=$(SHARED) $(BIN)/pytest

bench: venv
	GAITWAY_SHARED_DIR=$(SHARED) $(BIN)/python loadtests/bench_pipeline.py --video $(VIDEO) --out loadtests/results/pipeline.json
	GAITWAY_SHARED_DIR=$(SHARED) $(BIN)/python loadtests/bench_stream.py --video $(VIDEO) --out loadtests/results/stream.json --preset lightning
	GAITWAY_SHARED_DIR=$(SHARED) $(BIN)/python loadtests/bench_viewer.py --video $(VIDEO) --out loadtests/results/viewer.json
	GAITWAY_SHARED_DIR=$(SHARED) $(BIN)/python loadtests/bench_wire.py --video $(VIDEO) --out loadtests/results/wire.json
	GAITWAY_SHARED_DIR=$(SHARED) $(BIN)/python loadtests/bench_startup.py --video $(VIDEO) --out loadtests/results/startup.json

faults: venv
	GAITWAY_SHARED_DIR=$(SHARED) GAITWAY_MODELS_DIR=$(SHARED)/models:$(SHARED)/reference $(BIN)/python loadtests/faults.py --out loadtests/results/faults.json

capacity: venv
	GAITWAY_SHARED_DIR=$(SHARED) $(BIN)/python loadtests/capacity.py --out loadtests/results/capacity.json

triton: venv
	$(BIN)/python -m export.repository --out out/triton-repo --preset $(PRESET) --models-dir $(SHARED)/models:$(SHARED)/reference
	$(BIN)/python -m services.pose.triton serve --repository out/triton-repo

up: venv
	GAITWAY_MODELS_DIR=$(SHARED)/models:$(SHARED)/reference $(BIN)/python -m gateway.stack up --preset $(PRESET) --model-threads $(MODEL_THREADS)

down: venv
	$(BIN)/python -m gateway.stack down

proto: venv
	$(BIN)/python -m gateway.proto.generate

clean:
	rm -rf $(VENV) out .mypy_cache .pytest_cache .ruff_cache
