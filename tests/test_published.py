"""The study's numbers in README.md and recipes/toy/README.md are the committed results':
every study table is a block that fairseq_exporter.toy.published renders from
recipes/toy/results/, and the blocks as committed must equal what it renders."""

import json
from pathlib import Path

import pytest

from fairseq_exporter.toy import published

REPO = Path(__file__).resolve().parents[1]
READMES = {REPO / "README.md": {"study", "ablations"}, REPO / "benchmarks/README.md": {"lm-backend", "cpu-pins"},
           REPO / "recipes/mustc/README.md": {"lm-memory"},
           REPO / "recipes/toy/README.md": {"settings", "seeds", "study", "findings", "ablations", "split", "time",
                                             "lm-seeds", "lm", "machine", "demo", "hf-mt-seeds", "hf-mt"}}
RESULTS = REPO / "recipes/toy/results"


def test_every_study_table_in_the_readmes_equals_the_committed_results():
    for path, names in READMES.items():
        assert names <= set(published.blocks(path.read_text())), path
    published.main([*map(str, READMES), "--check"])  # exits non-zero on any difference


def test_a_changed_number_in_a_block_is_caught(tmp_path):
    text = (REPO / "recipes/toy/README.md").read_text()
    start = text.index("<!-- results:seeds -->")
    row = text.index("\n| 1 |", start) + 1
    end = text.index(" | ", text.index(" | ", row) + 3)  # the second cell: WER before -> after
    cell = text[text.index(" | ", row) + 3:end]
    changed = text[:row] + text[row:end].replace(cell, "99.99 → 99.99") + text[end:]
    path = tmp_path / "README.md"
    path.write_text(changed)
    with pytest.raises(SystemExit, match="results:seeds"):
        published.main([str(path), "--check"])


def test_the_committed_results_are_three_seeds_with_every_output_hashed():
    summary = json.loads((RESULTS / "results.json").read_text())
    assert sorted(summary["seeds"]) == ["1", "2", "3"]
    for seed, results in summary["seeds"].items():
        per_seed = json.loads((RESULTS / f"seed{seed}" / "results.json").read_text())
        assert per_seed["generate_sha256"] == results["generate_sha256"]
        assert {"onebest", "stage1", "stage2", "control", "adapted-onebest", "stage3", "exporter-only",
                "text-only"} <= set(results["generate_sha256"])
        assert results["scale"] == "full" and results["n"] == 400
    tune = json.loads((RESULTS / "tune.json").read_text())
    assert tune["split"] == "dev" and tune["seed"] == 1 and tune["scale"] == "full"


def test_stage_12s_settings_are_its_protocol_s_on_seed_1s_dev_set():
    from fairseq_exporter.toy.tune import read_settings

    table_free = json.loads((RESULTS / "tune-table-free.json").read_text())
    assert table_free["split"] == "dev" and table_free["seed"] == 1 and table_free["scale"] == "full"
    assert read_settings(RESULTS / "tune-table-free.json", table_free=True) == table_free["selected"]
    assert table_free["selected"]["exporter_type"] in ("mlp", "transformer")


@pytest.mark.parametrize("study, prefix, suffix", [("lm", "lm_", "-lm"), ("hf-mt", "hf_mt_", "-hf-mt")])
def test_the_text_model_rows_are_three_seeds_of_their_stage_with_their_outputs_hashed(study, prefix, suffix):
    """Stage 9's (the instruct LM) and stage 11's (the HF MT) rows: each its own runs on seeds 1-3."""
    summary = json.loads((RESULTS / study / "results.json").read_text())
    assert sorted(summary["seeds"]) == ["1", "2", "3"]
    steps = {f"{name}{suffix}" for name in ("onebest", "stage1", "stage2", "control")}
    for seed, results in summary["seeds"].items():
        per_seed = json.loads((RESULTS / study / f"seed{seed}" / "results.json").read_text())
        assert per_seed["generate_sha256"] == results["generate_sha256"]
        assert steps <= set(results["generate_sha256"]) and results["scale"] == "full" and results["n"] == 400
    assert summary["summary"][f"{prefix}stage2"]["n"] == 3 and summary["pooled"][f"{prefix}stage2"] is not None


def test_the_lm_rows_hold_their_ablations_on_the_same_runs():
    summary = json.loads((RESULTS / "lm/results.json").read_text())
    for results in summary["seeds"].values():
        assert {"exporter-only-lm", "text-only-lm"} <= set(results["generate_sha256"])
    assert summary["pooled"]["lm_stage2_vs_exporter_only"]["seeds"] == 3


def test_the_table_free_rows_are_stage_12_on_seeds_1_3_with_their_ablation_and_wer_intervals():
    """Stage 12's rows (the table-free exporter with its selected settings) beside stages 4-5 of the
    same runs, on seeds 1-3: each output hashed, (d) as WER differences with intervals."""
    summary = json.loads((RESULTS / "table-free/results.json").read_text())
    selected = json.loads((RESULTS / "tune-table-free.json").read_text())["selected"]
    assert sorted(summary["seeds"]) == ["1", "2", "3"]
    for seed, results in summary["seeds"].items():
        per_seed = json.loads((RESULTS / "table-free" / f"seed{seed}" / "results.json").read_text())
        assert per_seed["generate_sha256"] == results["generate_sha256"]
        assert {"onebest", "control", "stage1-tf", "stage2-tf", "exporter-only-tf"} <= set(results["generate_sha256"])
        assert results["scale"] == "full" and results["n"] == 400
        table = (RESULTS / "table-free" / f"seed{seed}" / "results.md").read_text()
        assert f"--exporter-type {selected['exporter_type']}" in table and f"--asr-weight {selected['asr_weight']:g}" in table
    assert summary["pooled"]["tf_stage2_vs_exporter_only"]["seeds"] == 3
    deltas = summary["wer_deltas"]["tf_stage2"]
    assert deltas["utterances"] == 3 * 400 and deltas["ci"][0] <= deltas["dwer"] <= deltas["ci"][1]


def test_the_hf_mt_rows_seed_1_is_make_demos_asr():
    """Stage 11's seed 1 ran on make demo's corpus and ASR: its 1-best is the published run's."""
    summary = json.loads((RESULTS / "hf-mt/results.json").read_text())
    demo = json.loads((RESULTS / "demo/results.json").read_text())
    assert summary["seeds"]["1"]["rows"]["hf_mt_onebest"]["wer"] == demo["rows"]["onebest"]["wer"]


def test_the_lm_rows_are_the_instruct_lm_on_its_own_asr():
    """Stage 9's LM is prompted through its chat template, its ASR writes the LM's pieces."""
    for seed in (1, 2, 3):
        table = (RESULTS / f"lm/seed{seed}/results.md").read_text()
        assert "fairseq_exporter.toy.chat_lm" in table and "--lm-chat" in table
        assert "--config-yaml config_asr_lm.yaml" in table and "--config-yaml config_st_lm.yaml" in table


@pytest.mark.parametrize("study", ["lm", "hf-mt"])
def test_a_missing_text_model_summary_is_named(tmp_path, study):
    for name in ("results.json", "tune.json"):
        (tmp_path / name).write_text((RESULTS / name).read_text())
    path = tmp_path / "README.md"
    path.write_text(f"<!-- results:{study} -->\n<!-- /results:{study} -->\n")
    with pytest.raises(SystemExit, match=f"no {study}/results.json beside results.json"):
        published.main([str(path), "--results", str(tmp_path)])


def test_an_unknown_block_is_refused(tmp_path):
    path = tmp_path / "README.md"
    path.write_text("<!-- results:nonsense -->\n<!-- /results:nonsense -->\n")
    with pytest.raises(SystemExit, match="block results:nonsense is not one of"):
        published.main([str(path), "--check"])


def test_the_published_make_demo_run_holds_every_stage_hash_and_its_machine():
    demo = json.loads((RESULTS / "demo/results.json").read_text())
    assert demo["seed"] == 1 and demo["scale"] == "full" and demo["n"] == 400
    assert list(demo["product_sha256"])[:7] == ["corpus:text", "corpus:features", "corpus:vocabularies",
                                                "corpus:sentencepiece", "corpus:manifests", "mt", "asr"]
    assert {"stage1", "stage2", "control", "mt-adapted", "stage3-exporter", "stage3"} <= set(demo["product_sha256"])
    assert {"onebest", "reference", "stage1", "stage2", "control", "adapted-onebest", "stage3"} == \
        set(demo["generate_sha256"])
    assert [m["stages"][0] for m in demo["machine"]][:1] == ["0-7"]
    for machine in demo["machine"]:  # run as make demo runs it: the pins, two threads
        assert machine["facts"]["threads"] == 2 and "MKL_CBWR=AVX2" in machine["facts"]["pins"]
    assert "| 0-7 |" in published.machine_table(demo)


def test_a_published_run_without_its_stage_hashes_or_machine_is_refused(tmp_path, monkeypatch):
    demo = json.loads((RESULTS / "demo/results.json").read_text())
    for key in ("product_sha256", "machine"):
        broken = dict(demo)
        del broken[key]
        path = tmp_path / "results.json"
        path.write_text(json.dumps(broken))
        monkeypatch.setattr(published, "DEMO", path)
        with pytest.raises(published.PublishedError, match=f"has no {key}"):
            published.demo_results()
