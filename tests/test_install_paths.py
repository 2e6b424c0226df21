"""The install paths the README shows are the ones the Makefile pins, and CI runs each."""

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _make_variables(python_version):
    """TORCH, FAIRSEQ and NUMPY as `make install` would choose them for that Python."""
    out = subprocess.run(["make", "-s", "-n", "-p", "PYTHON=python-stub", f"PY_VERSION={python_version}",
                          "install"], cwd=REPO, capture_output=True, text=True).stdout
    values = {}
    for name in ("TORCH", "FAIRSEQ", "NUMPY"):
        match = re.search(rf"^{name} \??= (.+)$", out, re.MULTILINE)
        assert match, f"make -p prints no {name}"
        values[name] = match.group(1).strip()
    return values


def test_readme_shows_the_pins_of_each_python_the_makefile_supports():
    readme = (REPO / "README.md").read_text()
    supported = re.search(r"^SUPPORTED_PYTHONS := (.+)$", (REPO / "Makefile").read_text(), re.MULTILINE).group(1).split()
    assert supported == ["3.10", "3.11", "3.12"]
    table = readme[readme.index("| Python | command |"):]
    rows = table.split("\n\n")[0].splitlines()[2:]
    for version in supported:
        pins = _make_variables(version)
        row = next(r for r in rows if re.search(rf"\b{re.escape(version)}\b", r.split("|")[1]))
        assert f"`{pins['TORCH']}`" in row, (version, pins, row)
        assert pins["FAIRSEQ"].split("==")[1] in row and pins["FAIRSEQ"].split("==")[0].replace("ve-", "") in row
        assert (pins["NUMPY"] == "numpy" and "any" in row) or f"`{pins['NUMPY']}`" in row, (version, pins, row)


def test_ci_runs_the_smoke_of_every_other_python():
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in ci and re.search(r"for version in 3\.10 3\.12; do", ci)
    assert 'make smoke PYTHON="$python"' in ci


def test_the_llm_extra_is_pinned_and_shown_and_installed_where_transformers_runs():
    setup = (REPO / "setup.py").read_text()
    pins = re.findall(r'"([\w-]+==[\d.]+)"', re.search(r'"llm": \[([^]]*)\]', setup).group(1))
    assert any(pin.startswith("transformers==") for pin in pins), pins
    for pin in pins:
        assert f"`{pin}`" in (REPO / "README.md").read_text(), pin
    makefile = (REPO / "Makefile").read_text()
    # transformers 5 needs torch >= 2: the 3.10 path (torch 1.12) goes without the extra
    assert re.search(r"ifeq \(\$\(PY_VERSION\),3\.10\)(?:(?!else).)*EXTRAS \?= toy,test\n", makefile, re.DOTALL)
    assert re.search(r"else(?:(?!endif).)*EXTRAS \?= toy,test,llm\n", makefile, re.DOTALL)


def test_the_toy_corpus_libraries_are_pinned_and_shown():
    # the toy corpus's bits (speech, features, pieces) depend on their versions
    setup = (REPO / "setup.py").read_text()
    pins = re.findall(r'"([\w-]+==[\d.]+)"', re.search(r'"toy": \[([^]]*)\]', setup).group(1))
    assert {pin.split("==")[0] for pin in pins} == {"espeakng-loader", "sentencepiece", "kaldi-native-fbank"}
    for pin in pins:
        assert f"`{pin}`" in (REPO / "recipes/toy/README.md").read_text(), pin
