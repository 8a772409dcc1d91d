# originprobe: `make demo` runs the main job, `make test` the tests; both build .venv first.
PY_SYS ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DATA   ?= ../shared/data/realgen
KNOWN  ?= real,dalle-mini,latent-diffusion,glid3-xl,midjourney-v3
HEAD   ?= linear
SCORE  ?= msp
OUT    ?= runs/demo
CACHE  ?= .cache/features

.PHONY: venv demo test bench clean

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PY_SYS) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) -m originprobe evaluate --data $(DATA) --known $(KNOWN) --head $(HEAD) --score $(SCORE) \
		--cache $(CACHE) --out $(OUT)

test: venv
	$(PY) -m pytest -q tests

bench: venv
	$(PY) benchmarks/run.py --data $(DATA)

clean:
	rm -rf runs .pytest_cache
