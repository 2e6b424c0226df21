"""The main job's quick mode: every stage of recipes/toy/run.sh runs on seed 1 (tests/toy_study.py),
and every row and file of the results is produced with sane values; --seeds runs each seed as its
own study and summarizes them. (The findings themselves come from the full run, not from a timed
test. The same seed's bits, the dev protocol, the settings and the options:
test_toy_seed_and_tune.py.)"""

import json
import os
import shutil

from toy_study import REPO, quick_study, run_recipe, study_0_7  # noqa: F401  (quick_study, study_0_7: fixtures)

ROWS = ("1-best cascade", "reference transcript", "stage 1:", "stage 2:", "adapted MT: 1-best", "stage 3:",
        "control: 1-best cascade after stage 2's ASR updates", "decoder 1-best cascade", "stage 2, decoder source",
        "posterior coupling", "LM: 1-best cascade", "LM: stage 1", "LM: stage 2", "LM: control",
        "ablation: stage 2 with the ASR frozen", "ablation: 1-best cascade, MT source table adapted",
        "HF MT: 1-best cascade", "HF MT: stage 1", "HF MT: stage 2", "HF MT: control",
        "LM ablation: LM stage 2 with the ASR frozen", "LM ablation: LM 1-best cascade, LM input table adapted",
        "table-free exporter: stage 1", "table-free exporter: stage 2,", "table-free exporter: stage 2 with the ASR frozen")
STEPS = ("onebest", "reference", "stage1", "stage2", "control", "adapted-onebest", "stage3",
         "onebest-decoder", "stage2-decoder", "posterior", "onebest-lm", "stage1-lm", "stage2-lm", "control-lm",
         "exporter-only", "text-only", "onebest-hf-mt", "stage1-hf-mt", "stage2-hf-mt", "control-hf-mt",
         "exporter-only-lm", "text-only-lm", "stage1-tf", "stage2-tf", "exporter-only-tf")


def test_quick_study_produces_every_row_and_file(quick_study):
    work, results, log = quick_study.work, quick_study.results, quick_study.log
    for stage in range(13):
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
    assert "With the LM, stage 2 against the exporter-only ablation: ΔBLEU" in table
    assert "With the LM, stage 2 against the text-only ablation: ΔBLEU" in table
    assert "| stage 2 vs control |" in table  # the split by ambiguous noun
    assert "With the table-free exporter, stage 2 against the control: ΔBLEU" in table
    assert "With the table-free exporter, stage 2 against its exporter-only ablation: ΔBLEU" in table
    assert "| table-free: stage 2 vs exporter only |" in table
    # stage 12's exporter has no table: the quick settings' mlp, its stage 1 kept at its lowest dev L2
    assert "--exporter-type mlp" in table and "--best-checkpoint-metric l2" in table
    assert "| table-free stage 2 | " in table  # finding (d) as an interval, per ASR update
    assert "--lm-checkpoint" in table and "--lm-chat" in table and (seed1 / "lm" / "config.json").exists()
    # stage 9's ASR writes the LM's pieces
    assert "--config-yaml config_asr_lm.yaml" in table and (seed1 / "asr-lm" / "checkpoint_best.pt").exists()
    # from stage 2's ASR's speech encoder
    assert "fairseq_exporter.cli.asr_encoder" in table and "--load-pretrained-encoder-from" in table
    assert "loaded pretrained encoder from" in (seed1 / "logs/train-asr-lm.log").read_text()
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
                                    "hf_mt_onebest", "hf_mt_stage1", "hf_mt_stage2", "hf_mt_control",
                                    "lm_exporter_only", "lm_text_only", "tf_stage1", "tf_stage2", "tf_exporter_only"}
    assert figures["rows"]["onebest"]["dbleu"] is None and figures["rows"]["control"]["l2"] is None
    assert figures["rows"]["stage2"]["l2"] is not None and figures["stage2_vs_control"]["p"] is not None
    for versus in ("stage2_vs_exporter_only", "stage2_vs_text_only", "lm_stage2_vs_exporter_only",
                   "lm_stage2_vs_text_only", "tf_stage2_vs_control", "tf_stage2_vs_exporter_only"):
        assert figures[versus]["p"] is not None, versus
    assert len(figures["rows"]["stage3"]["ci"]) == 2 and set(figures["split"]["stage2"]) == {"with", "without"}
    # every generate output's hash: a rerun of the seed is checked against them
    assert set(figures["generate_sha256"]) == set(STEPS)
    # each stage's product, in pipeline order, and the machine facts each invocation ran under
    assert list(figures["product_sha256"])[:7] == ["corpus:text", "corpus:features", "corpus:vocabularies",
                                                   "corpus:sentencepiece", "corpus:manifests", "mt", "asr"]
    assert set(figures["product_sha256"]) >= {"stage1", "stage2", "control", "mt-adapted", "stage3", "lm",
                                              "asr-lm", "stage2-lm", "exporter-only", "mt-text-only", "hf-mt", "stage2-hf-mt",
                                              "exporter-only-lm", "lm-text-only", "stage1-tf", "stage2-tf",
                                              "exporter-only-tf"}
    # (stage 0 first ran in --seeds 1,2; the study's stage 0 found the corpus made)
    assert len(figures["machine"]) == 1 and figures["machine"][0]["stages"][:3] == ["0-0", "0-7", "8-12"]
    assert figures["machine"][0]["facts"]["threads"] == int(os.environ["OMP_NUM_THREADS"])
    assert set(figures["seconds"]) >= {"corpus", "mt", "asr", "stage1", "baselines", "stage2", "stage3"}
    assert set(figures["findings"]) == set("abcde") and figures["findings"]["e"]["holds"] is not None
    for key in ("stage2", "control", "tf_stage2", "lm_stage2"):
        d = figures["wer_deltas"][key]
        assert d["utterances"] == n_test and d["ci"][0] <= d["dwer"] <= d["ci"][1], key


def test_seeds_runs_each_seed_as_its_own_study(quick_study):
    work, results, seeds_log = quick_study.work, quick_study.results, quick_study.seeds_log
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
    work = quick_study.work
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
    assert summary["wer_deltas"]["tf_stage2"]["utterances"] == 2 * summary["seeds"]["1"]["n"]
    assert summary["pooled"]["tf_stage2_vs_exporter_only"]["seeds"] == 2


def test_a_rerun_skips_what_is_done_and_rebuilds_the_same_table(quick_study):
    work, results = quick_study.work, quick_study.results
    table = (results / "seed1/results.md").read_text()
    # stages 3-7 (the report reads every system's score, stages 8-10's included)
    log = run_recipe("--stage", 3, "--stop-stage", 7, "--work", work / "seed1", "--results", results / "seed1")
    assert "trained, skipped" in log
    assert (results / "seed1/results.md").read_text().split("## Commands")[0] == table.split("## Commands")[0]
