"""The exporter network: ASR state of each 1-best token -> MT token-embedding space.

All variants take the same inputs, so the coupling code does not care which one runs:
``states`` (B x L x D_asr, one vector per 1-best token), its padding mask, and the
speech-encoder output (used by the transformer variant's cross-attention)."""

from typing import Optional

import torch
from torch import Tensor, nn

EXPORTER_TYPES = ("linear", "mlp", "transformer")


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
                   layers: int, heads: int, dropout: float) -> nn.Module:
    if kind == "linear":
        return LinearExporter(in_dim, out_dim)
    if kind == "mlp":
        return MLPExporter(in_dim, out_dim, hidden_dim, layers, dropout)
    if kind == "transformer":
        return TransformerExporter(in_dim, out_dim, memory_dim, hidden_dim, layers, heads, dropout)
    raise ValueError(f"--exporter-type {kind!r}: choose one of {', '.join(EXPORTER_TYPES)}")


def nearest_rows(vectors: Tensor, table: Tensor, chunk: int = 4096) -> Tensor:
    """Index of the nearest (L2) row of ``table`` for each vector: the token an
    exported embedding 'means' to the MT model. Chunked to bound memory on big vocabularies."""
    out = []
    table = table.float()
    sq = (table * table).sum(-1)
    for part in vectors.float().split(chunk):
        # ||v - t||^2 = ||v||^2 - 2 v.t + ||t||^2; ||v||^2 does not change the argmin
        out.append((sq.unsqueeze(0) - 2 * part @ table.t()).argmin(-1))
    return torch.cat(out) if out else vectors.new_zeros(0, dtype=torch.long)
