"""The toy study's dev protocol: every setting the study takes from its settings file, chosen on
the dev set by a grid that ``recipes/toy/run.sh --tune`` runs (nothing there reads a test split).

Each choice is made on the dev figures of the runs the recipe logged under WORK/logs:

- the ASR's update budget: the lowest dev loss of its best checkpoint (fairseq's selection);
- the exporter type: stage 2's best greedy dev BLEU at the grid's base learning rate;
- stage 2's learning rate and update budget: its best dev BLEU over (lr, budget). One run per lr
  is validated every few updates; a budget's figure is the best validation up to that budget,
  which is what a run with that --max-update selects (inverse_sqrt does not depend on the budget);
- the control's learning rate and update budget: the same grid, on the dev BLEU of what it is
  tested as, the 1-best cascade (it trains with --coupling onebest);
- the text-only ablation's (stage 10) learning rate and update budget: its own grid, on the dev
  loss of the MT with the adapted source table on the dev reference transcripts.

Ties go to the smaller budget, then to the earlier grid value.

The table-free protocol (``run.sh --tune``, or ``--tune-table-free`` alone) selects the settings of
the study's second configuration, stage 12: an exporter with no table of its own (the paper's
network over the ASR's states), on the main protocol's ASR, by the same criteria and its own:

- stage 1's learning rate and update budget, per exporter type: the lowest dev L2 (stage 1's
  objective; its runs keep the lowest-L2 checkpoint);
- the exporter type: stage 2's best dev BLEU at the base learning rate and transcript-loss weight;
- stage 2's learning rate and budget: its best dev BLEU over (lr, budget) at the base weight;
- stage 2's transcript-loss weight (--asr-weight) and budget at that lr, under finding (d) as a
  constraint declared before any test decode: the best dev BLEU among the cells whose dev WER is
  not above the 1-best's (stage 1's, the ASR frozen); if none is, the cell of the lowest dev WER.

    python -m fairseq_exporter.toy.tune grid WORK/tune/grid.json --asr-updates 2400 4800 ...
    python -m fairseq_exporter.toy.tune select asr|exporter --work WORK
    python -m fairseq_exporter.toy.tune report --work WORK --out RESULTS   # tune.md, tune.json
    python -m fairseq_exporter.toy.tune settings tune.json                 # shell assignments
    python -m fairseq_exporter.toy.tune grid-table-free WORK/tune/grid-table-free.json --exporters mlp ...
    python -m fairseq_exporter.toy.tune select tf-stage1|tf-exporter|tf-lr --work WORK
    python -m fairseq_exporter.toy.tune report-table-free --work WORK --out RESULTS  # tune-table-free.*
    python -m fairseq_exporter.toy.tune settings --table-free tune-table-free.json
"""

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional, Tuple

from fairseq_exporter.models.exporter import EXPORTER_TYPES
from fairseq_exporter.results_table import fmt, markdown_table

# What the study reads from a tune.json's "selected", and how each is checked.
SETTINGS = {"asr_updates": int, "exporter_type": str, "stage2_lr": float, "stage2_updates": int,
            "control_lr": float, "control_updates": int, "text_only_lr": float, "text_only_updates": int}
CRITERIA = {
    "asr_updates": "lowest dev loss of the ASR's best checkpoint (label-smoothed CE + CTC, fairseq's selection)",
    "exporter_type": "stage 2's best greedy dev BLEU at the base learning rate",
    "stage2": "stage 2's best greedy dev BLEU (exporter-coupled) over learning rate x update budget",
    "control": "the control's best greedy dev BLEU as a 1-best cascade over learning rate x update budget",
    "text_only": "the text-only adaptation's lowest dev loss (reference transcripts -> translations) over "
                 "learning rate x update budget",
}
# The table-free configuration (stage 12): its settings, each checked, and how each is chosen
TABLE_FREE_SETTINGS = {"exporter_type": str, "stage1_lr": float, "stage1_updates": int, "stage2_lr": float,
                       "stage2_updates": int, "asr_weight": float}
TABLE_FREE_EXPORTERS = ("linear", "mlp", "transformer")
TABLE_FREE_CRITERIA = {
    "stage1": "stage 1's lowest dev L2 over learning rate x update budget, per exporter type",
    "exporter_type": "stage 2's best greedy dev BLEU at the base learning rate and transcript-loss weight",
    "stage2": "stage 2's best greedy dev BLEU over learning rate x update budget, at the base transcript-loss weight",
    "asr_weight": "finding (d) as a constraint, declared before any test decode: stage 2's best greedy dev BLEU over "
                  "transcript-loss weight x update budget at the selected learning rate, among the cells whose dev "
                  "WER is not above the 1-best's (stage 1's, the ASR frozen); if none is, the lowest dev WER",
}


class TuneError(Exception):
    """A grid run that is missing or logged nothing usable; the message names the log."""


def _json_records(log: Path, subset: str) -> List[dict]:
    from fairseq_exporter.toy.report import read_json_logs

    if not log.exists():
        raise TuneError(f"{log}: not found (run `bash recipes/toy/run.sh --tune` with this --work)")
    records = read_json_logs(log, subset)
    if not records:
        raise TuneError(f"{log}: no '{subset}' records (did the run validate?)")
    return records


def asr_figures(work: Path, n: int) -> dict:
    records = _json_records(work / "logs" / f"train-asr-{n}.log", "dev_asr")
    best = min(records, key=lambda r: float(r["dev_asr_loss"]))
    return {"updates": n, "dev_loss": float(best["dev_asr_loss"]),
            "dev_accuracy": float(best["dev_asr_accuracy"]) if "dev_asr_accuracy" in best else None,
            "at_update": int(best["dev_asr_num_updates"])}


def best_by_budget(work: Path, name: str, budgets: List[int], subset="dev", metric="bleu",
                   higher=True) -> List[dict]:
    """For each budget: the best dev figure of validations up to it, and at which update."""
    log = work / "logs" / f"train-{name}.log"
    key, updates = f"{subset}_{metric}", f"{subset}_num_updates"
    records = [r for r in _json_records(log, subset) if key in r and updates in r]
    if not records:
        raise TuneError(f"{log}: no {key} (the run did not validate with it)")
    last = max(int(r[updates]) for r in records)
    if last < max(budgets):
        raise TuneError(f"{log}: validated up to update {last}, the grid needs {max(budgets)} (an unfinished run?)")
    sign = 1 if higher else -1
    out = []
    for budget in budgets:
        within = [r for r in records if int(r[updates]) <= budget]
        if not within:
            raise TuneError(f"{log}: no validation up to update {budget}")
        # the best; among equals the earliest, as fairseq's checkpoint_best keeps the first best
        best = max(within, key=lambda r: (sign * float(r[key]), -int(r[updates])))
        cell = {"budget": budget, "value": float(best[key]), "at_update": int(best[updates])}
        if f"{subset}_wer" in best:  # the ASR's dev WER at that checkpoint (finding (d)'s constraint)
            cell["wer"] = float(best[f"{subset}_wer"])
        out.append(cell)
    return out


def stage1_figures(work: Path, exporter: str) -> dict:
    records = [r for r in _json_records(work / "logs" / f"train-tune-stage1-{exporter}.log", "dev")
               if "dev_l2" in r]
    last = records[-1] if records else {}
    return {"dev_l2": float(last["dev_l2"]) if "dev_l2" in last else None,
            "dev_recovery": float(last["dev_recovery"]) if "dev_recovery" in last else None}


def best_cell(cells: List[Tuple[object, dict]], higher=True):
    """(key, cell) with the best value; ties to the smaller budget, then the earlier entry."""
    sign = 1 if higher else -1
    ranked = [(sign * c["value"], -c["budget"], -i, k, c) for i, (k, c) in enumerate(cells)]
    return max(ranked, key=lambda t: t[:3])[3:]


def select_asr(work: Path, grid: dict) -> Tuple[int, List[dict]]:
    rows = [asr_figures(work, n) for n in grid["asr_updates"]]
    best = min(rows, key=lambda r: (r["dev_loss"], r["updates"]))
    return best["updates"], rows


def select_exporter(work: Path, grid: dict) -> Tuple[str, List[dict]]:
    top = max(grid["budgets"])
    rows = []
    for exporter in grid["exporters"]:
        cell = best_by_budget(work, f"tune-stage2-{exporter}-lr{grid['base_lr']}", [top])[0]
        rows.append({"exporter": exporter, **stage1_figures(work, exporter), **cell})
    best = max(rows, key=lambda r: (r["value"], -grid["exporters"].index(r["exporter"])))
    return best["exporter"], rows


def lr_budget_grid(work: Path, lrs, budgets, name_of, **metric) -> Tuple[dict, List[dict]]:
    """Rows: one per lr, its cells per budget; and the selected (lr, budget)."""
    rows, cells = [], []
    for lr in lrs:
        by_budget = best_by_budget(work, name_of(lr), budgets, **metric)
        rows.append({"lr": lr, "cells": by_budget})
        cells += [(lr, c) for c in by_budget]
    lr, cell = best_cell(cells, metric.get("higher", True))
    return {"lr": lr, "updates": cell["budget"], "value": cell["value"]}, rows


def read_grid(work: Path) -> dict:
    path = work / "tune" / "grid.json"
    if not path.exists():
        raise TuneError(f"{path}: not found (run `bash recipes/toy/run.sh --tune` with this --work)")
    return json.loads(path.read_text())


def tune(work: Path) -> dict:
    grid = read_grid(work)
    asr, asr_rows = select_asr(work, grid)
    exporter, exporter_rows = select_exporter(work, grid)
    stage2, stage2_rows = lr_budget_grid(work, grid["lrs"], grid["budgets"], lambda lr: f"tune-stage2-{exporter}-lr{lr}")
    control, control_rows = lr_budget_grid(work, grid["lrs"], grid["budgets"], lambda lr: f"tune-control-lr{lr}")
    text, text_rows = lr_budget_grid(work, grid["text_lrs"], grid["text_budgets"], lambda lr: f"tune-text-only-lr{lr}",
                                     subset="valid", metric="loss", higher=False)
    corpus = json.loads((work / "data" / "corpus.json").read_text())["arguments"]
    return {"seed": corpus["seed"], "scale": corpus["scale"], "split": "dev", "grid": grid, "criteria": CRITERIA,
            "selected": {"asr_updates": asr, "exporter_type": exporter,
                         "stage2_lr": float(stage2["lr"]), "stage2_updates": stage2["updates"],
                         "control_lr": float(control["lr"]), "control_updates": control["updates"],
                         "text_only_lr": float(text["lr"]), "text_only_updates": text["updates"]},
            "asr": asr_rows, "exporter": exporter_rows, "stage2": stage2_rows, "control": control_rows,
            "text_only": text_rows, "stage2_best": stage2, "control_best": control, "text_only_best": text}



# --- the table-free configuration (stage 12) ---

def read_table_free_grid(work: Path) -> dict:
    path = work / "tune" / "grid-table-free.json"
    if not path.exists():
        raise TuneError(f"{path}: not found (run `bash recipes/toy/run.sh --tune-table-free` with this --work)")
    return json.loads(path.read_text())


def tf_stage1_name(exporter: str, lr: str) -> str:
    return f"tune-tf-stage1-{exporter}-lr{lr}"


def tf_stage2_name(exporter: str, lr: str, weight: str) -> str:
    return f"tune-tf-stage2-{exporter}-lr{lr}-w{weight}"


def select_tf_stage1(work: Path, grid: dict) -> dict:
    """Per exporter type: its stage 1 (lr, budget) of the lowest dev L2, and the grid's rows."""
    out = {}
    for exporter in grid["exporters"]:
        best, rows = lr_budget_grid(work, grid["stage1_lrs"], grid["stage1_budgets"],
                                    lambda lr: tf_stage1_name(exporter, lr), metric="l2", higher=False)
        out[exporter] = {"best": best, "rows": rows}
    return out


def select_tf_exporter(work: Path, grid: dict) -> Tuple[str, List[dict]]:
    top, stage1 = max(grid["budgets"]), select_tf_stage1(work, grid)
    rows = []
    for exporter in grid["exporters"]:
        cell = best_by_budget(work, tf_stage2_name(exporter, grid["base_lr"], grid["base_asr_weight"]), [top])[0]
        s1 = stage1[exporter]["best"]
        rows.append({"exporter": exporter, "stage1_lr": s1["lr"], "stage1_updates": s1["updates"],
                     "dev_l2": s1["value"], **cell})
    best = max(rows, key=lambda r: (r["value"], -grid["exporters"].index(r["exporter"])))
    return best["exporter"], rows


def onebest_dev_wer(work: Path, exporter: str, stage1_lr: str) -> float:
    """The 1-best's dev WER: stage 1's last validation (the ASR frozen, so every one is the same)."""
    log = work / "logs" / f"train-{tf_stage1_name(exporter, stage1_lr)}.log"
    records = [r for r in _json_records(log, "dev") if "dev_wer" in r]
    if not records:
        raise TuneError(f"{log}: no dev_wer (the run did not validate with it)")
    return float(records[-1]["dev_wer"])


def select_asr_weight(cells: List[Tuple[str, dict]], max_wer: float):
    """(weight, cell): the best dev BLEU among cells of dev WER <= max_wer (ties to the smaller
    budget, then the earlier weight); if none is, the cell of the lowest dev WER."""
    allowed = [(w, c) for w, c in cells if c["wer"] <= max_wer]
    if allowed:
        return (*best_cell(allowed), True)
    ranked = [(c["wer"], c["budget"], i, w, c) for i, (w, c) in enumerate(cells)]
    return (*min(ranked, key=lambda t: t[:3])[3:], False)


def tune_table_free(work: Path) -> dict:
    grid = read_table_free_grid(work)
    stage1 = select_tf_stage1(work, grid)
    exporter, exporter_rows = select_tf_exporter(work, grid)
    s1 = stage1[exporter]["best"]
    stage2, stage2_rows = lr_budget_grid(work, grid["lrs"], grid["budgets"],
                                         lambda lr: tf_stage2_name(exporter, lr, grid["base_asr_weight"]))
    lr = stage2["lr"]
    max_wer = onebest_dev_wer(work, exporter, s1["lr"])
    weight_rows, cells = [], []
    for weight in grid["asr_weights"]:
        by_budget = best_by_budget(work, tf_stage2_name(exporter, lr, weight), grid["budgets"])
        for c in by_budget:
            if "wer" not in c:
                raise TuneError(f"{work}/logs/train-{tf_stage2_name(exporter, lr, weight)}.log: no dev_wer")
        weight_rows.append({"asr_weight": weight, "cells": by_budget})
        cells += [(weight, c) for c in by_budget]
    weight, cell, constraint_met = select_asr_weight(cells, max_wer)
    corpus = json.loads((work / "data" / "corpus.json").read_text())["arguments"]
    return {"seed": corpus["seed"], "scale": corpus["scale"], "split": "dev", "grid": grid,
            "criteria": TABLE_FREE_CRITERIA,
            "selected": {"exporter_type": exporter, "stage1_lr": float(s1["lr"]), "stage1_updates": s1["updates"],
                         "stage2_lr": float(lr), "stage2_updates": cell["budget"], "asr_weight": float(weight)},
            "stage1": {t: v["rows"] for t, v in stage1.items()},
            "stage1_best": {t: v["best"] for t, v in stage1.items()},
            "exporter": exporter_rows, "stage2": stage2_rows, "stage2_best": stage2,
            "onebest_dev_wer": max_wer, "asr_weight": weight_rows, "constraint_met": constraint_met,
            "asr_weight_best": {"asr_weight": weight, "updates": cell["budget"], "value": cell["value"],
                                "wer": cell["wer"]}}


def weight_table(rows: List[dict], budgets: List[int], best: dict, max_wer: float) -> str:
    head = ["transcript-loss weight", *(f"≤ {b} updates: BLEU, WER" for b in budgets)]
    body = []
    for row in rows:
        cells = [_mark(row["asr_weight"] == best["asr_weight"] and c["budget"] == best["updates"],
                       f"{c['value']:.2f}, {c['wer']:.2f}{'' if c['wer'] <= max_wer else ' (over)'} "
                       f"(at {c['at_update']})") for c in row["cells"]]
        body.append([str(row["asr_weight"]), *cells])
    return markdown_table(head, body)


def tune_table_free_markdown(t: dict) -> str:
    s, grid = t["selected"], t["grid"]
    stage1 = []
    for exporter, rows in t["stage1"].items():
        stage1 += [f"*{exporter}*:", "",
                   grid_table(rows, grid["stage1_budgets"], t["stage1_best"][exporter], digits=4), ""]
    exporter = markdown_table(
        ["exporter type", "stage 1 lr, updates", "stage 1 dev L2",
         f"stage 2 dev BLEU (lr {grid['base_lr']}, weight {grid['base_asr_weight']})"],
        [[_mark(r["exporter"] == s["exporter_type"], r["exporter"]), f"{r['stage1_lr']}, {r['stage1_updates']}",
          fmt(r["dev_l2"], 4), f"{r['value']:.2f} (at {r['at_update']})"] for r in t["exporter"]])
    constraint = ("" if t["constraint_met"] else
                  " No cell met the constraint: the one of the lowest dev WER is selected.")
    return "\n".join([
        "# Toy study: the dev protocol of the table-free exporter (stage 12)", "",
        f"`bash recipes/toy/run.sh --tune-table-free` on seed {t['seed']} (scale {t['scale']}), on the ASR the "
        "main protocol selected (tune.md): every figure below is on the dev set; no test split was read. Dev BLEU "
        f"and L2 are what fairseq-train logs every {grid['valid_every']} updates (stage 1: every "
        f"{grid['stage1_valid_every']}); a budget's cell is the best "
        "validation up to it (the update in brackets). Selected settings in bold; ties go to the smaller budget. "
        "Stage 12 of `run.sh` reads them from this file's tune-table-free.json.", "",
        f"**Stage 1** ({TABLE_FREE_CRITERIA['stage1']}):", "", *stage1,
        f"**Exporter type** ({TABLE_FREE_CRITERIA['exporter_type']}):", "", exporter, "",
        f"**Stage 2** ({TABLE_FREE_CRITERIA['stage2']}):", "",
        grid_table(t["stage2"], grid["budgets"], t["stage2_best"]), "",
        f"**Transcript-loss weight** ({TABLE_FREE_CRITERIA['asr_weight']}): the 1-best's dev WER is "
        f"{t['onebest_dev_wer']:.2f}; a cell over it is marked.{constraint}", "",
        weight_table(t["asr_weight"], grid["budgets"], t["asr_weight_best"], t["onebest_dev_wer"]), "",
        "Selected: " + ", ".join(f"{k} = {v}" for k, v in s.items()) + ".", ""])


def _mark(selected: bool, text: str) -> str:
    return f"**{text}**" if selected else text


def grid_table(rows: List[dict], budgets: List[int], best: dict, digits=2) -> str:
    head = ["learning rate", *(f"≤ {b} updates" for b in budgets)]
    body = []
    for row in rows:
        cells = [_mark(row["lr"] == best["lr"] and c["budget"] == best["updates"],
                       f"{c['value']:.{digits}f} (at {c['at_update']})") for c in row["cells"]]
        body.append([str(row["lr"]), *cells])
    return markdown_table(head, body)


def tune_markdown(t: dict) -> str:
    s, grid = t["selected"], t["grid"]
    asr = markdown_table(["ASR updates", "dev loss (best checkpoint)", "dev token accuracy %", "at update"],
                         [[_mark(r["updates"] == s["asr_updates"], str(r["updates"])), f"{r['dev_loss']:.3f}",
                           fmt(r["dev_accuracy"]), str(r["at_update"])] for r in t["asr"]])
    exporter = markdown_table(
        ["exporter type", "stage 1 dev L2", "stage 1 dev recovery %", f"stage 2 dev BLEU (lr {grid['base_lr']})"],
        [[_mark(r["exporter"] == s["exporter_type"], r["exporter"]), fmt(r["dev_l2"], 4), fmt(r["dev_recovery"], 1),
          f"{r['value']:.2f} (at {r['at_update']})"] for r in t["exporter"]])
    return "\n".join([
        "# Toy study: the dev protocol", "",
        f"`bash recipes/toy/run.sh --tune` on seed {t['seed']} (scale {t['scale']}): every figure below is on the "
        f"dev set; no test split was read. Greedy dev BLEU is what fairseq-train logs every {grid['valid_every']} "
        "updates (--eval-bleu); a budget's cell is the best validation up to it (the update in brackets). "
        "Selected settings in bold; ties go to the smaller budget. `run.sh` reads them from this file's "
        "tune.json.", "",
        f"**ASR update budget** ({CRITERIA['asr_updates']}):", "", asr, "",
        f"**Exporter type** ({CRITERIA['exporter_type']}):", "", exporter, "",
        f"**Stage 2** ({CRITERIA['stage2']}):", "", grid_table(t["stage2"], grid["budgets"], t["stage2_best"]), "",
        f"**Control** ({CRITERIA['control']}):", "", grid_table(t["control"], grid["budgets"], t["control_best"]), "",
        f"**Text-only adaptation**, stage 10 ({CRITERIA['text_only']}):", "",
        grid_table(t["text_only"], grid["text_budgets"], t["text_only_best"], digits=3), "",
        "Selected: " + ", ".join(f"{k} = {v}" for k, v in s.items()) + ".", ""])


def read_settings(path: Path, table_free: bool = False) -> dict:
    """A tune.json's (or tune-table-free.json's) "selected" settings, checked; a TuneError names
    the file and the key."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise TuneError(f"{path}: not a readable tune.json ({e})")
    selected = data.get("selected") if isinstance(data, dict) else None
    if not isinstance(selected, dict):
        raise TuneError(f"{path}: no \"selected\" settings (write the file with `bash recipes/toy/run.sh "
                        f"{'--tune-table-free' if table_free else '--tune'}`)")
    out = {}
    for key, kind in (TABLE_FREE_SETTINGS if table_free else SETTINGS).items():
        if key not in selected:
            raise TuneError(f"{path}: \"selected\" lacks {key}")
        value = selected[key]
        ok = (kind is int and isinstance(value, int) and value > 0) or \
             (kind is float and isinstance(value, (int, float)) and value > 0) or \
             (kind is str and value in (TABLE_FREE_EXPORTERS if table_free else EXPORTER_TYPES))
        if not ok:
            raise TuneError(f"{path}: \"selected\".{key} = {value!r} is not a valid {key}")
        out[key] = value
    return out


def shell_assignments(settings: dict, prefix: str = "") -> str:
    return "\n".join(f"{prefix}{k}={v}" for k, v in settings.items())


def write_report(out: Path, name: str, t: dict, markdown) -> None:
    """OUT/NAME.json and OUT/NAME.md (printed too)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(t, indent=2) + "\n")
    text = markdown(t)
    (out / f"{name}.md").write_text(text)
    print(text)


def main(argv: Optional[List[str]] = None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("grid", help="write the grid the recipe runs (WORK/tune/grid.json)")
    g.add_argument("out", type=Path)
    g.add_argument("--asr-updates", type=int, nargs="+", required=True)
    g.add_argument("--exporters", nargs="+", choices=EXPORTER_TYPES, required=True)
    g.add_argument("--lrs", nargs="+", required=True)
    g.add_argument("--base-lr", required=True)
    g.add_argument("--budgets", type=int, nargs="+", required=True)
    g.add_argument("--valid-every", type=int, required=True)
    g.add_argument("--text-lrs", nargs="+", required=True)
    g.add_argument("--text-budgets", type=int, nargs="+", required=True)
    g.add_argument("--text-valid-every", type=int, required=True)
    tg = sub.add_parser("grid-table-free", help="write the table-free grid (WORK/tune/grid-table-free.json)")
    tg.add_argument("out", type=Path)
    tg.add_argument("--exporters", nargs="+", choices=TABLE_FREE_EXPORTERS, required=True)
    tg.add_argument("--stage1-lrs", nargs="+", required=True)
    tg.add_argument("--stage1-budgets", type=int, nargs="+", required=True)
    tg.add_argument("--stage1-valid-every", type=int, required=True)
    tg.add_argument("--lrs", nargs="+", required=True)
    tg.add_argument("--base-lr", required=True)
    tg.add_argument("--budgets", type=int, nargs="+", required=True)
    tg.add_argument("--asr-weights", nargs="+", required=True)
    tg.add_argument("--base-asr-weight", required=True)
    tg.add_argument("--valid-every", type=int, required=True)
    s = sub.add_parser("select", help="print one selection (the recipe runs the next grid step with it): "
                                      "tf-stage1 prints 'EXPORTER LR' per exporter type")
    s.add_argument("what", choices=("asr", "exporter", "tf-stage1", "tf-exporter", "tf-lr"))
    s.add_argument("--work", type=Path, required=True)
    r = sub.add_parser("report", help="write tune.md and tune.json")
    r.add_argument("--work", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    rt = sub.add_parser("report-table-free", help="write tune-table-free.md and tune-table-free.json")
    rt.add_argument("--work", type=Path, required=True)
    rt.add_argument("--out", type=Path, required=True)
    st = sub.add_parser("settings", help="print a tune.json's selected settings as shell assignments")
    st.add_argument("file", type=Path)
    st.add_argument("--table-free", action="store_true",
                    help="FILE is a tune-table-free.json; the names are prefixed tf_")
    args = parser.parse_args(argv)
    try:
        if args.command == "grid":
            if args.base_lr not in args.lrs:
                parser.error(f"--base-lr {args.base_lr} is not one of --lrs {' '.join(args.lrs)}")
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(
                {"asr_updates": args.asr_updates, "exporters": args.exporters, "lrs": args.lrs,
                 "base_lr": args.base_lr, "budgets": sorted(args.budgets), "valid_every": args.valid_every,
                 "text_lrs": args.text_lrs, "text_budgets": sorted(args.text_budgets),
                 "text_valid_every": args.text_valid_every},
                indent=2) + "\n")
        elif args.command == "grid-table-free":
            if args.base_lr not in args.lrs:
                parser.error(f"--base-lr {args.base_lr} is not one of --lrs {' '.join(args.lrs)}")
            if args.base_asr_weight not in args.asr_weights:
                parser.error(f"--base-asr-weight {args.base_asr_weight} is not one of --asr-weights "
                             f"{' '.join(args.asr_weights)}")
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(
                {"exporters": args.exporters, "stage1_lrs": args.stage1_lrs,
                 "stage1_budgets": sorted(args.stage1_budgets), "stage1_valid_every": args.stage1_valid_every,
                 "lrs": args.lrs, "base_lr": args.base_lr,
                 "budgets": sorted(args.budgets), "asr_weights": args.asr_weights,
                 "base_asr_weight": args.base_asr_weight, "valid_every": args.valid_every}, indent=2) + "\n")
        elif args.command == "select" and args.what.startswith("tf-"):
            grid = read_table_free_grid(args.work)
            if args.what == "tf-stage1":
                print("\n".join(f"{t} {v['best']['lr']}" for t, v in select_tf_stage1(args.work, grid).items()))
            elif args.what == "tf-exporter":
                print(select_tf_exporter(args.work, grid)[0])
            else:
                exporter = select_tf_exporter(args.work, grid)[0]
                print(lr_budget_grid(args.work, grid["lrs"], grid["budgets"],
                                     lambda lr: tf_stage2_name(exporter, lr, grid["base_asr_weight"]))[0]["lr"])
        elif args.command == "select":
            grid = read_grid(args.work)
            print((select_asr if args.what == "asr" else select_exporter)(args.work, grid)[0])
        elif args.command == "report-table-free":
            write_report(args.out, "tune-table-free", tune_table_free(args.work), tune_table_free_markdown)
        elif args.command == "report":
            write_report(args.out, "tune", tune(args.work), tune_markdown)
        else:
            print(shell_assignments(read_settings(args.file, args.table_free), "tf_" if args.table_free else ""))
    except TuneError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
