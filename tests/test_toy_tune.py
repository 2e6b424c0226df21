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


# --- the table-free protocol (stage 12) ---

TF_GRID = {"exporters": ["mlp", "transformer"], "stage1_lrs": ["1e-3", "3e-3"], "stage1_budgets": [400, 800],
           "stage1_valid_every": 400, "lrs": ["2e-4", "4e-4"], "base_lr": "2e-4", "budgets": [200, 400],
           "asr_weights": ["0.3", "1"], "base_asr_weight": "0.3", "valid_every": 100}


def tf_dev(bleus, wers):
    return [{"dev_bleu": str(b), "dev_wer": str(w), "dev_num_updates": str(100 * (i + 1))}
            for i, (b, w) in enumerate(zip(bleus, wers))]


def make_tf_work(tmp_path, weight1=None):
    work = tmp_path / "work"
    (work / "tune").mkdir(parents=True)
    (work / "tune" / "grid-table-free.json").write_text(json.dumps(TF_GRID))
    (work / "data").mkdir()
    (work / "data" / "corpus.json").write_text(json.dumps({"arguments": {"seed": 1, "scale": "full"}}))
    stage1 = {("mlp", "1e-3"): ["0.5", "0.3"], ("mlp", "3e-3"): ["0.4", "0.2"],
              ("transformer", "1e-3"): ["0.6", "0.4"], ("transformer", "3e-3"): ["0.5", "0.45"]}
    for (exporter, lr), l2s in stage1.items():
        write_log(tmp_path / "work", f"tune-tf-stage1-{exporter}-lr{lr}", "dev",
                  [{"dev_l2": l2, "dev_wer": "40.0", "dev_num_updates": str(400 * (i + 1))} for i, l2 in enumerate(l2s)])
    runs = {("mlp", "2e-4", "0.3"): tf_dev([20, 22, 23, 24], [40, 40, 39.5, 39.8]),
            ("transformer", "2e-4", "0.3"): tf_dev([18, 19, 20, 21], [40, 40, 40, 40]),
            ("mlp", "4e-4", "0.3"): tf_dev([21, 22, 22, 22], [40, 40, 40, 40]),
            # weight 1: the best BLEU of all, but its WER is over the 1-best's (40.0) after update 200
            ("mlp", "2e-4", "1"): weight1 or tf_dev([23, 25, 26, 27], [39, 40.5, 41, 41])}
    for (exporter, lr, w), records in runs.items():
        write_log(work, f"tune-tf-stage2-{exporter}-lr{lr}-w{w}", "dev", records)
    return work


def test_table_free_selections_follow_their_declared_criteria(tmp_path):
    from fairseq_exporter.toy.tune import tune_table_free

    t = tune_table_free(make_tf_work(tmp_path))
    assert t["stage1_best"]["mlp"] == {"lr": "3e-3", "updates": 800, "value": 0.2}  # lowest dev L2
    assert t["stage1_best"]["transformer"]["lr"] == "1e-3"  # 0.4 < 0.45
    assert t["onebest_dev_wer"] == 40.0 and t["constraint_met"]
    # mlp (24 > 21 at the base lr and weight); lr 2e-4 (24 > 22); weight 1's 27 is over the 1-best's
    # WER: weight 1 at 200 updates (25, WER 40.5) is over too; its 100-update cell (23, WER 39) is not,
    # but weight 0.3 at 400 (24 at update 400, WER 39.8) is better
    assert t["selected"] == {"exporter_type": "mlp", "stage1_lr": 3e-3, "stage1_updates": 800, "stage2_lr": 2e-4,
                             "stage2_updates": 400, "asr_weight": 0.3}
    assert t["asr_weight_best"] == {"asr_weight": "0.3", "updates": 400, "value": 24.0, "wer": 39.8}


def test_table_free_weight_wins_where_its_wer_keeps_within_the_1best(tmp_path):
    from fairseq_exporter.toy.tune import tune_table_free

    t = tune_table_free(make_tf_work(tmp_path, weight1=tf_dev([23, 25, 26, 27], [39, 39, 40, 41])))
    # weight 1 at 200 updates: 25 at WER 39; at 400 a run keeps its best BLEU (27, WER 41: over)
    assert t["selected"]["asr_weight"] == 1.0 and t["selected"]["stage2_updates"] == 200


def test_table_free_weight_falls_back_to_the_lowest_wer_where_none_keeps_within(tmp_path):
    from fairseq_exporter.toy.tune import select_asr_weight

    cells = [("0.3", {"budget": 200, "value": 30.0, "wer": 41.0}), ("1", {"budget": 200, "value": 20.0, "wer": 40.5})]
    weight, cell, met = select_asr_weight(cells, 40.0)
    assert (weight, cell["value"], met) == ("1", 20.0, False)


def test_table_free_report_and_settings_for_stage_12(tmp_path, capsys):
    work = make_tf_work(tmp_path)
    main(["report-table-free", "--work", str(work), "--out", str(tmp_path / "out")])
    text = (tmp_path / "out" / "tune-table-free.md").read_text()
    assert "**24.00, 39.80 (at 400)**" in text and "27.00, 41.00 (over) (at 400)" in text
    capsys.readouterr()
    main(["settings", "--table-free", str(tmp_path / "out" / "tune-table-free.json")])
    assert capsys.readouterr().out.split() == [
        "tf_exporter_type=mlp", "tf_stage1_lr=0.003", "tf_stage1_updates=800", "tf_stage2_lr=0.0002",
        "tf_stage2_updates=400", "tf_asr_weight=0.3"]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"selected": {**json.loads((tmp_path / "out" / "tune-table-free.json").read_text())[
        "selected"], "exporter_type": "vocab"}}))  # a table
    with pytest.raises(SystemExit, match=r"bad.json: \"selected\".exporter_type = 'vocab' is not a valid"):
        main(["settings", "--table-free", str(path)])


def test_table_free_run_without_dev_wer_names_its_log(tmp_path):
    from fairseq_exporter.toy.tune import tune_table_free

    work = make_tf_work(tmp_path, weight1=[{"dev_bleu": "20", "dev_num_updates": str(100 * (i + 1))} for i in range(4)])
    with pytest.raises(TuneError, match=r"train-tune-tf-stage2-mlp-lr2e-4-w1.log: no dev_wer"):
        tune_table_free(work)
