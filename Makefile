# Gaitway — short targets; see README.md.
PYTHON ?= python3.11
VENV   ?= .venv
SHARED ?= ../shared
VIDEO  ?= $(SHARED)/data/running-treadmill-phone/IMG_5396.mp4
OUT    ?= out/demo
PRESET ?= thunder
BIN    := $(VENV)/bin

.PHONY: venv demo test check bench clean

$(BIN)/gaitway: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[cpu,dev]'
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

clean:
	rm -rf $(VENV) out .mypy_cache .pytest_cache .ruff_cache
