"""The exporter network: ASR state of each 1-best token -> MT token-embedding space.

All variants take the same inputs, so the coupling code does not care which one runs:
``states`` (B x L x D_asr, one vector per 1-best token), its padding mask, and the
speech-encoder output (used by the transformer variant's cross-attention)."""

from typing import Callable, Optional

import torch
from torch import Tensor, nn

EXPORTER_TYPES = ("linear", "mlp", "transformer", "vocab")


class LinearExporter(nn.Module):
    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.proj = nn.Linear(in_dim, out_dim)

    def forward(self, states: Tensor, padding_mask: Tensor, memory: Optional[Tensor] = None,
                memory_padding_mask: Optional[Tensor] = None) -> Tensor:
        return self.proj(states)


class MLPExporter(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int, layers: int, dropout: float):
        super().__init__()
        blocks, dim = [], in_dim
        for _ in range(max(layers, 1)):
            blocks += [nn.Linear(dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout)]
            dim = hidden_dim
        blocks.append(nn.Linear(dim, out_dim))
        self.net = nn.Sequential(*blocks)

    def forward(self, states, padding_mask, memory=None, memory_padding_mask=None):
        return self.net(states)


class VocabularyExporter(nn.Module):
    """softmax(W h) @ T + MLP(h): scores the vocabulary from the ASR state and mixes
    embedding rows, plus a learned correction.

    W starts as the ASR's output layer (the decoder's, or the CTC head with its bias for
    --exporter-source ctc) times ``SHARPNESS``, T as the MT's raw embedding table and the
    correction's last layer at zero, so before any training the output is (nearly) the
    MT embedding of the ASR's own argmax: with the greedy 1-best that is the 1-best
    cascade, and stage 1 starts at the guarantee instead of having to learn a
    hidden-state -> embedding map from scratch. (The sharpening matters: an ASR trained
    with label smoothing is not confident enough for the plain softmax mixture to land
    nearest its argmax row; on a weak toy ASR, token recovery at init was 61% at 1x,
    95% at 4x, 99% at 8x; on a better one 98.0% at 8x, 99.8% at 32x. Stage-1 L2
    training of a less sharp start lowered recovery instead of raising it. On the toy's
    CTC source after stage 1, dev L2 was 0.0025 at 32x and 0.0011 at 128x, and test BLEU
    against the 1-best cascade -0.41 and +0.06: a weak MT is that sensitive.) Everything is the exporter's own copy
    and trains; T lets the translation loss move a token's exported row (e.g. towards
    a synonym the frozen MT translates the way the task wants).

    On an LM (``frozen_table``, ``table_rank`` R > 0) T is not copied: it is the LM's frozen
    rows plus a trainable rank-R correction ``table_down @ table_up`` whose ``table_down``
    starts at zero, so the start is the same 1-best cascade; a copy of Llama 3's table would
    be 0.5 billion trainable parameters (6 GB with Adam's state) for every exporter."""

    SHARPNESS = 128.0

    def __init__(self, in_dim: int, out_dim: int, vocab_size: int, hidden_dim: int,
                 dropout: float, asr_output_weight: Optional[Tensor] = None,
                 mt_embedding_table: Optional[Tensor] = None, asr_output_bias: Optional[Tensor] = None,
                 frozen_table: Optional[Callable[[], Tensor]] = None, table_rank: int = 0):
        super().__init__()
        self.scores = nn.Linear(in_dim, vocab_size, bias=asr_output_bias is not None)
        if asr_output_weight is not None:
            self.scores.weight.data.copy_(asr_output_weight * self.SHARPNESS)
        if asr_output_bias is not None:
            self.scores.bias.data.copy_(asr_output_bias * self.SHARPNESS)
        if frozen_table is None:
            self.table = nn.Parameter(torch.empty(vocab_size, out_dim))
            nn.init.normal_(self.table, std=out_dim ** -0.5)
            if mt_embedding_table is not None:
                self.table.data.copy_(mt_embedding_table)
        else:
            if table_rank < 1:
                raise ValueError(f"--exporter-table-rank {table_rank}: the correction to frozen rows needs rank >= 1")
            # a plain attribute, not a submodule: the rows belong to the LM (never in a checkpoint)
            self.frozen_table = frozen_table
            rows = frozen_table()
            if tuple(rows.shape) != (vocab_size, out_dim):
                raise ValueError(f"the frozen table is {tuple(rows.shape)}, not {vocab_size} x {out_dim}")
            # up: random at the rows' own scale, so that down (zero at start) gets gradient
            self.table_down = nn.Parameter(torch.zeros(vocab_size, table_rank))
            self.table_up = nn.Parameter(torch.randn(table_rank, out_dim) * float(rows.float().pow(2).mean().sqrt()))
        self.correction = MLPExporter(in_dim, out_dim, hidden_dim, 1, dropout)
        nn.init.zeros_(self.correction.net[-1].weight)
        nn.init.zeros_(self.correction.net[-1].bias)

    def forward(self, states, padding_mask, memory=None, memory_padding_mask=None):
        probs = torch.softmax(self.scores(states).float(), dim=-1)
        if hasattr(self, "table"):
            mixed = probs.type_as(states) @ self.table
        else:
            rows = self.frozen_table()
            probs, rows, down = used_columns(probs, rows, self.table_down)
            mixed = (probs.to(rows.dtype) @ rows).type_as(states)
            mixed = mixed + (probs.type_as(down) @ down) @ self.table_up
        return mixed + self.correction(states, padding_mask)


def used_columns(probs: Tensor, *tables: Tensor):
    """``probs`` and ``tables``' rows restricted to the columns some position gives a nonzero
    probability, when that is at most a quarter of them: the products with the tables are then
    the same sums without their exact-zero terms (equal up to the order of the additions), and
    so are the gradients of the scores (a softmax column at exactly 0 passes none back). With
    the sharpened scores over an LLM's vocabulary all but a few columns underflow to 0, and the
    dense products, n x V x D, were most of the exporter's cost."""
    # a column's sum over the positions is 0 exactly when each of its probabilities is (they are
    # >= 0; a NaN stays in), and a sum down the rows is 8x faster than any() on a CPU
    used = probs.detach().flatten(0, -2).sum(0).ne(0)
    columns = used.nonzero().squeeze(1)
    if columns.numel() * 4 > probs.shape[-1]:
        return (probs, *tables)
    return (probs.index_select(-1, columns), *(t.index_select(0, columns) for t in tables))


class TransformerExporter(nn.Module):
    """Self-attention over the 1-best token states plus cross-attention to the speech
    encoder frames, so each exported embedding can use acoustic evidence the 1-best
    token alone lost (the paper's exporter attends to the ASR encoder)."""

    def __init__(self, in_dim: int, out_dim: int, memory_dim: int, model_dim: int,
                 layers: int, heads: int, dropout: float):
        super().__init__()
        self.in_proj = nn.Linear(in_dim, model_dim)
        self.memory_proj = nn.Linear(memory_dim, model_dim)
        layer = nn.TransformerDecoderLayer(model_dim, heads, dim_feedforward=4 * model_dim,
                                           dropout=dropout, batch_first=True, norm_first=True)
        self.layers = nn.TransformerDecoder(layer, layers, norm=nn.LayerNorm(model_dim))
        self.out_proj = nn.Linear(model_dim, out_dim)

    def forward(self, states, padding_mask, memory=None, memory_padding_mask=None):
        if memory is None:
            raise ValueError("the transformer exporter needs the speech encoder output")
        x = self.layers(self.in_proj(states), self.memory_proj(memory),
                        tgt_key_padding_mask=padding_mask,
                        memory_key_padding_mask=memory_padding_mask)
        return self.out_proj(x)


def build_exporter(kind: str, in_dim: int, out_dim: int, memory_dim: int, hidden_dim: int,
                   layers: int, heads: int, dropout: float,
                   asr_output_weight: Optional[Tensor] = None,
                   mt_embedding_table: Optional[Tensor] = None,
                   asr_output_bias: Optional[Tensor] = None,
                   frozen_table: Optional[Callable[[], Tensor]] = None, table_rank: int = 0) -> nn.Module:
    """``asr_output_weight`` (V x in_dim), ``asr_output_bias`` (V, or None) and the text model's
    table (``mt_embedding_table``, V x out_dim, copied; or ``frozen_table``, a callable returning
    the LM's frozen rows, with ``table_rank`` > 0) are only read by the vocab exporter."""
    if kind == "linear":
        return LinearExporter(in_dim, out_dim)
    if kind == "mlp":
        return MLPExporter(in_dim, out_dim, hidden_dim, layers, dropout)
    if kind == "transformer":
        return TransformerExporter(in_dim, out_dim, memory_dim, hidden_dim, layers, heads, dropout)
    if kind == "vocab":
        if table_rank > 0:
            if frozen_table is None:
                raise ValueError(f"--exporter-table-rank {table_rank}: frozen rows are an LM's (--lm-checkpoint)")
            vocab_size = frozen_table().size(0)
            return VocabularyExporter(in_dim, out_dim, vocab_size, hidden_dim, dropout, asr_output_weight,
                                      None, asr_output_bias, frozen_table, table_rank)
        if mt_embedding_table is None:
            raise ValueError("--exporter-type vocab needs the MT embedding table")
        return VocabularyExporter(in_dim, out_dim, mt_embedding_table.size(0), hidden_dim, dropout,
                                  asr_output_weight, mt_embedding_table.detach(), asr_output_bias)
    raise ValueError(f"--exporter-type {kind!r}: choose one of {', '.join(EXPORTER_TYPES)}")


def row_separation(tokens: Tensor, table: Tensor, sq: Tensor, chunk: int = 256) -> Tensor:
    """For each token, the distance from its row to the nearest other row of ``table`` (0
    where another row equals it). A vector closer to its token's row than half of this has
    that row as its only nearest (triangle inequality): ``recovered_rows`` needs no search
    for it."""
    out = []
    for part in tokens.split(chunk):
        rows = table[part]
        d2 = (rows.to(table.dtype) @ table.t()).float().mul_(-2).add_(sq).add_(sq[part].unsqueeze(1))
        d2[torch.arange(len(part), device=part.device), part] = float("inf")  # not the row itself
        out.append(d2.min(-1).values.clamp_(min=0).sqrt_())
    return torch.cat(out) if out else table.new_zeros(0, dtype=torch.float32)


def recovered_rows(vectors: Tensor, tokens: Tensor, table: Tensor, sq: Tensor, separation: Tensor) -> Tensor:
    """Whether each vector's nearest row of ``table`` is its token's (the recovery metric):
    ``nearest_rows(vectors, table).eq(tokens)``, without the search over every row for the
    vectors within half their row's ``separation`` (``row_separation``; NaN: not known, then
    searched). An exporter that reproduces the 1-best, as stage 1 trains it to and the vocab
    exporter starts, puts nearly every vector there."""
    distance = (vectors.float() - table[tokens].float()).norm(dim=-1)
    certified = distance.mul(2).lt(separation[tokens])  # (NaN compares false)
    out = certified.clone()
    rest = (~certified).nonzero().squeeze(1)
    if len(rest):
        out[rest] = nearest_rows(vectors[rest], table, sq=sq).eq(tokens[rest])
    return out


def nearest_rows(vectors: Tensor, table: Tensor, chunk: int = 4096, sq: Optional[Tensor] = None) -> Tensor:
    """Index of the nearest (L2) row of ``table`` for each vector: the token an
    exported embedding 'means' to the MT model. Chunked to bound memory on big vocabularies;
    ``sq``: the rows' squared norms where known (an LM's table: computed once). The products
    are taken in the table's dtype (a bfloat16 LM's table is not copied to float32)."""
    out = []
    if sq is None:
        sq = table.float().pow(2).sum(-1)
    for part in vectors.split(chunk):
        # ||v - t||^2 = ||v||^2 - 2 v.t + ||t||^2; ||v||^2 does not change the argmin. One
        # chunk x V buffer, written once (addmm), not three: at 128k rows the passes over it
        # cost more than the product
        if table.dtype == torch.float32:
            scores = torch.addmm(sq.unsqueeze(0), part.float(), table.t(), alpha=-2)
        else:
            scores = (part.to(table.dtype) @ table.t()).float().mul_(-2).add_(sq)
        out.append(scores.argmin(-1))
    return torch.cat(out) if out else vectors.new_zeros(0, dtype=torch.long)
