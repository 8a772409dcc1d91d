# originprobe: `make demo` runs the main job, `make test` the tests; both build .venv first.
PY_SYS ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DATA   ?= ../shared/data/realgen
PROTOCOL ?= realgen
OUT    ?= runs/demo
CACHE  ?= .cache/features
BENCH_ARGS ?=

.PHONY: venv demo test lint bench clean

# pyproject.toml is the one list of dependencies; constraints.txt pins the tested versions
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PY_SYS) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) -m originprobe evaluate --protocol $(PROTOCOL) --root $(DATA) --cache $(CACHE) --out $(OUT)

test: venv
	$(PY) -m pytest -q tests

# style (ruff), types (mypy on the package's public surface), the stage order of imports (package,
# benchmarks and scripts) and the parameter counts of functions
lint: venv
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts
	cd src && ../$(VENV)/bin/mypy -m originprobe -p originprobe.model --follow-imports=silent
	$(PY) scripts/import_graph.py
	$(PY) scripts/check_signatures.py

bench: venv
	$(PY) benchmarks/run.py --data $(DATA) $(BENCH_ARGS)

clean:
	rm -rf runs .pytest_cache
