"""Score ``fairseq-generate`` output: ASR WER, translation BLEU/chrF, paired bootstrap.

Reads what ``fairseq-generate`` prints for the coupled speech-translation task (its
stdout, or ``generate-<subset>.txt`` under ``--results-path`` with the task's
``transcripts-<subset>.txt`` beside it; see ``fairseq_exporter.generate_output``): ``S-``
reference transcript, ``ASR-`` ASR 1-best, ``T-`` reference translation and ``D-``/``H-``
hypotheses. Given a second file, it compares SYSTEM with BASELINE through sacrebleu's
paired bootstrap resampling, the test behind ``sacrebleu --paired-bs``::

    fairseq-exporter-score SYSTEM.txt [BASELINE.txt] [--json OUT.json]
"""

import argparse
import contextlib
import json
import os
from dataclasses import dataclass
from typing import List, Optional, Sequence

import editdistance
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.significance import PairedTest

from fairseq_exporter.generate_output import GenerateOutputError, read_generate_output

# Display names sacrebleu gives the default BLEU and chrF configurations.
_LABELS = {"bleu": "BLEU", "chrf": "chrF2"}


class ScoreError(Exception):
    """A generate output that cannot be scored; the message names the file."""


@dataclass
class Corpus:
    """The scorable content of one generate output, in sample-id order."""

    path: str
    ids: List[int]
    hypotheses: List[str]
    references: List[str]
    transcripts: Optional[List[str]]  # S-; None when the output has no ASR- lines
    asr: Optional[List[str]]


def load_corpus(path: str) -> Corpus:
    """Read a generate output and check that every sample can be scored."""
    try:
        records = read_generate_output(path)
    except GenerateOutputError as e:
        raise ScoreError(str(e)) from e
    if not any(r.output is not None for r in records.values()):
        raise ScoreError(f"{path}: no D- or H- lines; is this fairseq-generate output?")
    has_asr = any(r.asr is not None for r in records.values())
    ids = sorted(records)
    for i in ids:
        record = records[i]
        if record.output is None:
            raise ScoreError(f"{path}: id {i} has no D- or H- hypothesis")
        if record.reference is None:
            raise ScoreError(f"{path}: id {i} has a hypothesis but no T- reference")
        # A WER over a subset of the samples would not be comparable across files.
        if has_asr and (record.asr is None or record.source is None):
            raise ScoreError(f"{path}: id {i} lacks its S- or ASR- line, needed for WER")
    return Corpus(
        path=path,
        ids=ids,
        hypotheses=[records[i].output for i in ids],
        references=[records[i].reference for i in ids],
        transcripts=[records[i].source for i in ids] if has_asr else None,
        asr=[records[i].asr for i in ids] if has_asr else None,
    )


def corpus_wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus-level WER in %: word edits summed over sentences / reference words.

    Words are whitespace-separated and compared as they are (case and punctuation
    count), so refs and hyps must be normalized alike.
    """
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    ref_words = [ref.split() for ref in refs]
    n_words = sum(len(words) for words in ref_words)
    if n_words == 0:
        raise ValueError("the references have no words")
    edits = sum(editdistance.eval(words, hyp.split()) for words, hyp in zip(ref_words, hyps))
    return 100.0 * edits / n_words


def _metrics():
    # Fresh instances each time: a sacrebleu metric keeps state from its last call.
    return {"bleu": BLEU(), "chrf": CHRF()}


def score_corpus(corpus: Corpus) -> dict:
    """n, WER (None without ASR- lines), BLEU, chrF and their sacrebleu signatures."""
    scores = {"path": corpus.path, "n": len(corpus.ids), "wer": None}
    if corpus.asr is not None:
        try:
            scores["wer"] = corpus_wer(corpus.transcripts, corpus.asr)
        except ValueError as e:
            raise ScoreError(f"{corpus.path}: cannot compute WER: {e}") from e
    for key, metric in _metrics().items():
        scores[key] = metric.corpus_score(corpus.hypotheses, [corpus.references]).score
        scores[f"signature_{key}"] = metric.get_signature().format()
    return scores


def check_same_references(system: Corpus, baseline: Corpus):
    """A paired test needs both files to translate the same samples against the same
    references; raise ScoreError naming the first id where they differ."""
    system_refs = dict(zip(system.ids, system.references))
    baseline_refs = dict(zip(baseline.ids, baseline.references))
    for i in sorted(system_refs.keys() | baseline_refs.keys()):
        if i not in baseline_refs:
            raise ScoreError(f"{baseline.path}: id {i} is missing (present in {system.path})")
        if i not in system_refs:
            raise ScoreError(f"{system.path}: id {i} is missing (present in {baseline.path})")
        if system_refs[i] != baseline_refs[i]:
            raise ScoreError(
                f"{baseline.path}: the T- reference of id {i} differs from {system.path}"
            )


@contextlib.contextmanager
def _sacrebleu_seed(seed: int):
    # PairedTest takes its seed only from this variable (as `sacrebleu --paired-bs`).
    previous = os.environ.get("SACREBLEU_SEED")
    os.environ["SACREBLEU_SEED"] = str(seed)
    try:
        yield
    finally:
        if previous is None:
            del os.environ["SACREBLEU_SEED"]
        else:
            os.environ["SACREBLEU_SEED"] = previous


def resampled_scores(corpus: Corpus, metric, n_samples: int, seed: int):
    """The corpus score on each of the paired bootstrap's resamples: sacrebleu's generator,
    seed and draw, so these are the resamples its test scores."""
    import numpy as np

    rng = np.random.default_rng(seed)
    idxs = rng.choice(len(corpus.hypotheses), size=(n_samples, len(corpus.hypotheses)), replace=True)
    stats = np.array(metric._extract_corpus_statistics(corpus.hypotheses, [corpus.references]), dtype="float32")
    return np.array([metric._compute_score_from_stats(stats[i].sum(0)).score for i in idxs])


def delta_interval(system: Corpus, baseline: Corpus, metric, n_samples: int, seed: int):
    """The 95% percentile interval of SYSTEM - BASELINE over the paired bootstrap's resamples
    (the ones sacrebleu's test draws), so the interval and the p-value describe one experiment.
    An interval inside +-x says the difference is smaller than x; a p-value above 0.05 alone
    does not."""
    import numpy as np

    diffs = resampled_scores(system, metric, n_samples, seed) - resampled_scores(baseline, metric, n_samples, seed)
    low, high = np.percentile(diffs, [2.5, 97.5])
    return float(low), float(high)


def wer_delta_interval(system: Corpus, baseline: Corpus, n_samples: int = 1000, seed: int = 12345) -> dict:
    """SYSTEM's corpus WER minus BASELINE's (in points) on the same transcripts, and the 95%
    percentile interval of that difference over paired bootstrap resamples of the utterances
    (the BLEU test's generator and seed): does an ASR update cost transcript quality?"""
    import numpy as np

    for corpus in (system, baseline):
        if corpus.asr is None:
            raise ScoreError(f"{corpus.path}: no ASR- lines, no WER to compare")
    if system.transcripts != baseline.transcripts:
        raise ScoreError(f"{baseline.path}: its S- transcripts are not those of {system.path}")
    words = np.array([len(t.split()) for t in system.transcripts], dtype=float)
    if words.sum() == 0:
        raise ScoreError(f"{system.path}: the transcripts have no words")
    edits = {name: np.array([editdistance.eval(t.split(), h.split()) for t, h in zip(c.transcripts, c.asr)],
                            dtype=float) for name, c in (("system", system), ("baseline", baseline))}
    delta = 100.0 * (edits["system"].sum() - edits["baseline"].sum()) / words.sum()
    rng = np.random.default_rng(seed)
    idxs = rng.choice(len(words), size=(n_samples, len(words)), replace=True)
    diffs = 100.0 * (edits["system"][idxs].sum(1) - edits["baseline"][idxs].sum(1)) / words[idxs].sum(1)
    low, high = np.percentile(diffs, [2.5, 97.5])
    return {"dwer": float(delta), "ci": [float(low), float(high)], "bootstrap_samples": n_samples, "seed": seed}


def paired_bootstrap(system: Corpus, baseline: Corpus, n_samples: int = 1000,
                     seed: int = 12345) -> dict:
    """sacrebleu's paired bootstrap resampling of SYSTEM against BASELINE.

    Per metric key: ``delta`` (SYSTEM - BASELINE), ``p`` (sacrebleu's p-value for the
    absolute difference arising by chance), ``delta_ci`` (the 95% interval of the difference
    over the same resamples), ``mean``/``ci`` and ``baseline_mean``/``baseline_ci``
    (bootstrap mean and 95% CI half-width of each system) and ``signature`` (the metric's,
    plus the resampling settings).
    """
    check_same_references(system, baseline)
    results = {}
    for key, metric in _metrics().items():
        with _sacrebleu_seed(seed):
            test = PairedTest(
                [("baseline", baseline.hypotheses), ("system", system.hypotheses)],
                {key: metric}, references=[system.references], test_type="bs",
                n_samples=n_samples)
        signatures, columns = test()
        (name, signature), = signatures.items()
        baseline_result, system_result = columns[name]
        results[key] = {
            "delta": system_result.score - baseline_result.score,
            "p": system_result.p_value,
            "delta_ci": list(delta_interval(system, baseline, _metrics()[key], n_samples, seed)),
            "mean": float(system_result.mean),
            "ci": float(system_result.ci),
            "baseline_mean": float(baseline_result.mean),
            "baseline_ci": float(baseline_result.ci),
            "signature": signature.format(),
        }
    return results


def build_report(system_path: str, baseline_path: Optional[str] = None,
                 n_samples: int = 1000, seed: int = 12345) -> dict:
    """All figures as one flat dict for SYSTEM (what ``--json`` writes); with a
    baseline, its figures under ``"baseline"`` and the paired test's at the top."""
    system = load_corpus(system_path)
    report = score_corpus(system)
    if baseline_path is None:
        return report
    baseline = load_corpus(baseline_path)
    report["baseline"] = score_corpus(baseline)
    report.update(bootstrap_samples=n_samples, seed=seed)
    for key, result in paired_bootstrap(system, baseline, n_samples, seed).items():
        report[f"delta_{key}"] = result["delta"]
        report[f"p_{key}"] = result["p"]
        report[f"delta_ci_{key}"] = result["delta_ci"]
        report[f"mean_{key}"] = result["mean"]
        report[f"ci_{key}"] = result["ci"]
        report["baseline"][f"mean_{key}"] = result["baseline_mean"]
        report["baseline"][f"ci_{key}"] = result["baseline_ci"]
        # The signature that reproduces the test also records samples and seed.
        report[f"signature_{key}"] = report["baseline"][f"signature_{key}"] = result["signature"]
    return report


def _table(rows: List[List[str]], n_left: int) -> str:
    """Align columns: the first n_left to the left, numbers to the right."""
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) if c < n_left else cell.rjust(w)
                  for c, (cell, w) in enumerate(zip(row, widths))).rstrip()
        for row in rows
    )


def format_report(report: dict) -> str:
    """The scores table, the paired test (with a baseline) and the signatures."""
    rows = [["", "file", "n", "WER", _LABELS["bleu"], _LABELS["chrf"]]]
    for role, scores in (("system", report), ("baseline", report.get("baseline"))):
        if scores is not None:
            wer = "n/a" if scores["wer"] is None else f"{scores['wer']:.2f}"
            rows.append([role, scores["path"], str(scores["n"]), wer,
                         f"{scores['bleu']:.2f}", f"{scores['chrf']:.2f}"])
    parts = [_table(rows, n_left=2)]
    if "baseline" in report:
        rows = [["metric", "delta", "delta 95% interval", "p-value", "system 95% CI", "baseline 95% CI"]]
        for key, label in _LABELS.items():
            low, high = report[f"delta_ci_{key}"]
            rows.append([
                label, f"{report[f'delta_{key}']:+.2f}", f"[{low:+.2f}, {high:+.2f}]", f"{report[f'p_{key}']:.4f}",
                f"{report[f'mean_{key}']:.2f} +/- {report[f'ci_{key}']:.2f}",
                f"{report['baseline'][f'mean_{key}']:.2f} +/- "
                f"{report['baseline'][f'ci_{key}']:.2f}",
            ])
        parts.append(f"paired bootstrap resampling, system - baseline "
                     f"({report['bootstrap_samples']} samples, seed {report['seed']})\n"
                     + _table(rows, n_left=1))
    parts.append("\n".join(f"{label} signature: {report[f'signature_{key}']}"
                           for key, label in _LABELS.items()))
    return "\n\n".join(parts)


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return number


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fairseq-exporter-score",
        description="WER of the ASR- transcripts, BLEU and chrF of the D- (or H-) "
                    "hypotheses in fairseq-generate output; with BASELINE, a paired "
                    "bootstrap test of SYSTEM against it.")
    parser.add_argument("system", metavar="SYSTEM", help="fairseq-generate output")
    parser.add_argument("baseline", metavar="BASELINE", nargs="?",
                        help="fairseq-generate output of the system to compare against")
    parser.add_argument("--json", metavar="OUT", help="also write all figures as JSON")
    parser.add_argument("--bootstrap-samples", type=_positive_int, default=1000,
                        help="paired bootstrap resamples (default: %(default)s)")
    # sacrebleu treats seed 0 as "unseeded", which would make results irreproducible.
    parser.add_argument("--seed", type=_positive_int, default=12345,
                        help="seed of the paired bootstrap (default: %(default)s)")
    return parser


def main(argv=None):
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        report = build_report(args.system, args.baseline, args.bootstrap_samples, args.seed)
    except ScoreError as e:
        parser.error(str(e))
    print(format_report(report))
    if args.json:
        try:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump(report, f, indent=2)
                f.write("\n")
        except OSError as e:
            parser.error(f"{args.json}: {e.strerror or e}")


if __name__ == "__main__":
    main()
