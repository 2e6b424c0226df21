"""recipes/toy/run.sh at quick scale, and the quick study on seed 1 that test_toy_recipe.py and
test_toy_seed_and_tune.py both read: built once per test run (conftest.shared), so that the two
files can run on two xdist workers at once."""

import subprocess
from pathlib import Path
from typing import NamedTuple

import pytest

from conftest import REPO, shared  # noqa: F401  (REPO: for the test files)

RUN = ["bash", str(REPO / "recipes/toy/run.sh"), "--scale", "quick"]


def run_recipe(*args):
    proc = subprocess.run([*RUN, *map(str, args)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


class Study(NamedTuple):
    work: Path  # WORK: seed1/ and seed2/ (seed 2: its corpus only)
    results: Path  # RESULTS: seed1/
    seeds_log: str  # --seeds 1,2 through stage 0
    log: str  # seed 1's runs: stages 0-7, then (quick_study) 8-12
    results_0_7: dict  # seed 1's results.json as stage 7 wrote it (stages 8-12 rewrite the file)


def _study_0_7(root):
    import json

    work, results = root / "work", root / "results"
    seeds_log = run_recipe("--seeds", "1,2", "--stop-stage", 0, "--work", work, "--results", results)
    log = run_recipe("--work", work / "seed1", "--results", results / "seed1")
    return Study(work, results, seeds_log, log, json.loads((results / "seed1/results.json").read_text()))


@pytest.fixture(scope="session")
def study_0_7(tmp_path_factory):
    """--seeds 1,2 through stage 0 (each seed's corpus), then the study on seed 1, stages 0-7 (its
    corpus already made)."""
    return shared(tmp_path_factory, "toy-study", _study_0_7)


@pytest.fixture(scope="session")
def quick_study(study_0_7, tmp_path_factory):
    """study_0_7, then stages 8-12 on seed 1 (in its work dir)."""
    def extras(_):
        return run_recipe("--stage", 8, "--stop-stage", 12, "--work", study_0_7.work / "seed1",
                          "--results", study_0_7.results / "seed1")

    return study_0_7._replace(log=study_0_7.log + shared(tmp_path_factory, "toy-study-8-12", extras))

