"""How the ASR and the MT model are joined: the encoder of the cascade.

``CoupledEncoder`` is "ASR encoder + 1-best search + token states + exporter + MT
encoder" behind fairseq's ``FairseqEncoder`` interface, so that the MT decoder, the
stock ``SequenceGenerator`` and ``fairseq-train`` see an ordinary encoder-decoder model.
"""

import contextlib
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
from fairseq.models import FairseqEncoder
from torch import Tensor

from fairseq_exporter.models.onebest import (
    OneBest,
    OneBestSearch,
    reference_logits,
    teacher_forced_states,
)

COUPLINGS = ("exporter", "onebest", "reference")


@dataclass
class Recognition:
    """What the ASR contributes to one batch; computed once per batch and reusable
    (``fairseq-generate`` prints the 1-best from the same object the MT consumes)."""

    asr_encoder_out: Dict[str, List[Tensor]]
    onebest: OneBest


class CoupledEncoder(FairseqEncoder):
    def __init__(self, asr_model, mt_encoder, exporter, dictionary, coupling: str,
                 onebest_beam: int, onebest_max_len: int, freeze_asr: bool):
        super().__init__(dictionary)
        if coupling not in COUPLINGS:
            raise ValueError(f"--coupling {coupling!r}: choose one of {', '.join(COUPLINGS)}")
        self.asr = asr_model
        self.mt_encoder = mt_encoder
        self.exporter = exporter
        self.coupling = coupling
        self.freeze_asr = freeze_asr
        self.pad, self.eos = dictionary.pad(), dictionary.eos()
        self.search = OneBestSearch(asr_model, dictionary, onebest_beam, onebest_max_len,
                                    mt_encoder.max_positions())

    def embedding_table(self) -> Tensor:
        """The MT's raw token-embedding rows: the exporter's L2 target (before
        ``embed_scale``, which ``TransformerEncoder.forward_embedding`` applies to both)."""
        return self.mt_encoder.embed_tokens.weight

    def _asr_grad(self):
        return torch.no_grad() if self.freeze_asr else contextlib.nullcontext()

    def recognize(self, src_tokens, src_lengths, src_txt_tokens=None, **unused) -> Recognition:
        with self._asr_grad():
            asr_encoder_out = self.asr.encoder(src_tokens, src_lengths)
        if self.coupling == "reference":
            if src_txt_tokens is None:
                raise ValueError("--coupling reference needs the reference transcript "
                                 "(src_text column of the manifest)")
            limit = self.mt_encoder.max_positions()
            tokens = src_txt_tokens[:, :limit].clone()
            tokens[:, -1].masked_fill_(tokens[:, -1].ne(self.pad), self.eos)
            onebest = OneBest(tokens=tokens)
        else:
            onebest = self.search(src_tokens, src_lengths, asr_encoder_out)
        return Recognition(asr_encoder_out, onebest)

    def export(self, recognition: Recognition) -> Tensor:
        """Exporter output for each 1-best token (B x L x D_mt)."""
        tokens = recognition.onebest.tokens
        enc = recognition.asr_encoder_out
        with self._asr_grad():
            states = teacher_forced_states(self.asr.decoder, tokens, enc, self.eos)
        memory = enc["encoder_out"][0].transpose(0, 1)  # T x B x C -> B x T x C
        memory_mask = enc["encoder_padding_mask"][0] if enc["encoder_padding_mask"] else None
        return self.exporter(states, tokens.eq(self.pad), memory, memory_mask)

    def forward(self, src_tokens, src_lengths, src_txt_tokens=None, src_txt_lengths=None,
                recognition: Optional[Recognition] = None, **unused):
        if recognition is None:
            recognition = self.recognize(src_tokens, src_lengths, src_txt_tokens)
        tokens = recognition.onebest.tokens
        exported = self.export(recognition) if self.coupling == "exporter" else None
        # Positions and padding still come from the 1-best ids; only the embedding
        # lookup is replaced (the seam fairseq's TransformerEncoder offers).
        out = self.mt_encoder(tokens, src_lengths=tokens.ne(self.pad).sum(1),
                              token_embeddings=exported)
        out["recognition"] = recognition
        out["exported"] = exported
        return out

    def reference_logits(self, reference_tokens: Tensor, recognition: Recognition) -> Tensor:
        """ASR decoder logits on the reference transcript (the --asr-weight term)."""
        with self._asr_grad():
            return reference_logits(self.asr.decoder, reference_tokens, recognition.asr_encoder_out, self.eos)

    def reorder_encoder_out(self, encoder_out, new_order):
        return self.mt_encoder.reorder_encoder_out(encoder_out, new_order)

    def max_positions(self):
        return self.asr.encoder.max_positions()
