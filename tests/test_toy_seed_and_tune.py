"""recipes/toy/run.sh beyond the study's rows: the same seed gives the same bits (seed 1 run
again, stages 0-5, against the study's run in tests/toy_study.py), the dev protocol (--tune) on
that second run's corpus and MT, the settings files and the options. Apart from
test_toy_recipe.py, so that the two files can run on two xdist workers at once."""

import json
import os
import shutil
import subprocess

import pytest
import torch

from tiny_cascade import weights
from toy_study import REPO, RUN, run_recipe, study_0_7  # noqa: F401  (study_0_7: a fixture)

import fairseq_exporter  # noqa: F401  (the checkpoint allowlist)
from fairseq_exporter.toy import provenance


@pytest.fixture(scope="module")
def again(tmp_path_factory):
    """Seed 1's stages 0-5 run again, in a work dir of their own."""
    root = tmp_path_factory.mktemp("again")
    run_recipe("--seed", 1, "--stop-stage", 5, "--work", root / "work", "--results", root / "results")
    return root / "work"


def test_tune_reads_no_test_split_and_writes_the_settings_the_study_reads(again, tmp_path):
    # the dev protocol on seed 1's corpus and MT with every test split removed: it must not need one
    tune_work, results = tmp_path / "work", tmp_path / "results"
    for name in ("data", "mt", "mt-bin", "asr-20"):  # the study's 20-update ASR is one of the candidates
        shutil.copytree(again / name, tune_work / name)
    (tune_work / "logs").mkdir()
    shutil.copy(again / "logs/train-asr-20.log", tune_work / "logs")
    removed = [path for path in tune_work.rglob("*") if path.name.startswith(("test", "task.test"))]
    assert len(removed) >= 4  # test.tsv, test_asr.tsv, task.test.{en,de}
    for path in removed:
        path.unlink()
    log = run_recipe("--tune", "--work", tune_work, "--results", results)
    assert "Tune: the dev protocol" in log and "Stage" not in log
    commands = (tune_work / "commands.sh").read_text()
    assert "--save-dir " + str(tune_work / "asr-10") in commands and "asr-20 " not in commands
    assert "fairseq_cli.generate" not in commands and "fairseq_cli.validate" not in commands
    assert "--coupling onebest" in commands  # the control selected as the 1-best cascade it is tested as

    tune = json.loads((results / "tune.json").read_text())
    assert tune["split"] == "dev" and tune["seed"] == 1
    selected = tune["selected"]
    assert selected["asr_updates"] in (10, 20) and selected["exporter_type"] in ("vocab", "mlp")
    assert selected["stage2_updates"] in (2, 4) and selected["control_lr"] in (2e-4, 4e-4)
    table = (results / "tune.md").read_text()
    assert "**Control**" in table and "**Text-only adaptation**" in table

    # the study reads what the protocol selected
    log = run_recipe("--settings", results / "tune.json", "--stage", 7, "--stop-stage", 7,
                     "--work", again, "--results", tmp_path / "study")
    assert f"asr_updates={selected['asr_updates']} exporter_type={selected['exporter_type']}" in log

    # stage 12's protocol on the ASR --tune selected: still no test split, and its settings reach stage 12
    log = run_recipe("--tune-table-free", "--settings", results / "tune.json", "--work", tune_work,
                     "--results", results)
    assert f"ASR of {selected['asr_updates']} updates" in log and "Stage" not in log
    commands = (tune_work / "commands.sh").read_text()
    assert "fairseq_cli.generate" not in commands and "fairseq_cli.validate" not in commands
    assert "--best-checkpoint-metric l2" in commands and "--exporter-type transformer" in commands
    table_free = json.loads((results / "tune-table-free.json").read_text())
    assert table_free["split"] == "dev" and table_free["selected"]["exporter_type"] in ("mlp", "transformer")
    assert "**Transcript-loss weight**" in (results / "tune-table-free.md").read_text()
    assert {row["asr_weight"] for row in table_free["asr_weight"]} == {"0.3", "1"}
    # stage 12 reads them (then stops: this work dir has no 1-best cascade; the quick study runs it)
    proc = subprocess.run([*RUN, "--table-free-settings", str(results / "tune-table-free.json"), "--stage", "12",
                           "--stop-stage", "12", "--work", str(tmp_path / "empty"), "--results", str(tmp_path / "study")],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and "no " + str(tmp_path / "empty" / "gen" / "onebest") in proc.stderr
    selected = table_free["selected"]
    assert f"tf_exporter_type={selected['exporter_type']} tf_stage1_lr={selected['stage1_lr']} " in proc.stdout


def test_full_scale_reads_the_committed_settings(tmp_path):
    committed = json.loads((REPO / "recipes/toy/results/tune.json").read_text())["selected"]
    proc = subprocess.run(["bash", str(REPO / "recipes/toy/run.sh"), "--stage", "7", "--stop-stage", "7",
                           "--work", str(tmp_path / "work"), "--results", str(tmp_path / "results")],
                          capture_output=True, text=True, cwd=REPO)
    assert f"settings from recipes/toy/results/tune.json: asr_updates={committed['asr_updates']} " in proc.stdout


@pytest.mark.parametrize("selected, message", [
    ({"asr_updates": "many"}, '"selected".asr_updates = \'many\' is not a valid asr_updates'),
    ({"exporter_type": "lstm"}, '"selected".exporter_type = \'lstm\' is not a valid exporter_type'),
    ({"stage2_lr": None}, "lacks stage2_lr"),
])
def test_a_bad_settings_file_is_refused_naming_it(tmp_path, selected, message):
    good = json.loads((REPO / "recipes/toy/results/tune.json").read_text())["selected"]
    settings = {**good, **selected}
    settings = {k: v for k, v in settings.items() if v is not None}
    path = tmp_path / "tune.json"
    path.write_text(json.dumps({"selected": settings}))
    proc = subprocess.run([*RUN, "--settings", str(path), "--stage", "7", "--stop-stage", "7",
                           "--work", str(tmp_path / "work")], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and f"error: {path}: " in proc.stderr and message in proc.stderr


@pytest.mark.parametrize("args, message", [
    (["--asr-updates", "4800x"], "--asr-updates must be a positive integer"),
    (["--stage", "13"], "--stage must be a stage number 0-12, not '13'"),
    (["--stop-stage", "x"], "--stop-stage must be a stage number 0-12, not 'x'"),
    (["--seeds", "1,2", "--tune"], "--tune and --tune-table-free run on one seed"),
    (["--seeds", "1,2", "--tune-table-free"], "--tune and --tune-table-free run on one seed"),
    (["--tune", "--tune-table-free"], "give --tune, then --tune-table-free"),
    (["--settings", "no/such/tune.json"], "--settings no/such/tune.json: no such file (write one with --tune)"),
    (["--table-free-settings", "no/such.json"],
     "--table-free-settings no/such.json: no such file (write one with --tune-table-free)"),
    (["--stage", "8"], "--stage 8 is after --stop-stage 7: nothing to run"),
    (["--scale", "small"], "--scale must be full or quick, not 'small'"),
    (["--seed", "-1"], "--seed must be a non-negative integer"),
    (["--seed"], "--seed needs a value"),
    (["--asr-update", "10"], "unknown option --asr-update"),
    (["--stage2-updates", "0"], "--stage2-updates must be a positive integer, not '0'"),
    (["--seeds", "1"], "--seeds must be two or more comma-separated seeds"),
    (["--seeds", "1,x"], "--seeds must be two or more comma-separated seeds"),
    (["--seeds", "1,2,1"], "--seeds lists a seed twice"),
    (["--seeds", "1,2", "--seed", "3"], "give --seed or --seeds, not both"),
])
def test_bad_options_stop_before_any_work(tmp_path, args, message):
    work = tmp_path / "work"
    proc = subprocess.run(["bash", str(REPO / "recipes/toy/run.sh"), "--work", str(work), *args],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not work.exists()


def test_ablations_without_a_stage_2_to_ablate_are_refused(tmp_path):
    work = tmp_path / "work"
    proc = subprocess.run(["bash", str(REPO / "recipes/toy/run.sh"), "--scale", "quick", "--work", str(work),
                           "--results", str(tmp_path / "results"), "--stage", "10", "--stop-stage", "10"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "stage 10 ablates stage 2 (stage 5) or the LM's stage 2 (stage 9): neither is in" in proc.stderr


def test_stage_12_without_the_1best_cascade_and_control_is_refused(tmp_path):
    work = tmp_path / "work"
    proc = subprocess.run([*RUN, "--work", str(work), "--results", str(tmp_path / "results"), "--stage", "12",
                           "--stop-stage", "12"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"stage 12 compares with stage 4's 1-best cascade and stage 5's control: no {work}/gen/onebest" in proc.stderr


def test_stage_9_on_an_lm_that_is_not_its_instruct_lm_is_refused(tmp_path):
    work = tmp_path / "work"
    (work / "lm").mkdir(parents=True)
    (work / "lm" / "training.json").write_text('{"updates": 10}')  # an LM trained otherwise
    (work / "lm" / "done-10").touch()
    proc = subprocess.run(["bash", str(REPO / "recipes/toy/run.sh"), "--scale", "quick", "--work", str(work),
                           "--results", str(tmp_path / "results"), "--stage", "9", "--stop-stage", "9"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{work / 'lm' / 'training.json'}: not an LM of toy/chat_lm.py" in proc.stderr


def test_help_lists_the_options():
    proc = subprocess.run(["bash", str(REPO / "recipes/toy/run.sh"), "--help"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0
    for option in ("--stage", "--stop-stage", "--scale", "--seed", "--seeds", "--work", "--results", "--asr-updates",
                   "--stage2-updates", "--tune", "--tune-table-free", "--settings", "--table-free-settings"):
        assert option in proc.stdout


def test_an_asr_trained_to_another_budget_is_not_extended(tmp_path):
    # the ASR's lr decays to the end of --asr-updates: resuming it to a bigger budget would
    # restart the decay half way, so the recipe asks for a new work dir instead
    work = tmp_path / "work"
    (work / "asr").mkdir(parents=True)
    (work / "asr/done-20").touch()
    proc = subprocess.run([*RUN, "--stage", "2", "--stop-stage", "2", "--asr-updates", "30", "--work", str(work)],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and "trained to 20 updates; for --asr-updates 30 use a new --work" in proc.stderr
    assert not (work / "logs/train-asr.log").exists()
    # the same with WORK/asr a link to the ASR of 20 updates
    shutil.rmtree(work / "asr")
    (work / "asr-20").mkdir()
    (work / "asr").symlink_to("asr-20")
    proc = subprocess.run([*RUN, "--stage", "2", "--stop-stage", "2", "--asr-updates", "30", "--work", str(work)],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and "trained to 20 updates; for --asr-updates 30 use a new --work" in proc.stderr
    assert not (work / "logs/train-asr-30.log").exists()


FAKE_FAIRSEQ = """#!/usr/bin/env bash
# stands in for python: "-m fairseq_cli.train ..." makes its --save-dir, logs $FAKE_TRAIN_LOG, aborts
[ "$2" = fairseq_cli.train ] || exit 0
for ((i = 1; i < $#; i++)); do [ "${!i}" = --save-dir ] && j=$((i + 1)) && mkdir -p "${!j}"; done
echo "$FAKE_TRAIN_LOG"
kill -ABRT $$
"""


@pytest.mark.parametrize("train_log, ok", [("| INFO | fairseq_cli.train | done training in 3.1 seconds", True),
                                           ("| INFO | fairseq.trainer | begin training epoch 1", False)])
def test_a_train_that_aborts_at_exit_counts_only_if_it_finished(tmp_path, train_log, ok):
    # fairseq-train was seen to abort (134) at interpreter exit after its work was saved: the
    # recipe goes on after "done training", and stops on an abort before it
    fake = tmp_path / "python"
    fake.write_text(FAKE_FAIRSEQ)
    fake.chmod(0o755)
    work = tmp_path / "work"
    proc = subprocess.run([*RUN, "--stage", "1", "--stop-stage", "1", "--work", str(work)], capture_output=True,
                          text=True, cwd=REPO, env={**os.environ, "PYTHON": str(fake), "FAKE_TRAIN_LOG": train_log})
    if ok:
        assert proc.returncode == 0 and "train-mt: fairseq-train finished and saved, then aborted at exit (134)" \
            in proc.stdout, proc.stdout + proc.stderr
        assert (work / "mt/done-20").exists()
    else:
        assert proc.returncode == 1 and "FAILED: train-mt (exit 134" in proc.stdout, proc.stdout + proc.stderr
        assert not (work / "mt/done-20").exists()


def _model(checkpoint):
    return weights(checkpoint)  # without official fairseq's uninitialized buffer


def test_the_same_seed_gives_the_same_bits(again, study_0_7):
    # corpus (espeak's noise), MT, ASR, the exporter stages and the decodes: a second run of
    # seed 1 must give identical weights and generate outputs (fairseq's checkpoints also hold
    # timings, so the weights are compared, not the files)
    work = study_0_7.work
    assert (again / "data/st/fbank80.zip").read_bytes() == (work / "seed1/data/st/fbank80.zip").read_bytes()
    for model in ("mt", "asr", "stage1", "stage2", "control"):
        first, second = _model(work / "seed1" / model / "checkpoint_best.pt"), _model(again / model / "checkpoint_best.pt")
        assert first.keys() == second.keys()
        assert all(torch.equal(first[k], second[k]) for k in first), model
    for step in ("onebest", "stage1", "stage2", "control"):
        assert (again / "gen" / step / "generate-test.txt").read_text() == \
            (work / "seed1" / "gen" / step / "generate-test.txt").read_text(), step
    # the hashes results.json keeps, stage by stage: the rerun's products have the first run's
    first = study_0_7.results_0_7["product_sha256"]
    rerun = provenance.product_hashes(again)
    assert len(rerun) == 10 and all(rerun[name] == first[name] for name in rerun), rerun  # corpus 5, models 5
