# The workshop's verbs. Every target that needs Python depends on `setup`, so a
# fresh machine with Python 3.11 and make needs nothing else.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARTIFACTS ?= artifacts
LAB_PORT ?= 8888
APP_PORT ?= 8501
RUNS_PORT ?= 5000
# Real data (online): make data DATASET=cats-dogs|coco|mnist [CATEGORIES=cat,dog], then the
# same DATASET (and CATEGORIES) for the trainers. ARGS passes any other trainer option.
# cats-dogs adds a "background" class from COCO photos; BACKGROUND=0 keeps DIGITS' two classes.
DATASET ?=
CATEGORIES ?=
BACKGROUND ?=
DATA_DIR ?= data
ARGS ?=
TRAIN_DATA = $(if $(DATASET),--dataset=$(DATASET)) --data_dir=$(DATA_DIR)

# numpy and scipy each bring an OpenBLAS; one thread each keeps them from fighting
# torch (and each other) for the 2 cores. torch takes the cores through OMP
# (MKL_NUM_THREADS would cap torch too, so it is left alone).
export OPENBLAS_NUM_THREADS ?= 1
export OMP_NUM_THREADS ?= $(shell nproc 2>/dev/null || echo 2)
export ARTIFACTS

.PHONY: setup proxy hub hub-release hub-reset browser test test-fast lint format lab app notebooks data train-mlp train-alexnet train-detectnet export bench demo runs clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# The suite runs on pytest-xdist workers: tests that share a server, a hub or a trained model
# stay on one worker, the longest start first (tests/conftest.py). Its servers and browsers
# mostly wait, so there are more workers than cores, each with one torch thread.
TEST_WORKERS ?= 3
PYTEST := OMP_NUM_THREADS=1 $(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder

test: setup browser proxy
	$(PYTEST) --durations=15

# The hub's proxy, pinned in package.json, from the npm registry into node_modules/.
proxy: node_modules/.bin/configurable-http-proxy

node_modules/.bin/configurable-http-proxy: package.json package-lock.json
	@command -v npm >/dev/null || { echo "installing Debian's Node.js and npm for the hub's proxy"; \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq nodejs npm; }
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The hosted workshop for a room (as root): JupyterHub on HUB_IP:HUB_PORT (127.0.0.1:8000);
# settings are environment variables (README, workshop/hub/settings.py). Ctrl-C stops it.
hub: setup proxy
	@$(PY) -m workshop.hub serve

# Copy the solution notebooks into every participant's ~/workshop/solutions/.
hub-release: setup
	@$(PY) -m workshop.hub release-solutions

# A participant forgot their password: forget it (NAME=alice); they claim the name again
# with the room password and their own password twice, their server and files kept.
hub-reset: setup
	@$(PY) -m workshop.hub reset $(NAME)

# The browser tests drive Debian's chromium (Playwright cannot download its own here).
browser:
	@test -x /usr/bin/chromium || { echo "installing Debian's chromium for the browser tests"; \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq chromium; }

test-fast: setup
	$(PYTEST) -m "not slow"

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: setup
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

lab: setup
	$(PY) -m workshop.lab --port=$(LAB_PORT)

# The web demo on the exported models (streamlit prints its URL).
app: setup
	$(PY) -m streamlit run streamlit_app/app.py --server.address=127.0.0.1 \
	  --server.port=$(APP_PORT) --server.headless=true

notebooks: setup
	$(PY) -m workshop.notebook_tools

data: setup
	@test -n "$(DATASET)" || { echo "usage: make data DATASET=cats-dogs|coco|mnist [CATEGORIES=cat,dog]"; exit 2; }
	$(PY) -m workshop.data.prepare $(DATASET) --data_dir=$(DATA_DIR) $(if $(CATEGORIES),--categories=$(CATEGORIES)) \
	  $(if $(filter 0 false,$(BACKGROUND)),--background=false) $(ARGS)

train-mlp: setup
	$(PY) -m workshop.train_mlp $(TRAIN_DATA) $(ARGS)

# Generates the synthetic shapes into data/ when missing, trains, converts to the FCN.
train-alexnet: setup
	$(PY) -m workshop.train_alexnet $(TRAIN_DATA) $(ARGS)

# Module 3 on the synthetic scenes; starts from module 2's features when they exist.
train-detectnet: setup
	$(PY) -m workshop.train_detectnet $(TRAIN_DATA) $(if $(CATEGORIES),--categories=$(CATEGORIES)) $(ARGS)

# MLflow's own UI on the runs the trainers recorded in $(ARTIFACTS)/mlflow.db (Ctrl-C stops it).
runs: setup
	@mkdir -p $(ARTIFACTS)
	MLFLOW_DISABLE_TELEMETRY=true MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
	  $(PY) -m mlflow ui --host 127.0.0.1 --port $(RUNS_PORT) --workers 1 \
	  --backend-store-uri sqlite:///$(abspath $(ARTIFACTS))/mlflow.db \
	  --default-artifact-root $(abspath $(ARTIFACTS))/mlruns

# Every trained model under $(ARTIFACTS) -> model.onnx beside its checkpoint, verified.
export: setup
	$(PY) -m exporters --all

# Side-by-side timings -> benchmarks/results/<device>.json and a markdown table.
bench: setup
	$(PY) -m benchmarks $(if $(PIPELINE),--pipeline)

# The embedded pipeline, each step skipped when its artifacts exist (make clean to redo),
# then the web demo on what it built.
demo: setup
	@test -f $(ARTIFACTS)/mlp/checkpoint.pt || $(MAKE) --no-print-directory train-mlp
	@test -f $(ARTIFACTS)/alexnet/checkpoint.pt || $(MAKE) --no-print-directory train-alexnet
	@test -f $(ARTIFACTS)/detectnet/checkpoint.pt || $(MAKE) --no-print-directory train-detectnet
	@for m in mlp alexnet detectnet; do \
	  test $(ARTIFACTS)/$$m/model.onnx -nt $(ARTIFACTS)/$$m/checkpoint.pt || \
	  $(PY) -m exporters $(ARTIFACTS)/$$m/checkpoint.pt || exit 1; done
	@$(PY) -m workshop.summary
	@printf '\nthe web demo: http://127.0.0.1:%s  (Ctrl-C stops it)\n' $(APP_PORT)
	@$(MAKE) --no-print-directory app

clean:
	rm -rf $(ARTIFACTS) data .pytest_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
