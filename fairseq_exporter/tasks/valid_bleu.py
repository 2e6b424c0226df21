"""Dev-set BLEU and WER during training (``--eval-bleu``), as fairseq's translation task does
BLEU: each validation batch logs sacreBLEU's n-gram statistics, which sum across batches
and workers, and BLEU is derived from the sums (averaging per-batch BLEU would be wrong).
The WER of the ASR 1-best the text model read is logged alike (word edits and reference
words summed, ``wer`` derived): the paper keeps the ASR's quality, and stage 2's dev WER
against the 1-best's is how a run shows it."""

import numpy as np
import torch
from fairseq.logging import metrics

ORDER = 4


def bleu_statistics(hypotheses, references) -> dict:
    import sacrebleu

    bleu = sacrebleu.corpus_bleu(hypotheses, [references], tokenize="13a")
    stats = {"_bleu_sys_len": bleu.sys_len, "_bleu_ref_len": bleu.ref_len}
    for i in range(ORDER):
        stats[f"_bleu_counts_{i}"] = bleu.counts[i]
        stats[f"_bleu_totals_{i}"] = bleu.totals[i]
    return stats


def wer_statistics(hypotheses, references) -> dict:
    """Word edits and reference words (whitespace-separated words compared as they are, as
    fairseq-exporter-score's WER)."""
    import editdistance

    refs = [r.split() for r in references]
    return {"_wer_edits": sum(editdistance.eval(r, h.split()) for r, h in zip(refs, hypotheses)),
            "_wer_words": sum(len(r) for r in refs)}


def _total(logging_outputs, key):
    value = sum(log.get(key, 0) for log in logging_outputs)
    return value.cpu() if torch.is_tensor(value) else value


def log_wer(logging_outputs) -> None:
    words = _total(logging_outputs, "_wer_words")
    if not words:
        return
    metrics.log_scalar_sum("_wer_edits", _total(logging_outputs, "_wer_edits"))
    metrics.log_scalar_sum("_wer_words", words)
    metrics.log_derived("wer", lambda meters: round(100.0 * meters["_wer_edits"].sum / meters["_wer_words"].sum, 2)
                        if meters["_wer_words"].sum > 0 else float("nan"))


def log_bleu(logging_outputs) -> None:
    def total(key):
        return _total(logging_outputs, key)

    totals = [total(f"_bleu_totals_{i}") for i in range(ORDER)]
    if max(totals) == 0:
        return
    metrics.log_scalar("_bleu_counts", np.array([total(f"_bleu_counts_{i}") for i in range(ORDER)]))
    metrics.log_scalar("_bleu_totals", np.array(totals))
    metrics.log_scalar("_bleu_sys_len", total("_bleu_sys_len"))
    metrics.log_scalar("_bleu_ref_len", total("_bleu_ref_len"))

    def compute(meters):
        from sacrebleu.metrics import BLEU

        score = BLEU.compute_bleu(correct=meters["_bleu_counts"].sum, total=meters["_bleu_totals"].sum,
                                  sys_len=int(meters["_bleu_sys_len"].sum),
                                  ref_len=int(meters["_bleu_ref_len"].sum), smooth_method="exp")
        return round(score.score, 2)

    metrics.log_derived("bleu", compute)
