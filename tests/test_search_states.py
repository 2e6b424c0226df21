"""The greedy 1-best search keeps the ASR decoder states it computed, so decoding with
the exporter runs the ASR decoder once (no second, teacher-forced pass)."""

import torch

from exporter_setup import build, first_batch
from fairseq_exporter.models import coupling


def test_search_keeps_the_teacher_forced_states_of_its_1best(cascade, monkeypatch):
    _, task, model, _ = build(cascade, "--freeze-asr", "--freeze-mt")
    model.eval()
    sample = first_batch(task)
    with torch.no_grad():
        recognition = model.encoder.recognize(**sample["net_input"])
        teacher_forced = model.encoder.token_states(recognition)
        words = recognition.onebest.tokens.ne(task.transcript_dictionary.pad())
        torch.testing.assert_close(recognition.token_states[words], teacher_forced[words], rtol=1e-4, atol=1e-5)

        # and the exporter reads them: no teacher-forced decoder pass while translating
        calls = []
        monkeypatch.setattr(coupling, "teacher_forced_states", lambda *a, **k: calls.append(1))
        model.encoder.export(recognition)
        assert not calls


def test_training_asr_still_gets_its_gradient_through_a_teacher_forced_pass(cascade):
    _, task, model, _ = build(cascade, "--freeze-mt")
    model.train()
    recognition = model.encoder.recognize(**first_batch(task)["net_input"])
    assert recognition.token_states is None  # the search runs without gradient
    assert model.encoder.export(recognition).requires_grad
