"""The toy study's numbers in the READMEs, written from the committed results and checked
against them: every study table in README.md and recipes/toy/README.md sits between
``<!-- results:NAME -->`` and ``<!-- /results:NAME -->`` and is rendered here from
``recipes/toy/results/results.json`` (the three-seed summary the report writes) and
``recipes/toy/results/tune.json`` (the dev protocol's selection), stage 9's and stage 11's from
``recipes/toy/results/lm/results.json`` and ``hf-mt/results.json`` (each its summary over seeds);
a benchmark's block in
benchmarks/README.md or recipes/mustc/README.md is what the script wrote with ``--out``
under benchmarks/results/.

    python -m fairseq_exporter.toy.published README.md recipes/toy/README.md           # write
    python -m fairseq_exporter.toy.published README.md recipes/toy/README.md --check   # compare
"""

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional

from fairseq_exporter.results_table import fmt, markdown_table, paired_cell
from fairseq_exporter.toy import report

RESULTS = Path(__file__).resolve().parents[2] / "recipes" / "toy" / "results"
# what benchmark scripts write with --out (benchmarks/README.md shows it as written)
BENCHMARK_RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
STUDY = ("stage1", "stage2", "stage2_vs_control", "control", "stage3", "reference")
ABLATIONS = ("exporter_only", "stage2_vs_exporter_only", "text_only", "stage2_vs_text_only")
LM = ("lm_stage1", "lm_stage2", "lm_stage2_vs_control", "lm_control")
LM_ABLATIONS = ("lm_exporter_only", "lm_stage2_vs_exporter_only", "lm_text_only", "lm_stage2_vs_text_only")
HF_MT = ("hf_mt_stage1", "hf_mt_stage2", "hf_mt_stage2_vs_control", "hf_mt_control")
TABLE_FREE = ("tf_stage1", "tf_stage2", "tf_stage2_vs_control", "tf_exporter_only", "tf_stage2_vs_exporter_only")
# the later stages' runs on seeds 1-3 (each seed's corpus, its ASR and the stage), each summarized
# apart from the study in RESULTS/DIR: stage 9 (the instruct LM), stage 11 (the HF MT), stage 12
# (the table-free exporter, beside stages 1-5 of the same runs)
TEXT_MODEL_STUDIES = {"lm": "stage 9", "hf-mt": "stage 11", "table-free": "stage 12"}
BLOCK = re.compile(r"(<!-- results:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /results:(?P=name) -->)", re.S)


class PublishedError(Exception):
    """A README block that names no known table, or results that lack what a block shows."""


def seeds_table(summary: dict) -> str:
    head = ("seed", "WER 1-best → after stage 2", "BLEU 1-best", "stage 1", "stage 2", "control",
            "adapted 1-best", "stage 3", "ΔBLEU stage 2 vs control (p)", "ΔBLEU stage 3 vs adapted 1-best: 95% interval")
    rows = []
    for seed, results in sorted(summary["seeds"].items(), key=lambda kv: int(kv[0])):
        r = results["rows"]
        rows.append((seed, f"{fmt(r['onebest']['wer'])} → {fmt(r['stage2']['wer'])}",
                     *(fmt(r[name]["bleu"]) for name in ("onebest", "stage1", "stage2", "control",
                                                          "adapted_onebest", "stage3")),
                     paired_cell(results["stage2_vs_control"]), report.interval(r["stage3"].get("ci"))))
    return markdown_table(head, rows)


def text_model_seeds_table(seeds: dict, prefix: str, label: str, before: str, where: str) -> str:
    """Per seed, the rows of another text model (``prefix``: ``lm_`` stage 9, ``hf_mt_`` stage
    11): WER before (row ``before``) and after its stage 2, its 1-best, stages 1-2 and control.
    A seed without them is refused."""
    head = ("seed", f"WER 1-best → after {label}stage 2", f"BLEU {label}1-best", "stage 1", "stage 2", "control",
            "ΔBLEU stage 2 (p)", "ΔBLEU stage 2 vs control (p)")
    rows = []
    for seed, results in sorted(seeds.items(), key=lambda kv: int(kv[0])):
        r = results["rows"]
        if f"{prefix}stage2" not in r:
            raise PublishedError(f"{where}: seed {seed} has no {label}rows")
        rows.append((seed, f"{fmt(r[before]['wer'])} → {fmt(r[prefix + 'stage2']['wer'])}",
                     *(fmt(r[prefix + name]["bleu"]) for name in ("onebest", "stage1", "stage2", "control")),
                     paired_cell(r[prefix + "stage2"]), paired_cell(results.get(prefix + "stage2_vs_control"))))
    return markdown_table(head, rows)


def text_model_study(summary: dict, name: str) -> dict:
    study = summary["text_model_studies"].get(name)
    if study is None:
        raise PublishedError(f"no {name}/results.json beside results.json ({TEXT_MODEL_STUDIES[name]} on each seed, "
                             f"then report --summary over their results dirs --out {name})")
    return study


def findings_lines(summary: dict) -> str:
    """On how many seeds each claim holds; (c) with its intervals, (d) with the WERs."""
    seeds = sorted(summary["seeds"].items(), key=lambda kv: int(kv[0]))
    pooled = summary["pooled"].get("stage3") or {}
    details = {
        "c": "stage 3 vs the adapted 1-best cascade, ΔBLEU and its 95% interval: "
             + "; ".join(f"seed {seed} {r['rows']['stage3']['dbleu']:+.2f} {report.interval(r['rows']['stage3'].get('ci'))}"
                         for seed, r in seeds)
             + (f"; pooled {pooled['dbleu']:+.2f} {report.interval(pooled.get('ci'))}" if pooled else ""),
        "d": "WER of the 1-best before → after stage 2: "
             + "; ".join(f"seed {seed} {fmt(r['rows']['onebest']['wer'])} → {fmt(r['rows']['stage2']['wer'])}"
                         for seed, r in seeds)}
    lines = []
    for key, claim in report.CLAIMS.items():
        s = summary["findings"].get(key)
        if s is None or (key in report.OPTIONAL_CLAIMS and len(s["not_checked"]) == s["n"]):
            continue
        line = f"- **({key}) holds on {s['holds']}/{s['n']} seeds**: {claim}"
        if s["not_holding"]:
            line += " (not on seed " + ", ".join(map(str, s["not_holding"])) + ")"
        lines.append(line + (f". {details[key]}." if key in details else "."))
    return "\n".join(lines)


def lr(value: float) -> str:
    """2e-4, as the recipe writes learning rates."""
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}" if float(f"{mantissa}e{exponent}") == value else f"{value:g}"


def settings_table(tune: dict) -> str:
    s, grid = tune["selected"], tune["grid"]
    rows = [("ASR update budget", " / ".join(map(str, grid["asr_updates"])), str(s["asr_updates"])),
            ("exporter type", " / ".join(grid["exporters"]), s["exporter_type"]),
            ("stage 2 (and 3): learning rate, updates", f"{' / '.join(grid['lrs'])} × ≤ {' / '.join(map(str, grid['budgets']))}",
             f"{lr(s['stage2_lr'])}, {s['stage2_updates']}"),
            ("control: learning rate, updates", f"{' / '.join(grid['lrs'])} × ≤ {' / '.join(map(str, grid['budgets']))}",
             f"{lr(s['control_lr'])}, {s['control_updates']}"),
            ("text-only ablation: learning rate, updates",
             f"{' / '.join(grid['text_lrs'])} × ≤ {' / '.join(map(str, grid['text_budgets']))}",
             f"{lr(s['text_only_lr'])}, {s['text_only_updates']}")]
    return markdown_table(("setting", "grid", f"selected on seed {tune['seed']}'s dev set"), rows)


def _split(summary: dict) -> str:
    table = report.split_table(summary.get("split"))
    if table is None:
        raise PublishedError("results.json has no split figures")
    return table


def table_free_seeds_table(seeds: dict) -> str:
    """Per seed of stage 12's runs: the WER after each configuration's stage 2 and BLEU of each row."""
    head = ("seed", "WER 1-best → after stage 2: vocab / table-free", "BLEU 1-best", "vocab stage 2", "control",
            "table-free stage 1", "table-free stage 2", "table-free exporter only",
            "ΔBLEU table-free stage 2 vs exporter only (p)")
    rows = []
    for seed, results in sorted(seeds.items(), key=lambda kv: int(kv[0])):
        r = results["rows"]
        if "tf_stage2" not in r:
            raise PublishedError(f"table-free (stage 12): seed {seed} has no table-free rows")
        rows.append((seed, f"{fmt(r['onebest']['wer'])} → {fmt(r['stage2']['wer'])} / {fmt(r['tf_stage2']['wer'])}",
                     *(fmt(r[name]["bleu"]) for name in ("onebest", "stage2", "control", "tf_stage1", "tf_stage2",
                                                          "tf_exporter_only")),
                     paired_cell(results.get("tf_stage2_vs_exporter_only"))))
    return markdown_table(head, rows)


def table_free_settings_table(tune: Optional[dict]) -> str:
    if tune is None:
        raise PublishedError(f"{RESULTS / 'tune-table-free.json'}: not found (bash recipes/toy/run.sh --tune-table-free)")
    s, grid = tune["selected"], tune["grid"]
    budgets = " / ".join(map(str, grid["budgets"]))
    rows = [("exporter type", " / ".join(grid["exporters"]), s["exporter_type"]),
            ("stage 1: learning rate, updates",
             f"{' / '.join(grid['stage1_lrs'])} × ≤ {' / '.join(map(str, grid['stage1_budgets']))}",
             f"{lr(s['stage1_lr'])}, {s['stage1_updates']}"),
            ("stage 2: learning rate, updates", f"{' / '.join(grid['lrs'])} × ≤ {budgets}",
             f"{lr(s['stage2_lr'])}, {s['stage2_updates']}"),
            ("stage 2: transcript-loss weight (finding (d) as a constraint)",
             f"{' / '.join(grid['asr_weights'])} × ≤ {budgets}", f"{s['asr_weight']:g}")]
    return markdown_table(("setting", "grid", f"selected on seed {tune['seed']}'s dev set"), rows)


def wer_table(study: dict) -> str:
    table = report.wer_delta_table(study.get("wer_deltas"))
    if table is None:
        raise PublishedError("table-free/results.json has no WER differences (report --summary with the work dirs)")
    return table


DEMO_STAGES = ("corpus", "mt", "asr", "stage1", "baselines", "stage2", "stage3", "report")


def time_table(summary: dict) -> str:
    """Seed 1's time per stage: make demo's stages and the ablations."""
    seconds = summary["seeds"]["1"]["seconds"]
    demo = {stage: seconds[stage] for stage in DEMO_STAGES if stage in seconds}
    rows = [(stage, report.duration(value)) for stage, value in demo.items()]
    rows.append(("`make demo` (stages 0-7)", report.duration(sum(demo.values()))))
    if "ablations" in seconds:
        rows.append(("stage 10, ablations", report.duration(seconds["ablations"])))
    if "lm" in seconds:
        rows.append(("stage 9, the LM rows", report.duration(seconds["lm"])))
    return markdown_table(("seed 1", "time"), rows)


DEMO = RESULTS / "demo" / "results.json"  # the published make demo run (seed 1, stages 0-7)


def demo_results() -> dict:
    """The published make demo run; it must hold its stage-by-stage hashes and machine facts
    (a published run without them could not be checked against)."""
    if not DEMO.exists():
        raise PublishedError(f"{DEMO}: not found (make demo, then copy results/toy/ there)")
    demo = json.loads(DEMO.read_text())
    for key in ("product_sha256", "generate_sha256", "machine"):
        if not demo.get(key):
            raise PublishedError(f"{DEMO} has no {key}: publish a run of the current recipe (it records them)")
    if demo["seed"] != 1 or demo["scale"] != "full":
        raise PublishedError(f"{DEMO}: seed {demo['seed']}, scale {demo['scale']}; make demo is seed 1, full")
    return demo


def machine_table(demo: dict) -> str:
    """The machine facts each invocation of the make demo run ran under."""
    rows = []
    for machine in demo["machine"]:
        f = machine["facts"]
        rows.append((", ".join(machine["stages"]), f"{f['cpu']} {f.get('cpu_numbers', '')} ({f['isa']})",
                     str(f["threads"]), f["pins"], f"{f['torch']} / {f['mkl']} / {f['onednn']}",
                     f"{f['sentencepiece']} / {f['kaldi_native_fbank']} / {f['espeakng_loader']}"))
    return markdown_table(("stages", "CPU: family/model/stepping, caches (ISA)", "threads", "code-path pins",
                           "torch / MKL / oneDNN", "sentencepiece / kaldi-native-fbank / espeakng-loader"), rows)


DEMO_COMPARISONS = ("stage1", "stage2", "stage2_vs_control", "control", "stage3", "reference")


def demo_table(summary: dict, demo: dict) -> str:
    """Seed 1 computed twice, make demo's run and the study's, beside the study's spread over
    seeds: how much a run's environment moves a number, against how much the seed does."""
    import statistics

    study = summary["seeds"]["1"]
    rows = []
    for name, metric, label in (("onebest", "bleu", "1-best cascade BLEU"), ("onebest", "wer", "1-best WER"),
                                ("adapted_onebest", "bleu", "adapted 1-best cascade BLEU")):
        a, b = demo["rows"][name][metric], study["rows"][name][metric]
        spread = statistics.stdev(seed["rows"][name][metric] for seed in summary["seeds"].values())
        rows.append((label, fmt(a), fmt(b), f"{a - b:+.2f}", f"{spread:.2f}"))
    labels = dict(report.COMPARISONS)
    for key in DEMO_COMPARISONS:
        a, b = report.comparison(demo, key), report.comparison(study, key)
        spread = summary["summary"][key]["dbleu_std"]
        rows.append((f"ΔBLEU {labels[key]}", paired_cell(a), paired_cell(b), f"{a['dbleu'] - b['dbleu']:+.2f}",
                     f"{spread:.2f}" if spread is not None else ""))
    return markdown_table(("seed 1", "make demo's run", "the study's run", "difference", "sd over the study's seeds"),
                          rows)


BLOCKS: Dict[str, Callable[[dict, dict], str]] = {
    "machine": lambda summary, tune: machine_table(demo_results()),
    "demo": lambda summary, tune: demo_table(summary, demo_results()),
    "time": lambda summary, tune: time_table(summary),
    "study": lambda summary, tune: report.comparisons_table(summary["summary"], summary["pooled"], STUDY),
    "ablations": lambda summary, tune: report.comparisons_table(summary["summary"], summary["pooled"], ABLATIONS),
    "lm": lambda summary, tune: report.comparisons_table(text_model_study(summary, "lm")["summary"],
                                                        text_model_study(summary, "lm")["pooled"], LM),
    "lm-seeds": lambda summary, tune: text_model_seeds_table(text_model_study(summary, "lm")["seeds"], "lm_", "LM ",
                                                             "lm_onebest", "lm (stage 9)"),
    "lm-ablations": lambda summary, tune: report.comparisons_table(text_model_study(summary, "lm")["summary"],
                                                                  text_model_study(summary, "lm")["pooled"],
                                                                  LM_ABLATIONS),
    "hf-mt": lambda summary, tune: report.comparisons_table(text_model_study(summary, "hf-mt")["summary"],
                                                           text_model_study(summary, "hf-mt")["pooled"], HF_MT),
    "hf-mt-seeds": lambda summary, tune: text_model_seeds_table(text_model_study(summary, "hf-mt")["seeds"], "hf_mt_",
                                                                "HF MT ", "hf_mt_onebest", "hf-mt (stage 11)"),
    "table-free": lambda summary, tune: report.comparisons_table(text_model_study(summary, "table-free")["summary"],
                                                                text_model_study(summary, "table-free")["pooled"],
                                                                TABLE_FREE),
    "table-free-seeds": lambda summary, tune: table_free_seeds_table(text_model_study(summary, "table-free")["seeds"]),
    "table-free-split": lambda summary, tune: _split(text_model_study(summary, "table-free")),
    "table-free-settings": lambda summary, tune: table_free_settings_table(summary.get("tune_table_free")),
    "wer": lambda summary, tune: wer_table(text_model_study(summary, "table-free")),
    "seeds": lambda summary, tune: seeds_table(summary),
    "split": lambda summary, tune: _split(summary),
    "findings": lambda summary, tune: findings_lines(summary),
    "settings": lambda summary, tune: settings_table(tune),
    "lm-backend": lambda summary, tune: benchmark_output("lm_backend"),
    "lm-memory": lambda summary, tune: benchmark_output("lm_memory"),
    "hf-mt-backend": lambda summary, tune: benchmark_output("hf_mt_backend"),
    "cpu-pins": lambda summary, tune: benchmark_output("cpu_pins"),
}


def benchmark_output(name: str) -> str:
    path = BENCHMARK_RESULTS / f"{name}.md"
    if not path.exists():
        raise PublishedError(f"{path}: not found (python benchmarks/{name}.py --out {path})")
    return path.read_text().rstrip("\n")


def load(results: Path):
    paths = [results / "results.json", results / "tune.json"]
    for path in paths:
        if not path.exists():
            raise PublishedError(f"{path}: not found")
    summary, tune = (json.loads(p.read_text()) for p in paths)
    summary["text_model_studies"] = {name: json.loads((results / name / "results.json").read_text())
                                     for name in TEXT_MODEL_STUDIES if (results / name / "results.json").exists()}
    table_free = results / "tune-table-free.json"
    summary["tune_table_free"] = json.loads(table_free.read_text()) if table_free.exists() else None
    return summary, tune


def render(text: str, path: Path, summary: dict, tune: dict) -> str:
    """``text`` with every results block rendered anew."""
    def fill(m):
        name = m.group("name")
        if name not in BLOCKS:
            raise PublishedError(f"{path}: block results:{name} is not one of {', '.join(BLOCKS)}")
        return m.group(1) + BLOCKS[name](summary, tune) + "\n" + m.group(4)

    return BLOCK.sub(fill, text)


def blocks(text: str) -> List[str]:
    return [m.group("name") for m in BLOCK.finditer(text)]


def main(argv: Optional[List[str]] = None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("readmes", nargs="+", type=Path)
    parser.add_argument("--results", type=Path, default=RESULTS, help="dir of results.json and tune.json")
    parser.add_argument("--check", action="store_true", help="exit 1 where a block differs from the results")
    args = parser.parse_args(argv)
    try:
        summary, tune = load(args.results)
        stale = []
        for path in args.readmes:
            text = path.read_text()
            new = render(text, path, summary, tune)
            if args.check:
                stale += [f"{path}: results:{name}" for name, a, b in
                          zip(blocks(text), BLOCK.findall(text), BLOCK.findall(new)) if a != b]
            elif new != text:
                path.write_text(new)
                print(f"wrote {', '.join(blocks(text))} in {path}")
    except PublishedError as e:
        sys.exit(f"error: {e}")
    if stale:
        sys.exit("differ from the committed results (write them with python -m fairseq_exporter.toy.published):\n"
                 + "\n".join(stale))


if __name__ == "__main__":
    main()
