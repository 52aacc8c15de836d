# Two commands on a fresh machine: `make train` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/default
CONFIG ?= configs/default.py

.PHONY: train test bench clean-venv

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# torch (CPU) is optional: only importing PyTorch weights and its tests need it.
$(VENV)/.installed-torch: $(VENV)/.installed requirements-torch.txt
	$(PY) -m pip install --quiet -r requirements-torch.txt
	touch $@

train: $(VENV)/.installed  ## train the default (synthetic rain, 256x256) into $(WORKDIR)
	@echo "Training into $(WORKDIR): logs in $(WORKDIR)/metrics.jsonl, checkpoints in $(WORKDIR)/checkpoints."
	@echo "Watch it: $(VENV)/bin/tensorboard --logdir $(WORKDIR)/tensorboard  (then open http://localhost:6006), or tail -f $(WORKDIR)/metrics.jsonl"
	$(PY) main.py --workdir=$(WORKDIR) --config=$(CONFIG) $(ARGS)

test: $(VENV)/.installed $(VENV)/.installed-torch  ## run the test suite (torch included)
	$(PY) -m pytest -q -n 2 --dist loadfile tests

clean-venv:
	rm -rf $(VENV)
