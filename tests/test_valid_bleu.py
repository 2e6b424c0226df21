"""--eval-bleu: generation settings from --eval-bleu-args, built once; the statistics a
validation batch logs give the BLEU of its translations and the WER of the ASR 1-best the
text model read (fairseq-exporter-score's WER on the same lines)."""

import pytest
import sacrebleu
import torch

from exporter_setup import build, first_batch


def test_eval_bleu_args_set_the_search_and_each_batch_logs_bleu_statistics(cascade):
    _, task, model, criterion = build(cascade, "--freeze-mt", "--eval-bleu",
                                      "--eval-bleu-args", '{"beam": 2, "max_len_b": 7}')
    generator = task._valid_generator
    assert generator.beam_size == 2 and generator.max_len_b == 7
    sample = first_batch(task, "dev", max_sentences=4)
    model.eval()
    with torch.no_grad():
        _, _, log = task.valid_step(sample, model, criterion)
    assert task._valid_generator is generator  # built once, with the model
    hypos, _ = task._translate(generator, [model], sample)
    pad, bpe = task.tgt_dict.pad(), task._valid_bpe

    def text(tokens):
        words = task.tgt_dict.string(tokens.int(), escape_unk=True)
        return bpe.decode(words) if bpe is not None else words

    hypotheses = [text(h[0]["tokens"]) for h in hypos]
    expected = sacrebleu.corpus_bleu(hypotheses, [[text(t[t.ne(pad)]) for t in sample["target"]]], tokenize="13a")
    assert expected.sys_len > 0
    assert [log[f"_bleu_counts_{i}"] for i in range(4)] == expected.counts
    assert log["_bleu_sys_len"] == expected.sys_len and log["_bleu_ref_len"] == expected.ref_len
    # the 1-best's WER, as the scorer computes it from the ASR- and S- lines
    from fairseq_exporter.cli.score import corpus_wer

    _, recognition = task._translate(generator, [model], sample)
    onebests = [task._detokenize_source(r) for r in recognition.onebest.tokens.tolist()]
    transcripts = [task._detokenize_source(r) for r in sample["net_input"]["src_txt_tokens"].tolist()]
    assert log["_wer_words"] == sum(len(t.split()) for t in transcripts) > 0
    assert 100.0 * log["_wer_edits"] / log["_wer_words"] == pytest.approx(corpus_wer(transcripts, onebests))


def test_valid_wer_is_derived_from_the_summed_edits():
    from fairseq.logging import metrics

    from fairseq_exporter.tasks.valid_bleu import log_wer, wer_statistics

    batches = [wer_statistics(["a b c"], ["a b d"]), wer_statistics(["x"], ["x y z w"])]
    with metrics.aggregate() as agg:
        log_wer(batches)
        assert agg.get_smoothed_values()["wer"] == pytest.approx(100.0 * (1 + 3) / (3 + 4), abs=0.01)


@pytest.mark.parametrize("value", ["{beam: 2}", "[2]"])
def test_eval_bleu_args_that_are_not_a_json_object_are_refused(cascade, value):
    with pytest.raises(ValueError, match=r"--eval-bleu-args: not a JSON object: "):
        build(cascade, "--eval-bleu", "--eval-bleu-args", value)
