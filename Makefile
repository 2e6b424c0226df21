# Set-up and jobs. `make demo` and `make test` create .venv first if it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# Pinned in the install step, not in setup.py: a bare `torch` requirement pulls a
# multi-GB CUDA build, and fairseq's declared torchaudio dependency has no build for
# this torch (it would drag in a mismatched one). See README "Set-up".
# Elsewhere, for a CPU-only torch: make install TORCH_INDEX=--index-url=https://download.pytorch.org/whl/cpu
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
FAIRSEQ ?= ve-fairseq==0.12.3
FAIRSEQ_DEPS := cffi cython hydra-core omegaconf regex sacrebleu tqdm bitarray scikit-learn packaging
PYTEST_ARGS ?=

.PHONY: install demo test clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_INDEX) $(TORCH)
	$(PIP) install -q --no-deps $(FAIRSEQ)
	$(PIP) install -q $(FAIRSEQ_DEPS)
	$(PIP) install -q -e ".[toy,test]"
	$(PY) -c "import torch, fairseq, fairseq_exporter; print('torch', torch.__version__, '| fairseq', fairseq.__version__)"
	@touch $@

demo: install
	bash recipes/toy/run.sh

test: install
	$(PY) -m pytest -x -q -n 2 --dist loadfile $(PYTEST_ARGS) tests

clean:
	rm -rf $(VENV) results/toy work/toy results/toy-seeds work/toy-seeds
