"""Bad input through the real CLIs: each case ends in an error that names the file,
utterance or option at fault, or in a counted, logged skip, never in a crash deep in an
epoch or a NaN. (Manifest without src_text, swapped checkpoints, dictionary mismatch and
the crafted pickle are in test_errors.py.)"""

import json
import math
import re
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
from exporter_setup import build, first_batch

from fairseq_exporter.models import pretrained


def _fairseq(module, *args):
    return subprocess.run([sys.executable, "-m", f"fairseq_cli.{module}", *map(str, args)],
                          capture_output=True, text=True)


def _train(cascade, user_dir, data, save_dir, *extra, mt=None):
    return _fairseq("train", data, "--user-dir", user_dir, "--task", "speech_to_text_exporter",
                    "--config-yaml", "config_st.yaml", "--train-subset", "train", "--valid-subset", "dev",
                    "--arch", "exporter", "--criterion", "exporter",
                    "--asr-checkpoint", cascade["asr"], "--mt-checkpoint", mt or cascade["mt"],
                    "--optimizer", "adam", "--lr", "0.001", "--max-tokens", "4000", "--max-update", "2",
                    "--save-dir", save_dir, "--no-epoch-checkpoints", "--no-progress-bar",
                    "--log-format", "simple", "--log-interval", "1", "--num-workers", "0", "--seed", "1",
                    "--data-buffer-size", "0", *extra)


def _data_copy(cascade, dest):
    """Manifests, config and dictionaries of the tiny cascade (the features stay where
    they are: the manifests name them by absolute path)."""
    dest.mkdir()
    for f in cascade["s2t"].iterdir():
        if f.is_file():
            shutil.copy(f, dest / f.name)
    return dest


def _rows(tsv):
    header, *rows = tsv.read_text().splitlines()
    return header.split("\t"), [r.split("\t") for r in rows]


def _write(tsv, header, rows):
    tsv.write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n")


def test_manifest_header_typo_and_missing_tgt_text_name_file_and_columns(cascade, user_dir, tmp_path):
    data = _data_copy(cascade, tmp_path / "s2t")
    tsv = data / "dev.tsv"
    tsv.write_text(tsv.read_text().replace("src_text", "src_txt", 1).replace("tgt_text", "translation", 1))
    proc = _train(cascade, user_dir, data, tmp_path / "out")
    assert proc.returncode != 0
    assert (f"manifest {tsv} lacks column(s) src_text, tgt_text (is 'src_txt' a typo for 'src_text'?)"
            in proc.stderr), proc.stderr[-3000:]
    assert not (tmp_path / "out" / "checkpoint_last.pt").exists()


def _stored_zip_entries(path, entries):
    """A stored (uncompressed) zip as fairseq's S2T recipes write it; returns the
    ``zip:offset:length`` manifest field of each entry."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in entries:
            z.writestr(name, data)
    fields = {}
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            offset = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
            fields[info.filename] = f"{path}:{offset}:{info.file_size}"
    return fields


def test_unreadable_audio_is_named_by_utterance_and_path_before_training(cascade, user_dir, tmp_path):
    data = _data_copy(cascade, tmp_path / "s2t")
    header, rows = _rows(data / "dev.tsv")
    a = header.index("audio")
    npy = tmp_path / "x.npy"
    np.save(npy, np.zeros((16, 80), dtype="float32"))
    zip_path = tmp_path / "fbank80.zip"
    fields = _stored_zip_entries(zip_path, [("good.npy", npy.read_bytes()),
                                            ("text.npy", b"hello, not features at all"),
                                            ("cut.npy", npy.read_bytes())])
    # truncate the zip inside its last entry (a copy that stopped half-way)
    _, offset, length = fields["cut.npy"].rsplit(":", 2)
    with open(zip_path, "r+b") as f:
        f.truncate(int(offset) + int(length) // 2)
    bad = {1: str(tmp_path / "feats" / "missing.npy"), 2: fields["text.npy"], 3: fields["cut.npy"]}
    for i, audio in bad.items():
        rows[i][a] = audio
    rows[0][a] = fields["good.npy"]
    _write(data / "dev.tsv", header, rows)

    proc = _train(cascade, user_dir, data, tmp_path / "out")
    assert proc.returncode != 0
    err = proc.stderr
    assert f"manifest {data / 'dev.tsv'}: 3 of {len(rows)} utterance(s) have unreadable audio" in err, err[-3000:]
    assert f"utterance {rows[1][0]}: {bad[1]}: no such file" in err
    assert f"utterance {rows[2][0]}: {bad[2]}: entry at byte" in err and "neither .npy features nor" in err
    assert f"utterance {rows[3][0]}: {bad[3]}: entry at bytes" in err and "truncated" in err
    assert "train_inner" not in proc.stdout + err  # refused before the first update


@pytest.fixture(scope="module")
def short_mt(cascade, tmp_path_factory):
    """The tiny MT with 4 source positions (sinusoidal: same weights), so the ASR
    1-best of most utterances is too long for it."""
    state = torch.load(cascade["mt"])
    state["cfg"]["model"].max_source_positions = 4
    path = tmp_path_factory.mktemp("short_mt") / "mt4.pt"
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def filtered_run(cascade, user_dir, tmp_path_factory, short_mt):
    """One training run on data with an utterance too short for the ASR (0 frames),
    utterances over --max-source-positions, and an MT too short for most 1-bests."""
    tmp = tmp_path_factory.mktemp("filtered")
    data = _data_copy(cascade, tmp / "s2t")
    header, rows = _rows(data / "train.tsv")
    empty = tmp / "empty.npy"
    np.save(empty, np.zeros((0, 80), dtype="float32"))
    rows.append(["train_empty", str(empty), "0", "the cat", "katze der", "spk0"])
    _write(data / "train.tsv", header, rows)
    max_frames = 40
    n_long = sum(int(r[header.index("n_frames")]) > max_frames for r in rows)
    proc = _train(cascade, user_dir, data, tmp / "out", "--max-source-positions", max_frames, mt=short_mt)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return dict(log=proc.stdout + proc.stderr, n=len(rows), n_long=n_long, save=tmp / "out", data=data)


def test_utterances_the_asr_cannot_take_are_skipped_with_a_count(filtered_run):
    log, n, n_long = filtered_run["log"], filtered_run["n"], filtered_run["n_long"]
    assert n_long > 0
    line = next(l for l in log.splitlines() if "train.tsv: skipped" in l)
    assert f"skipped {n_long + 1} of {n} utterances" in line, line
    assert "1 shorter than 1 frame(s)" in line and "train_empty" in line
    assert f"{n_long} longer than 40 frames (--max-source-positions)" in line


def test_onebest_longer_than_mt_positions_is_cut_and_counted_without_nan(filtered_run):
    log = filtered_run["log"]
    assert "longer than the MT's 4 source positions were cut to fit" in log
    inner = [l for l in log.splitlines() if "train_inner" in l]
    assert len(inner) == 2
    truncated = [int(re.search(r"onebest_truncated=(\d+)", l).group(1)) for l in inner]
    assert all(t > 0 for t in truncated), inner
    losses = [float(re.search(r" loss=([^,]+)", l).group(1)) for l in inner]
    assert all(math.isfinite(x) for x in losses), inner
    assert "nan" not in " ".join(inner).lower()


def test_exporter_checkpoint_with_mt_of_another_embedding_size_names_the_option(
        cascade, user_dir, tmp_path, filtered_run):
    # an MT of embedding size 48 with the same dictionaries (untrained weights suffice)
    state = torch.load(cascade["mt"])
    m = state["cfg"]["model"]
    for key in ("encoder_embed_dim", "decoder_embed_dim", "decoder_input_dim", "decoder_output_dim"):
        setattr(m, key, 48)
    from fairseq.data import Dictionary

    src = Dictionary.load(str(cascade["s2t"] / "dict.en.txt"))
    tgt = Dictionary.load(str(cascade["s2t"] / "dict.de.txt"))
    model = pretrained.build_pretrained_model(json.dumps(vars(m)), src, tgt)
    state["model"] = model.state_dict()
    mt48 = tmp_path / "mt48.pt"
    torch.save(state, mt48)

    stage1 = filtered_run["save"] / "checkpoint_last.pt"
    proc = _train(cascade, user_dir, filtered_run["data"], tmp_path / "out",
                  "--finetune-from-model", stage1, mt=mt48)
    assert proc.returncode != 0
    assert "CheckpointMismatchError" in proc.stderr, proc.stderr[-3000:]
    assert f"in the model built from --mt-checkpoint {mt48}" in proc.stderr
    assert "The MT embedding size is 32 in the checkpoint and 48 in --mt-checkpoint" in proc.stderr
    assert not (tmp_path / "out" / "checkpoint_last.pt").exists()


def test_eos_only_onebest_gives_the_mt_a_valid_input_and_finite_loss(cascade):
    """fairseq's SequenceGenerator (min_len=1) never lets the ASR end at step 0, even
    when it prefers </s> everywhere; an </s>-only 1-best fed in anyway still trains."""
    _, task, model, criterion = build(cascade)
    model.train()
    eos = task.transcript_dictionary.eos()
    out = model.encoder.asr.decoder.output_projection.weight
    with torch.no_grad():
        out[eos] = 50 * out.abs().max()  # </s> is the argmax whatever the state
    batch = first_batch(task, "test", max_sentences=3)
    rec = model.encoder.recognize(**batch["net_input"])
    lengths = rec.onebest.tokens.ne(task.transcript_dictionary.pad()).sum(1)
    assert lengths.min() >= 2, rec.onebest.tokens  # a word, then </s>

    rec.onebest.tokens = torch.full((lengths.numel(), 1), eos, dtype=torch.long)
    net_input = dict(batch["net_input"], recognition=rec)
    loss, _, log = criterion(model, dict(batch, net_input=net_input))
    loss.backward()
    assert torch.isfinite(loss) and log["onebest_tokens"] == lengths.numel()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
