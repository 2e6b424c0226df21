"""The paper's two structural claims, on real (tiny) fairseq models:
1. with the exporter output equal to the MT embedding rows of the 1-best, the coupled
   system *is* the 1-best cascade (translations and scores identical);
2. a frozen MT model still passes the translation loss's gradient to the ASR model."""

import copy
from argparse import Namespace

import pytest
import torch
from exporter_setup import build, first_batch
from fairseq import utils
from fairseq_exporter.models.exporter import VocabularyExporter


def _generate(task, model, sample, beam, recognition):
    gen_args = Namespace(beam=beam, max_len_a=0, max_len_b=50, min_len=1, prefix_size=0, eos_token=None)
    generator = task.build_generator([model], gen_args)
    net_input = dict(sample["net_input"], recognition=recognition)
    return generator.generate([model], {**sample, "net_input": net_input})


def _exporter_and_onebest_models(cascade):
    """The same checkpoints built with --coupling exporter and --coupling onebest, and one
    test batch with its ASR recognition (shared, so both couplings see the same 1-best)."""
    torch.manual_seed(0)
    _, task, model, _ = build(cascade, "--coupling", "exporter")
    _, _, onebest_model, _ = build(cascade, "--coupling", "onebest")
    model.eval(), onebest_model.eval()
    sample = first_batch(task)
    with torch.no_grad():
        recognition = model.encoder.recognize(**sample["net_input"])
    return task, model, onebest_model, sample, recognition


@pytest.mark.parametrize("beam", [1, 4])
def test_exporter_equal_to_embeddings_reproduces_onebest(cascade, beam):
    task, model, onebest_model, sample, recognition = _exporter_and_onebest_models(cascade)
    table = model.encoder.embedding_table()
    # the ideal exporter: exactly the MT's raw embedding rows of the 1-best
    model.encoder.export = lambda rec: table[rec.onebest.tokens]
    coupled = _generate(task, model, sample, beam, recognition)
    plain = _generate(task, onebest_model, sample, beam, recognition)
    assert len(coupled) == len(sample["id"])
    for c, p in zip(coupled, plain):
        assert torch.equal(c[0]["tokens"], p[0]["tokens"])
        assert torch.equal(c[0]["positional_scores"], p[0]["positional_scores"])
        assert c[0]["score"] == p[0]["score"]


def test_untrained_exporter_changes_translation_scores(cascade):
    """The guarantee test above must be able to fail: a random exporter differs."""
    task, model, onebest_model, sample, recognition = _exporter_and_onebest_models(cascade)
    coupled = _generate(task, model, sample, 1, recognition)
    plain = _generate(task, onebest_model, sample, 1, recognition)
    assert any(c[0]["score"] != p[0]["score"] for c, p in zip(coupled, plain))


def test_frozen_mt_still_passes_gradient_to_asr(cascade):
    torch.manual_seed(0)
    _, task, model, criterion = build(cascade, "--freeze-mt", "--l2-weight", "0")
    model.train()
    sample = first_batch(task, split="train", max_sentences=8)
    mt_before = copy.deepcopy({k: v for k, v in model.state_dict().items()
                               if k.startswith(("encoder.mt_encoder.", "decoder."))})
    asr_before = {k: v.clone() for k, v in model.encoder.asr.state_dict().items()}
    exporter_before = {k: v.clone() for k, v in model.encoder.exporter.state_dict().items()}

    loss, _, log = criterion(model, sample)
    assert "l2_sum" in log and "ast_loss" in log
    loss.backward()
    mt_params = list(model.encoder.mt_encoder.parameters()) + list(model.decoder.parameters())
    assert all(not p.requires_grad and p.grad is None for p in mt_params)
    assert not model.decoder.training and not model.encoder.mt_encoder.training
    asr_grad = sum(float(p.grad.abs().sum()) for p in model.encoder.asr.encoder.parameters()
                   if p.grad is not None)
    assert asr_grad > 0, "the translation loss alone must reach the ASR encoder"

    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    optimizer.step()
    after = model.state_dict()
    for k, v in mt_before.items():
        assert torch.equal(after[k], v), f"frozen MT parameter {k} changed"
    assert any(not torch.equal(v, model.encoder.asr.state_dict()[k]) for k, v in asr_before.items())
    assert any(not torch.equal(v, model.encoder.exporter.state_dict()[k])
               for k, v in exporter_before.items())


def test_l2_loss_is_mean_squared_distance_to_raw_embedding_rows(cascade):
    _, task, model, criterion = build(cascade, "--ast-weight", "0")
    model.eval()
    sample = first_batch(task, max_sentences=4)
    with torch.no_grad():
        _, _, log = criterion(model, sample)
        rec = model.encoder.recognize(**sample["net_input"])
        exported = model.encoder.export(rec)
    tokens = rec.onebest.tokens
    mask = tokens.ne(task.transcript_dictionary.pad())
    rows = model.encoder.mt_encoder.embed_tokens.weight[tokens]  # raw, not scaled by embed_scale
    expected = ((exported - rows) ** 2).sum(-1)[mask].sum()
    assert log["onebest_tokens"] == int(mask.sum())
    assert torch.allclose(log["l2_sum"], expected, rtol=1e-5)
    assert "ast_loss" not in log  # stage 1 never runs the MT decoder


def test_frozen_asr_stays_in_eval_mode(cascade):
    _, _, model, _ = build(cascade, "--freeze-asr", "--freeze-mt")
    model.train()
    assert not model.encoder.asr.training and model.encoder.exporter.training
    assert not any(p.requires_grad for p in model.encoder.asr.parameters())
    assert all(p.requires_grad for p in model.encoder.exporter.parameters())
    assert utils.item(sum(p.numel() for p in model.parameters() if p.requires_grad)) == \
        sum(p.numel() for p in model.encoder.exporter.parameters())


def test_vocab_exporter_starts_at_the_asr_posterior_times_the_mt_table(cascade):
    """Before training, --exporter-type vocab outputs softmax(SHARPNESS x ASR logits) @ raw MT table for
    each 1-best token; sharpened to one-hot it is exactly the 1-best cascade's input."""
    torch.manual_seed(0)
    _, task, model, _ = build(cascade, "--exporter-type", "vocab", "--freeze-asr", "--freeze-mt")
    model.eval()
    sample = first_batch(task)
    with torch.no_grad():
        recognition = model.encoder.recognize(**sample["net_input"])
        exported = model.encoder.export(recognition)
        tokens = recognition.onebest.tokens
        asr = model.encoder.asr
        prev = torch.cat([tokens.new_full((tokens.size(0), 1), asr.decoder.dictionary.eos()),
                          tokens[:, :-1]], dim=1)
        logits, _ = asr.decoder(prev, encoder_out=recognition.asr_encoder_out)
        table = model.encoder.embedding_table()
        expected = torch.softmax(VocabularyExporter.SHARPNESS * logits.float(), -1) @ table
        # past a 1-best's end there is no token state to export (the MT zeroes those positions)
        words = tokens.ne(task.transcript_dictionary.pad())
        torch.testing.assert_close(exported[words], expected[words], rtol=1e-4, atol=1e-5)

        # greedy 1-best = argmax of the teacher-forced logits, so a sharp softmax recovers it
        # (</s> is left out: a hypothesis cut at --onebest-max-len ends in a forced </s>)
        real = tokens.ne(task.transcript_dictionary.pad()) & tokens.ne(task.transcript_dictionary.eos())
        assert real.sum() > 10
        assert torch.equal(logits.argmax(-1)[real], tokens[real])
        model.encoder.exporter.scores.weight.mul_(1e4)
        sharp = model.encoder.export(recognition)
        torch.testing.assert_close(sharp[real], table[tokens][real])


@pytest.mark.parametrize("sharp", [True, False])
def test_the_exporter_on_frozen_rows_mixes_only_the_used_columns(sharp, monkeypatch):
    """On an LM's frozen rows the vocab exporter multiplies only the columns its sharpened softmax
    leaves nonzero (most underflow to exactly 0 over a large vocabulary): the same output and
    the same gradients as the dense products; a flat softmax keeps the dense ones."""
    from fairseq_exporter.models import exporter

    torch.manual_seed(0)
    vocab, dim = 2000, 16
    rows = torch.randn(vocab, dim)
    weight = torch.randn(vocab, 8)
    net = VocabularyExporter(8, dim, vocab, 32, 0.0, asr_output_weight=weight if sharp else weight / VocabularyExporter.SHARPNESS,
                             frozen_table=lambda: rows, table_rank=4)
    torch.nn.init.normal_(net.table_down)
    states = torch.randn(3, 5, 8, requires_grad=True)
    padding = torch.zeros(3, 5, dtype=torch.bool)

    def run():
        net.zero_grad(), setattr(states, "grad", None)
        out = net(states, padding)
        out.pow(2).sum().backward()
        return out.detach(), states.grad, net.scores.weight.grad, net.table_down.grad, net.table_up.grad

    taken = []
    real = exporter.used_columns
    monkeypatch.setattr(exporter, "used_columns", lambda *a: taken.append(real(*a)[0].shape[-1]) or real(*a))
    sparse = run()
    monkeypatch.setattr(exporter, "used_columns", lambda *a: a)
    dense = run()
    assert (taken[0] < vocab / 4) == sharp, taken
    for got, want in zip(sparse, dense):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_recovered_rows_is_the_search_s_answer_and_skips_it_for_vectors_near_their_row():
    from fairseq_exporter.models import exporter as exporter_module
    from fairseq_exporter.models.exporter import nearest_rows, recovered_rows, row_separation

    g = torch.Generator().manual_seed(0)
    table = torch.randn(50, 8, generator=g)
    table[7] = table[3]  # two symbols on one row: neither is ever certified
    sq = table.pow(2).sum(-1)
    tokens = torch.randint(0, 50, (200,), generator=g)
    tokens[:4] = torch.tensor([3, 7, 3, 7])
    near = table[tokens] + 0.01 * torch.randn(200, 8, generator=g)  # each by its own row
    far = torch.randn(200, 8, generator=g) * 3  # anywhere
    separation = torch.full((50,), float("nan"))
    known = torch.tensor(sorted({3, 7} | set(tokens.unique()[::2].tolist())))  # the others not known yet: searched
    separation[known] = row_separation(known, table, sq)
    assert separation[3] == 0 and separation[7] == 0
    brute = torch.cdist(table[known], table)
    for i, t in enumerate(known):
        others = torch.cat([brute[i, :t], brute[i, t + 1:]])
        assert separation[t] == pytest.approx(float(others.min()), abs=1e-4)
    searched = []
    real = exporter_module.nearest_rows

    def counting(vectors, *args, **kwargs):
        searched.append(len(vectors))
        return real(vectors, *args, **kwargs)

    exporter_module.nearest_rows = counting
    try:
        for vectors in (near, far):
            assert torch.equal(recovered_rows(vectors, tokens, table, sq, separation),
                               nearest_rows(vectors, table, sq=sq).eq(tokens))
    finally:
        exporter_module.nearest_rows = real
    assert searched[0] < 120 and searched[1] > 150  # near: only the unknown and duplicate rows searched
