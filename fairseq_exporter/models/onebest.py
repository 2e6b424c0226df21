"""The ASR half of the cascade: its 1-best transcript and, for each 1-best token, the
ASR state the exporter reads.

The search is fairseq's own ``SequenceGenerator`` (greedy = beam 1) run on the ASR
decoder over an encoder output computed once; the token states then come from one
teacher-forced pass of the ASR decoder over the 1-best, which is also what lets the
translation loss reach the ASR model (the search itself is not differentiable).
"""

import logging
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
from fairseq.data import data_utils
from fairseq.models import FairseqEncoder, FairseqEncoderDecoderModel
from fairseq.sequence_generator import SequenceGenerator
from torch import Tensor

from fairseq_exporter.models.search_states import StateRecordingDecoder

logger = logging.getLogger(__name__)


@dataclass
class OneBest:
    """The ASR 1-best of a batch, right-padded, each row ending in </s> (the MT's
    source format). ``truncated`` marks the rows cut to the MT's max source positions:
    the search found more tokens (</s> included) than the MT takes. ``segments`` (CTC
    1-best only): the encoder frames [start, end) of each token."""

    tokens: Tensor  # B x L
    truncated: Optional[Tensor] = None  # B, bool; None: no row was cut
    segments: Optional[Tensor] = None  # B x L x 2
    states: Optional[Tensor] = None  # B x L x D: decoder states kept from a greedy search (search_states.py)

    @property
    def n_truncated(self) -> int:
        return int(self.truncated.sum()) if self.truncated is not None else 0


class _EncodedSpeech(FairseqEncoder):
    """Hands ``SequenceGenerator`` an ASR encoder output that was already computed, so
    the search does not encode the speech a second time."""

    def __init__(self, asr_encoder):
        super().__init__(None)
        self.__dict__["asr_encoder"] = asr_encoder  # not a submodule: no second copy of its weights

    def forward(self, src_tokens, src_lengths, asr_encoder_out):
        return asr_encoder_out

    def reorder_encoder_out(self, encoder_out, new_order):
        return self.asr_encoder.reorder_encoder_out(encoder_out, new_order)


class OneBestSearch:
    """Greedy or beam search of the ASR decoder; returns MT source ids."""

    def __init__(self, asr_model, dictionary, beam: int, max_len: int, max_source_positions: int):
        self.asr_model = asr_model
        self.dictionary = dictionary
        self.beam = beam
        self.max_len = max_len
        self.max_source_positions = max_source_positions
        self._generator = None
        self._recorder = None

    def _build_generator(self):
        decoder = self.asr_model.decoder
        if self.beam == 1:
            decoder = self._recorder = StateRecordingDecoder(decoder)
        wrapper = FairseqEncoderDecoderModel(_EncodedSpeech(self.asr_model.encoder), decoder)
        return SequenceGenerator(
            [wrapper], self.dictionary, beam_size=self.beam,
            max_len_a=0, max_len_b=self.max_len,
            max_len=self.asr_model.decoder.max_positions(),
        )

    @torch.no_grad()
    def __call__(self, src_tokens, src_lengths, asr_encoder_out) -> OneBest:
        if self._generator is None:
            self._generator = self._build_generator()
        was_training = self.asr_model.training
        self.asr_model.eval()  # the 1-best is the ASR's own output: no dropout in the search
        if self._recorder is not None:
            self._recorder.start(src_lengths.size(0), src_lengths.device)
        try:
            hypos = self._generator.generate(
                None,
                {"net_input": {"src_tokens": src_tokens, "src_lengths": src_lengths,
                               "asr_encoder_out": asr_encoder_out}},
            )
        finally:
            self.asr_model.train(was_training)
        rows, truncated = [], []
        eos = self.dictionary.eos()
        for nbest in hypos:
            tokens = nbest[0]["tokens"]
            truncated.append(len(tokens) > self.max_source_positions)
            if truncated[-1]:
                # keep the MT input valid: cut to fit, still ending in </s>
                tokens = torch.cat([tokens[: self.max_source_positions - 1], tokens.new_tensor([eos])])
            rows.append(tokens)
        if any(truncated):
            logger.warning(f"{sum(truncated)} ASR 1-best(s) longer than the MT's "
                           f"{self.max_source_positions} source positions were cut to fit")
        tokens = data_utils.collate_tokens(rows, self.dictionary.pad(), eos, left_pad=False)
        states = self._recorder.states(tokens.ne(self.dictionary.pad()).sum(1)) if self._recorder is not None else None
        return OneBest(tokens=tokens, truncated=torch.tensor(truncated, device=tokens.device), states=states)


def teacher_forced_states(asr_decoder, tokens: Tensor, asr_encoder_out: Dict[str, List[Tensor]],
                          eos: int) -> Tensor:
    """The ASR decoder state that predicts each token of ``tokens`` (B x L x D): the
    input of the decoder's output projection, as in fairseq's ``features_only``."""
    prev_output_tokens = torch.cat([tokens.new_full((tokens.size(0), 1), eos), tokens[:, :-1]], dim=1)
    states, _ = asr_decoder.extract_features(prev_output_tokens, encoder_out=asr_encoder_out)
    return states


def reference_logits(asr_decoder, tokens: Tensor, asr_encoder_out, eos: int) -> Tensor:
    """ASR decoder logits teacher-forced on the reference transcript (for --asr-weight)."""
    states = teacher_forced_states(asr_decoder, tokens, asr_encoder_out, eos)
    return asr_decoder.output_layer(states)
