"""--exporter-source ctc and --coupling posterior as a user meets them: stock
fairseq-train, then fairseq-generate --path on the saved checkpoint (the source is a
stored model option; the coupling a task option chosen at generate time)."""

import torch

import fairseq_exporter  # noqa: F401  (the checkpoint allowlist)
from test_cli import _generate, _lines, _train


def test_ctc_source_trains_and_generates_with_exporter_and_posterior_coupling(cascade, user_dir, tmp_path):
    n_test = len(cascade["s2t"].joinpath("test.tsv").read_text().splitlines()) - 1
    # stage 2 with the CTC source (--asr-weight: CTC loss on the reference transcript)
    save = tmp_path / "ctc"
    proc = _train(cascade, user_dir, save, "--exporter-source", "ctc", "--exporter-type", "vocab",
                  "--freeze-mt", "--asr-weight", "0.3", "--max-update", "2")
    log = proc.stdout + proc.stderr
    for key in ("ast_loss=", "l2=", "recovery=", "asr_loss="):
        assert key in log, f"training log lacks {key}"
    ckpt = save / "checkpoint_last.pt"
    assert torch.load(ckpt)["cfg"]["model"]["exporter_source"] == "ctc"

    outputs = {}
    for coupling in ("exporter", "posterior"):
        results = tmp_path / f"gen-{coupling}"
        _generate(cascade, user_dir, ckpt, results, "--coupling", coupling, "--posterior-temperature", "0.5")
        outputs[coupling] = results / "generate-test.txt"
        for prefix in ("ASR-", "D-"):
            assert len(_lines(outputs[coupling], prefix)) == n_test
    # one CTC 1-best, whichever way the MT reads it
    assert sorted(_lines(outputs["exporter"], "ASR-")) == sorted(_lines(outputs["posterior"], "ASR-"))
