"""The dev protocol's selections (fairseq_exporter/toy/tune.py) from fake training logs: the best
dev figure per (lr, budget), ties to the smaller budget, the control on its own figures, the
text-only ablation on the lowest dev loss; and the settings file the recipe reads."""

import json

import pytest

from fairseq_exporter.toy.tune import TuneError, best_by_budget, main, read_settings, tune

GRID = {"asr_updates": [2400, 4800], "exporters": ["vocab", "mlp"], "lrs": ["1e-4", "2e-4"], "base_lr": "2e-4",
        "budgets": [200, 400], "valid_every": 100, "text_lrs": ["5e-4", "1e-3"], "text_budgets": [100, 200],
        "text_valid_every": 50}


def log_line(subset, record):
    return f"2026-12-05 00:00:00 | INFO | {subset} | {json.dumps(record)}\n"


def write_log(work, name, subset, records):
    path = work / "logs" / f"train-{name}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("2026-12-05 00:00:00 | INFO | fairseq_cli.train | begin training\n"
                    + "".join(log_line(subset, r) for r in records))


def dev(bleus, step=100, **extra):
    return [{"dev_bleu": str(b), "dev_num_updates": str(step * (i + 1)), **extra} for i, b in enumerate(bleus)]


def make_work(tmp_path, stage2=None, control=None):
    work = tmp_path / "work"
    (work / "tune").mkdir(parents=True)
    (work / "tune" / "grid.json").write_text(json.dumps(GRID))
    (work / "data").mkdir()
    (work / "data" / "corpus.json").write_text(json.dumps({"arguments": {"seed": 1, "scale": "full"}}))
    write_log(work, "asr-2400", "dev_asr", [{"dev_asr_loss": "3.1", "dev_asr_accuracy": "80", "dev_asr_num_updates": "2400"}])
    write_log(work, "asr-4800", "dev_asr", [{"dev_asr_loss": "2.9", "dev_asr_accuracy": "85", "dev_asr_num_updates": "4700"},
                                             {"dev_asr_loss": "3.0", "dev_asr_accuracy": "85", "dev_asr_num_updates": "4800"}])
    for exporter, l2 in (("vocab", "0.001"), ("mlp", "0.8")):
        write_log(work, f"tune-stage1-{exporter}", "dev", [{"dev_l2": l2, "dev_recovery": "99.9", "dev_num_updates": "50"}])
    stage2 = stage2 or {("vocab", "1e-4"): [30, 31, 31, 31], ("vocab", "2e-4"): [30, 32, 33, 32],
                        ("mlp", "2e-4"): [20, 25, 26, 26]}
    for (exporter, lr), bleus in stage2.items():
        write_log(work, f"tune-stage2-{exporter}-lr{lr}", "dev", dev(bleus, step=100 if len(bleus) == 4 else 200))
    control = control or {"1e-4": [29, 30, 30, 30], "2e-4": [29, 30, 29, 29]}
    for lr, bleus in control.items():
        write_log(work, f"tune-control-lr{lr}", "dev", dev(bleus))
    for lr, losses in (("5e-4", [5.0, 4.8, 4.7, 4.75]), ("1e-3", [4.9, 4.6, 4.65, 4.7])):
        write_log(work, f"tune-text-only-lr{lr}", "valid",
                  [{"valid_loss": str(v), "valid_num_updates": str(50 * (i + 1))} for i, v in enumerate(losses)])
    return work


def test_each_setting_is_the_best_on_dev_and_ties_go_to_the_smaller_budget(tmp_path):
    t = tune(make_work(tmp_path))
    assert t["selected"] == {
        "asr_updates": 4800,  # dev loss 2.9 (its best checkpoint) < 3.1
        "exporter_type": "vocab",  # stage 2 at the base lr: 33 > 26
        "stage2_lr": 2e-4, "stage2_updates": 400,  # 33 at update 300: within the 400 budget
        "control_lr": 1e-4, "control_updates": 200,  # 30 at 200 and 30 after: the smaller budget
        "text_only_lr": 1e-3, "text_only_updates": 100}  # lowest loss 4.6 at update 100
    assert t["split"] == "dev"
    cells = t["stage2"][1]["cells"]
    assert [(c["budget"], c["value"], c["at_update"]) for c in cells] == [(200, 32.0, 200), (400, 33.0, 300)]


def test_a_tie_between_learning_rates_goes_to_the_earlier_one(tmp_path):
    work = make_work(tmp_path, control={"1e-4": [29, 31, 29, 29], "2e-4": [31, 29, 29, 29]})
    # 2e-4 reaches 31 at update 100, 1e-4 at 200: both fit the 200 budget, the earlier grid value wins
    assert tune(work)["selected"]["control_lr"] == 1e-4


def test_a_budget_counts_only_validations_up_to_it(tmp_path):
    work = make_work(tmp_path)
    cells = best_by_budget(work, "tune-stage2-vocab-lr2e-4", [100, 200, 400])
    assert [c["value"] for c in cells] == [30.0, 32.0, 33.0]


def test_an_unfinished_or_missing_run_names_its_log(tmp_path):
    work = make_work(tmp_path)
    write_log(work, "tune-control-lr2e-4", "dev", dev([29, 30]))  # stopped at update 200 of 400
    with pytest.raises(TuneError, match=r"train-tune-control-lr2e-4.log: validated up to update 200, the grid needs 400"):
        tune(work)
    (work / "logs" / "train-asr-2400.log").unlink()
    with pytest.raises(TuneError, match=r"train-asr-2400.log: not found"):
        tune(work)


def test_report_writes_tune_json_and_settings_prints_them_for_the_recipe(tmp_path, capsys):
    work = make_work(tmp_path)
    main(["report", "--work", str(work), "--out", str(tmp_path / "out")])
    text = (tmp_path / "out" / "tune.md").read_text()
    assert "| **4800** | 2.900 | 85.00 | 4700 |" in text and "**33.00 (at 300)**" in text
    capsys.readouterr()
    main(["settings", str(tmp_path / "out" / "tune.json")])
    assert capsys.readouterr().out.split() == [
        "asr_updates=4800", "exporter_type=vocab", "stage2_lr=0.0002", "stage2_updates=400",
        "control_lr=0.0001", "control_updates=200", "text_only_lr=0.001", "text_only_updates=100"]
    assert read_settings(tmp_path / "out" / "tune.json")["asr_updates"] == 4800


@pytest.mark.parametrize("content, message", [
    ("not json", "not a readable tune.json"),
    ('{"grid": {}}', 'no "selected" settings'),
    ('{"selected": {"asr_updates": 0}}', '"selected".asr_updates = 0 is not a valid asr_updates'),
])
def test_a_bad_settings_file_names_the_file(tmp_path, content, message):
    path = tmp_path / "tune.json"
    path.write_text(content)
    with pytest.raises(SystemExit, match=message) as e:
        main(["settings", str(path)])
    assert str(path) in str(e.value)
