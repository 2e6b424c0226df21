"""How the ASR and the MT model are joined: the encoder of the cascade.

``CoupledEncoder`` is "ASR encoder + 1-best search + token states + exporter + MT
encoder" behind fairseq's ``FairseqEncoder`` interface, so that the MT decoder, the
stock ``SequenceGenerator`` and ``fairseq-train`` see an ordinary encoder-decoder model.

The 1-best and the token states come from the ASR attention decoder
(``--exporter-source decoder``: search, then a teacher-forced pass) or from the CTC head
of the ASR encoder (``ctc``: best path, then the encoder frames of each token's segment,
mean-pooled). ``--coupling posterior`` is the tight-integration baseline (Bahar et al.,
2021): no exporter; the MT reads the ASR's distribution over the vocabulary at each
1-best position times the MT embedding table.
"""

import contextlib
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
from fairseq.models import FairseqEncoder
from torch import Tensor

from fairseq_exporter.models.ctc import CTCSearch, ctc_log_probs, frame_lengths, pool_segments
from fairseq_exporter.models.onebest import (
    OneBest,
    OneBestSearch,
    reference_logits,
    teacher_forced_states,
)
from fairseq_exporter.models.text_model import TextModel

COUPLINGS = ("exporter", "onebest", "reference", "posterior")
SOURCES = ("decoder", "ctc")


@dataclass
class Recognition:
    """What the ASR contributes to one batch; computed once per batch and reusable
    (``fairseq-generate`` prints the 1-best from the same object the MT consumes)."""

    asr_encoder_out: Dict[str, List[Tensor]]
    onebest: OneBest
    ctc_lprobs: Optional[Tensor] = None  # T x B x V, --exporter-source ctc only
    # the exporter input, when already known (--onebest-cache); asr_encoder_out may then be None
    token_states: Optional[Tensor] = None


class CoupledEncoder(FairseqEncoder):
    def __init__(self, asr_model, text: TextModel, exporter, dictionary, coupling: str,
                 onebest_beam: int, onebest_max_len: int, freeze_asr: bool,
                 source: str = "decoder", posterior_temperature: float = 1.0):
        super().__init__(dictionary)
        if coupling not in COUPLINGS:
            raise ValueError(f"--coupling {coupling!r}: choose one of {', '.join(COUPLINGS)}")
        if source not in SOURCES:
            raise ValueError(f"--exporter-source {source!r}: choose one of {', '.join(SOURCES)}")
        if not posterior_temperature > 0:
            raise ValueError(f"--posterior-temperature must be > 0, not {posterior_temperature}")
        self.asr = asr_model
        # the text model's input side (models/text_model.py), held under the back-end's own
        # names, which are its checkpoint keys
        self.text = text
        for name, module in text.encoder_modules().items():
            self.add_module(name, module)
        self.source_limit = text.source_limit
        self.exporter = exporter
        self.coupling = coupling
        self.freeze_asr = freeze_asr
        self.source = source
        self.posterior_temperature = posterior_temperature
        self.onebest_beam, self.onebest_max_len = onebest_beam, onebest_max_len
        self.pad, self.eos = dictionary.pad(), dictionary.eos()
        if source == "ctc":
            self.search = CTCSearch(dictionary, onebest_beam, onebest_max_len, self.source_limit)
        else:
            self.search = OneBestSearch(asr_model, dictionary, onebest_beam, onebest_max_len,
                                        self.source_limit)

    def embedding_table(self) -> Tensor:
        """The text model's row of each ASR symbol: the exporter's L2 target, exactly what the
        model's input path reads for it (for an MT, before its embedding scale, which the MT
        applies to both: ``TransformerEncoder.forward_embedding``, an HF MT's lookup path)."""
        return self.text.table()

    def embedding_rows(self, tokens: Tensor) -> Tensor:
        """``embedding_table()[tokens]``, without building the table of a large LM vocabulary."""
        return self.text.rows(tokens)

    def nearest_tokens(self, vectors: Tensor) -> Tensor:
        """The ASR symbol whose text-model row is nearest to each vector (the recovery metric)."""
        return self.text.nearest(vectors)

    def recovered(self, vectors: Tensor, tokens: Tensor) -> Tensor:
        """Whether each vector's nearest text-model row is its token's (the recovery metric)."""
        return self.text.recovered(vectors, tokens)

    def fed(self, tokens: Tensor) -> Tensor:
        """The 1-best positions the text model reads (an LM prompt leaves out </s>)."""
        return self.text.fed(tokens)

    def _asr_grad(self):
        return torch.no_grad() if self.freeze_asr else contextlib.nullcontext()

    def recognize(self, src_tokens, src_lengths, src_txt_tokens=None, **unused) -> Recognition:
        with self._asr_grad():
            asr_encoder_out = self.asr.encoder(src_tokens, src_lengths)
            ctc_lprobs = (ctc_log_probs(self.asr.encoder.ctc_proj, asr_encoder_out)
                          if self.source == "ctc" else None)
        if self.coupling == "reference":
            if src_txt_tokens is None:
                raise ValueError("--coupling reference needs the reference transcript "
                                 "(src_text column of the manifest)")
            tokens = src_txt_tokens[:, :self.source_limit].clone()
            tokens[:, -1].masked_fill_(tokens[:, -1].ne(self.pad), self.eos)
            onebest = OneBest(tokens=tokens)
        elif self.source == "ctc":
            found = self.search(ctc_lprobs, frame_lengths(asr_encoder_out))
            onebest = OneBest(tokens=found.tokens, truncated=found.truncated, segments=found.segments)
        else:
            onebest = self.search(src_tokens, src_lengths, asr_encoder_out)
        # A greedy search keeps the decoder states it computed; where no gradient must reach
        # the ASR they are the token states, and no teacher-forced pass is needed.
        reuse = onebest.states is not None and not self.asr.training and (
            self.freeze_asr or not torch.is_grad_enabled())
        return Recognition(asr_encoder_out, onebest, ctc_lprobs, token_states=onebest.states if reuse else None)

    def token_states(self, recognition: Recognition) -> Tensor:
        """What the exporter reads for each 1-best token (B x L x D): the teacher-forced
        ASR decoder state, or the mean speech-encoder frame of the token's CTC segment."""
        enc = recognition.asr_encoder_out
        with self._asr_grad():
            if self.source == "ctc":
                return pool_segments(enc["encoder_out"][0].transpose(0, 1), self._segments(recognition))
            return teacher_forced_states(self.asr.decoder, recognition.onebest.tokens, enc, self.eos)

    def _segments(self, recognition: Recognition) -> Tensor:
        if recognition.onebest.segments is None:
            raise ValueError("--exporter-source ctc reads the CTC segment of each 1-best token; "
                             "this 1-best has none (--coupling reference has no CTC segments)")
        return recognition.onebest.segments

    def posterior_scores(self, recognition: Recognition) -> Tensor:
        """The ASR's scores over the vocabulary at each 1-best position (B x L x V): the
        teacher-forced decoder logits, or the CTC log-probs averaged over the token's
        segment (the token stays their argmax: it wins every frame of its run). The CTC
        blank is no token and is left out. The closing </s> is the MT's own </s>: the
        CTC head need not emit it, and a search cut at --onebest-max-len forces it."""
        tokens = recognition.onebest.tokens
        with self._asr_grad():
            if self.source == "decoder":
                states = recognition.token_states  # kept by the search where no gradient is needed
                if states is None:
                    states = teacher_forced_states(self.asr.decoder, tokens, recognition.asr_encoder_out, self.eos)
                scores = self.asr.decoder.output_layer(states)
            else:
                scores = pool_segments(recognition.ctc_lprobs.transpose(0, 1), self._segments(recognition))
                scores = scores.index_fill(-1, tokens.new_tensor([self.search.blank]), float("-inf"))
        closing = tokens.eq(self.eos).unsqueeze(-1)
        eos_only = torch.full_like(scores[:1, :1], float("-inf")).index_fill(
            -1, tokens.new_tensor([self.eos]), 0.0)
        return torch.where(closing, eos_only, scores)

    def posterior_embeddings(self, recognition: Recognition) -> Tensor:
        """softmax(scores / temperature) @ the MT's raw embedding table (B x L x D_mt)."""
        scores = self.posterior_scores(recognition).float() / self.posterior_temperature
        table = self.embedding_table()
        return torch.softmax(scores, dim=-1).type_as(table) @ table

    def export(self, recognition: Recognition) -> Tensor:
        """Exporter output for each 1-best token (B x L x D_mt)."""
        tokens = recognition.onebest.tokens
        enc = recognition.asr_encoder_out
        states = recognition.token_states
        if states is None:
            states = self.token_states(recognition)
        memory = memory_mask = None
        if enc is not None:
            memory = enc["encoder_out"][0].transpose(0, 1)  # T x B x C -> B x T x C
            memory_mask = enc["encoder_padding_mask"][0] if enc["encoder_padding_mask"] else None
        return self.exporter(states, tokens.eq(self.pad), memory, memory_mask)

    def forward(self, src_tokens, src_lengths, src_txt_tokens=None, src_txt_lengths=None,
                recognition: Optional[Recognition] = None, **unused):
        if recognition is None:
            recognition = self.recognize(src_tokens, src_lengths, src_txt_tokens)
        tokens = recognition.onebest.tokens
        if self.coupling == "exporter":
            exported = self.export(recognition)
        elif self.coupling == "posterior":
            exported = self.posterior_embeddings(recognition)
        else:
            exported = None
        out = self.text.encode(tokens, exported)
        out["recognition"] = recognition
        # what replaced the lookup (exporter or posterior mixture): the criterion's L2 and recovery
        out["exported"] = exported
        return out

    def reference_logits(self, reference_tokens: Tensor, recognition: Recognition) -> Tensor:
        """ASR decoder logits on the reference transcript (the --asr-weight term)."""
        with self._asr_grad():
            return reference_logits(self.asr.decoder, reference_tokens, recognition.asr_encoder_out, self.eos)

    def reference_ctc(self, recognition: Recognition) -> Dict[str, Tensor]:
        """What the CTC loss on the reference transcript needs (the --asr-weight term of
        the ctc source, whose 1-best is the CTC head's): log-probs, frame counts, blank."""
        return {"lprobs": recognition.ctc_lprobs, "lengths": frame_lengths(recognition.asr_encoder_out),
                "blank": self.search.blank}

    def reorder_encoder_out(self, encoder_out, new_order):
        return self.text.reorder_encoder_out(encoder_out, new_order)

    def max_positions(self):
        return self.asr.encoder.max_positions()
