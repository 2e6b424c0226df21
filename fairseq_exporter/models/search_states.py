"""The ASR decoder states of a greedy 1-best, kept from the search itself.

The exporter reads, for each 1-best token, the ASR decoder state that predicted it. A
greedy search has already computed exactly those states, one step at a time; when no
gradient is needed (fairseq-generate, validation, a frozen ASR) running the decoder a
second time, teacher-forced on the 1-best, only repeats that work (about a tenth of the
search, and 5% of a whole cascade decode on the toy study). ``StateRecordingDecoder``
stands in for the ASR decoder inside fairseq's ``SequenceGenerator``: it runs the
decoder unchanged, keeps each step's last-position state, and follows the generator's
row reorders (finished sentences leave the batch), so each state can be put back
at its sentence and step. Beam search (beam > 1) moves hypotheses between rows, so
there the teacher-forced pass stays.

What it relies on in ``SequenceGenerator``: one decoder call per step, and every row
reorder reported through ``reorder_incremental_state``. Both are checked as the states
are recorded and read back (cheap bookkeeping on row indices): if an installed fairseq
breaks either, the search stops with ``SearchInternalsChanged`` instead of handing the
exporter the wrong states (tests/test_search_states.py pins them against the installed
fairseq).
"""

import torch
from fairseq.models import FairseqIncrementalDecoder
from torch import Tensor


class SearchInternalsChanged(RuntimeError):
    """fairseq's SequenceGenerator no longer drives the decoder as StateRecordingDecoder expects."""


def _changed(what: str) -> SearchInternalsChanged:
    import fairseq

    return SearchInternalsChanged(
        f"fairseq {fairseq.__version__}'s SequenceGenerator {what}: the ASR decoder states kept "
        "from the greedy search would be wrong (fairseq_exporter/models/search_states.py)")


class StateRecordingDecoder(FairseqIncrementalDecoder):
    def __init__(self, decoder):
        super().__init__(decoder.dictionary)
        self.decoder = decoder
        self._rows = None
        self._steps = []

    def start(self, bsz: int, device):
        self._rows = torch.arange(bsz, device=device)  # sentence of each row (beam 1)
        self._steps = []

    def forward(self, prev_output_tokens, encoder_out=None, incremental_state=None, **kwargs):
        # what TransformerDecoder.forward does, keeping the features on the way
        x, extra = self.decoder.extract_features(prev_output_tokens, encoder_out=encoder_out,
                                                 incremental_state=incremental_state, **kwargs)
        if self._rows is not None:
            if self._rows.numel() != x.size(0):
                raise _changed(f"ran {x.size(0)} rows where the reported reorders leave {self._rows.numel()}")
            self._steps.append((self._rows, x[:, -1]))
        return self.decoder.output_layer(x), extra

    def reorder_incremental_state_scripting(self, incremental_state, new_order):
        if self._rows is not None:
            self._rows = self._rows.index_select(0, new_order)
        super().reorder_incremental_state_scripting(incremental_state, new_order)

    def get_normalized_probs(self, net_output, log_probs, sample=None):
        return self.decoder.get_normalized_probs(net_output, log_probs, sample)

    def max_positions(self):
        return self.decoder.max_positions()

    def states(self, lengths: Tensor) -> Tensor:
        """B x L x D (L = max of ``lengths``, the 1-best lengths with </s>): the state of
        sentence b at step t (the one that chose token t of its 1-best); zeros past a
        sentence's end. Ends the recording."""
        bsz, length = lengths.numel(), int(lengths.max())
        steps, self._rows, self._steps = self._steps[:length], None, []
        if len(steps) < length:
            raise _changed(f"made {len(steps)} decoder calls for a 1-best of {length} tokens")
        first = steps[0][1]
        out = first.new_zeros(bsz, length, first.size(-1))
        seen = torch.zeros(bsz, length, dtype=torch.bool, device=lengths.device)
        for t, (rows, x) in enumerate(steps):
            out[rows, t] = x
            seen[rows, t] = True
        wanted = torch.arange(length, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)
        if (wanted & ~seen).any():
            raise _changed("left a sentence's step out of the decoder calls")
        return out

