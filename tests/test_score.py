"""fairseq-exporter-score on small hand-written fairseq-generate outputs."""

import json
import os
import subprocess
import sys

import pytest
import sacrebleu

from fairseq_exporter.cli.score import (
    Corpus,
    ScoreError,
    build_report,
    corpus_wer,
    load_corpus,
    main,
    paired_bootstrap,
    resampled_scores,
    score_corpus,
    wer_delta_interval,
)
from fairseq_exporter.generate_output import read_generate_output

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NOISE_HEAD = [
    "2026-11-24 10:00:00 | INFO | fairseq_cli.generate | loading model(s) from x.pt",
    "2026-11-24 10:00:01 | INFO | fairseq.tasks | [en] dictionary: 8000 types",
]
NOISE_TAIL = [
    "2026-11-24 10:00:09 | INFO | fairseq_cli.generate | Translated 3 sentences",
    "Generate test with beam=5: BLEU4 = 12.34, 50.0/20.0/10.0/5.0 (BP=1.000)",
]


def write_generate(path, samples, nbest=2, detok=True):
    """Write samples {id: (transcript, asr, reference, hypothesis)} the way
    fairseq-generate prints them: out of id order, nbest hypotheses per id, noise."""
    lines = list(NOISE_HEAD)
    for i in sorted(samples, reverse=True):
        transcript, asr, reference, hypothesis = samples[i]
        if transcript is not None:
            lines.append(f"S-{i}\t{transcript}")
        if asr is not None:
            lines.append(f"ASR-{i}\t{asr}")
        if reference is not None:
            lines.append(f"T-{i}\t{reference}")
        for rank in range(nbest):
            # Worse-ranked hypotheses are garbage: scoring them would change every figure.
            text = hypothesis if rank == 0 else f"WRONG{rank} {hypothesis}"
            lines.append(f"H-{i}\t-0.{rank + 1}\t{text.replace(' ', ' @@')}")
            if detok:
                lines.append(f"D-{i}\t-0.{rank + 1}\t{text}")
            lines.append(f"P-{i}\t-0.1 -0.2 -0.3")
    lines += NOISE_TAIL
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


SAMPLES = {
    0: ("a b c d", "a x c", "le chat est assis", "le chat est assis"),
    1: ("e f", "e f g", "il pleut encore aujourd'hui", "il pleut aujourd'hui"),
    2: ("h i j", "h i j", "bonjour tout le monde", "salut le monde"),
}
# S-/ASR- edits: id 0 b->x and d deleted (2), id 1 g inserted (1), id 2 none: 3 / 9 words.
EXPECTED_WER = 100.0 * 3 / 9


def corpus_of(n, degrade):
    """n distinct references; hypotheses are the references, worsened if degrade."""
    samples = {}
    for i in range(n):
        reference = f"sentence {i} tells the story number {i} of a {i % 5} day trip"
        words = reference.split()
        hypothesis = " ".join(words[::2]) if degrade else reference
        samples[i] = (None, None, reference, hypothesis)
    return samples


def test_read_skips_noise_and_keeps_first_hypothesis(tmp_path):
    records = read_generate_output(write_generate(tmp_path / "gen.txt", SAMPLES, nbest=3))
    assert sorted(records) == [0, 1, 2]
    assert records[1].source == "e f"
    assert records[1].asr == "e f g"
    assert records[1].reference == "il pleut encore aujourd'hui"
    assert records[1].output == "il pleut aujourd'hui"
    assert records[1].hypothesis == "il @@pleut @@aujourd'hui"


def test_transcripts_file_beside_generate_output_is_joined_and_alignments_ignored(tmp_path):
    """--results-path: fairseq's generate-test.txt and the task's transcripts-test.txt are
    one output; fairseq's --print-alignment A- lines are not transcripts."""
    write_generate(tmp_path / "all.txt", SAMPLES)
    lines = (tmp_path / "all.txt").read_text().splitlines()
    ours = [line for line in lines if line.startswith(("S-", "ASR-"))]
    theirs = [line for line in lines if not line.startswith(("S-", "ASR-"))] + ["A-1\t0-0 1-1"]
    (tmp_path / "generate-test.txt").write_text("\n".join(theirs) + "\n")
    (tmp_path / "transcripts-test.txt").write_text("\n".join(ours) + "\n")
    assert read_generate_output(tmp_path / "generate-test.txt") == read_generate_output(tmp_path / "all.txt")
    assert load_corpus(str(tmp_path / "generate-test.txt")).asr == [SAMPLES[i][1] for i in sorted(SAMPLES)]
    (tmp_path / "transcripts-test.txt").unlink()
    assert load_corpus(str(tmp_path / "generate-test.txt")).asr is None  # BLEU only


def test_read_falls_back_to_h_and_keeps_empty_hypotheses(tmp_path):
    path = tmp_path / "gen.txt"
    path.write_text("T-0\tune phrase\nH-0\t-1.5\t\nT-1\tdeux\nH-1\t-0.5\tdeux\n")
    records = read_generate_output(str(path))
    assert records[0].output == ""
    assert records[1].output == "deux"


def test_corpus_wer_hand_computed():
    assert corpus_wer(["a b c d", "e f", "h i j"], ["a x c", "e f g", "h i j"]) == \
        pytest.approx(EXPECTED_WER)
    assert corpus_wer(["a b"], ["a b"]) == 0.0
    # Corpus-level, not a mean of sentence WERs (which would be (100 + 0) / 2 = 50).
    assert corpus_wer(["a", "b c d e"], ["x", "b c d e"]) == pytest.approx(20.0)


def test_file_scores_match_sacrebleu(tmp_path):
    scores = score_corpus(load_corpus(write_generate(tmp_path / "gen.txt", SAMPLES)))
    hyps = [SAMPLES[i][3] for i in range(3)]
    refs = [SAMPLES[i][2] for i in range(3)]
    assert scores["n"] == 3
    assert scores["wer"] == pytest.approx(EXPECTED_WER)
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert scores["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    assert scores["bleu"] < 100.0
    assert scores["signature_bleu"].startswith("nrefs:1|")
    assert "tok:13a" in scores["signature_bleu"]
    assert "nc:6" in scores["signature_chrf"]


def test_wer_is_none_without_asr_lines(tmp_path):
    scores = score_corpus(load_corpus(write_generate(tmp_path / "gen.txt", corpus_of(3, False))))
    assert scores["wer"] is None
    assert scores["bleu"] == pytest.approx(100.0)


def test_identical_systems(tmp_path):
    samples = corpus_of(20, degrade=True)
    system = load_corpus(write_generate(tmp_path / "a.txt", samples))
    baseline = load_corpus(write_generate(tmp_path / "b.txt", samples))
    results = paired_bootstrap(system, baseline, n_samples=200)
    for result in results.values():
        assert result["delta"] == 0.0
        assert result["mean"] == result["baseline_mean"]
        # sacrebleu counts resampled differences strictly above the observed one: none
        # can be above 0, so it reports its smallest p-value, (0 + 1) / (200 + 1).
        assert result["p"] == pytest.approx(1 / 201)
        assert result["delta_ci"] == [0.0, 0.0]


def test_clearly_better_system_is_significant(tmp_path):
    system = load_corpus(write_generate(tmp_path / "good.txt", corpus_of(30, degrade=False)))
    baseline = load_corpus(write_generate(tmp_path / "bad.txt", corpus_of(30, degrade=True)))
    results = paired_bootstrap(system, baseline, n_samples=200, seed=7)
    for key in ("bleu", "chrf"):
        assert results[key]["delta"] > 20.0
        assert results[key]["p"] < 0.05
        assert results[key]["ci"] >= 0.0
        assert "bs:200|seed:7" in results[key]["signature"]
    # The seed is honoured and sacrebleu's environment left as it was.
    assert paired_bootstrap(system, baseline, n_samples=200, seed=7) == results
    assert paired_bootstrap(system, baseline, n_samples=200, seed=8) != results
    assert "SACREBLEU_SEED" not in os.environ


def test_delta_interval_is_taken_over_the_tests_own_resamples(tmp_path):
    # the interval comes from the resamples sacrebleu's test scores: their mean is its "mean"
    good, almost = corpus_of(40, degrade=False), corpus_of(40, degrade=True)
    mixed = {i: (good if i % 3 else almost)[i] for i in good}
    system = load_corpus(write_generate(tmp_path / "a.txt", mixed))
    baseline = load_corpus(write_generate(tmp_path / "b.txt", almost))
    results = paired_bootstrap(system, baseline, n_samples=300, seed=11)
    for key, metric in (("bleu", sacrebleu.metrics.BLEU()), ("chrf", sacrebleu.metrics.CHRF())):
        scores = resampled_scores(system, metric, 300, 11)
        assert scores.mean() == pytest.approx(results[key]["mean"], rel=1e-6)
        low, high = results[key]["delta_ci"]
        assert 0 < low < results[key]["delta"] < high  # a clear gain: the interval excludes 0


def test_slightly_different_systems_are_not_significant(tmp_path):
    good = corpus_of(30, degrade=False)
    almost = dict(good)
    almost[4] = (None, None, good[4][2], "sentence 4 tells a story")
    system = load_corpus(write_generate(tmp_path / "a.txt", almost))
    baseline = load_corpus(write_generate(tmp_path / "b.txt", good))
    results = paired_bootstrap(system, baseline, n_samples=200)
    assert results["bleu"]["delta"] < 0.0
    assert results["bleu"]["p"] > 0.05
    low, high = results["bleu"]["delta_ci"]
    assert low < 0 <= high  # not significant: the interval holds 0


def test_mismatched_references_name_the_file(tmp_path):
    system = load_corpus(write_generate(tmp_path / "sys.txt", SAMPLES))
    other = dict(SAMPLES)
    other[1] = SAMPLES[1][:2] + ("une autre reference", SAMPLES[1][3])
    baseline = load_corpus(write_generate(tmp_path / "base.txt", other))
    with pytest.raises(ScoreError, match=r"base\.txt: the T- reference of id 1 differs"):
        paired_bootstrap(system, baseline)
    fewer = load_corpus(write_generate(tmp_path / "fewer.txt", {0: SAMPLES[0], 2: SAMPLES[2]}))
    with pytest.raises(ScoreError, match=r"fewer\.txt: id 1 is missing"):
        paired_bootstrap(system, fewer)


@pytest.mark.parametrize("content, message", [
    (None, "No such file"),
    ("2026-11-24 | INFO | nothing\nT-0\tune phrase\n", "no D- or H- lines"),
    ("T-0\tune\nD-0\t-1\tune\nD-1\t-1\tdeux\n", "id 1 has a hypothesis but no T- reference"),
    ("S-0\ta\nASR-0\ta\nT-0\tx\nD-0\t-1\tx\nS-1\tb\nT-1\ty\nD-1\t-1\ty\n", "id 1 lacks its S- or ASR-"),
])
def test_errors_exit_2_naming_the_file(tmp_path, capsys, content, message):
    # In-process: any exception other than SystemExit(2) would fail the test.
    path = tmp_path / "broken.txt"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        main([str(path)])
    assert exit_info.value.code == 2
    assert f"{path}: " in capsys.readouterr().err
    with pytest.raises(ScoreError, match=message):
        build_report(str(path))


def test_cli_pair(tmp_path):
    system = write_generate(tmp_path / "sys.txt", corpus_of(30, degrade=False))
    baseline = write_generate(tmp_path / "base.txt", corpus_of(30, degrade=True))
    out = tmp_path / "scores.json"
    proc = subprocess.run(
        [sys.executable, "-m", "fairseq_exporter.cli.score", system, baseline,
         "--json", str(out), "--bootstrap-samples", "100"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["file", "n", "WER", "BLEU", "chrF2"]
    assert lines[1].split() == ["system", system, "30", "n/a", "100.00", "100.00"]
    assert lines[2].split()[:4] == ["baseline", baseline, "30", "n/a"]
    assert "paired bootstrap resampling, system - baseline (100 samples, seed 12345)" in proc.stdout
    assert "BLEU signature: nrefs:1|bs:100|seed:12345|" in proc.stdout
    report = json.loads(out.read_text())
    assert report["n"] == 30 and report["bleu"] == pytest.approx(100.0)
    assert report["delta_bleu"] == pytest.approx(100.0 - report["baseline"]["bleu"])
    assert report["p_bleu"] < 0.05 and report["p_chrf"] < 0.05
    assert f"{report['delta_chrf']:+.2f}" in proc.stdout



@pytest.mark.parametrize("command", [["-m", "fairseq_exporter.cli.score"], ["-m", "fairseq_exporter.toy.report"],
                                     ["-m", "fairseq_exporter.toy.published"], ["-m", "fairseq_exporter.toy.make_corpus"],
                                     ["-m", "fairseq_exporter.cli.prep_mustc"], ["fairseq-exporter-score"],
                                     ["fairseq-exporter-join-manifests"],
                                     ["-c", "import fairseq_exporter"]])
def test_only_the_text_only_entry_points_start_without_fairseq(command, tmp_path):
    """The scorer, the data preparation and the toy's reports and corpus need neither fairseq's registries nor its
    checkpoints: they skip the fairseq import that registering the plugin needs (most of their
    start-up); anything else registers it."""
    if command[0].startswith("fairseq-"):
        command = [os.path.join(os.path.dirname(sys.executable), command[0])]
    else:
        command = [sys.executable, *command]
    text_only = command[-1] != "import fairseq_exporter"
    proc = subprocess.run([*command, *(["--help"] if text_only else [])], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPROFILEIMPORTTIME="1"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert ("fairseq" not in imported and "torch" not in imported) == text_only
    assert ("fairseq_exporter.tasks.speech_to_text_exporter" in imported) != text_only


def _asr_corpus(path, transcripts, asr):
    return Corpus(path=path, ids=list(range(len(asr))), hypotheses=["x"] * len(asr), references=["x"] * len(asr),
                  transcripts=transcripts, asr=asr)


def test_wer_delta_is_the_corpus_wer_difference_with_its_bootstrap_interval():
    transcripts = ["a b c d", "e f", "g h i", "j"] * 25
    before = _asr_corpus("before", transcripts, ["a b c d", "e x", "g h i", "j"] * 25)  # 1 edit per 10 words
    after = _asr_corpus("after", transcripts, ["a b c", "e x", "g y i", "j"] * 25)  # 3 edits per 10 words
    d = wer_delta_interval(after, before)
    assert d["dwer"] == pytest.approx(corpus_wer(transcripts, after.asr) - corpus_wer(transcripts, before.asr))
    assert d["dwer"] == pytest.approx(20.0) and 0 < d["ci"][0] < 20.0 < d["ci"][1]
    same = wer_delta_interval(before, before)
    assert same["dwer"] == 0 and same["ci"] == [0, 0]
    assert wer_delta_interval(after, before) == d  # seeded: the same interval every time
    other = _asr_corpus("other", ["z"] * 100, before.asr)
    with pytest.raises(ScoreError, match="other: its S- transcripts are not those of after"):
        wer_delta_interval(after, other)
    with pytest.raises(ScoreError, match="no ASR- lines"):
        wer_delta_interval(after, Corpus("plain", [0], ["x"], ["x"], None, None))
