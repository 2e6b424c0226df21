"""Dev-set BLEU during training (``--eval-bleu``), as fairseq's translation task does
it: each validation batch logs sacreBLEU's n-gram statistics, which sum across batches
and workers, and BLEU is derived from the sums (averaging per-batch BLEU would be wrong)."""

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


def log_bleu(logging_outputs) -> None:
    def total(key):
        value = sum(log.get(key, 0) for log in logging_outputs)
        return value.cpu() if torch.is_tensor(value) else value

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
