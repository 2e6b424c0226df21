"""The toy study's results, from the files the recipe's stages wrote under its work dir:
``fairseq-exporter-score --json`` outputs, ``fairseq-validate`` logs (test L2 and token
recovery), the training logs (dev BLEU and L2 over updates) and stage-seconds.tsv. Writes
results.md, results.json (the same figures, machine-readable) and curves.png.

With --summary, the study over several seeds, from each seed's results.json: results.md,
results.json and seeds.png (ΔBLEU per seed and comparison).

    python -m fairseq_exporter.toy.report --work work/toy --out results/toy
    python -m fairseq_exporter.toy.report --summary results/toy-1 results/toy-2 --out results/toy-seeds
"""

import argparse
import json
import os
import re
import statistics
from pathlib import Path
from typing import NamedTuple, Optional

from fairseq_exporter.generate_output import read_generate_output
from fairseq_exporter.results_table import fmt, markdown_table, paired_cell
from fairseq_exporter.toy.provenance import product_hashes, read_machines


class Row(NamedTuple):
    name: str  # its key in results.json
    label: str  # its first column in results.md
    step: str  # the recipe's name for it: gen/<step>/score.json, logs/validate-<step>.log
    baseline: Optional[str]  # the row its ΔBLEU is against, None for a 1-best cascade


ROWS = [
    # the paper's study: 1-best and exporter input from the ASR's CTC head (--exporter-source ctc)
    Row("onebest", "1-best cascade", "onebest", None),
    Row("reference", "reference transcript (upper bound)", "reference", "onebest"),
    Row("stage1", "stage 1: exporter only (ASR, MT frozen)", "stage1", "onebest"),
    Row("stage2", "stage 2: ASR + exporter, MT frozen", "stage2", "onebest"),
    Row("adapted_onebest", "adapted MT: 1-best cascade", "adapted-onebest", None),
    Row("stage3", "stage 3: ASR + exporter, adapted MT frozen", "stage3", "adapted_onebest"),
    # a control for stage 2's extra ASR training (stage 5)
    Row("control", "control: 1-best cascade after stage 2's ASR updates, transcript loss only",
        "control", "onebest"),
    # beyond the paper's table (stage 8): the ASR's attention decoder as the source, tight coupling
    Row("decoder_onebest", "decoder 1-best cascade", "onebest-decoder", None),
    Row("stage2_decoder", "stage 2, decoder source: ASR + exporter on decoder states, MT frozen",
        "stage2-decoder", "decoder_onebest"),
    Row("posterior", "posterior coupling (Bahar et al. 2021), decoder: ASR fine-tuned, MT frozen",
        "posterior", "decoder_onebest"),
    # a frozen instruct LM as the text model, from its own ASR on the LM's pieces (stage 9)
    Row("lm_onebest", "LM: 1-best cascade", "onebest-lm", None),
    Row("lm_stage1", "LM: stage 1, exporter only (ASR, LM frozen)", "stage1-lm", "lm_onebest"),
    Row("lm_stage2", "LM: stage 2, ASR + exporter, LM frozen", "stage2-lm", "lm_onebest"),
    Row("lm_control", "LM: control, 1-best cascade after the transcript loss only", "control-lm", "lm_onebest"),
    # a frozen Hugging Face encoder-decoder MT as the text model (stage 11)
    Row("hf_mt_onebest", "HF MT: 1-best cascade", "onebest-hf-mt", None),
    Row("hf_mt_stage1", "HF MT: stage 1, exporter only (ASR, HF MT frozen)", "stage1-hf-mt", "hf_mt_onebest"),
    Row("hf_mt_stage2", "HF MT: stage 2, ASR + exporter, HF MT frozen", "stage2-hf-mt", "hf_mt_onebest"),
    Row("hf_mt_control", "HF MT: control, 1-best cascade after the transcript loss only", "control-hf-mt",
        "hf_mt_onebest"),
    # ablations (stage 10): is the ASR update needed; is the gain reachable from the task's text alone
    Row("exporter_only", "ablation: stage 2 with the ASR frozen (exporter only)", "exporter-only", "onebest"),
    Row("text_only", "ablation: 1-best cascade, MT source table adapted on the task text (no speech)",
        "text-only", "onebest"),
    # the same two on the LM (stage 10 after stage 9)
    Row("lm_exporter_only", "LM ablation: LM stage 2 with the ASR frozen (exporter only)", "exporter-only-lm",
        "lm_onebest"),
    Row("lm_text_only", "LM ablation: LM 1-best cascade, LM input table adapted on the task text (no speech)",
        "text-only-lm", "lm_onebest"),
    # the paper's table-free exporter (stage 12): a network over the ASR's states, no table of its own
    Row("tf_stage1", "table-free exporter: stage 1 (ASR, MT frozen)", "stage1-tf", "onebest"),
    Row("tf_stage2", "table-free exporter: stage 2, ASR + exporter, MT frozen", "stage2-tf", "onebest"),
    Row("tf_exporter_only", "table-free exporter: stage 2 with the ASR frozen (exporter only)", "exporter-only-tf",
        "onebest"),
]
# Stage 2 scored against other systems than its 1-best cascade: (results.json key, gen/stage2/<file>)
VERSUS = {"stage2_vs_control": ("stage2", "vs-control.json"), "lm_stage2_vs_control": ("stage2-lm", "vs-control.json"),
          "hf_mt_stage2_vs_control": ("stage2-hf-mt", "vs-control.json"),
          "stage2_vs_exporter_only": ("stage2", "vs-exporter-only.json"),
          "stage2_vs_text_only": ("stage2", "vs-text-only.json"),
          "lm_stage2_vs_exporter_only": ("stage2-lm", "vs-exporter-only.json"),
          "lm_stage2_vs_text_only": ("stage2-lm", "vs-text-only.json"),
          "tf_stage2_vs_control": ("stage2-tf", "vs-control.json"),
          "tf_stage2_vs_exporter_only": ("stage2-tf", "vs-exporter-only.json")}
CURVES = [("stage 1", "stage1"), ("stage 2", "stage2"), ("control: transcript loss only", "control"),
          ("stage 3 (exporter only)", "stage3-exporter"),
          ("stage 3", "stage3"), ("stage 1, decoder source", "stage1-decoder"),
          ("stage 2, decoder source", "stage2-decoder"), ("posterior coupling", "posterior"),
          ("LM: stage 1", "stage1-lm"), ("LM: stage 2", "stage2-lm"), ("LM: control", "control-lm"),
          ("HF MT: stage 1", "stage1-hf-mt"), ("HF MT: stage 2", "stage2-hf-mt"), ("HF MT: control", "control-hf-mt"),
          ("ablation: exporter only", "exporter-only"), ("LM ablation: exporter only", "exporter-only-lm"),
          ("table-free: stage 1", "stage1-tf"), ("table-free: stage 2", "stage2-tf"),
          ("table-free: exporter only", "exporter-only-tf")]
JSON_LINE = re.compile(r"\| (\w[\w-]*) \| (\{.*\})\s*$")

# The study's claims, checked on each seed (findings below).
ALPHA = 0.05  # significance level of the paired bootstrap
STAGE1_TOLERANCE = 0.3  # BLEU: stage 1 should reproduce the 1-best cascade
MIN_RECOVERY = 99.0  # % of 1-best tokens the exporter's output maps back to
EQUIVALENCE = 1.0  # BLEU: (c) holds when the 95% interval of stage 3's ΔBLEU lies within +-this
CLAIMS = {
    "a": f"stage 1 is within {STAGE1_TOLERANCE} BLEU of the 1-best cascade with >= {MIN_RECOVERY:g}% "
         "token recovery",
    "b": f"with the MT frozen, stage 2 beats the 1-best cascade and the control (ΔBLEU > 0, p < {ALPHA} each)",
    "c": f"on the adapted MT the gain is gone: the 95% bootstrap interval of stage 3's ΔBLEU against the adapted "
         f"1-best cascade lies within ±{EQUIVALENCE:g} BLEU",
    "d": "the ASR's WER is not worse after stage 2",
    "e": f"with the table-free exporter (stage 12), stage 2 beats its exporter-only ablation (ΔBLEU > 0, p < {ALPHA}): "
         "the translation loss's update of the ASR adds to what the exporter alone learns",
}
# Comparisons summarized over seeds: (key, label); the key is a row (against its own 1-best
# cascade) or stage2_vs_control / lm_stage2_vs_control.
COMPARISONS = [("stage1", "stage 1 vs 1-best cascade"), ("stage2", "stage 2 vs 1-best cascade"),
               ("stage2_vs_control", "stage 2 vs control"),
               ("stage3", "stage 3 vs adapted 1-best cascade"), ("control", "control vs 1-best cascade"),
               ("reference", "reference transcript vs 1-best cascade"),
               # the frozen instruct LM (stage 9), each against the LM's own 1-best cascade
               ("lm_stage1", "LM: stage 1 vs LM 1-best cascade"), ("lm_stage2", "LM: stage 2 vs LM 1-best cascade"),
               ("lm_stage2_vs_control", "LM: stage 2 vs LM control"),
               ("lm_control", "LM: control vs LM 1-best cascade"),
               # the frozen HF encoder-decoder MT (stage 11), each against its own 1-best cascade
               ("hf_mt_stage1", "HF MT: stage 1 vs HF MT 1-best cascade"),
               ("hf_mt_stage2", "HF MT: stage 2 vs HF MT 1-best cascade"),
               ("hf_mt_stage2_vs_control", "HF MT: stage 2 vs HF MT control"),
               ("hf_mt_control", "HF MT: control vs HF MT 1-best cascade"),
               # the ablations (stage 10)
               ("exporter_only", "ablation: exporter only (ASR frozen) vs 1-best cascade"),
               ("stage2_vs_exporter_only", "stage 2 vs exporter only"),
               ("text_only", "ablation: text-only adaptation vs 1-best cascade"),
               ("stage2_vs_text_only", "stage 2 vs text-only adaptation"),
               ("lm_exporter_only", "LM ablation: exporter only (ASR frozen) vs LM 1-best cascade"),
               ("lm_stage2_vs_exporter_only", "LM: stage 2 vs exporter only"),
               ("lm_text_only", "LM ablation: text-only adaptation vs LM 1-best cascade"),
               ("lm_stage2_vs_text_only", "LM: stage 2 vs text-only adaptation"),
               # the table-free exporter (stage 12)
               ("tf_stage1", "table-free: stage 1 vs 1-best cascade"),
               ("tf_stage2", "table-free: stage 2 vs 1-best cascade"),
               ("tf_stage2_vs_control", "table-free: stage 2 vs control"),
               ("tf_exporter_only", "table-free: exporter only (ASR frozen) vs 1-best cascade"),
               ("tf_stage2_vs_exporter_only", "table-free: stage 2 vs exporter only")]
# The same comparisons as (system step, baseline step) under gen/, for the paired test on the
# seeds' test sets pooled: one test over all seeds' utterances instead of one per seed.
POOLED = {"stage1": ("stage1", "onebest"), "stage2": ("stage2", "onebest"),
          "stage2_vs_control": ("stage2", "control"), "stage3": ("stage3", "adapted-onebest"),
          "control": ("control", "onebest"), "reference": ("reference", "onebest"),
          "lm_stage1": ("stage1-lm", "onebest-lm"), "lm_stage2": ("stage2-lm", "onebest-lm"),
          "lm_stage2_vs_control": ("stage2-lm", "control-lm"), "lm_control": ("control-lm", "onebest-lm"),
          "hf_mt_stage1": ("stage1-hf-mt", "onebest-hf-mt"), "hf_mt_stage2": ("stage2-hf-mt", "onebest-hf-mt"),
          "hf_mt_stage2_vs_control": ("stage2-hf-mt", "control-hf-mt"),
          "hf_mt_control": ("control-hf-mt", "onebest-hf-mt"),
          "exporter_only": ("exporter-only", "onebest"), "stage2_vs_exporter_only": ("stage2", "exporter-only"),
          "text_only": ("text-only", "onebest"), "stage2_vs_text_only": ("stage2", "text-only"),
          "lm_exporter_only": ("exporter-only-lm", "onebest-lm"),
          "lm_stage2_vs_exporter_only": ("stage2-lm", "exporter-only-lm"),
          "lm_text_only": ("text-only-lm", "onebest-lm"), "lm_stage2_vs_text_only": ("stage2-lm", "text-only-lm"),
          "tf_stage1": ("stage1-tf", "onebest"), "tf_stage2": ("stage2-tf", "onebest"),
          "tf_stage2_vs_control": ("stage2-tf", "control"), "tf_exporter_only": ("exporter-only-tf", "onebest"),
          "tf_stage2_vs_exporter_only": ("stage2-tf", "exporter-only-tf")}
# The split: stage 2 and the control on the test sentences with and without an ambiguous noun
SPLIT = {"stage2": ("stage2", "onebest"), "control": ("control", "onebest"), "stage2_vs_control": ("stage2", "control"),
         "tf_stage2": ("stage2-tf", "onebest"), "tf_stage2_vs_exporter_only": ("stage2-tf", "exporter-only-tf")}
# Finding (d) as an interval: the ASR's WER after each stage that updates it against its 1-best
# (system step, baseline step), a paired bootstrap over utterances
WER_DELTAS = {"stage2": ("stage2", "onebest"), "control": ("control", "onebest"), "tf_stage2": ("stage2-tf", "onebest"),
              "lm_stage2": ("stage2-lm", "onebest-lm")}
WER_LABELS = {"stage2": "stage 2", "control": "the control", "tf_stage2": "table-free stage 2",
              "lm_stage2": "LM stage 2 (its own ASR)"}
PLOTTED = [("stage1", "stage 1\nvs 1-best"), ("stage2", "stage 2\nvs 1-best"),
           ("control", "control\nvs 1-best"), ("stage3", "stage 3\nvs adapted 1-best"),
           ("stage2_vs_control", "stage 2\nvs control")]


def read_json_logs(path: Path, subset: str):
    """The records fairseq logged for ``subset`` with --log-format json."""
    records = []
    if not path.exists():
        return records
    for line in path.read_text(errors="replace").splitlines():
        m = JSON_LINE.search(line)
        if m and m.group(1) == subset:
            records.append(json.loads(m.group(2)))
    return records


def validate_figures(work: Path, step: str):
    """Test-set L2 and recovery from the step's fairseq-validate log."""
    for record in read_json_logs(work / "logs" / f"validate-{step}.log", "test") or \
            read_json_logs(work / "logs" / f"validate-{step}.log", "valid_on_test"):
        if "test_l2" in record:
            return float(record["test_l2"]), float(record["test_recovery"])
    return None, None


def sense_forms():
    """German forms of the ambiguous nouns' task senses and of their general senses."""
    from fairseq_exporter.toy.grammar import AMBIGUOUS

    forms = {}
    for domain in ("task", "general"):
        nouns = [word.sense(domain) for word in AMBIGUOUS]
        forms[domain] = {f for n in nouns for f in (n.de, n.de_pl, n.de_dat_pl)}
    return forms


def sense_counts(generate_txt: Path, forms, field="output"):
    """(task-sense, general-sense) German nouns in the translations (or, with
    field="reference", the references): what the frozen general MT gets wrong is the
    sense, so this is where steering shows."""
    counts = {"task": 0, "general": 0}
    for record in read_generate_output(generate_txt).values():
        for word in (getattr(record, field) or "").split():
            for domain in counts:
                counts[domain] += word.strip(".,") in forms[domain]
    return counts["task"], counts["general"]


def runaway_outputs(generate_txt: Path, factor: float = 2.0):
    """Translations longer than ``factor`` times their reference: a weak MT on a garbled
    1-best can fall into a repetition loop, and a few such outputs move BLEU."""
    return sum(len(r.output.split()) > factor * len(r.reference.split())
               for r in read_generate_output(generate_txt).values()
               if r.output is not None and r.reference is not None)


def paired_figures(score: dict):
    """ΔBLEU (its 95% interval), ΔchrF and their p from a score.json scored against a baseline
    (None without one)."""
    return {"dbleu": score.get("delta_bleu"), "p": score.get("p_bleu"), "ci": score.get("delta_ci_bleu"),
            "dchrf": score.get("delta_chrf"), "p_chrf": score.get("p_chrf")}


def row_figures(work: Path, row: Row, score: dict, forms):
    """One row's figures; None where one does not apply (no baseline, no validate log)."""
    generate_txt = work / "gen" / row.step / "generate-test.txt"
    l2, recovery = validate_figures(work, row.step)
    task, general = sense_counts(generate_txt, forms)
    return {"wer": score.get("wer"), "bleu": score["bleu"], "chrf": score["chrf"],
            **paired_figures(score if row.baseline else {}), "l2": l2, "recovery": recovery,
            "task_sense": task, "general_sense": general, "long_outputs": runaway_outputs(generate_txt)}


def read_seconds(path: Path):
    """Seconds per stage from the recipe's stage-seconds.tsv; a rerun stage counts its last run."""
    seconds = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                stage, value = line.split("\t")
                seconds[stage] = float(value)
    return seconds


def versus(label: str, figures: dict):
    return f"{label} {figures['dbleu']:+.2f} BLEU (p={figures['p']:.3f})"


def significant_gain(figures: dict):
    return figures["dbleu"] > 0 and figures["p"] < ALPHA


def verdict(key: str, holds: bool, figures: str):
    return {"holds": holds, "text": f"({key}) {'holds' if holds else 'does not hold'}: {figures}"}


def unchecked(key: str, missing: str):
    return {"holds": None, "text": f"({key}) not checked: no {missing}"}


def finding_a(rows: dict):
    """Stage 1 reproduces the 1-best cascade: the exporter maps the 1-best onto the MT's rows."""
    stage1 = rows.get("stage1")
    if stage1 is None or stage1["dbleu"] is None:
        return unchecked("a", "stage 1 score against the 1-best cascade (gen/stage1/score.json)")
    if stage1["recovery"] is None:
        return unchecked("a", "stage 1 token recovery (logs/validate-stage1.log)")
    holds = abs(stage1["dbleu"]) <= STAGE1_TOLERANCE and stage1["recovery"] >= MIN_RECOVERY
    return verdict("a", holds, f"{versus('stage 1 vs 1-best cascade', stage1)}, "
                               f"token recovery {stage1['recovery']:.1f}%")


def finding_b(rows: dict, vs_control: Optional[dict]):
    """Stage 2's gain, and that it is the coupling's, not the extra ASR training's (the control)."""
    stage2 = rows.get("stage2")
    if stage2 is None or stage2["dbleu"] is None:
        return unchecked("b", "stage 2 score against the 1-best cascade (gen/stage2/score.json)")
    if vs_control is None:
        return unchecked("b", "stage 2 score against the control (gen/stage2/vs-control.json)")
    holds = significant_gain(stage2) and significant_gain(vs_control)
    return verdict("b", holds, f"{versus('stage 2 vs 1-best cascade', stage2)}, "
                               f"{versus('stage 2 vs control', vs_control)}")


def within(ci, margin=EQUIVALENCE):
    return ci is not None and -margin <= ci[0] and ci[1] <= margin


def interval(ci) -> str:
    return "—" if ci is None else f"[{ci[0]:+.2f}, {ci[1]:+.2f}]"


def finding_c(rows: dict):
    """Once the MT knows the task, coupling has nothing left to add: an equivalence check (the
    interval lies inside the margin), not the absence of significance."""
    stage3 = rows.get("stage3")
    if stage3 is None or stage3["dbleu"] is None:
        return unchecked("c", "stage 3 score against the adapted 1-best cascade (gen/stage3/score.json)")
    if stage3.get("ci") is None:
        return unchecked("c", "95% interval in gen/stage3/score.json (score it again with this version)")
    return verdict("c", within(stage3["ci"]), f"{versus('stage 3 vs adapted 1-best cascade', stage3)}, "
                                              f"95% interval {interval(stage3['ci'])}")


def finding_d(rows: dict, wer_delta: Optional[dict] = None):
    """The translation loss does not buy BLEU at the transcript's expense."""
    before, after = rows.get("onebest", {}).get("wer"), rows.get("stage2", {}).get("wer")
    if before is None or after is None:
        return unchecked("d", "WER of the 1-best cascade and of stage 2 (gen/onebest, gen/stage2 score.json)")
    text = f"WER {after:.2f} after stage 2, {before:.2f} before (1-best cascade)"
    if wer_delta is not None:
        text += f", ΔWER {wer_delta['dwer']:+.2f}, 95% interval {interval(wer_delta['ci'])}"
    return verdict("d", after <= before, text)


def finding_e(rows: dict, vs_exporter_only: Optional[dict]):
    """With no table in the exporter, a gain over the exporter-only ablation has to come through the ASR."""
    if vs_exporter_only is None:
        return unchecked("e", "table-free stage 2 score against its exporter-only ablation "
                              "(gen/stage2-tf/vs-exporter-only.json)")
    return verdict("e", significant_gain(vs_exporter_only),
                   versus("table-free: stage 2 vs exporter only", vs_exporter_only))


def findings(rows: dict, vs_control: Optional[dict], wer_deltas: Optional[dict] = None,
             tf_vs_exporter_only: Optional[dict] = None):
    return {"a": finding_a(rows), "b": finding_b(rows, vs_control), "c": finding_c(rows),
            "d": finding_d(rows, (wer_deltas or {}).get("stage2")), "e": finding_e(rows, tf_vs_exporter_only)}


def wer_delta_figures(works) -> dict:
    """Per WER_DELTAS comparison on the works' test sets put together: ΔWER (system - its
    1-best) and its 95% paired-bootstrap interval; None where a system was not run."""
    from fairseq_exporter.cli.score import load_corpus, wer_delta_interval

    out = {}
    for key, (system_step, baseline_step) in WER_DELTAS.items():
        paths = [(w / "gen" / system_step / "generate-test.txt", w / "gen" / baseline_step / "generate-test.txt")
                 for w in works]
        if not all(p.exists() for pair in paths for p in pair):
            out[key] = None
            continue
        corpora = [(load_corpus(str(a)), load_corpus(str(b))) for a, b in paths]
        if any(c.asr is None for pair in corpora for c in pair):  # (outputs of a text-only cascade)
            out[key] = None
            continue
        system, baseline = (pooled_asr_corpus([pair[i] for pair in corpora]) for i in (0, 1))
        out[key] = {**wer_delta_interval(system, baseline), "utterances": len(system.ids)}
    return out


def build_results(work: Path):
    """Everything results.md shows, as results.json holds it."""
    scores = {row: json.loads((work / "gen" / row.step / "score.json").read_text())
              for row in ROWS if (work / "gen" / row.step / "score.json").exists()}
    if not scores:
        raise SystemExit(f"no score.json under {work}/gen: run the recipe's scoring stage first")
    forms = sense_forms()
    rows = {row.name: row_figures(work, row, score, forms) for row, score in scores.items()}
    versus_figures = {key: paired_figures(json.loads(path.read_text())) if path.exists() else None
                      for key, (step, name) in VERSUS.items() for path in [work / "gen" / step / name]}
    vs_control = versus_figures["stage2_vs_control"]
    wer_deltas = wer_delta_figures([work])
    first_row, first = next(iter(scores.items()))
    ref_task, ref_general = sense_counts(work / "gen" / first_row.step / "generate-test.txt", forms, field="reference")
    corpus = json.loads((work / "data" / "corpus.json").read_text())["arguments"]
    return {"seed": corpus["seed"], "scale": corpus["scale"], "n": first["n"], "work": str(work.resolve()),
            "signature_bleu": first.get("signature_bleu", ""), "signature_chrf": first.get("signature_chrf", ""),
            "reference_senses": {"task": ref_task, "general": ref_general},
            "rows": rows, **versus_figures, "split": split_figures([work]), "wer_deltas": wer_deltas,
            "findings": findings(rows, vs_control, wer_deltas, versus_figures["tf_stage2_vs_exporter_only"]),
            "product_sha256": product_hashes(work), "generate_sha256": generate_hashes(work),
            "machine": read_machines(work), "seconds": read_seconds(work / "stage-seconds.tsv")}


def generate_hashes(work: Path):
    """sha256 of every test-set generate output: the same seed, machine kind and thread count
    gives the same files."""
    import hashlib

    return {path.parent.name: hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted((work / "gen").glob("*/generate-test.txt"))}


def has_ambiguous_noun(transcript: str, words=None) -> bool:
    from fairseq_exporter.toy.grammar import AMBIGUOUS

    words = words or {w for a in AMBIGUOUS for w in (a.en, a.en_pl)}
    return any(w.strip(".,?!").lower() in words for w in transcript.split())


def split_figures(works):
    """Stage 2 and the control against the 1-best cascade (and each other) on the test sentences
    whose reference transcript holds one of the twelve ambiguous nouns, and on the others
    (the works' test sets put together). None where a system was not run."""
    from fairseq_exporter.cli.score import load_corpus, paired_bootstrap

    out = {}
    for key, (system_step, baseline_step) in SPLIT.items():
        paths = [(w / "gen" / system_step / "generate-test.txt", w / "gen" / baseline_step / "generate-test.txt")
                 for w in works]
        if not all(p.exists() for pair in paths for p in pair):
            out[key] = None
            continue
        system = pooled_corpus([load_corpus(str(a)) for a, _ in paths])
        baseline = pooled_corpus([load_corpus(str(b)) for _, b in paths])
        transcripts = [t for a, _ in paths for t in _transcripts(a)]
        out[key] = {}
        for part, wanted in (("with", True), ("without", False)):
            keep = [i for i, t in enumerate(transcripts) if has_ambiguous_noun(t) == wanted]
            if not keep:
                out[key][part] = {"dbleu": None, "p": None, "ci": None, "n": 0}
                continue
            test = paired_bootstrap(subset(system, keep), subset(baseline, keep))
            out[key][part] = {"dbleu": test["bleu"]["delta"], "p": test["bleu"]["p"], "ci": test["bleu"]["delta_ci"],
                              "n": len(keep)}
    return out


def _transcripts(generate_txt: Path):
    records = read_generate_output(generate_txt)
    return [records[i].source or "" for i in sorted(records)]


def subset(corpus, keep):
    from fairseq_exporter.cli.score import Corpus

    return Corpus(path=corpus.path, ids=[corpus.ids[i] for i in keep],
                  hypotheses=[corpus.hypotheses[i] for i in keep], references=[corpus.references[i] for i in keep],
                  transcripts=None, asr=None)


def duration(seconds: float):
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


def time_line(seconds: dict):
    per_stage = ", ".join(f"{stage} {duration(s)}" for stage, s in seconds.items())
    return f"{per_stage}; total {duration(sum(seconds.values()))}"


def results_table(results: dict):
    head = ("system", "WER", "BLEU", "chrF", "ΔBLEU vs its 1-best (p)", "ΔBLEU 95% interval", "test L2", "recovery %",
            "ambiguous nouns: task / general sense", "outputs > 2x ref length")
    rows = [(row.label, fmt(r["wer"]), fmt(r["bleu"]), fmt(r["chrf"]), paired_cell(r), interval(r.get("ci")),
             fmt(r["l2"], 3),
             fmt(r["recovery"], 1), f"{r['task_sense']} / {r['general_sense']}", str(r["long_outputs"]))
            for row in ROWS if (r := results["rows"].get(row.name)) is not None]
    return markdown_table(head, rows)


def control_line(vs_control: Optional[dict], what: str = "Stage 2 against the control"):
    """Stage 2 against the control (the same ASR updates on the transcript loss alone): the
    comparison that separates the coupling from more ASR training; or against an ablation."""
    if vs_control is None:
        return []
    return [f"{what}: ΔBLEU {vs_control['dbleu']:+.2f} (p={vs_control['p']:.3f}), "
            f"ΔchrF {vs_control['dchrf']:+.2f} (p={vs_control['p_chrf']:.3f}).", ""]


SPLIT_LABELS = {"stage2": "stage 2 vs 1-best cascade", "control": "control vs 1-best cascade",
                "stage2_vs_control": "stage 2 vs control", "tf_stage2": "table-free: stage 2 vs 1-best cascade",
                "tf_stage2_vs_exporter_only": "table-free: stage 2 vs exporter only"}


def split_table(split: Optional[dict]) -> Optional[str]:
    if not split or all(v is None for v in split.values()):
        return None
    first = next(v for v in split.values() if v is not None)
    head = ("comparison", f"with an ambiguous noun ({first['with']['n']} sentences): ΔBLEU (p)",
            f"without ({first['without']['n']}): ΔBLEU (p)")
    rows = [(label, paired_cell(split[key]["with"]), paired_cell(split[key]["without"]))
            for key, label in SPLIT_LABELS.items() if split.get(key)]
    return markdown_table(head, rows)


def split_lines(split: Optional[dict]):
    table = split_table(split)
    if table is None:
        return []
    return ["Test sentences with and without one of the twelve ambiguous nouns (in the reference transcript):", "",
            table, ""]


# claims about stages beyond the paper's table, stated only where a run checked them
OPTIONAL_CLAIMS = {"e"}


def claims_sentence(keys=None):
    return "The study's claims: " + "; ".join(f"({key}) {claim}" for key, claim in CLAIMS.items()
                                              if keys is None or key in keys) + "."


def results_markdown(results: dict, commands: Optional[Path]):
    senses = results["reference_senses"]
    text = ["# Toy study: exporter-coupled cascade vs 1-best cascade", "",
            f"Test set: {results['n']} utterances of synthesized task-domain speech "
            f"(corpus seed {results['seed']}, scale {results['scale']}). "
            "Rows 1-6 are the paper's study: the 1-best is the greedy path of the ASR's CTC head and "
            "the exporter reads the encoder frames of each token's CTC segment (--exporter-source ctc). "
            "The control row trains the ASR as stage 2 does but on the transcript loss alone; the "
            "decoder rows take the 1-best from the ASR's attention decoder instead; the LM rows replace the MT by "
            "a frozen instruct LM (Llama architecture, byte-level BPE, Llama 3 Instruct's chat template, trained on "
            "the general-domain text as chat turns, --lm-checkpoint --lm-chat) read from an ASR of the same settings "
            "that writes the LM's pieces; the HF MT rows replace it by a frozen Hugging Face encoder-decoder MT "
            "(Marian architecture, trained on the general-domain text, --hf-mt-checkpoint); the table-free rows "
            "(stage 12) take an exporter with no table of its own (a network over the ASR's states, the paper's) "
            "through stages 1-2 and the exporter-only ablation, against the same 1-best cascade and control. "
            "WER of the ASR 1-best; BLEU and chrF of the translations; ΔBLEU and p from sacreBLEU's "
            "paired bootstrap against the 1-best cascade of the same source on the same MT model; "
            "test L2 and token recovery from fairseq-validate. The ambiguous-nouns column counts the "
            "German nouns of the twelve ambiguous words' task senses (Ufer, Fledermaus, ...) and "
            "general senses (Bank, Schläger, ...) in the translations; the references hold "
            f"{senses['task']} / {senses['general']}. The last column counts translations more than twice "
            "as long as their reference (repetition loops).", "",
            results_table(results), "", *control_line(results["stage2_vs_control"]),
            *control_line(results.get("lm_stage2_vs_control"), "With the LM, stage 2 against the control"),
            *control_line(results.get("hf_mt_stage2_vs_control"), "With the HF MT, stage 2 against the control"),
            *control_line(results.get("stage2_vs_exporter_only"), "Stage 2 against the exporter-only ablation"),
            *control_line(results.get("stage2_vs_text_only"), "Stage 2 against the text-only ablation"),
            *control_line(results.get("lm_stage2_vs_exporter_only"), "With the LM, stage 2 against the exporter-only ablation"),
            *control_line(results.get("lm_stage2_vs_text_only"), "With the LM, stage 2 against the text-only ablation"),
            *control_line(results.get("tf_stage2_vs_control"), "With the table-free exporter, stage 2 against the control"),
            *control_line(results.get("tf_stage2_vs_exporter_only"),
                          "With the table-free exporter, stage 2 against its exporter-only ablation"),
            *wer_delta_lines(results.get("wer_deltas")),
            *split_lines(results.get("split")),
            *findings_section(results["findings"]),
            f"BLEU signature: `{results['signature_bleu']}`  ",
            f"chrF signature: `{results['signature_chrf']}`", "",
            "![dev BLEU and L2 over updates](curves.png)", ""]
    if commands and commands.exists():
        text += ["## Commands", "", "```bash", commands.read_text().rstrip(), "```", ""]
    # Last, with the commands: a rerun changes the times, not the results above.
    if results["seconds"]:
        text += [f"Time per stage: {time_line(results['seconds'])}.", ""]
    text += machine_lines(results.get("machine") or [])
    return "\n".join(text)


def wer_delta_table(wer_deltas: Optional[dict]) -> Optional[str]:
    if not wer_deltas or all(v is None for v in wer_deltas.values()):
        return None
    rows = [(WER_LABELS[key], f"{d['dwer']:+.2f}", interval(d["ci"]), str(d["utterances"]))
            for key, d in wer_deltas.items() if d is not None]
    return markdown_table(("ASR updated by", "ΔWER vs its 1-best", "95% interval", "utterances"), rows)


def wer_delta_lines(wer_deltas: Optional[dict]):
    """Finding (d) as an interval: each ASR update's WER change against the ASR it started from."""
    table = wer_delta_table(wer_deltas)
    if table is None:
        return []
    return ["The ASR's WER after each stage that updates it, against its 1-best (paired bootstrap over utterances; "
            "positive: more errors):", "", table, ""]


def findings_section(findings: dict):
    """The claims on this seed; none where the run has none of the paper's rows (stage 11 alone)."""
    if all(finding["holds"] is None for finding in findings.values()):
        return []
    shown = {key: f for key, f in findings.items() if f["holds"] is not None or key not in OPTIONAL_CLAIMS}
    return ["## Findings on this seed", "", claims_sentence(shown), "",
            *(f"- {finding['text']}" for finding in shown.values()), ""]


def machine_lines(machines):
    """What the bits depend on, per machine the work dir's stages ran on."""
    if not machines:
        return []
    text = ["## Machine", "", "The same seed gives the same bits only with the same facts below "
            "(`python -m fairseq_exporter.toy.provenance compare` names where two runs part).", ""]
    for machine in machines:
        facts = machine["facts"]
        text.append(f"- stages {', '.join(machine['stages'])}: " +
                    "; ".join(f"{key} {value}" for key, value in facts.items()))
    return text + [""]


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only, no display)."""
    import logging

    # fairseq sets the root logger to DEBUG, and matplotlib logs at import
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(work: Path, out_png: Path):
    plt = pyplot()
    fig, (ax_bleu, ax_l2) = plt.subplots(1, 2, figsize=(11, 4))
    for label, name in CURVES:
        records = read_json_logs(work / "logs" / f"train-{name}.log", "dev")
        points = [(int(r["dev_num_updates"]), r) for r in records if "dev_num_updates" in r]
        if not points:
            continue
        updates = [u for u, _ in points]
        if any("dev_bleu" in r for _, r in points):
            ax_bleu.plot(updates, [float(r.get("dev_bleu", "nan")) for _, r in points], marker="o", label=label)
        if any("dev_l2" in r for _, r in points):
            ax_l2.plot(updates, [float(r.get("dev_l2", "nan")) for _, r in points], marker="o", label=label)
    ax_bleu.set(title="dev BLEU (greedy)", xlabel="updates", ylabel="BLEU")
    ax_l2.set(title="dev L2 (exporter vs MT embedding rows)", xlabel="updates", ylabel="L2 per token")
    ax_l2.set_yscale("log")
    for ax in (ax_bleu, ax_l2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def report_one_seed(work: Path, out: Path, commands: Optional[Path]):
    results = build_results(work)
    plot_curves(work, out / "curves.png")
    (out / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    text = results_markdown(results, commands)
    (out / "results.md").write_text(text)
    print(text.split("BLEU signature")[0].rstrip())


# --- the study over several seeds ---

def read_seed_results(dirs):
    """Each dir's results.json, in seed order; a missing file or a seed given twice stops."""
    seeds = {}
    for d in dirs:
        path = d / "results.json"
        if not path.exists():
            raise SystemExit(f"{path} not found: write it with --work for that seed first")
        results = json.loads(path.read_text())
        if results["seed"] in seeds:
            raise SystemExit(f"seed {results['seed']} appears twice: {seeds[results['seed']][0]} and {d}")
        seeds[results["seed"]] = (d, results)
    return [seeds[seed] for seed in sorted(seeds)]


def comparison(results: dict, key: str):
    """One seed's paired figures for a comparison; None if it was not run."""
    figures = results.get(key) if "_vs_" in key else results["rows"].get(key)
    return figures if figures is not None and figures["dbleu"] is not None else None


def mean_std(values):
    """Mean and sample standard deviation (None where too few values)."""
    mean = statistics.mean(values) if values else None
    return mean, statistics.stdev(values) if len(values) > 1 else None


def summarize_comparisons(seeds):
    summary = {}
    for key, _ in COMPARISONS:
        figures = [f for f in (comparison(results, key) for _, results in seeds) if f is not None]
        dbleu_mean, dbleu_std = mean_std([f["dbleu"] for f in figures])
        dchrf_mean, dchrf_std = mean_std([f["dchrf"] for f in figures])
        summary[key] = {"dbleu_mean": dbleu_mean, "dbleu_std": dbleu_std,
                        "dchrf_mean": dchrf_mean, "dchrf_std": dchrf_std,
                        # p < ALPHA counted apart for gains and losses: a significant loss is no success
                        "significant": sum(f["p"] < ALPHA and f["dbleu"] > 0 for f in figures),
                        "significant_worse": sum(f["p"] < ALPHA and f["dbleu"] < 0 for f in figures),
                        "significant_chrf": sum(f["p_chrf"] < ALPHA and f["dchrf"] > 0 for f in figures),
                        "significant_worse_chrf": sum(f["p_chrf"] < ALPHA and f["dchrf"] < 0 for f in figures),
                        "n": len(figures)}
    return summary


def pooled_corpus(corpora):
    from fairseq_exporter.cli.score import Corpus

    return Corpus(path=" + ".join(c.path for c in corpora), ids=list(range(sum(len(c.ids) for c in corpora))),
                  hypotheses=[h for c in corpora for h in c.hypotheses],
                  references=[r for c in corpora for r in c.references], transcripts=None, asr=None)


def pooled_asr_corpus(corpora):
    """Several generate outputs as one, with their transcripts and ASR 1-bests (for WER)."""
    from fairseq_exporter.cli.score import Corpus

    return Corpus(path=" + ".join(c.path for c in corpora), ids=list(range(sum(len(c.ids) for c in corpora))),
                  hypotheses=[h for c in corpora for h in c.hypotheses],
                  references=[r for c in corpora for r in c.references],
                  transcripts=[t for c in corpora for t in c.transcripts], asr=[a for c in corpora for a in c.asr])


def pooled_comparisons(seeds):
    """Each comparison's paired bootstrap on the seeds' test sets put together (seed k's
    utterances scored by seed k's systems): with 3 x 400 utterances it can tell a gain of the
    size the seeds agree on from noise where one seed's 400 cannot. None for a comparison
    whose generate outputs are not all there (a work dir moved or not run that far)."""
    from fairseq_exporter.cli.score import load_corpus, paired_bootstrap

    pooled = {}
    for key, (system_step, baseline_step) in POOLED.items():
        paths = [tuple(Path(results.get("work", "")) / "gen" / step / "generate-test.txt"
                       for step in (system_step, baseline_step)) for _, results in seeds]
        if not all(p.exists() for pair in paths for p in pair):
            pooled[key] = None
            continue
        system = pooled_corpus([load_corpus(str(s)) for s, _ in paths])
        baseline = pooled_corpus([load_corpus(str(b)) for _, b in paths])
        test = paired_bootstrap(system, baseline)
        pooled[key] = {"dbleu": test["bleu"]["delta"], "p": test["bleu"]["p"], "ci": test["bleu"]["delta_ci"],
                       "dchrf": test["chrf"]["delta"], "p_chrf": test["chrf"]["p"],
                       "utterances": len(system.ids), "seeds": len(seeds)}
    return pooled


def summarize_findings(seeds):
    """On how many seeds each claim holds, and the seeds where it does not or was not checked."""
    summary = {}
    for key in CLAIMS:  # (a seed's results from before a claim was added have not checked it)
        holds = {results["seed"]: results["findings"].get(key, {}).get("holds") for _, results in seeds}
        summary[key] = {"holds": sum(h is True for h in holds.values()), "n": len(holds),
                        "not_holding": [seed for seed, h in holds.items() if h is False],
                        "not_checked": [seed for seed, h in holds.items() if h is None]}
    return summary


def summed_seconds(seeds):
    totals = {}
    for _, results in seeds:
        for stage, seconds in results["seconds"].items():
            totals[stage] = totals.get(stage, 0) + seconds
    return totals


def mean_std_cell(mean, std):
    if mean is None:
        return "—"
    return f"{mean:+.2f}" + (f" ± {std:.2f}" if std is not None else "")


def seeds_table(seeds, out: Path):
    head = ("seed", "WER 1-best", "BLEU 1-best", "BLEU stage 1", "BLEU stage 2", "BLEU control",
            "BLEU adapted 1-best", "BLEU stage 3", "ΔBLEU stage 1 (p)", "ΔBLEU stage 2 (p)",
            "ΔBLEU stage 2 vs control (p)", "ΔBLEU stage 3 (p)", "WER HF MT 1-best", "BLEU HF MT 1-best",
            "BLEU HF MT stage 2", "ΔBLEU HF MT stage 2 (p)", "ΔBLEU HF MT stage 2 vs control (p)", "per-seed results")
    rows = []
    for d, results in seeds:
        r = results["rows"]
        link = Path(os.path.relpath(d, out)).as_posix()
        rows.append((str(results["seed"]), fmt(r.get("onebest", {}).get("wer")),
                     *(fmt(r.get(name, {}).get("bleu"))
                       for name in ("onebest", "stage1", "stage2", "control", "adapted_onebest", "stage3")),
                     *(paired_cell(comparison(results, key))
                       for key in ("stage1", "stage2", "stage2_vs_control", "stage3")),
                     fmt(r.get("hf_mt_onebest", {}).get("wer")),
                     *(fmt(r.get(name, {}).get("bleu")) for name in ("hf_mt_onebest", "hf_mt_stage2")),
                     *(paired_cell(comparison(results, key)) for key in ("hf_mt_stage2", "hf_mt_stage2_vs_control")),
                     f"[results]({link}/results.md), [curves]({link}/curves.png)"))
    # a column no seed has (a summary of stage 11's runs has no fairseq-MT rows) is left out
    keep = [i for i in range(len(head)) if any(row[i] != "—" for row in rows)]
    return markdown_table([head[i] for i in keep], [[row[i] for i in keep] for row in rows])


def pooled_cell(figures: Optional[dict], metric="bleu"):
    if figures is None:
        return "—"
    delta, p = (figures["dbleu"], figures["p"]) if metric == "bleu" else (figures["dchrf"], figures["p_chrf"])
    return f"{delta:+.2f} (p={p:.3f})"


def comparisons_table(summary: dict, pooled: dict, keys=None):
    """Per comparison: ΔBLEU over the seeds, on how many it is significant, and the pooled test
    with its 95% interval; ``keys``: only those comparisons (the READMEs' tables)."""
    head = ("comparison", "ΔBLEU mean ± sd", "seeds p < 0.05: better / worse", "pooled ΔBLEU (p)",
            "pooled ΔBLEU 95% interval", "pooled ΔchrF (p)")
    rows = [(label, mean_std_cell(s["dbleu_mean"], s["dbleu_std"]),
             f"{s['significant']} / {s['significant_worse']} of {s['n']}", pooled_cell(pooled.get(key)),
             interval((pooled.get(key) or {}).get("ci")), pooled_cell(pooled.get(key), "chrf"))
            for key, label in COMPARISONS if (keys is None or key in keys) and (s := summary[key])["n"]]
    return markdown_table(head, rows)


def finding_lines(seeds, summary: dict):
    texts = {results["seed"]: results["findings"] for _, results in seeds}
    lines = []
    for key, s in summary.items():
        if len(s["not_checked"]) == s["n"]:  # no seed ran the rows the claim is about
            continue
        line = f"- ({key}) holds on {s['holds']}/{s['n']} seeds"
        if s["not_holding"]:
            line += "; does not hold on seed " + ", ".join(map(str, s["not_holding"]))
        if s["not_checked"]:
            line += "; not checked on seed " + ", ".join(map(str, s["not_checked"]))
        lines.append(line)
        lines += [f"  - seed {seed}: {texts[seed][key]['text']}" for seed in s["not_holding"]]
    return lines


def summary_markdown(seeds, summary: dict, pooled: dict, finding_summary: dict, seconds: dict, out: Path, split=None,
                     wer_deltas=None):
    scales = sorted({results["scale"] for _, results in seeds})
    text = [f"# Toy study over {len(seeds)} seeds", "",
            f"Each seed is the whole recipe (corpus, models, scores) run with that --seed, scale "
            f"{', '.join(scales)}. ΔBLEU and p from sacreBLEU's paired bootstrap, each system against "
            "its own 1-best cascade unless named; sd is the sample standard deviation across seeds. "
            "The pooled columns run one paired bootstrap on the seeds' test sets put together (each seed's "
            "utterances translated by that seed's systems).", "",
            seeds_table(seeds, out), "", "## Across seeds", "", comparisons_table(summary, pooled), "",
            *wer_delta_lines(wer_deltas), *split_lines(split),
            "![ΔBLEU per seed](seeds.png)", "", "## Findings", "",
            claims_sentence([k for k, s in finding_summary.items()
                             if len(s["not_checked"]) < s["n"] or k not in OPTIONAL_CLAIMS]), "",
            *finding_lines(seeds, finding_summary), ""]
    if seconds:
        text += [f"Time summed over the seeds: {time_line(seconds)}.", ""]
    return "\n".join(text)


def jitter(n: int, width: float = 0.24):
    """Evenly spread x offsets for n seeds: the points do not overlap, and the figure is
    the same on every run."""
    return [0.0] if n == 1 else [-width / 2 + width * i / (n - 1) for i in range(n)]


def plot_seeds(seeds, summary: dict, out_png: Path):
    """ΔBLEU per comparison: a point per seed (filled if p < ALPHA), a tick at the mean."""
    plt = pyplot()
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.axhline(0, color="grey", linewidth=0.8)
    handles = []
    for i, ((_, results), dx) in enumerate(zip(seeds, jitter(len(seeds)))):
        color = f"C{i % 10}"
        for x, (key, _) in enumerate(PLOTTED):
            figures = comparison(results, key)
            if figures is not None:
                ax.plot(x + dx, figures["dbleu"], "o", markersize=7, color=color, zorder=3,
                        markerfacecolor=color if figures["p"] < ALPHA else "none")
        handles.append(Line2D([], [], marker="o", linestyle="", color=color, label=f"seed {results['seed']}"))
    for x, (key, _) in enumerate(PLOTTED):
        mean = summary[key]["dbleu_mean"]
        if mean is not None:
            ax.hlines(mean, x - 0.3, x + 0.3, color="black", linewidth=2)
            ax.annotate(f"{mean:+.2f}", (x + 0.32, mean), va="center", fontsize=8)
    handles += [Line2D([], [], marker="o", linestyle="", color="black", label=f"p < {ALPHA}"),
                Line2D([], [], marker="o", linestyle="", color="black", markerfacecolor="none",
                       label=f"p ≥ {ALPHA}"),
                Line2D([], [], color="black", linewidth=2, label="mean")]
    ax.axvline(len(PLOTTED) - 1.5, color="grey", linestyle=":")  # the last is not against a 1-best
    ax.set_xticks(range(len(PLOTTED)), [label for _, label in PLOTTED])
    ax.set_xlim(-0.5, len(PLOTTED) - 0.2)  # room for the last mean's label
    ax.set(ylabel="ΔBLEU", title=f"ΔBLEU over {len(seeds)} seeds (paired bootstrap p)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(handles=handles, fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def report_seeds(dirs, out: Path):
    seeds = read_seed_results(dirs)
    summary, finding_summary, seconds = summarize_comparisons(seeds), summarize_findings(seeds), summed_seconds(seeds)
    pooled = pooled_comparisons(seeds)
    works = [Path(results.get("work", "")) for _, results in seeds]
    have_gen = all((w / "gen").is_dir() for w in works)
    split = split_figures(works) if have_gen else None
    wer_deltas = wer_delta_figures(works) if have_gen else None
    (out / "results.json").write_text(json.dumps(
        {"seeds": {str(results["seed"]): results for _, results in seeds}, "summary": summary,
         "pooled": pooled, "split": split, "wer_deltas": wer_deltas, "findings": finding_summary,
         "seconds": seconds}, indent=2, ensure_ascii=False) + "\n")
    (out / "results.md").write_text(summary_markdown(seeds, summary, pooled, finding_summary, seconds, out, split,
                                                     wer_deltas))
    plot_seeds(seeds, summary, out / "seeds.png")
    print(comparisons_table(summary, pooled))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--work", type=Path, help="the recipe's work dir (one seed)")
    source.add_argument("--summary", type=Path, nargs="+", metavar="RESULTS_DIR",
                        help="per-seed results dirs, each with the results.json of a --work report")
    parser.add_argument("--out", type=Path, required=True, help="where results.md, results.json and the plot go")
    parser.add_argument("--commands", type=Path, help="file with the commands that ran, to append (--work)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.summary:
        report_seeds(args.summary, args.out)
    else:
        report_one_seed(args.work, args.out, args.commands)


if __name__ == "__main__":
    main()
