"""Markdown results tables from ``fairseq-exporter-score`` JSON: the one writer of the
recipes' ``results.md`` tables (the toy report and the MuST-C recipe).

    python -m fairseq_exporter.results_table GEN OUT TEST_SET... --row LABEL=SYSTEM[:BASELINE] ...

reads ``GEN/TEST_SET/SYSTEM/score.json`` (a system scored against its baseline carries
the baseline's figures too) and writes one table per test set.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple


def fmt(value, digits=2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def paired_cell(figures: Optional[dict]) -> str:
    """"+1.23 (p=0.004)" from {"dbleu", "p"}, or a dash."""
    if figures is None or figures.get("dbleu") is None:
        return "—"
    return f"{figures['dbleu']:+.2f} (p={figures['p']:.3f})"


def markdown_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def scores_of(test_dir: Path) -> Dict[str, dict]:
    """{system: score} of every ``SYSTEM/score.json`` under a test set's dir, and of the
    baselines they were compared with (from their "baseline" part)."""
    scores = {}
    for path in sorted(test_dir.glob("*/score.json")):
        score = json.loads(path.read_text())
        scores[path.parent.name] = score
        if "baseline" in score:
            scores.setdefault(Path(score["baseline"]["path"]).parent.name, score["baseline"])
    return scores


def system_table(scores: Dict[str, dict], rows: Sequence[Tuple[str, str, bool]]) -> str:
    """One row per (label, system, compared with a baseline) that was scored."""
    body = []
    for label, system, compared in rows:
        s = scores.get(system)
        if s is None:
            continue
        figures = {"dbleu": s.get("delta_bleu"), "p": s.get("p_bleu")} if compared else None
        body.append([label, str(s["n"]), fmt(s.get("wer")), fmt(s["bleu"]), fmt(s["chrf"]), paired_cell(figures)])
    return markdown_table(["system", "n", "WER", "BLEU", "chrF", "ΔBLEU vs its 1-best (p)"], body)


def _row(spec: str) -> Tuple[str, str, bool]:
    label, sep, system = spec.rpartition("=")
    if not sep or not label or not system:
        raise argparse.ArgumentTypeError(f"--row {spec!r}: LABEL=SYSTEM[:BASELINE]")
    system, _, baseline = system.partition(":")
    return label, system, bool(baseline)


def main(argv: Optional[List[str]] = None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("gen", type=Path, help="the recipe's gen/ dir")
    parser.add_argument("out", type=Path, help="results.md to write")
    parser.add_argument("test_sets", nargs="+")
    parser.add_argument("--row", type=_row, action="append", required=True, metavar="LABEL=SYSTEM[:BASELINE]")
    parser.add_argument("--title", default="Results")
    parser.add_argument("--intro", default="WER of the ASR 1-best; BLEU and chrF (sacreBLEU) of the translations; "
                                           "ΔBLEU and p from sacreBLEU's paired bootstrap against the 1-best "
                                           "cascade on the same MT.")
    args = parser.parse_args(argv)
    text, signature = [f"# {args.title}", "", args.intro, ""], None
    for test in args.test_sets:
        scores = scores_of(args.gen / test)
        if not scores:
            continue
        signature = signature or next((s.get("signature_bleu") for s in scores.values() if s.get("signature_bleu")), None)
        text += [f"## {test}", "", system_table(scores, args.row), ""]
    if signature is None:
        sys.exit(f"no score.json under {args.gen}/{{{','.join(args.test_sets)}}}/*/: score the systems first")
    text += [f"BLEU signature: `{signature}`", ""]
    args.out.write_text("\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
