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
                                             "lm-seeds", "lm", "machine"}}
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
        # each stage's product hashed, and the machine facts the bits depend on
        assert per_seed["product_sha256"] == results["product_sha256"] and per_seed["machine"] == results["machine"]
        assert {"corpus:features", "corpus:manifests", "mt", "asr", "stage1", "stage2", "control", "mt-adapted",
                "stage3", "lm", "stage2-lm", "exporter-only", "mt-text-only"} <= set(results["product_sha256"])
        assert all({"cpu", "isa", "threads", "pins", "torch", "mkl", "onednn"} <= set(m["facts"])
                   for m in results["machine"])
        assert {"onebest", "stage1", "stage2", "control", "adapted-onebest", "stage3", "exporter-only",
                "text-only"} <= set(results["generate_sha256"])
        assert results["scale"] == "full" and results["n"] == 400
    tune = json.loads((RESULTS / "tune.json").read_text())
    assert tune["split"] == "dev" and tune["seed"] == 1 and tune["scale"] == "full"


def test_an_unknown_block_is_refused(tmp_path):
    path = tmp_path / "README.md"
    path.write_text("<!-- results:nonsense -->\n<!-- /results:nonsense -->\n")
    with pytest.raises(SystemExit, match="block results:nonsense is not one of"):
        published.main([str(path), "--check"])


def test_a_published_seed_without_its_stage_hashes_or_machine_is_refused():
    summary = json.loads((RESULTS / "results.json").read_text())
    assert "| 1 | 0-7" in published.machine_table(summary)
    for key in ("product_sha256", "machine"):
        broken = json.loads(json.dumps(summary))
        del broken["seeds"]["2"][key]
        with pytest.raises(published.PublishedError, match=f"seed 2's results.json has no {key}"):
            published.machine_table(broken)
