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


def test_the_hf_mt_rows_are_three_seeds_of_stage_11_with_their_outputs_hashed():
    summary = json.loads((RESULTS / "hf-mt/results.json").read_text())
    assert sorted(summary["seeds"]) == ["1", "2", "3"]
    steps = {"onebest-hf-mt", "stage1-hf-mt", "stage2-hf-mt", "control-hf-mt"}
    for seed, results in summary["seeds"].items():
        per_seed = json.loads((RESULTS / f"hf-mt/seed{seed}" / "results.json").read_text())
        assert per_seed["generate_sha256"] == results["generate_sha256"]
        assert steps <= set(results["generate_sha256"]) and results["scale"] == "full" and results["n"] == 400
    # seed 1 ran on make demo's corpus and ASR: its 1-best is the published make demo run's
    demo = json.loads((RESULTS / "demo/results.json").read_text())
    assert summary["seeds"]["1"]["rows"]["hf_mt_onebest"]["wer"] == demo["rows"]["onebest"]["wer"]
    assert summary["summary"]["hf_mt_stage2"]["n"] == 3 and summary["pooled"]["hf_mt_stage2"] is not None


def test_a_missing_hf_mt_summary_is_named(tmp_path):
    for name in ("results.json", "tune.json"):
        (tmp_path / name).write_text((RESULTS / name).read_text())
    path = tmp_path / "README.md"
    path.write_text("<!-- results:hf-mt -->\n<!-- /results:hf-mt -->\n")
    with pytest.raises(SystemExit, match="no hf-mt/results.json beside results.json"):
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
