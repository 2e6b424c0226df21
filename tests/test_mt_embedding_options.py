"""The seam the method relies on: fairseq's TransformerEncoder applies embed_scale,
positions, layernorm_embedding and dropout to `token_embeddings` exactly as to its own
lookup, so the exporter's L2 target is the *raw* embedding row whatever the MT's embedding
options are."""

from argparse import Namespace

import pytest
import torch
from fairseq.data import Dictionary
from fairseq.models.transformer import TransformerModel, base_architecture

OPTIONS = {
    "scaled, sinusoidal": {},
    "no-scale-embedding": {"no_scale_embedding": True},
    "learned positions": {"encoder_learned_pos": True, "decoder_learned_pos": True},
    "layernorm-embedding": {"layernorm_embedding": True},
    "shared embeddings": {"share_all_embeddings": True},
}


def _tiny_mt(**options):
    d = Dictionary()
    for w in "a b c d e f g h".split():
        d.add_symbol(w)
    args = Namespace(encoder_layers=1, decoder_layers=1, encoder_embed_dim=16, decoder_embed_dim=16,
                     encoder_ffn_embed_dim=32, decoder_ffn_embed_dim=32, encoder_attention_heads=2,
                     decoder_attention_heads=2, max_source_positions=64, max_target_positions=64,
                     **options)
    base_architecture(args)
    task = Namespace(source_dictionary=d, target_dictionary=d)
    model = TransformerModel.build_model(args, task)
    with torch.no_grad():  # layernorm/positions away from their trivial init, so the test can fail
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval(), d


@pytest.mark.parametrize("name", list(OPTIONS))
def test_raw_embedding_rows_reproduce_the_lookup(name):
    torch.manual_seed(0)
    model, d = _tiny_mt(**OPTIONS[name])
    tokens = torch.tensor([[4, 5, 6, d.eos()], [7, 8, d.eos(), d.pad()]])
    lengths = tokens.ne(d.pad()).sum(1)
    rows = model.encoder.embed_tokens.weight[tokens]
    with torch.no_grad():
        lookup = model.encoder(tokens, src_lengths=lengths)["encoder_out"][0]
        exported = model.encoder(tokens, src_lengths=lengths, token_embeddings=rows)["encoder_out"][0]
        scaled = model.encoder(tokens, src_lengths=lengths,
                               token_embeddings=rows * 1.01)["encoder_out"][0]
    mask = tokens.ne(d.pad()).t().unsqueeze(-1)
    assert torch.equal(lookup * mask, exported * mask)
    assert not torch.allclose(lookup * mask, scaled * mask)
