# Set-up and jobs. `make demo` and `make test` create .venv first if it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

# What each supported Python installs (the pins, written only here; the README shows them).
# torch is pinned in the install step, not in setup.py: a bare `torch` requirement pulls a
# multi-GB CUDA build. fairseq goes in with --no-deps plus its real dependencies: it declares
# torchaudio, which has no build for these torches and would drag in a mismatched one.
#   Python 3.11, 3.12: torch 2.13.0 and ve-fairseq 0.12.3 (fairseq 0.12 built for 3.11/3.12;
#                      official fairseq 0.12.2 does not import there).
#   Python 3.10:       torch 1.12.1, numpy<2 and official fairseq 0.12.2 (built from its sdist);
#                      torch 1.12.1 is the newest torch official fairseq 0.12.2 runs with (its
#                      fused encoder-layer call has another signature in torch >= 1.13).
#                      Without the [llm] extra: transformers 5 needs torch >= 2.
# For a CUDA build of the same torch: make install TORCH_INDEX=--extra-index-url=https://download.pytorch.org/whl/cu116
PY_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
ifeq ($(PY_VERSION),3.10)
TORCH ?= torch==1.12.1
NUMPY ?= numpy<2
FAIRSEQ ?= fairseq==0.12.2
EXTRAS ?= toy,test
else
TORCH ?= torch==2.13.0
NUMPY ?= numpy
FAIRSEQ ?= ve-fairseq==0.12.3
EXTRAS ?= toy,test,llm
endif
TORCH_INDEX ?=
FAIRSEQ_DEPS := cffi cython hydra-core omegaconf regex sacrebleu tqdm bitarray scikit-learn packaging
SUPPORTED_PYTHONS := 3.10 3.11 3.12
PYTEST_ARGS ?=
# The short check of an install path (CI runs it for each other Python): stage 2 and stage 1
# through fairseq-train, fairseq-generate and the scorer, and checkpoint loading.
SMOKE_TESTS := tests/test_cli.py::test_train_generate_score_through_the_fairseq_clis \
	tests/test_cli.py::test_stage1_trains_only_the_exporter tests/test_compat.py
ifneq (,$(findstring llm,$(EXTRAS)))  # the LM back-end where the path installs it
SMOKE_TESTS += tests/test_lm_backend.py::test_stages_and_generate_through_the_fairseq_clis
endif

TOKENIZERS_DIR := build/tokenizers

.PHONY: install demo test smoke clean tokenizers

install: $(VENV)/.installed

$(VENV)/.installed: setup.py
	@case " $(SUPPORTED_PYTHONS) " in *" $(PY_VERSION) "*) ;; \
	  *) echo "$(PYTHON) is Python '$(PY_VERSION)': supported are $(SUPPORTED_PYTHONS) (make install PYTHON=python3.11)" >&2; exit 2;; esac
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_INDEX) $(TORCH) "$(NUMPY)"
	$(PIP) install -q --no-deps $(FAIRSEQ)
	$(PIP) install -q $(FAIRSEQ_DEPS) "$(NUMPY)"
	$(PIP) install -q -e ".[$(EXTRAS)]" "$(NUMPY)"
	$(PY) -c "import sys, torch, numpy, fairseq, fairseq_exporter; print('Python', sys.version.split()[0], '| torch', torch.__version__, '| numpy', numpy.__version__, '| fairseq', fairseq.__version__)"
	@touch $@

demo: install
	bash recipes/toy/run.sh

# The real Llama 3 / Llama 2 tokenizer fixtures of the LM back-end's tests, from the npm
# registry (npm + node, ~5 s once; nothing to do when built).
tokenizers: install
ifneq (,$(findstring llm,$(EXTRAS)))
	$(PY) tests/real_tokenizers.py $(TOKENIZERS_DIR)
endif

test: install tokenizers
	$(PY) -m pytest -x -q -n 2 --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS) tests

smoke: install
	$(PY) -m pytest -x -q -n 2 --dist loadfile --no-loadscope-reorder $(SMOKE_TESTS)

clean:
	rm -rf $(VENV) results/toy work/toy results/toy-seeds work/toy-seeds
