"""The ``exporter`` criterion:

    loss = ast_weight * label-smoothed CE(translation)
         + l2_weight  * L2(exporter output, MT embedding rows of the 1-best)
         + asr_weight * CE(ASR decoder on the reference transcript)

Each term is a per-token mean times the batch's sample size, so the weights compare
terms on the same footing and, with the defaults, the translation term is fairseq's
usual label-smoothed cross-entropy.
"""

import logging
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from fairseq import metrics, utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.criterions.label_smoothed_cross_entropy import label_smoothed_nll_loss
from fairseq.dataclass import FairseqDataclass
from omegaconf import II

from fairseq_exporter.models.trainable import unwrap

logger = logging.getLogger(__name__)


@dataclass
class ExporterCriterionConfig(FairseqDataclass):
    ast_weight: float = field(default=1.0, metadata={"help": "weight of the translation cross-entropy "
                                                             "(0: stage 1, exporter trained by L2 alone)"})
    l2_weight: float = field(default=1.0, metadata={"help": "weight of the L2 loss between the exporter "
                                                            "output and the MT embedding rows of the 1-best"})
    asr_weight: float = field(default=0.0, metadata={"help": "weight of the ASR cross-entropy on the "
                                                             "reference transcript (keeps WER while the ASR is fine-tuned; "
                                                             "CTC loss with --exporter-source ctc)"})
    label_smoothing: float = field(default=0.1, metadata={"help": "label smoothing of both cross-entropies"})
    sentence_avg: bool = II("optimization.sentence_avg")


def squared_distance_per_token(exported, target_rows, mask):
    """||e_hat - E[y]||^2 summed over embedding dims, for the real (non-pad) tokens."""
    return ((exported.float() - target_rows.float()) ** 2).sum(-1)[mask]


@register_criterion("exporter", dataclass=ExporterCriterionConfig)
class ExporterCriterion(FairseqCriterion):
    def __init__(self, task, ast_weight, l2_weight, asr_weight, label_smoothing, sentence_avg):
        super().__init__(task)
        if min(ast_weight, l2_weight, asr_weight) < 0 or ast_weight + l2_weight + asr_weight == 0:
            raise ValueError("--ast-weight, --l2-weight, --asr-weight must be >= 0, not all 0")
        self.ast_weight = ast_weight
        self.l2_weight = l2_weight
        self.asr_weight = asr_weight
        self.eps = label_smoothing
        self.sentence_avg = sentence_avg
        self.src_pad = task.transcript_dictionary.pad()

    def forward(self, model, sample, reduce=True):
        net_input = sample["net_input"]
        logits, extra = model(**net_input, compute_translation=self.ast_weight > 0,
                              compute_asr_reference=self.asr_weight > 0)
        coupled = extra["coupled"]
        inner = unwrap(model)
        ntokens = sample["ntokens"]
        sample_size = sample["target"].size(0) if self.sentence_avg else ntokens
        logging_output = {"ntokens": ntokens, "nsentences": sample["target"].size(0),
                          "sample_size": sample_size}
        loss = torch.zeros((), device=sample["target"].device)

        if logits is not None:
            lprobs = utils.log_softmax(logits, dim=-1, onnx_trace=False)
            ast, nll = label_smoothed_nll_loss(lprobs.view(-1, lprobs.size(-1)),
                                               sample["target"].view(-1, 1), self.eps,
                                               ignore_index=inner.decoder.padding_idx)
            loss = loss + self.ast_weight * ast * (sample_size / ntokens)
            logging_output.update(ast_loss=ast.data, nll_loss=nll.data)

        onebest = coupled["recognition"].onebest.tokens
        mask = inner.encoder.fed(onebest)  # the positions the text model reads
        n_src = int(mask.sum())
        logging_output.update(onebest_tokens=n_src, onebest_truncated=coupled["recognition"].onebest.n_truncated)
        exported = coupled["exported"]
        if exported is not None:
            sq = squared_distance_per_token(exported, inner.encoder.embedding_rows(onebest).detach(), mask)
            loss = loss + self.l2_weight * sq.sum() * (sample_size / max(n_src, 1))
            with torch.no_grad():
                recovered = inner.encoder.recovered(exported[mask].detach(), onebest[mask]).sum()
            logging_output.update(l2_sum=sq.sum().data, recovered=recovered.data)

        if self.asr_weight > 0:
            ref = net_input["src_txt_tokens"]
            n_ref = int(ref.ne(self.src_pad).sum())
            if "asr_reference_ctc" in extra:  # --exporter-source ctc: CTC loss, as fairseq trains the head
                ctc = extra["asr_reference_ctc"]
                ref_mask = ref.ne(self.src_pad)
                asr = F.ctc_loss(ctc["lprobs"], ref[ref_mask], ctc["lengths"], ref_mask.sum(1),
                                 blank=ctc["blank"], reduction="sum", zero_infinity=True)
            else:
                asr_lprobs = utils.log_softmax(extra["asr_reference_logits"], dim=-1)
                asr, _ = label_smoothed_nll_loss(asr_lprobs.view(-1, asr_lprobs.size(-1)), ref.reshape(-1, 1),
                                                 self.eps, ignore_index=self.src_pad)
            loss = loss + self.asr_weight * asr * (sample_size / n_ref)
            logging_output.update(asr_loss=asr.data, asr_tokens=n_ref)

        logging_output["loss"] = loss.data
        return loss, sample_size, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        def total(key):
            return sum(log.get(key, 0) for log in logging_outputs)

        sample_size = total("sample_size")
        ntokens = total("ntokens")
        n_src = total("onebest_tokens")
        metrics.log_scalar("loss", total("loss") / sample_size / math.log(2), sample_size, round=3)
        if any("ast_loss" in log for log in logging_outputs):
            metrics.log_scalar("ast_loss", total("ast_loss") / ntokens / math.log(2), ntokens, round=3)
            metrics.log_scalar("nll_loss", total("nll_loss") / ntokens / math.log(2), ntokens, round=3)
            metrics.log_derived("ppl", lambda m: utils.get_perplexity(m["nll_loss"].avg))
        if any("l2_sum" in log for log in logging_outputs) and n_src > 0:
            metrics.log_scalar("l2", total("l2_sum") / n_src, n_src, round=4)
            metrics.log_scalar("recovery", 100.0 * total("recovered") / n_src, n_src, round=2)
        if any("asr_loss" in log for log in logging_outputs):
            n_ref = total("asr_tokens")
            metrics.log_scalar("asr_loss", total("asr_loss") / n_ref / math.log(2), n_ref, round=3)
        metrics.log_scalar("onebest_truncated", total("onebest_truncated"), round=0)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
