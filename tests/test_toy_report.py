"""The toy report: the counts of ambiguous-noun senses and of runaway translations, results.json
and the findings from a fake work dir, and the summary over several seeds."""

import json

import pytest

from fairseq_exporter.toy.report import findings, main, runaway_outputs, sense_counts, sense_forms


def test_sense_counts_reads_hypotheses_or_references_and_all_german_forms(tmp_path):
    gen = tmp_path / "generate-test.txt"
    gen.write_text("\n".join([
        "S-0\tthe bank", "T-0\tDas Ufer ist nass.", "H-0\t-0.1\tDie Bank ist nass.",
        "D-0\t-0.1\tDie Bank ist nass.",
        "T-1\tIch sehe die Fledermäuse, die Banken und den Ufern.",
        "D-1\t-0.2\tIch sehe die Schläger am Ufer.",
    ]) + "\n", encoding="utf-8")
    forms = sense_forms()
    assert {"Ufer", "Fledermaus", "Fledermäuse"} <= forms["task"]
    assert {"Bank", "Banken", "Schläger"} <= forms["general"]
    assert sense_counts(gen, forms) == (1, 2)  # D- lines: Ufer / Bank, Schläger
    assert sense_counts(gen, forms, field="reference") == (3, 1)  # Ufer, Fledermäuse, Ufern / Banken


def test_runaway_outputs_counts_translations_over_twice_their_reference(tmp_path):
    gen = tmp_path / "generate-test.txt"
    gen.write_text("\n".join([
        "T-0\tEin zwei drei.", "D-0\t-0.1\tEin zwei drei vier fünf sechs sieben.",  # 7 > 2 * 3
        "T-1\tEin zwei drei.", "D-1\t-0.1\tEin zwei drei vier fünf sechs.",  # 6, not more than twice
        "T-2\tEins.", "D-2\t-0.1\tEins.",
    ]) + "\n", encoding="utf-8")
    assert runaway_outputs(gen) == 1


# --- results.json, findings and the multi-seed summary, from fake work dirs ---

# step: (wer, bleu, chrf, (delta_bleu, p_bleu, delta_chrf, p_chrf) against its 1-best cascade)
SCORES = {
    "onebest": (45.0, 20.0, 50.0, None),
    "reference": (0.0, 30.0, 58.0, (10.0, 0.001, 8.0, 0.001)),
    "stage1": (45.0, 20.1, 50.1, (0.1, 0.3, 0.1, 0.4)),
    "stage2": (44.0, 22.5, 51.5, (2.5, 0.021, 1.5, 0.03)),
    "control": (43.0, 21.0, 51.0, (1.0, 0.2, 1.0, 0.1)),
    "adapted-onebest": (45.0, 28.0, 56.0, None),
    "stage3": (44.0, 28.1, 56.2, (0.1, 0.375, 0.2, 0.3)),
}
VS_CONTROL = (1.5, 0.04, 0.5, 0.2)
VALIDATE = {"stage1": (0.001, 99.9), "stage2": (0.05, 97.5), "stage3": (0.04, 98.0)}
# stage1 ran twice: its last time counts
SECONDS = "corpus\t31\nmt\t150\nasr\t600\nstage1\t40\nbaselines\t60\nstage2\t90\nstage1\t45\n"
PAIRED_KEYS = ("delta_bleu", "p_bleu", "delta_chrf", "p_chrf")


def write_score(path, wer, bleu, chrf, paired):
    score = {"path": "generate-test.txt", "n": 2, "wer": wer, "bleu": bleu, "chrf": chrf,
             "signature_bleu": "BLEU-signature", "signature_chrf": "chrF-signature"}
    if paired:
        score.update(zip(PAIRED_KEYS, paired))
        score["delta_ci_bleu"] = [paired[0] - 0.5, paired[0] + 0.5]  # the bootstrap's 95% interval
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(score))


def make_work(root, seed=1, scores=SCORES, vs_control=VS_CONTROL, validate=VALIDATE, seconds=SECONDS):
    """A work dir as the recipe leaves it, as far as the report reads it."""
    (root / "data").mkdir(parents=True)
    (root / "data/corpus.json").write_text(json.dumps({"arguments": {"seed": seed, "scale": "quick"}}))
    for step, (wer, bleu, chrf, paired) in scores.items():
        write_score(root / "gen" / step / "score.json", wer, bleu, chrf, paired)
        (root / "gen" / step / "generate-test.txt").write_text(
            "T-0\tDas Ufer ist nass.\nD-0\t-0.1\tDie Bank ist nass.\n"
            "T-1\tEin Hund.\nD-1\t-0.1\tEin Hund und ein Hund und ein Hund.\n", encoding="utf-8")
    if vs_control:
        write_score(root / "gen/stage2/vs-control.json", 44.0, 22.5, 51.5, vs_control)
    (root / "logs").mkdir()
    for step, (l2, recovery) in validate.items():
        (root / "logs" / f"validate-{step}.log").write_text(
            "2024-05-01 10:00:00 | INFO | fairseq_cli.validate | loaded checkpoint\n"
            f'2024-05-01 10:00:09 | INFO | test | {{"test_loss": "1.2", "test_l2": "{l2}", '
            f'"test_recovery": "{recovery}"}}\n')
    if seconds:
        (root / "stage-seconds.tsv").write_text(seconds)
    return root


def figures(dbleu=None, p=None, dchrf=None, p_chrf=None, wer=45.0, recovery=None):
    ci = None if dbleu is None else [dbleu - 0.5, dbleu + 0.5]
    return {"wer": wer, "bleu": 20.0, "chrf": 50.0, "dbleu": dbleu, "p": p, "ci": ci, "dchrf": dchrf, "p_chrf": p_chrf,
            "l2": None, "recovery": recovery, "task_sense": 0, "general_sense": 1, "long_outputs": 1}


def test_results_json_rows_nulls_seconds_and_findings(tmp_path):
    work, out = make_work(tmp_path / "work", seed=7), tmp_path / "results"
    main(["--work", str(work), "--out", str(out)])
    results = json.loads((out / "results.json").read_text())

    assert (results["seed"], results["scale"], results["n"]) == (7, "quick", 2)
    assert list(results["rows"]) == ["onebest", "reference", "stage1", "stage2", "adapted_onebest", "stage3",
                                     "control"]  # no decoder rows: not run
    # every generate-test.txt: the references hold one Ufer, the translations one Bank, and the
    # second translation is over twice as long as its reference
    assert results["reference_senses"] == {"task": 1, "general": 0}
    assert results["rows"]["onebest"] == figures()  # no baseline, no validate log: nulls
    assert results["rows"]["adapted_onebest"] == {**figures(), "bleu": 28.0, "chrf": 56.0}
    assert results["rows"]["stage1"] == {**figures(0.1, 0.3, 0.1, 0.4, recovery=99.9), "bleu": 20.1,
                                         "chrf": 50.1, "l2": 0.001}
    assert results["rows"]["stage3"]["dbleu"] == 0.1 and results["rows"]["stage3"]["p"] == 0.375
    assert results["rows"]["control"]["l2"] is None and results["rows"]["control"]["dbleu"] == 1.0
    assert results["rows"]["reference"]["wer"] == 0.0
    assert results["stage2_vs_control"] == {"dbleu": 1.5, "p": 0.04, "ci": [1.0, 2.0], "dchrf": 0.5, "p_chrf": 0.2}
    assert results["stage2_vs_exporter_only"] is None and results["stage2_vs_text_only"] is None  # not run
    assert set(results["generate_sha256"]) == set(SCORES) and all(len(h) == 64 for h in results["generate_sha256"].values())
    assert results["seconds"] == {"corpus": 31, "mt": 150, "asr": 600, "stage1": 45, "baselines": 60,
                                  "stage2": 90}
    assert results["findings"] == {
        "a": {"holds": True, "text": "(a) holds: stage 1 vs 1-best cascade +0.10 BLEU (p=0.300), "
                                     "token recovery 99.9%"},
        "b": {"holds": True, "text": "(b) holds: stage 2 vs 1-best cascade +2.50 BLEU (p=0.021), "
                                     "stage 2 vs control +1.50 BLEU (p=0.040)"},
        "c": {"holds": True, "text": "(c) holds: stage 3 vs adapted 1-best cascade +0.10 BLEU (p=0.375), "
                                     "95% interval [-0.40, +0.60]"},
        "d": {"holds": True, "text": "(d) holds: WER 44.00 after stage 2, 45.00 before (1-best cascade)"},
        "e": {"holds": None, "text": "(e) not checked: no table-free stage 2 score against its exporter-only "
                                     "ablation (gen/stage2-tf/vs-exporter-only.json)"},
    }
    assert all(d is None for d in results["wer_deltas"].values())  # these outputs hold no ASR- lines

    md = (out / "results.md").read_text()
    assert "(corpus seed 7, scale quick)" in md
    assert ("| control: 1-best cascade after stage 2's ASR updates, transcript loss only | 43.00 | 21.00 | "
            "51.00 | +1.00 (p=0.200) | [+0.50, +1.50] | — | — | 0 / 1 | 1 |") in md.splitlines()
    assert ("| stage 1: exporter only (ASR, MT frozen) | 45.00 | 20.10 | 50.10 | +0.10 (p=0.300) | [-0.40, +0.60] | 0.001 | "
            "99.9 | 0 / 1 | 1 |") in md.splitlines()
    assert "Stage 2 against the control: ΔBLEU +1.50 (p=0.040), ΔchrF +0.50 (p=0.200)." in md
    assert "- (b) holds: stage 2 vs 1-best cascade +2.50 BLEU (p=0.021), stage 2 vs control +1.50 BLEU " \
           "(p=0.040)" in md.splitlines()
    assert "(e)" not in md  # stage 12 not run: its claim is neither stated nor listed
    # 31 + 150 + 600 + 45 + 60 + 90 = 976 s
    assert md.splitlines()[-1] == ("Time per stage: corpus 31 s, mt 2 min 30 s, asr 10 min 00 s, stage1 45 s, "
                                   "baselines 1 min 00 s, stage2 1 min 30 s; total 16 min 16 s.")
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_control_comparison_and_timings_give_nulls_and_decoder_rows_show(tmp_path):
    scores = {**SCORES, "onebest-decoder": (40.0, 21.0, 51.0, None),
              "stage2-decoder": (39.0, 23.0, 52.0, (2.0, 0.01, 1.0, 0.02))}
    work, out = make_work(tmp_path / "work", scores=scores, vs_control=None, seconds=None), tmp_path / "results"
    main(["--work", str(work), "--out", str(out)])
    results = json.loads((out / "results.json").read_text())
    assert results["stage2_vs_control"] is None and results["seconds"] == {}
    assert results["rows"]["decoder_onebest"]["dbleu"] is None
    assert results["rows"]["stage2_decoder"]["dbleu"] == 2.0 and "posterior" not in results["rows"]
    assert results["findings"]["b"] == {
        "holds": None, "text": "(b) not checked: no stage 2 score against the control (gen/stage2/vs-control.json)"}
    md = (out / "results.md").read_text()
    assert "Stage 2 against the control" not in md and "Time per stage" not in md
    assert "- (b) not checked: no stage 2 score against the control (gen/stage2/vs-control.json)" in md


@pytest.mark.parametrize("changes, key, holds, text", [
    # (b) fails because of the control alone: stage 2 does beat the 1-best cascade
    ({"vs_control": (-1.93, 0.09)}, "b", False,
     "(b) does not hold: stage 2 vs 1-best cascade +2.50 BLEU (p=0.021), stage 2 vs control -1.93 BLEU (p=0.090)"),
    ({"vs_control": (0.8, 0.12)}, "b", False,
     "(b) does not hold: stage 2 vs 1-best cascade +2.50 BLEU (p=0.021), stage 2 vs control +0.80 BLEU (p=0.120)"),
    ({"stage2": (2.5, 0.06)}, "b", False,
     "(b) does not hold: stage 2 vs 1-best cascade +2.50 BLEU (p=0.060), stage 2 vs control +1.50 BLEU (p=0.040)"),
    ({"stage1": (-0.45, 0.02)}, "a", False,
     "(a) does not hold: stage 1 vs 1-best cascade -0.45 BLEU (p=0.020), token recovery 99.9%"),
    ({"recovery": 98.5}, "a", False,
     "(a) does not hold: stage 1 vs 1-best cascade +0.10 BLEU (p=0.300), token recovery 98.5%"),
    ({"stage1": (-0.3, 0.04), "recovery": 99.0}, "a", True,  # both bounds are inclusive
     "(a) holds: stage 1 vs 1-best cascade -0.30 BLEU (p=0.040), token recovery 99.0%"),
    ({"recovery": None}, "a", None, "(a) not checked: no stage 1 token recovery (logs/validate-stage1.log)"),
    # (c) is an equivalence check: the 95% interval (here ΔBLEU ± 0.5) within ±1 BLEU, bounds inclusive
    ({"stage3": (1.2, 0.01)}, "c", False,
     "(c) does not hold: stage 3 vs adapted 1-best cascade +1.20 BLEU (p=0.010), 95% interval [+0.70, +1.70]"),
    ({"stage3": (-0.5, 0.01)}, "c", True,
     "(c) holds: stage 3 vs adapted 1-best cascade -0.50 BLEU (p=0.010), 95% interval [-1.00, +0.00]"),
    ({"stage3": (0.4, 0.05)}, "c", True,
     "(c) holds: stage 3 vs adapted 1-best cascade +0.40 BLEU (p=0.050), 95% interval [-0.10, +0.90]"),
    # not significant, but too uncertain to call the gain gone
    ({"stage3": (0.3, 0.2), "stage3_ci": [-0.9, 1.6]}, "c", False,
     "(c) does not hold: stage 3 vs adapted 1-best cascade +0.30 BLEU (p=0.200), 95% interval [-0.90, +1.60]"),
    ({"stage3_ci": None}, "c", None,
     "(c) not checked: no 95% interval in gen/stage3/score.json (score it again with this version)"),
    ({"stage2_wer": 45.01}, "d", False, "(d) does not hold: WER 45.01 after stage 2, 45.00 before (1-best cascade)"),
    ({"stage2_wer": 45.0}, "d", True, "(d) holds: WER 45.00 after stage 2, 45.00 before (1-best cascade)"),
    ({"stage2_wer": None}, "d", None,
     "(d) not checked: no WER of the 1-best cascade and of stage 2 (gen/onebest, gen/stage2 score.json)"),
])
def test_findings_hold_or_not_on_the_figures(changes, key, holds, text):
    rows = {"onebest": figures(),
            "stage1": figures(*changes.get("stage1", (0.1, 0.3)), recovery=changes.get("recovery", 99.9)),
            "stage2": figures(*changes.get("stage2", (2.5, 0.021)), wer=changes.get("stage2_wer", 44.0)),
            "stage3": figures(*changes.get("stage3", (0.1, 0.375)))}
    if "stage3_ci" in changes:
        rows["stage3"]["ci"] = changes["stage3_ci"]
    dbleu, p = changes.get("vs_control", (1.5, 0.04))
    assert findings(rows, {"dbleu": dbleu, "p": p, "dchrf": 0.5, "p_chrf": 0.2})[key] == {"holds": holds, "text": text}


def test_findings_without_any_rows_are_not_checked():
    assert {key: f["holds"] for key, f in findings({}, None).items()} == dict.fromkeys("abcde")
    assert findings({}, None)["c"]["text"] == \
        "(c) not checked: no stage 3 score against the adapted 1-best cascade (gen/stage3/score.json)"


def test_finding_e_and_d_with_its_interval():
    rows = {"onebest": {"wer": 40.0}, "stage2": {"wer": 40.5, "dbleu": None}}
    gain, none = {"dbleu": 1.2, "p": 0.01}, {"dbleu": 0.4, "p": 0.2}
    assert findings(rows, None, None, gain)["e"] == {
        "holds": True, "text": "(e) holds: table-free: stage 2 vs exporter only +1.20 BLEU (p=0.010)"}
    assert findings(rows, None, None, none)["e"]["holds"] is False
    d = findings(rows, None, {"stage2": {"dwer": 0.5, "ci": [-0.25, 1.25]}})["d"]
    assert d == {"holds": False, "text": "(d) does not hold: WER 40.50 after stage 2, 40.00 before (1-best cascade), "
                                         "ΔWER +0.50, 95% interval [-0.25, +1.25]"}


def with_paired(step, paired):
    wer, bleu, chrf, _ = SCORES[step]
    return {**SCORES, step: (wer, bleu, chrf, paired)}


def test_summary_over_three_seeds(tmp_path):
    # seed: (stage 2 vs 1-best, stage 2 vs control), each (dbleu, p, dchrf, p_chrf)
    per_seed = {1: ((2.5, 0.021, 1.5, 0.03), (1.5, 0.04, 0.5, 0.2)),
                2: ((1.0, 0.04, 0.5, 0.2), (-1.5, 0.09, -1.0, 0.01)),
                3: ((-0.5, 0.3, -0.5, 0.6), (0.9, 0.03, 1.1, 0.02))}
    dirs = []
    for seed, (stage2, vs_control) in per_seed.items():
        validate = VALIDATE if seed != 3 else {}  # seed 3: no stage 1 recovery, (a) not checked
        work = make_work(tmp_path / f"work{seed}", seed, with_paired("stage2", stage2), vs_control, validate)
        dirs.append(tmp_path / "results" / f"seed{seed}")
        main(["--work", str(work), "--out", str(dirs[-1])])
    out = tmp_path / "summary"
    main(["--summary", *map(str, reversed(dirs)), "--out", str(out)])  # any order: sorted by seed
    summary = json.loads((out / "results.json").read_text())

    assert list(summary["seeds"]) == ["1", "2", "3"]
    assert summary["seeds"]["2"] == json.loads((dirs[1] / "results.json").read_text())
    s = summary["summary"]
    # stage 2: dBLEU 2.5, 1.0, -0.5: mean 1.0, sd sqrt((1.5² + 0 + 1.5²) / 2) = 1.5; dchrF 1.5, 0.5, -0.5
    assert s["stage2"] == pytest.approx({"dbleu_mean": 1.0, "dbleu_std": 1.5, "dchrf_mean": 0.5, "dchrf_std": 1.0,
                                         "significant": 2, "significant_worse": 0, "significant_chrf": 1,
                                         "significant_worse_chrf": 0, "n": 3})
    # vs control: 1.5, -1.5, 0.9: mean 0.3, deviations 1.2, -1.8, 0.6: sd sqrt(5.04 / 2);
    # dchrF 0.5, -1.0, 1.1: mean 0.2, deviations 0.3, -1.2, 0.9: sd sqrt(2.34 / 2)
    assert s["stage2_vs_control"] == pytest.approx({
        "dbleu_mean": 0.3, "dbleu_std": 2.52 ** 0.5, "dchrf_mean": 0.2, "dchrf_std": 1.17 ** 0.5,
        "significant": 2, "significant_worse": 0, "significant_chrf": 1, "significant_worse_chrf": 1, "n": 3})
    assert s["stage1"] == pytest.approx({"dbleu_mean": 0.1, "dbleu_std": 0.0, "dchrf_mean": 0.1, "dchrf_std": 0.0,
                                         "significant": 0, "significant_worse": 0, "significant_chrf": 0,
                                         "significant_worse_chrf": 0, "n": 3})
    assert s["reference"]["significant"] == 3 and s["control"]["dbleu_mean"] == pytest.approx(1.0)
    assert summary["findings"] == {
        "a": {"holds": 2, "n": 3, "not_holding": [], "not_checked": [3]},
        "b": {"holds": 1, "n": 3, "not_holding": [2, 3], "not_checked": []},
        "c": {"holds": 3, "n": 3, "not_holding": [], "not_checked": []},
        "d": {"holds": 3, "n": 3, "not_holding": [], "not_checked": []},
        "e": {"holds": 0, "n": 3, "not_holding": [], "not_checked": [1, 2, 3]},  # stage 12 not run
    }
    assert "(e)" not in (tmp_path / "summary/results.md").read_text()
    assert summary["seconds"] == {"corpus": 93, "mt": 450, "asr": 1800, "stage1": 135, "baselines": 180,
                                  "stage2": 270}

    md = (out / "results.md").read_text().splitlines()
    assert ("| 2 | 45.00 | 20.00 | 20.10 | 22.50 | 21.00 | 28.00 | 28.10 | +0.10 (p=0.300) | +1.00 (p=0.040) | "
            "-1.50 (p=0.090) | +0.10 (p=0.375) | [results](../results/seed2/results.md), "
            "[curves](../results/seed2/curves.png) |") in md
    # (the pooled columns: every seed's outputs here are the same text, so the pooled deltas are 0)
    assert "| stage 2 vs 1-best cascade | +1.00 ± 1.50 | 2 / 0 of 3 | +0.00 (p=0.001) | [+0.00, +0.00] " \
        "| +0.00 (p=0.001) |" in md
    assert "| stage 2 vs control | +0.30 ± 1.59 | 2 / 0 of 3 | +0.00 (p=0.001) | [+0.00, +0.00] " \
        "| +0.00 (p=0.001) |" in md
    assert "- (a) holds on 2/3 seeds; not checked on seed 3" in md
    b = md.index("- (b) holds on 1/3 seeds; does not hold on seed 2, 3")
    assert md[b + 1:b + 3] == [
        "  - seed 2: (b) does not hold: stage 2 vs 1-best cascade +1.00 BLEU (p=0.040), "
        "stage 2 vs control -1.50 BLEU (p=0.090)",
        "  - seed 3: (b) does not hold: stage 2 vs 1-best cascade -0.50 BLEU (p=0.300), "
        "stage 2 vs control +0.90 BLEU (p=0.030)"]
    # 3 x 976 s
    assert md[-1] == ("Time summed over the seeds: corpus 1 min 33 s, mt 7 min 30 s, asr 30 min 00 s, "
                      "stage1 2 min 15 s, baselines 3 min 00 s, stage2 4 min 30 s; total 48 min 48 s.")
    assert "![ΔBLEU per seed](seeds.png)" in md
    png = (out / "seeds.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_summary_and_work_exclude_each_other(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--work", str(tmp_path), "--summary", str(tmp_path), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "argument --summary: not allowed with argument --work" in capsys.readouterr().err


def test_summary_needs_each_dirs_results_json_and_distinct_seeds(tmp_path):
    main(["--work", str(make_work(tmp_path / "work")), "--out", str(tmp_path / "seed1")])
    with pytest.raises(SystemExit, match=f"{tmp_path / 'empty' / 'results.json'} not found"):
        main(["--summary", str(tmp_path / "seed1"), str(tmp_path / "empty"), "--out", str(tmp_path / "out")])
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy/results.json").write_text((tmp_path / "seed1/results.json").read_text())
    with pytest.raises(SystemExit, match="seed 1 appears twice"):
        main(["--summary", str(tmp_path / "seed1"), str(tmp_path / "copy"), "--out", str(tmp_path / "out")])


def test_summary_pools_the_seeds_test_sets_in_one_paired_test(tmp_path):
    import sacrebleu

    dirs = []
    for seed in (1, 2):
        work = make_work(tmp_path / f"work{seed}", seed)
        if seed == 2:  # seed 2's stage 2 gets the first sentence right
            (work / "gen/stage2/generate-test.txt").write_text(
                "T-0\tDas Ufer ist nass.\nD-0\t-0.1\tDas Ufer ist nass.\n"
                "T-1\tEin Hund.\nD-1\t-0.1\tEin Hund und ein Hund und ein Hund.\n", encoding="utf-8")
        dirs.append(tmp_path / "results" / f"seed{seed}")
        main(["--work", str(work), "--out", str(dirs[-1])])
    main(["--summary", *map(str, dirs), "--out", str(tmp_path / "summary")])
    pooled = json.loads((tmp_path / "summary/results.json").read_text())["pooled"]

    refs = ["Das Ufer ist nass.", "Ein Hund."] * 2
    onebest = ["Die Bank ist nass.", "Ein Hund und ein Hund und ein Hund."] * 2
    stage2 = onebest[:2] + ["Das Ufer ist nass.", onebest[1]]
    expected = sacrebleu.corpus_bleu(stage2, [refs]).score - sacrebleu.corpus_bleu(onebest, [refs]).score
    assert expected > 1
    assert pooled["stage2"]["dbleu"] == pytest.approx(expected)
    assert (pooled["stage2"]["utterances"], pooled["stage2"]["seeds"]) == (4, 2)
    assert pooled["stage1"]["dbleu"] == pytest.approx(0.0)  # the same translations as the 1-best cascade
    assert "| stage 2 vs 1-best cascade | " in (tmp_path / "summary/results.md").read_text()

    # a seed whose work dir is gone: its outputs cannot be pooled, the figures say so (null)
    import shutil
    shutil.rmtree(tmp_path / "work2" / "gen" / "control")
    main(["--summary", *map(str, dirs), "--out", str(tmp_path / "summary")])
    pooled = json.loads((tmp_path / "summary/results.json").read_text())["pooled"]
    assert pooled["control"] is None and pooled["stage2_vs_control"] is None and pooled["stage2"] is not None
