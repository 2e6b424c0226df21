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


def test_a_generator_that_drives_the_decoder_otherwise_stops_the_search_loudly(cascade, monkeypatch):
    """The recorder's two assumptions about the installed SequenceGenerator (one decoder call
    per step; every row reorder reported): break either and the search raises."""
    import pytest

    from fairseq_exporter.models.search_states import SearchInternalsChanged, StateRecordingDecoder

    _, task, model, _ = build(cascade, "--freeze-asr", "--freeze-mt")
    model.eval()
    sample = first_batch(task)
    with torch.no_grad():
        model.encoder.recognize(**sample["net_input"])  # the installed fairseq: no error
        from fairseq.models import FairseqIncrementalDecoder

        monkeypatch.setattr(StateRecordingDecoder, "reorder_incremental_state_scripting",  # reorders not seen
                            FairseqIncrementalDecoder.reorder_incremental_state_scripting)
        with pytest.raises(SearchInternalsChanged, match="rows where the reported reorders leave"):
            model.encoder.recognize(**sample["net_input"])
        monkeypatch.undo()
        real_forward = StateRecordingDecoder.forward
        calls = []

        def every_other_step(self, *args, **kwargs):  # a generator that skips recording steps
            calls.append(1)
            rows = self._rows
            if len(calls) % 2 == 0:
                self._rows = None
            out = real_forward(self, *args, **kwargs)
            self._rows = rows
            return out

        monkeypatch.setattr(StateRecordingDecoder, "forward", every_other_step)
        with pytest.raises(SearchInternalsChanged):
            model.encoder.recognize(**sample["net_input"])
