# zoo: `make demo` and `make test` each set the environment up first (idempotent; VENV=... to reuse one).
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.zoo-installed
UV := $(PYTHON) -m uv
# fbgemm's CPU build; on a CUDA machine `make venv FBGEMM=fbgemm-gpu` installs the CUDA build of the same module
FBGEMM ?= fbgemm-gpu-cpu
# TorchRec and fbgemm (embedding_backend: fbgemm / torchrec), --no-deps as RecBole: torchrec's metadata requires the
# CUDA build (fbgemm-gpu) and torchmetrics==1.0.3; the CPU build provides the same module. The pure-Python modules
# torchrec imports come with them (pinned here and in pyproject.toml's torchrec extra).
TORCHREC_PKGS := "torchrec==1.9.2" "$(FBGEMM)==1.9.0" "tensordict==0.15.3" "pyvers==0.2.3" \
	"pyre-extensions==0.0.32" "typing-inspect==0.9.0" "mypy-extensions==1.2.0"
PYTEST_ARGS ?=
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export WANDB_MODE ?= offline

.PHONY: venv demo test test-fast lint bench verify-recipes data-fashion clean

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install -q --disable-pip-version-check "uv==0.13.9"
	$(UV) venv $(VENV) --python $(PYTHON) --allow-existing -q
	$(UV) pip install -q --compile-bytecode --python $(PY) -r requirements.lock
	$(UV) pip install -q --compile-bytecode --python $(PY) --no-deps -e . "recbole==1.2.1"
	$(UV) pip install -q --compile-bytecode --python $(PY) --no-deps $(TORCHREC_PKGS)
	$(PY) -m compileall -q zoo tests benchmarks >/dev/null
	@touch $(STAMP)

# Train the digits recipe, evaluate the best checkpoint on the test split, write predictions.
demo: venv
	bash scripts/demo.sh $(VENV)

# The whole suite (CI runs it through .ci/run), in two lanes: the in-process tests on 2 xdist workers (a file stays
# on one worker, so module fixtures are built once), then the tests that start processes, one at a time (they use
# both cores themselves). Exit code 5 (no test selected, e.g. PYTEST_ARGS naming one file) is not a failure.
PROCESS_MARKS := subprocess or distributed or postgres
test: venv
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not ($(PROCESS_MARKS))" $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(PY) -m pytest -q -m "$(PROCESS_MARKS)" $(PYTEST_ARGS) || [ $$? -eq 5 ]

# The fast lane, under 2 minutes on 2 cores: every test but those marked slow, subprocess, distributed or postgres
# (the marks are described in pyproject.toml), on 2 xdist workers. It still fits every registered model and runs
# every technique once.
FAST_MARKS := not slow and not subprocess and not distributed and not postgres
test-fast: venv
	$(PY) -m pytest -q -n 2 -m "$(FAST_MARKS)" $(PYTEST_ARGS)

# ruff, then the layer rules of docs/architecture.md (import-linter contracts in pyproject.toml)
lint: venv
	$(VENV)/bin/ruff check zoo tests benchmarks scripts
	$(VENV)/bin/lint-imports

bench: venv
	$(PY) -m benchmarks.run

# Retrain every recipe stated (recipes/results.yaml) at <= VERIFY_BUDGET minutes and fail when a metric falls below
# its stated value minus tolerance; VERIFY_ARGS=--write records the figures and regenerates docs/results.md.
# Not part of `make test`: it takes from minutes to hours.
VERIFY_BUDGET ?= 20
verify-recipes: venv
	$(PY) scripts/verify_recipes.py --budget $(VERIFY_BUDGET) $(VERIFY_ARGS)

# Fashion-MNIST comes from Debian's dataset-fashion-mnist package (needs root / sudo).
data-fashion:
	@test -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz || \
	  { (apt-get install -y -q dataset-fashion-mnist || (apt-get update -q && apt-get install -y -q dataset-fashion-mnist)) >/dev/null; }

clean:
	rm -rf runs lightning_logs .pytest_cache
