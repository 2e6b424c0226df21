"""The main job's quick mode: every stage of recipes/toy/run.sh runs on seed 1, and every row and
file of the results is produced with sane values; --seeds runs each seed as its own study and
summarizes them; the same seed gives the same bits. (The findings themselves come from the full
run, not from a timed test.)"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from tiny_cascade import weights

import fairseq_exporter  # noqa: F401  (the checkpoint allowlist)
from fairseq_exporter.toy import provenance

REPO = Path(__file__).resolve().parents[1]
RUN = ["bash", str(REPO / "recipes/toy/run.sh"), "--scale", "quick"]
ROWS = ("1-best cascade", "reference transcript", "stage 1:", "stage 2:", "adapted MT: 1-best", "stage 3:",
        "control: 1-best cascade after stage 2's ASR updates", "decoder 1-best cascade", "stage 2, decoder source",
        "posterior coupling", "LM: 1-best cascade", "LM: stage 1", "LM: stage 2", "LM: control",
        "ablation: stage 2 with the ASR frozen", "ablation: 1-best cascade, MT source table adapted",
        "HF MT: 1-best cascade", "HF MT: stage 1", "HF MT: stage 2", "HF MT: control")
STEPS = ("onebest", "reference", "stage1", "stage2", "control", "adapted-onebest", "stage3",
         "onebest-decoder", "stage2-decoder", "posterior", "onebest-lm", "stage1-lm", "stage2-lm", "control-lm",
         "exporter-only", "text-only", "onebest-hf-mt", "stage1-hf-mt", "stage2-hf-mt", "control-hf-mt")


def run_recipe(*args):
    proc = subprocess.run([*RUN, *map(str, args)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def quick_study(tmp_path_factory):
    """--seeds 1,2 through stage 0 (each seed's corpus), then the quick study on seed 1: stages 0-7
    (its corpus already made), then stages 8-11. A second seed's whole study would repeat seed 1's
    stages on another corpus: the summary over seeds is tested on a stand-in below."""
    root = tmp_path_factory.mktemp("toy")
    work, results = root / "work", root / "results"
    seeds_log = run_recipe("--seeds", "1,2", "--stop-stage", 0, "--work", work, "--results", results)
    study_log = run_recipe("--work", work / "seed1", "--results", results / "seed1")
    extras_log = run_recipe("--stage", 8, "--stop-stage", 11, "--work", work / "seed1",
                            "--results", results / "seed1")
    return work, results, seeds_log, study_log + extras_log


def test_quick_study_produces_every_row_and_file(quick_study):
    work, results, _, log = quick_study
    for stage in range(12):
        assert f"Stage {stage}:" in log
    seed1, seed1_results = work / "seed1", results / "seed1"
    table = (seed1_results / "results.md").read_text()
    for row in ROWS:
        assert sum(line.startswith(f"| {row}") for line in table.splitlines()) == 1, row
    assert "Stage 2 against the control: ΔBLEU" in table and "## Findings on this seed" in table
    assert "With the LM, stage 2 against the control: ΔBLEU" in table
    assert "With the HF MT, stage 2 against the control: ΔBLEU" in table
    assert "Stage 2 against the exporter-only ablation: ΔBLEU" in table
    assert "Stage 2 against the text-only ablation: ΔBLEU" in table
    assert "| stage 2 vs control |" in table  # the split by ambiguous noun
    assert "--lm-checkpoint" in table and (seed1 / "lm" / "config.json").exists()
    assert "--hf-mt-checkpoint" in table and (seed1 / "hf-mt" / "source.spm").exists()
    assert (seed1_results / "curves.png").stat().st_size > 10_000
    assert "fairseq_cli.train" in table and "--freeze-mt" in table  # the exact commands

    n_test = len((seed1 / "data/st/test.tsv").read_text().splitlines()) - 1
    for name in STEPS:
        score = json.loads((seed1 / "gen" / name / "score.json").read_text())
        assert score["n"] == n_test
        assert 0 <= score["bleu"] <= 100 and 0 <= score["chrf"] <= 100 and score["wer"] >= 0
        if name not in ("onebest", "adapted-onebest", "onebest-decoder", "onebest-lm", "onebest-hf-mt"):
            assert 0 <= score["p_bleu"] <= 1
    assert json.loads((seed1 / "gen/reference/score.json").read_text())["wer"] == 0.0

    figures = json.loads((seed1_results / "results.json").read_text())
    assert set(figures["rows"]) == {"onebest", "reference", "stage1", "stage2", "control", "adapted_onebest",
                                    "stage3", "decoder_onebest", "stage2_decoder", "posterior",
                                    "lm_onebest", "lm_stage1", "lm_stage2", "lm_control", "exporter_only", "text_only",
                                    "hf_mt_onebest", "hf_mt_stage1", "hf_mt_stage2", "hf_mt_control"}
    assert figures["rows"]["onebest"]["dbleu"] is None and figures["rows"]["control"]["l2"] is None
    assert figures["rows"]["stage2"]["l2"] is not None and figures["stage2_vs_control"]["p"] is not None
    assert figures["stage2_vs_exporter_only"]["p"] is not None and figures["stage2_vs_text_only"]["p"] is not None
    assert len(figures["rows"]["stage3"]["ci"]) == 2 and set(figures["split"]["stage2"]) == {"with", "without"}
    # every generate output's hash: a rerun of the seed is checked against them
    assert set(figures["generate_sha256"]) == set(STEPS)
    # each stage's product, in pipeline order, and the machine facts each invocation ran under
    assert list(figures["product_sha256"])[:7] == ["corpus:text", "corpus:features", "corpus:vocabularies",
                                                   "corpus:sentencepiece", "corpus:manifests", "mt", "asr"]
    assert set(figures["product_sha256"]) >= {"stage1", "stage2", "control", "mt-adapted", "stage3", "lm",
                                              "stage2-lm", "exporter-only", "mt-text-only", "hf-mt", "stage2-hf-mt"}
    # (stage 0 first ran in --seeds 1,2; the study's stage 0 found the corpus made)
    assert len(figures["machine"]) == 1 and figures["machine"][0]["stages"][:3] == ["0-0", "0-7", "8-11"]
    assert figures["machine"][0]["facts"]["threads"] == int(os.environ["OMP_NUM_THREADS"])
    assert set(figures["seconds"]) >= {"corpus", "mt", "asr", "stage1", "baselines", "stage2", "stage3"}
    assert set(figures["findings"]) == set("abcd")


def test_seeds_runs_each_seed_as_its_own_study(quick_study):
    work, results, seeds_log, _ = quick_study
    for seed in (1, 2):  # the seed's run, with the options given, in its own dirs
        assert f"seed {seed}: bash {REPO / 'recipes/toy/run.sh'} --scale quick --stop-stage 0 --seed {seed} " \
            f"--work {work / f'seed{seed}'} --results {results / f'seed{seed}'}" in seeds_log
        # each seed is its own study, seeded throughout
        assert json.loads((work / f"seed{seed}/data/corpus.json").read_text())["arguments"]["seed"] == seed
    assert (work / "seed1/data/st/train.tsv").read_text() != (work / "seed2/data/st/train.tsv").read_text()
    assert not (results / "results.json").exists()  # no summary before stage 7


def test_seeds_summarizes_the_seeds_results(quick_study, tmp_path):
    # --seeds through stage 7 on two finished work dirs: each seed's report, then the summary over
    # them. Seed 2's work dir is a stand-in: seed 1's, its corpus relabelled seed 2 (a seed's study
    # is what the test above and test_quick_study_produces_every_row_and_file check).
    work, _, _, _ = quick_study
    seeds_work, results = tmp_path / "work", tmp_path / "results"
    for seed in (1, 2):
        shutil.copytree(work / "seed1", seeds_work / f"seed{seed}", symlinks=True)
    corpus_json = seeds_work / "seed2/data/corpus.json"
    corpus = json.loads(corpus_json.read_text())
    corpus["arguments"]["seed"] = 2
    corpus_json.write_text(json.dumps(corpus, indent=1))
    log = run_recipe("--seeds", "1,2", "--stage", 7, "--stop-stage", 7, "--work", seeds_work, "--results", results)
    assert "Stage 7:" in log and "Stage 5:" not in log
    assert json.loads((results / "seed2/results.json").read_text())["seed"] == 2
    summary = json.loads((results / "results.json").read_text())
    assert set(summary["seeds"]) == {"1", "2"}
    assert summary["summary"]["stage2_vs_control"]["n"] == 2
    assert summary["pooled"]["stage2"]["seeds"] == 2  # read from each seed's outputs
    assert (results / "seeds.png").stat().st_size > 10_000
    assert "stage 2 vs control" in (results / "results.md").read_text()


def test_a_rerun_skips_what_is_done_and_rebuilds_the_same_table(quick_study):
    work, results, _, _ = quick_study
    table = (results / "seed1/results.md").read_text()
    # stages 3-7 (the report reads every system's score, stages 8-10's included)
    log = run_recipe("--stage", 3, "--stop-stage", 7, "--work", work / "seed1", "--results", results / "seed1")
    assert "trained, skipped" in log
    assert (results / "seed1/results.md").read_text().split("## Commands")[0] == table.split("## Commands")[0]


def _model(checkpoint):
    return weights(checkpoint)  # without official fairseq's uninitialized buffer


def test_the_same_seed_gives_the_same_bits(quick_study, tmp_path):
    # corpus (espeak's noise), MT, ASR, the exporter stages and the decodes: a second run of
    # seed 1 must give identical weights and generate outputs (fairseq's checkpoints also hold
    # timings, so the weights are compared, not the files)
    work, results, _, _ = quick_study
    again = tmp_path / "again"
    run_recipe("--seed", 1, "--stop-stage", 5, "--work", again, "--results", tmp_path / "results")
    assert (again / "data/st/fbank80.zip").read_bytes() == (work / "seed1/data/st/fbank80.zip").read_bytes()
    for model in ("mt", "asr", "stage1", "stage2", "control"):
        first, second = _model(work / "seed1" / model / "checkpoint_best.pt"), _model(again / model / "checkpoint_best.pt")
        assert first.keys() == second.keys()
        assert all(torch.equal(first[k], second[k]) for k in first), model
    for step in ("onebest", "stage1", "stage2", "control"):
        assert (again / "gen" / step / "generate-test.txt").read_text() == \
            (work / "seed1" / "gen" / step / "generate-test.txt").read_text(), step
    # the hashes results.json keeps, stage by stage: the rerun's products have the first run's
    first = json.loads((results / "seed1/results.json").read_text())["product_sha256"]
    rerun = provenance.product_hashes(again)
    assert len(rerun) == 10 and all(rerun[name] == first[name] for name in rerun), rerun  # corpus 5, models 5


def test_tune_reads_no_test_split_and_writes_the_settings_the_study_reads(quick_study, tmp_path):
    # the dev protocol on seed 1's corpus and MT with every test split removed: it must not need one
    work, _, _, _ = quick_study
    tune_work, results = tmp_path / "work", tmp_path / "results"
    for name in ("data", "mt", "mt-bin", "asr-20"):  # the study's 20-update ASR is one of the candidates
        shutil.copytree(work / "seed1" / name, tune_work / name)
    (tune_work / "logs").mkdir()
    shutil.copy(work / "seed1/logs/train-asr-20.log", tune_work / "logs")
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
                     "--work", work / "seed1", "--results", tmp_path / "study")
    assert f"asr_updates={selected['asr_updates']} exporter_type={selected['exporter_type']}" in log


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
    (["--stage", "12"], "--stage must be a stage number 0-11, not '12'"),
    (["--stop-stage", "x"], "--stop-stage must be a stage number 0-11, not 'x'"),
    (["--seeds", "1,2", "--tune"], "--tune runs on one seed"),
    (["--settings", "no/such/tune.json"], "--settings no/such/tune.json: no such file (write one with --tune)"),
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


def test_help_lists_the_options():
    proc = subprocess.run(["bash", str(REPO / "recipes/toy/run.sh"), "--help"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0
    for option in ("--stage", "--stop-stage", "--scale", "--seed", "--seeds", "--work", "--results", "--asr-updates",
                   "--stage2-updates", "--tune", "--settings"):
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
