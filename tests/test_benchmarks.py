"""Each benchmark script runs end to end (on the tiny cascade, so its figures mean
nothing); the real figures are in benchmarks/README.md."""

import importlib
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO
from exporter_setup import build

BENCH = REPO / "benchmarks"


def _work(cascade, tmp_path):
    """The toy recipe's work-dir layout on the tiny cascade: stage1 = stage2 = an untrained
    ctc-source exporter model, stage1-decoder = stage2-decoder = an untrained decoder-source
    one, saved in-process (a fairseq-train run would add its start-up time)."""
    import torch
    from omegaconf import OmegaConf

    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    (work / "data" / "st").symlink_to(cascade["s2t"])
    (work / "mt-bin").symlink_to(cascade["mt_bin"])
    for name in ("asr", "mt"):
        (work / name).mkdir()
        (work / name / "checkpoint_best.pt").symlink_to(cascade[name])
    models = {source: build(cascade, "--freeze-asr", "--freeze-mt", "--exporter-source", source)
              for source in ("ctc", "decoder")}
    for name in ("stage1", "stage2", "stage1-decoder", "stage2-decoder"):
        cfg, _, model, _ = models["decoder" if name.endswith("-decoder") else "ctc"]
        (work / name).mkdir()
        torch.save({"cfg": OmegaConf.to_container(cfg), "model": model.state_dict(), "args": None,
                    "optimizer_history": [{"criterion_name": "ExporterCriterion", "optimizer_name": "Adam",
                                           "lr_scheduler_state": {"best": None}, "num_updates": 0}],
                    "extra_state": {"train_iterator": {"epoch": 0}}},
                   work / name / "checkpoint_best.pt")
    return work


def _script(name, *args):
    proc = subprocess.run([sys.executable, str(BENCH / name), *map(str, args)], capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS="1"), cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout


def _in_process(name, monkeypatch, capsys, *args):
    """main() of a script that needs no process of its own (saves a fairseq start-up)."""
    monkeypatch.syspath_prepend(str(BENCH))
    module = importlib.import_module(name)
    monkeypatch.setattr(sys, "argv", [name, *map(str, args)])
    module.main()
    return capsys.readouterr().out


def test_benchmark_scripts_print_their_tables(cascade, tmp_path, monkeypatch, capsys):
    """(cascade_vs_two_process.py is left out: four fairseq start-ups; it runs only stock CLIs)"""
    work = _work(cascade, tmp_path)
    for model in ("stage2-decoder", "stage2"):
        out = _in_process("decode_floor", monkeypatch, capsys, "--work", work, "--model", model, "--rounds", "1",
                          "--max-tokens", "4000", "--onebest-max-len", "12", "--scratch", tmp_path / "s1")
        assert "cascade, --coupling exporter" in out
        runs = out.split("1-best identical to the floor's in ")[1].split()[0].split("/")
        assert runs[0] == runs[1], out  # the floor's ASR search is the cascade's 1-best
    for source in ("ctc", "decoder"):
        out = _in_process("train_step", monkeypatch, capsys, "--work", work, "--updates", "1", "--max-tokens", "4000",
                          "--onebest-max-len", "12", "--no-memory", "--scratch", tmp_path / "s2",
                          "--exporter-source", source)
        assert f"--exporter-source {source}" in out and "stage-2 / parts" in out
    # through fairseq-train: the cache is filled in epoch 1 and read in epoch 2
    out = _script("onebest_cache_epochs.py", "--work", work, "--utterances", "40", "--max-tokens", "4000",
                  "--onebest-max-len", "12", "--scratch", tmp_path / "s3")
    assert "stage 1, --onebest-cache" in out


def test_scaling_benchmark_prints_its_tables(cascade, tmp_path):
    """benchmarks/scaling.py --quick: every part runs (loading, the cache at dim 512,
    stage 1 + fairseq-generate, the two CTC searches) and the batched CTC
    search gives the per-utterance 1-best."""
    out = _script("scaling.py", "--quick", "--models", cascade["root"], "--scratch", tmp_path / "scaling")
    assert "loading and --onebest-cache (state dim 512)" in out and "growth k (~N^k)" in out
    assert "epoch 2 / epoch 1" in out and "generate s per 1k" in out
    same = out.split("same 1-best and segments in ")[1].split()[0].split("/")
    assert same[0] == same[1], out


def test_lm_memory_counts_llama_3_8b_and_reads_a_config(tmp_path, monkeypatch, capsys):
    """benchmarks/lm_memory.py: Llama 3.1 8B's parameter count is Meta's (8,030,261,248); a
    config.json works out the same table as the preset it equals; checkpointing lowers the total."""
    import json

    monkeypatch.syspath_prepend(str(BENCH))
    lm_memory = importlib.import_module("lm_memory")
    preset = lm_memory.PRESETS["llama-3.1-8b"]
    assert lm_memory.llm_parameters(preset) == 8_030_261_248
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**preset, "model_type": "llama"}))
    lm_memory.main(["--preset", "llama-3.1-8b"])
    from_preset = capsys.readouterr().out
    lm_memory.main(["--lm-config", str(config)])
    assert capsys.readouterr().out == from_preset
    with_ckpt, without = from_preset.rsplit("**", 2)[-2].split(" / ")
    assert float(with_ckpt) < float(without)


def test_cpu_pins_runs_each_setting_and_shows_its_hash_and_cost():
    """benchmarks/cpu_pins.py: the workload under the defaults, each pin and all of them, each in
    its own process; the defaults are the time reference."""
    out = _script("cpu_pins.py", "--threads", "1", "--updates", "2", "--rounds", "1", "--width", "16")
    rows = [line for line in out.splitlines() if line.startswith("| 1 |")]
    assert len(rows) in (2, 6), out  # a CPU without AVX2 is not pinned: the defaults and the generic path
    assert rows[0].startswith("| 1 | library defaults |") and rows[0].endswith("| 1.00x |")
    assert all(len(row.split("`")[1]) == 16 for row in rows)


def test_hf_mt_backend_benchmark_prints_both_measurements(tmp_path, monkeypatch, capsys):
    """benchmarks/hf_mt_backend.py --quick (a tiny Marian and its ASR, built here): the table
    holds fairseq-generate's path against the user's cascade, greedy and beam 4, with the goal,
    and the stage-2 step against the MT's own forward + backward."""
    import pytest

    pytest.importorskip("transformers")
    out = _in_process("hf_mt_backend", monkeypatch, capsys, "--quick", "--work", tmp_path / "hf-mt")
    assert "goal: fairseq-generate's path <= 1.05x the user's cascade" in out
    for beam in (1, 4):
        for coupling in ("onebest", "exporter"):
            assert f"fairseq-generate --coupling {coupling}, beam {beam}" in out, out
        assert f"user's cascade: ASR search, transcripts, tokenizer(), generate(), beam {beam}" in out
    assert "<= 1.05x: " in out
    assert "stage-2 step (ASR + 1-best + exporter + MT, fwd + bwd)" in out
    assert "its back-end: exporter + MT, fwd + bwd" in out and "the MT's own fwd + bwd" in out
    same = out.split("same translations ")[1].split(")")[0].split("/")
    assert same[0] == same[1], out  # --coupling onebest is the user's cascade
