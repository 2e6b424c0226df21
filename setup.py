"""fairseq_exporter: a fairseq plugin for exporter-coupled cascade speech translation.

torch and fairseq are deliberately not pinned here: the right torch build (CPU/CUDA)
and fairseq distribution (official fairseq on Python <= 3.10, the ve-fairseq fork on
3.11) depend on the machine, so `make install` chooses them. `pip install -e .` never
pulls torchaudio or a CUDA torch.
"""

import re
from pathlib import Path

from setuptools import find_packages, setup

version = re.search(r'__version__ = "([^"]+)"',
                    (Path(__file__).parent / "fairseq_exporter" / "__init__.py").read_text()).group(1)

setup(
    name="fairseq_exporter",
    version=version,
    description="Coupling speech encoders with downstream text models (Chelba & Schalkwyk 2024) as a fairseq plugin",
    long_description=Path("README.md").read_text() if Path("README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.8",
    packages=find_packages(include=["fairseq_exporter", "fairseq_exporter.*"]),
    install_requires=[
        "numpy",
        "sacrebleu>=2.0",
        "editdistance",
        "sentencepiece",
        "soundfile",
        "kaldi-native-fbank",
        "pyyaml",
    ],
    extras_require={
        # the toy corpus's bits (speech, features, pieces) depend on these versions: the published
        # toy results are theirs (recipes/toy/README.md, "Same seed, same numbers")
        "toy": ["espeakng-loader==0.2.4", "sentencepiece==0.2.3", "kaldi-native-fbank==1.23.0", "matplotlib"],
        # the causal-LM back-end (--lm-checkpoint); tested with the torch the Makefile installs;
        # accelerate: transformers loads an LM straight onto a GPU (device_map) only with it
        "llm": ["transformers==5.24.0", "accelerate==1.16.0"],
        # xdist: the suite runs on both cores; timeout: a hung test fails instead of stalling CI;
        # pandas: fairseq's own prep_mustc_data.py, compared against
        "test": ["pytest", "pytest-xdist>=3.6", "pytest-timeout", "pandas"],
    },
    entry_points={
        "console_scripts": [
            "fairseq-exporter-score = fairseq_exporter.cli.score:main",
            "fairseq-exporter-join-manifests = fairseq_exporter.cli.join_manifests:main",
            "fairseq-exporter-prep-mustc = fairseq_exporter.cli.prep_mustc:main",
            "fairseq-exporter-lm-vocab = fairseq_exporter.cli.lm_vocab:main",
            "fairseq-exporter-mt-vocab = fairseq_exporter.cli.mt_vocab:main",
            "fairseq-exporter-asr-encoder = fairseq_exporter.cli.asr_encoder:main",
        ],
    },
)
