"""The toy study's results table and plot, from the files the recipe's stages wrote:
``fairseq-exporter-score --json`` outputs, ``fairseq-validate`` logs (test L2 and token
recovery) and the training logs (dev BLEU and L2 over updates).

    python -m fairseq_exporter.toy.report --work work/toy --out results/toy
"""

import argparse
import json
import re
from pathlib import Path

# (row label, generate output dir under --work, baseline row label, stage whose training
# log gives the curves)
ROWS = [
    # the paper's study: 1-best and exporter input from the ASR's CTC head (--exporter-source ctc)
    ("1-best cascade", "gen/onebest", None),
    ("reference transcript (upper bound)", "gen/reference", "1-best cascade"),
    ("stage 1: exporter only (ASR, MT frozen)", "gen/stage1", "1-best cascade"),
    ("stage 2: ASR + exporter, MT frozen", "gen/stage2", "1-best cascade"),
    ("adapted MT: 1-best cascade", "gen/adapted-onebest", None),
    ("stage 3: ASR + exporter, adapted MT frozen", "gen/stage3", "adapted MT: 1-best cascade"),
    # beyond the paper's table (stage 8): a control for stage 2's extra ASR training, the ASR's
    # attention decoder as the source, and tight coupling
    ("control: 1-best cascade after stage 2's ASR updates, transcript loss only", "gen/asr-only",
     "1-best cascade"),
    ("decoder 1-best cascade", "gen/onebest-decoder", None),
    ("stage 2, decoder source: ASR + exporter on decoder states, MT frozen", "gen/stage2-decoder",
     "decoder 1-best cascade"),
    ("posterior coupling (Bahar et al. 2021), decoder: ASR fine-tuned, MT frozen", "gen/posterior",
     "decoder 1-best cascade"),
]
CURVES = [("stage 1", "stage1"), ("stage 2", "stage2"), ("control: transcript loss only", "asr-only"),
          ("stage 3 (exporter only)", "stage3-exporter"),
          ("stage 3", "stage3"), ("stage 1, decoder source", "stage1-decoder"),
          ("stage 2, decoder source", "stage2-decoder"), ("posterior coupling", "posterior")]
JSON_LINE = re.compile(r"\| (\w[\w-]*) \| (\{.*\})\s*$")


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


def validate_figures(work: Path, name: str):
    """Test-set L2 and recovery from the stage's fairseq-validate log."""
    for record in read_json_logs(work / "logs" / f"validate-{name}.log", "test") or \
            read_json_logs(work / "logs" / f"validate-{name}.log", "valid_on_test"):
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


def sense_counts(generate_txt: Path, forms, prefix="D"):
    """(task-sense, general-sense) German nouns in fairseq-generate's ``prefix`` lines:
    what the frozen general MT gets wrong is the sense, so this is where steering shows."""
    counts = {"task": 0, "general": 0}
    for line in generate_txt.read_text(encoding="utf-8").splitlines():
        if line.startswith(prefix + "-"):
            for word in line.split("\t")[-1].split():
                for domain in counts:
                    counts[domain] += word.strip(".,") in forms[domain]
    return counts["task"], counts["general"]


def runaway_outputs(generate_txt: Path, factor: float = 2.0):
    """Translations (D- lines) longer than ``factor`` times their reference (T- lines): a weak MT
    on a garbled 1-best can fall into a repetition loop, and a few such outputs move BLEU."""
    hyp, ref = {}, {}
    for line in generate_txt.read_text(encoding="utf-8").splitlines():
        head, _, rest = line.partition("-")
        if head in ("D", "T"):
            index, *fields = rest.split("\t")
            (hyp if head == "D" else ref)[index] = len(fields[-1].split())
    return sum(n > factor * ref.get(i, n) for i, n in hyp.items())


def fmt(value, digits=2, signed=False):
    if value is None:
        return "—"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def build_table(work: Path):
    rows, scores = [], {}
    forms = sense_forms()
    for label, gen, baseline in ROWS:
        score_path = work / gen / "score.json"
        if not score_path.exists():
            continue
        s = json.loads(score_path.read_text())
        scores[label] = s
        name = Path(gen).name
        l2, recovery = validate_figures(work, name)
        delta = p = None
        if baseline and "delta_bleu" in s:
            delta, p = s["delta_bleu"], s["p_bleu"]
        task, general = sense_counts(work / gen / "generate-test.txt", forms)
        rows.append((label, fmt(s.get("wer")), fmt(s["bleu"]), fmt(s["chrf"]),
                     f"{fmt(delta, signed=True)} (p={p:.3f})" if delta is not None else "—",
                     fmt(l2, 3), fmt(recovery, 1), f"{task} / {general}",
                     str(runaway_outputs(work / gen / "generate-test.txt"))))
    return rows, scores


def control_line(work: Path):
    """Stage 2 against the control (the same ASR updates on the transcript loss alone), if
    stage 8 scored it: the comparison that separates the coupling from more ASR training."""
    path = work / "gen" / "asr-only" / "stage2-vs-control.json"
    if not path.exists():
        return []
    s = json.loads(path.read_text())
    return [f"Stage 2 against the control: ΔBLEU {s['delta_bleu']:+.2f} (p={s['p_bleu']:.3f}), "
            f"ΔchrF {s['delta_chrf']:+.2f} (p={s['p_chrf']:.3f}).", ""]


def markdown_table(rows):
    head = ("system", "WER", "BLEU", "chrF", "ΔBLEU vs its 1-best (p)", "test L2", "recovery %",
            "ambiguous nouns: task / general sense", "outputs > 2x ref length")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def plot_curves(work: Path, out_png: Path):
    import logging

    import matplotlib

    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # fairseq sets the root logger to DEBUG
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="the recipe's work dir")
    parser.add_argument("--out", type=Path, required=True, help="where results.md and curves.png go")
    parser.add_argument("--commands", type=Path, help="file with the commands that ran, to append")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows, scores = build_table(args.work)
    if not rows:
        raise SystemExit(f"no score.json under {args.work}/gen: run the recipe's scoring stage first")
    plot_curves(args.work, args.out / "curves.png")
    corpus = json.loads((args.work / "data" / "corpus.json").read_text())
    first = next(iter(scores.values()))
    first_gen = next(args.work / gen for label, gen, _ in ROWS if label in scores)
    ref_task, ref_general = sense_counts(first_gen / "generate-test.txt", sense_forms(), prefix="T")
    text = ["# Toy study: exporter-coupled cascade vs 1-best cascade", "",
            f"Test set: {first['n']} utterances of synthesized task-domain speech "
            f"(corpus seed {corpus['arguments']['seed']}, scale {corpus['arguments']['scale']}). "
            "Rows 1-6 are the paper's study: the 1-best is the greedy path of the ASR's CTC head and "
            "the exporter reads the encoder frames of each token's CTC segment (--exporter-source ctc). "
            "The control row trains the ASR as stage 2 does but on the transcript loss alone; the "
            "decoder rows take the 1-best from the ASR's attention decoder instead. "
            "WER of the ASR 1-best; BLEU and chrF of the translations; ΔBLEU and p from sacreBLEU's "
            "paired bootstrap against the 1-best cascade of the same source on the same MT model; "
            "test L2 and token recovery from fairseq-validate. The ambiguous-nouns column counts the "
            "German nouns of the twelve ambiguous words' task senses (Ufer, Fledermaus, ...) and "
            "general senses (Bank, Schläger, ...) in the translations; the references hold "
            f"{ref_task} / {ref_general}. The last column counts translations more than twice as long "
            "as their reference (repetition loops).", "",
            markdown_table(rows), "", *control_line(args.work),
            f"BLEU signature: `{first.get('signature_bleu', '')}`  ",
            f"chrF signature: `{first.get('signature_chrf', '')}`", "",
            "![dev BLEU and L2 over updates](curves.png)", ""]
    if args.commands and args.commands.exists():
        text += ["## Commands", "", "```bash", args.commands.read_text().rstrip(), "```", ""]
    (args.out / "results.md").write_text("\n".join(text))
    print("\n".join(text[:text.index("") + 1]))
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
