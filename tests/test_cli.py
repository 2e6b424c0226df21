"""The plugin as a user meets it: stock fairseq-train / fairseq-generate with
--user-dir, then fairseq-exporter-score."""

import json
import subprocess
import sys

import torch

import fairseq_exporter  # noqa: F401  (the checkpoint allowlist)
from fairseq_exporter.generate_output import read_generate_output
from tiny_cascade import run, weights


def _train(cascade, user_dir, save_dir, *extra):
    return run(["fairseq_cli.train", str(cascade["s2t"]), "--user-dir", user_dir,
                "--task", "speech_to_text_exporter", "--config-yaml", "config_st.yaml",
                "--train-subset", "train", "--valid-subset", "dev",
                "--arch", "exporter", "--criterion", "exporter",
                "--asr-checkpoint", str(cascade["asr"]), "--mt-checkpoint", str(cascade["mt"]),
                "--optimizer", "adam", "--lr", "0.001", "--max-tokens", "4000", "--max-update", "4",
                "--save-dir", str(save_dir), "--no-epoch-checkpoints", "--no-progress-bar",
                "--log-format", "simple", "--log-interval", "1", "--num-workers", "0", "--seed", "1",
                *extra])


def _generate(cascade, user_dir, ckpt, results, *extra):
    """fairseq-generate into ``results`` (--results-path), or to stdout when it is None."""
    return run(["fairseq_cli.generate", str(cascade["s2t"]), "--user-dir", user_dir,
                "--task", "speech_to_text_exporter", "--config-yaml", "config_st.yaml",
                "--gen-subset", "test", "--path", str(ckpt), "--beam", "3", "--max-tokens", "4000",
                *(("--results-path", str(results)) if results is not None else ()), *extra])


def _lines(path, prefix):
    """A generate output's texts of one kind, read with the task's transcripts file beside it."""
    field = {"S-": "source", "ASR-": "asr", "T-": "reference", "D-": "detok_hypothesis"}[prefix]
    records = read_generate_output(path).values()
    return [getattr(r, field) for r in records if getattr(r, field) is not None]


def test_train_generate_score_through_the_fairseq_clis(cascade, user_dir, tmp_path):
    save = tmp_path / "stage2"
    proc = _train(cascade, user_dir, save, "--freeze-mt", "--asr-weight", "0.5")
    log = proc.stdout + proc.stderr
    for key in ("ast_loss=", "l2=", "recovery=", "asr_loss="):
        assert key in log, f"training log lacks {key}"
    ckpt = save / "checkpoint_last.pt"

    # the frozen MT model is bit-identical to the MT checkpoint it came from
    trained = weights(ckpt)
    for k, v in weights(cascade["mt"]).items():
        mapped = k.replace("encoder.", "encoder.mt_encoder.", 1) if k.startswith("encoder.") else k
        if mapped in trained:
            assert torch.equal(trained[mapped], v), k
    assert sum(k.startswith("encoder.mt_encoder.") for k in trained) > 0

    n_test = len(cascade["s2t"].joinpath("test.tsv").read_text().splitlines()) - 1
    outputs = {}
    for coupling in ("exporter", "onebest", "reference"):
        results = tmp_path / f"gen-{coupling}"
        _generate(cascade, user_dir, ckpt, results, "--coupling", coupling)
        out = results / "generate-test.txt"
        # every utterance: reference transcript, ASR 1-best, reference and hypothesis translation
        for prefix in ("S-", "ASR-", "T-", "D-"):
            assert len(_lines(out, prefix)) == n_test, (prefix, out.read_text()[:2000])
        outputs[coupling] = out
    # one ASR: the same 1-best whichever way the MT reads it
    assert sorted(_lines(outputs["exporter"], "ASR-")) == sorted(_lines(outputs["onebest"], "ASR-"))
    # without --results-path everything goes to stdout, in one stream the scorer reads alike
    stdout = tmp_path / "stdout.txt"
    stdout.write_text(_generate(cascade, user_dir, ckpt, None, "--coupling", "onebest").stdout)
    assert read_generate_output(stdout) == read_generate_output(outputs["onebest"])

    score = subprocess.run([sys.executable, "-m", "fairseq_exporter.cli.score", str(outputs["exporter"]),
                            str(outputs["onebest"]), "--json", str(tmp_path / "score.json")],
                           capture_output=True, text=True)
    assert score.returncode == 0, score.stderr
    figures = json.loads((tmp_path / "score.json").read_text())
    assert figures["n"] == n_test
    assert figures["wer"] >= 0 and 0 <= figures["bleu"] <= 100
    assert "p_bleu" in figures and "BLEU" in score.stdout


def test_stage1_trains_only_the_exporter(cascade, user_dir, tmp_path):
    save = tmp_path / "stage1"
    proc = _train(cascade, user_dir, save, "--freeze-asr", "--freeze-mt", "--ast-weight", "0")
    log = proc.stdout + proc.stderr
    assert "l2=" in log and "ast_loss=" not in log
    trained = torch.load(save / "checkpoint_last.pt")["model"]
    for k, v in weights(cascade["asr"]).items():
        assert torch.equal(trained["encoder.asr." + k], v), k


def test_conformer_asr_with_transformer_exporter(cascade, user_dir, tmp_path):
    """s2t_conformer ASR checkpoints couple too, and the transformer exporter (cross-attention
    to the speech encoder) trains and decodes through the CLIs."""
    conformer = tmp_path / "conformer"
    run(["fairseq_cli.train", str(cascade["s2t"]), "--task", "speech_to_text", "--config-yaml", "config_asr.yaml",
         "--train-subset", "train_asr", "--valid-subset", "dev_asr", "--arch", "s2t_conformer",
         "--encoder-layers", "1", "--decoder-layers", "1", "--encoder-embed-dim", "32", "--decoder-embed-dim", "32",
         "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim", "64", "--encoder-attention-heads", "2",
         "--decoder-attention-heads", "2", "--conv-channels", "32", "--depthwise-conv-kernel-size", "3",
         "--criterion", "label_smoothed_cross_entropy", "--optimizer", "adam", "--lr", "1e-3",
         "--max-tokens", "4000", "--max-update", "2", "--save-dir", str(conformer), "--no-progress-bar",
         "--num-workers", "0", "--no-epoch-checkpoints"])
    save = tmp_path / "exporter"
    _train(dict(cascade, asr=conformer / "checkpoint_best.pt"), user_dir, save, "--freeze-mt",
           "--exporter-type", "transformer", "--exporter-hidden-dim", "32", "--onebest-max-len", "10")
    _generate(cascade, user_dir, save / "checkpoint_last.pt", tmp_path / "gen", "--onebest-max-len", "10",
              "--max-len-b", "10")
    n_test = len(cascade["s2t"].joinpath("test.tsv").read_text().splitlines()) - 1
    assert len(_lines(tmp_path / "gen" / "generate-test.txt", "ASR-")) == n_test


def test_asr_lines_follow_dictionary_string():
    """The ASR- lines format token ids as Dictionary.string does on the unpadded row (no
    </s> or <s>; <unk> kept), without walking a tensor."""
    from types import SimpleNamespace

    from fairseq.data import Dictionary

    from fairseq_exporter.tasks.speech_to_text_exporter import SpeechToTextExporterTask

    d = Dictionary()
    ids = [d.add_symbol(w) for w in ("▁the", "▁bank", "s")]
    row = [d.bos(), ids[0], d.unk(), ids[1], ids[2], d.eos(), d.pad(), d.pad()]
    task = SimpleNamespace(src_dict=d, src_bpe=None, src_tokenizer=None)
    text = SpeechToTextExporterTask._detokenize_source(task, row)
    assert text == d.string(torch.tensor(row[:-2])) == "▁the <unk> ▁bank s"
