"""The main job's quick mode: every stage of recipes/toy/run.sh runs and every row and
file of the results is produced with sane values. (The findings themselves come from the
full run, `make demo`, not from a timed test.)"""

import json
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROWS = ("1-best cascade", "reference transcript", "stage 1:", "stage 2:", "adapted MT: 1-best", "stage 3:",
        "control: 1-best cascade after stage 2's ASR updates", "decoder 1-best cascade", "stage 2, decoder source",
        "posterior coupling")


def test_quick_toy_study_produces_every_row_and_file(tmp_path):
    work, results = tmp_path / "work", tmp_path / "results"
    proc = subprocess.run(["bash", str(REPO / "recipes/toy/run.sh"), "--scale", "quick", "--stop-stage", "8",
                           "--work", str(work), "--results", str(results)],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for stage in range(9):
        assert f"Stage {stage}:" in proc.stdout

    table = (results / "results.md").read_text()
    for row in ROWS:
        assert sum(line.startswith(f"| {row}") for line in table.splitlines()) == 1, row
    assert "Stage 2 against the control: ΔBLEU" in table
    assert (results / "curves.png").stat().st_size > 10_000
    assert "fairseq_cli.train" in table and "--freeze-mt" in table  # the exact commands

    n_test = len((work / "data/st/test.tsv").read_text().splitlines()) - 1
    for name in ("onebest", "reference", "stage1", "stage2", "adapted-onebest", "stage3",
                 "asr-only", "onebest-decoder", "stage2-decoder", "posterior"):
        score = json.loads((work / "gen" / name / "score.json").read_text())
        assert score["n"] == n_test
        assert 0 <= score["bleu"] <= 100 and 0 <= score["chrf"] <= 100 and score["wer"] >= 0
        if name not in ("onebest", "adapted-onebest", "onebest-decoder"):
            assert 0 <= score["p_bleu"] <= 1
    assert json.loads((work / "gen/reference/score.json").read_text())["wer"] == 0.0

    # a rerun skips what is done and rebuilds the same table
    rerun = subprocess.run(["bash", str(REPO / "recipes/toy/run.sh"), "--scale", "quick", "--stage", "3", "--stop-stage", "8",
                            "--work", str(work), "--results", str(results)],
                           capture_output=True, text=True, cwd=REPO)
    assert rerun.returncode == 0 and "trained, skipped" in rerun.stdout
    assert (results / "results.md").read_text().split("## Commands")[0] == table.split("## Commands")[0]


@pytest.mark.parametrize("args, message", [
    (["--asr-updates", "4800x"], "--asr-updates must be a positive integer"),
    (["--stage", "9"], "--stage must be a stage number 0-8, not '9'"),
    (["--stop-stage", "x"], "--stop-stage must be a stage number 0-8, not 'x'"),
    (["--stage", "8"], "--stage 8 is after --stop-stage 7: nothing to run"),
    (["--scale", "small"], "--scale must be full or quick, not 'small'"),
    (["--seed", "-1"], "--seed must be a non-negative integer"),
    (["--seed"], "--seed needs a value"),
    (["--asr-update", "10"], "unknown option --asr-update"),
])
def test_bad_options_stop_before_any_work(tmp_path, args, message):
    work = tmp_path / "work"
    proc = subprocess.run(["bash", str(REPO / "recipes/toy/run.sh"), "--work", str(work), *args],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not work.exists()


def test_help_lists_the_options():
    proc = subprocess.run(["bash", str(REPO / "recipes/toy/run.sh"), "--help"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0
    for option in ("--stage", "--stop-stage", "--scale", "--seed", "--work", "--results", "--asr-updates"):
        assert option in proc.stdout
