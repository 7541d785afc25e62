# The habits of this project. `make start` and `make test` are the README's two set-up commands.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The pinned CPU build on this machine; on a CUDA machine pass e.g. TORCH_SPEC="torch==2.13.0 --index-url ...".
TORCH_SPEC ?= torch==2.13.0
TORCH_VERSION := 2.13.0

.PHONY: install checkpoint start serve-config lint format test test-fast bench bench-load clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH_SPEC)
	$(BIN)/pip install -q -r requirements.txt -r requirements-dev.txt
	$(BIN)/pip install -q --no-deps -e .
	@$(BIN)/python -c "import torch, sys; v = torch.__version__.split('+')[0]; \
		sys.exit(0 if v == '$(TORCH_VERSION)' else f'torch {v} was installed, expected $(TORCH_VERSION)')"
	touch $@

checkpoint: install
	$(BIN)/tuned-whisper checkpoint build --if-missing

start: checkpoint
	$(BIN)/python serve_predictor_script.py

serve-config: install
	$(BIN)/python -m tuned_whisper.serving.deploy_config > deploy/serve_config.yaml

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: checkpoint lint
	$(BIN)/pytest --timeout 900 --durations=25

test-fast: install
	$(BIN)/pytest -m "not slow and not browser and not gpu" --timeout 300

bench: checkpoint
	$(BIN)/python benchmarks/speed.py

bench-load: checkpoint
	$(BIN)/python benchmarks/load.py

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache
