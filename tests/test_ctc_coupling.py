"""The CTC exporter source and the posterior coupling on real (tiny) fairseq models:
1. --exporter-source ctc: the 1-best is the CTC head's best path, and with the exporter
   output equal to the MT embedding rows of that 1-best the coupled system *is* the
   (CTC) 1-best cascade;
2. --coupling posterior with a one-hot distribution *is* the 1-best cascade, for either
   source, and a sharp temperature on the real ASR scores gets there;
3. an ASR checkpoint without a CTC head is refused with an error naming --ctc-weight."""

import pytest
import torch
from exporter_setup import build, first_batch
from test_coupling import _generate
from test_ctc_segments import greedy_path

from fairseq_exporter.models.ctc import ctc_log_probs, frame_lengths
from fairseq_exporter.models.exporter import nearest_rows


@pytest.fixture(scope="module")
def built(cascade):
    """For each source: the same checkpoints built with --coupling exporter and with
    --coupling onebest, and one test batch with its recognition (shared, so both see
    the same 1-best). The coupling is a task option: tests switch ``encoder.coupling``."""
    out = {}
    for source in ("decoder", "ctc"):
        torch.manual_seed(0)
        _, task, model, _ = build(cascade, "--exporter-source", source)
        _, _, onebest_model, _ = build(cascade, "--exporter-source", source, "--coupling", "onebest")
        model.eval(), onebest_model.eval()
        sample = first_batch(task)
        with torch.no_grad():
            recognition = model.encoder.recognize(**sample["net_input"])
        out[source] = (task, model, onebest_model, sample, recognition)
    return out


@pytest.fixture
def models(built, monkeypatch):
    """``built[source]`` with the coupling and temperature a test sets undone after it."""
    def get(source, coupling="exporter", temperature=1.0):
        task, model, onebest_model, sample, recognition = built[source]
        monkeypatch.setattr(model.encoder, "coupling", coupling)
        monkeypatch.setattr(model.encoder, "posterior_temperature", temperature)
        return task, model, onebest_model, sample, recognition
    return get


def _same_translations(task, model, onebest_model, sample, recognition, beam):
    coupled = _generate(task, model, sample, beam, recognition)
    plain = _generate(task, onebest_model, sample, beam, recognition)
    assert len(coupled) == len(sample["id"])
    for c, p in zip(coupled, plain):
        assert torch.equal(c[0]["tokens"], p[0]["tokens"])
        assert torch.equal(c[0]["positional_scores"], p[0]["positional_scores"])


def test_ctc_onebest_is_the_best_path_of_the_ctc_head(models):
    task, model, _, _, recognition = models("ctc")
    d = task.transcript_dictionary
    lprobs = ctc_log_probs(model.encoder.asr.encoder.ctc_proj, recognition.asr_encoder_out)
    torch.testing.assert_close(lprobs, recognition.ctc_lprobs)
    onebest, segments = recognition.onebest.tokens, recognition.onebest.segments
    assert segments.shape == (*onebest.shape, 2)
    for b, n in enumerate(frame_lengths(recognition.asr_encoder_out).tolist()):
        labels, _ = greedy_path(lprobs[:n, b], d.bos())
        row = onebest[b][onebest[b].ne(d.pad())].tolist()
        assert row == [t for t in labels if t not in (d.eos(), d.pad())] + [d.eos()]
        assert (segments[b, : len(row), 1] > segments[b, : len(row), 0]).all()
    assert onebest.ne(d.pad()).sum() > onebest.size(0)  # the trained head emits tokens


@pytest.mark.parametrize("beam", [1, 4])
def test_ctc_exporter_equal_to_embeddings_reproduces_ctc_onebest(models, monkeypatch, beam):
    task, model, onebest_model, sample, recognition = models("ctc")
    table = model.encoder.embedding_table()
    monkeypatch.setattr(model.encoder, "export", lambda rec: table[rec.onebest.tokens])
    _same_translations(task, model, onebest_model, sample, recognition, beam)


@pytest.mark.parametrize("source", ["decoder", "ctc"])
def test_posterior_one_hot_is_the_onebest_cascade(models, monkeypatch, source):
    task, model, onebest_model, sample, recognition = models(source, "posterior")
    tokens = recognition.onebest.tokens
    vocab = len(task.transcript_dictionary)
    one_hot = torch.full((*tokens.shape, vocab), float("-inf")).scatter(-1, tokens.unsqueeze(-1), 0.0)
    monkeypatch.setattr(model.encoder, "posterior_scores", lambda rec: one_hot)
    torch.testing.assert_close(model.encoder.posterior_embeddings(recognition),
                               model.encoder.embedding_table()[tokens], rtol=0, atol=0)
    _same_translations(task, model, onebest_model, sample, recognition, beam=1)


@pytest.mark.parametrize("source", ["decoder", "ctc"])
def test_sharp_posterior_of_the_asr_recovers_the_onebest_rows(models, source):
    """The ASR's own scores have the 1-best token as argmax at every position (greedy:
    the teacher-forced decoder; CTC: each token wins every frame of its segment), so a
    low temperature turns the posterior coupling into the 1-best cascade's input."""
    task, model, _, _, recognition = models(source, "posterior", temperature=1e-3)
    d = task.transcript_dictionary
    tokens = recognition.onebest.tokens
    real = tokens.ne(d.pad())
    with torch.no_grad():
        scores = model.encoder.posterior_scores(recognition)
        mixed = model.encoder.posterior_embeddings(recognition)
    assert torch.equal(scores.argmax(-1)[real], tokens[real])
    table = model.encoder.embedding_table()
    torch.testing.assert_close(mixed[real], table[tokens][real], rtol=1e-4, atol=1e-4)


def test_posterior_coupling_trains_the_asr_through_a_frozen_mt(cascade):
    torch.manual_seed(0)
    _, task, model, criterion = build(cascade, "--exporter-source", "ctc", "--coupling", "posterior",
                                      "--freeze-mt", "--l2-weight", "0", "--asr-weight", "0.3")
    model.train()
    asr = model.encoder.asr
    # what no loss reaches is out of training (DDP): the ctc source never runs the ASR
    # decoder, and the posterior coupling never runs the exporter
    assert not any(p.requires_grad for p in asr.decoder.parameters())
    assert not any(p.requires_grad for p in model.encoder.exporter.parameters())
    assert asr.encoder.ctc_proj.weight.requires_grad
    sample = first_batch(task, split="train", max_sentences=8)
    loss, _, log = criterion(model, sample)
    assert {"ast_loss", "l2_sum", "recovered", "asr_loss"} <= set(log)
    loss.backward()
    assert model.encoder.asr.encoder.ctc_proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.encoder.exporter.parameters())
    assert all(p.grad is None for p in model.decoder.parameters())


def test_asr_without_ctc_head_is_refused_naming_ctc_weight(cascade, tmp_path):
    state = torch.load(cascade["asr"])
    state["model"] = {k: v for k, v in state["model"].items() if not k.startswith("encoder.ctc_proj.")}
    state["cfg"]["model"].ctc_weight = 0.0
    no_ctc = tmp_path / "asr_no_ctc.pt"
    torch.save(state, no_ctc)
    with pytest.raises(ValueError, match=r"--exporter-source ctc .*asr_no_ctc.pt \(arch s2t_transformer\) "
                                         r"has none.*--ctc-weight"):
        build(dict(cascade, asr=no_ctc), "--exporter-source", "ctc")
    build(dict(cascade, asr=no_ctc))  # the decoder source does not need one


def test_ctc_prefix_beam_onebest_is_a_valid_mt_source(models, monkeypatch):
    task, model, _, sample, greedy = models("ctc")
    monkeypatch.setattr(model.encoder.search, "beam", 4)  # what --onebest-beam 4 builds
    with torch.no_grad():
        beam = model.encoder.recognize(**sample["net_input"])
        exported = model.encoder.export(beam)
    d = task.transcript_dictionary
    tokens, segments = beam.onebest.tokens, beam.onebest.segments
    lengths = tokens.ne(d.pad()).sum(1)
    assert torch.equal(tokens[torch.arange(len(tokens)), lengths - 1], torch.full_like(lengths, d.eos()))
    assert tokens.eq(d.eos()).sum() == len(tokens) and not tokens.eq(d.bos()).any()
    real = tokens.ne(d.pad())
    assert (segments[..., 1] > segments[..., 0])[real].all()
    assert not exported.isnan().any()
    # on a confident head the prefix beam mostly agrees with the best path
    same = sum(torch.equal(a[a.ne(d.pad())], b[b.ne(d.pad())])
               for a, b in zip(beam.onebest.tokens, greedy.onebest.tokens))
    assert same >= len(tokens) // 2


def test_vocab_exporter_on_the_ctc_source_starts_at_the_ctc_onebest(built, cascade):
    """--exporter-type vocab starts from the CTC head (blank left out): before training,
    each exported vector is nearest the MT row of its CTC 1-best token."""
    task, _, _, _, recognition = built["ctc"]
    _, _, model, _ = build(cascade, "--exporter-source", "ctc", "--exporter-type", "vocab")
    model.eval()
    with torch.no_grad():
        exported = model.encoder.export(recognition)
    tokens = recognition.onebest.tokens
    real = tokens.ne(task.transcript_dictionary.pad())
    nearest = nearest_rows(exported[real], model.encoder.embedding_table())
    assert nearest.eq(tokens[real]).float().mean() >= 0.95
