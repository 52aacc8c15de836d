# Two commands on a fresh machine: `make train` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/default
CONFIG ?=

.PHONY: train test test-fast bench clean-venv

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# torch (CPU) is optional: only importing PyTorch weights and its tests need it.
$(VENV)/.installed-torch: $(VENV)/.installed requirements-torch.txt
	$(PY) -m pip install --quiet -r requirements-torch.txt
	touch $@

# Without a GPU or TPU, `make train` trains the CPU variant (configs/default.py:cpu); with one,
# the paper's configuration. CONFIG=... picks one yourself.
train: $(VENV)/.installed  ## train into $(WORKDIR): the CPU variant on a CPU, else the paper's config
	@backend=$$($(PY) -c "import jax; print(jax.default_backend())" 2>/dev/null); \
	config="$(CONFIG)"; \
	if [ -z "$$config" ] && [ "$$backend" = cpu ]; then \
	  config=configs/default.py:cpu; \
	  echo "No GPU or TPU found: training the CPU variant ($$config: 64x64 crops, a 6-level U-Net,"; \
	  echo "  12k steps; about 20 minutes on 2 cores). The paper's configuration (256x256, 200k steps,"; \
	  echo "  for a GPU): make train CONFIG=configs/default.py, or python main.py --workdir=W."; \
	elif [ -z "$$config" ]; then \
	  config=configs/default.py; \
	  echo "JAX found a $$backend: training the paper's configuration ($$config)."; \
	fi; \
	echo "Training into $(WORKDIR): checkpoints in $(WORKDIR)/checkpoints, metrics in $(WORKDIR)/metrics.jsonl, the full log in $(WORKDIR)/train.log."; \
	echo "Watch it: $(VENV)/bin/tensorboard --logdir $(WORKDIR)/tensorboard  (then open http://localhost:6006)"; \
	$(PY) main.py --workdir=$(WORKDIR) --config=$$config $(ARGS)

# selenium drives headless Chromium in the gallery's browser test (tests only).
$(VENV)/.installed-test: $(VENV)/.installed requirements-test.txt
	$(PY) -m pip install --quiet -r requirements-test.txt
	touch $@

test: $(VENV)/.installed $(VENV)/.installed-torch $(VENV)/.installed-test  ## run the test suite (torch included)
	$(PY) -m pytest -q -n 2 --dist loadfile --max-worker-restart=0 tests

test-fast: $(VENV)/.installed  ## the fast tier while working: no whole runs, subprocesses or torch training
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not slow" tests

clean-venv:
	rm -rf $(VENV)
