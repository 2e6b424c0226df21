"""examples/own_checkpoints.md, run: its bash blocks in order, with its variables pointing at the
tiny cascade (tests/tiny_cascade.py) and at an ASR trained there on a vocabulary of its own."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fairseq_exporter  # noqa: F401  (the checkpoint allowlist)
from fairseq_exporter.data import s2t_layout
from tiny_cascade import run

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "examples" / "own_checkpoints.md"
TAGGED_BLOCK = re.compile(r"<!-- doc-test: (\w+) -->\n```(\w+)\n(.*?)```", re.DOTALL)
TINY_ASR = ("--arch s2t_transformer --encoder-layers 1 --decoder-layers 1 --encoder-embed-dim 32 "
            "--decoder-embed-dim 32 --encoder-ffn-embed-dim 64 --decoder-ffn-embed-dim 64 "
            "--encoder-attention-heads 2 --decoder-attention-heads 2 --conv-channels 32")


def doc_blocks():
    text = DOC.read_text()
    blocks = {tag: (language, body) for tag, language, body in TAGGED_BLOCK.findall(text)}
    # every fenced block is one the test knows what to do with
    assert text.count("```") == 2 * len(blocks), "an untagged fenced block in the doc"
    return blocks


def fairseq_user_files(cascade, root: Path):
    """What a fairseq MuST-C user has: {split}_asr.tsv and {split}_st.tsv as prep_mustc_data.py
    writes them, and an ASR trained there with a vocabulary of its own (the MT's words in
    alphabetical order, as a vocabulary built apart from the MT's might list them)."""
    en_de = root / "en-de"
    en_de.mkdir(parents=True)
    for split in ("train", "dev"):
        rows = s2t_layout.read_manifest(cascade["s2t"] / f"{split}.tsv")
        for task, text in (("asr", "src_text"), ("st", "tgt_text")):
            s2t_layout.write_manifest(en_de / f"{split}_{task}.tsv",
                                      [(r["id"], r["audio"], r["n_frames"], r[text], r["speaker"]) for r in rows],
                                      s2t_layout.SINGLE_TARGET_COLUMNS)
    mt_symbols = (cascade["mt_bin"] / "dict.en.txt").read_text().splitlines()
    words = sorted(line for line in mt_symbols if not line.startswith("madeupword"))
    (en_de / "dict.asr.txt").write_text("\n".join(words) + "\n")
    (en_de / "config_asr.yaml").write_text("input_channels: 1\ninput_feat_per_channel: 80\nvocab_filename: dict.asr.txt\n")
    run(["fairseq_cli.train", str(en_de), "--task", "speech_to_text", "--config-yaml", "config_asr.yaml",
         "--train-subset", "train_asr", "--valid-subset", "dev_asr", *TINY_ASR.split(),
         "--criterion", "label_smoothed_cross_entropy", "--optimizer", "adam", "--lr", "0.003",
         "--max-tokens", "4000", "--max-update", "8", "--save-dir", str(root / "asr"),
         "--no-epoch-checkpoints", "--no-progress-bar", "--num-workers", "0", "--seed", "1",
         "--user-dir", str(REPO / "fairseq_exporter")])
    return en_de, root / "asr" / "checkpoint_best.pt"


@pytest.fixture(scope="module")
def doc_run(cascade, tmp_path_factory):
    work = tmp_path_factory.mktemp("own-checkpoints")
    fairseq_data, asr = fairseq_user_files(cascade, work / "mustc")
    variables = {
        "FAIRSEQ_DATA": str(fairseq_data), "ASR": str(asr), "ASR_ARCH": TINY_ASR,
        "ASR_FEATURES": str(fairseq_data / "config_asr.yaml"), "MT": str(cascade["mt"]),
        "MT_DATA": str(cascade["mt_bin"]), "MT_SRC_BPE": "none", "MT_TGT_BPE": "none", "DATA": "exporter-data",
        "TRAIN_SIZE": "--max-tokens 4000 --max-update 6 --required-batch-size-multiple 1",
    }
    blocks = doc_blocks()
    doc_variables = re.findall(r"^([A-Z_]+)=", blocks["vars"][1], re.MULTILINE)
    assert set(doc_variables) == set(variables) | {"USER_DIR"}, doc_variables
    # the doc's own USER_DIR line, the test's values for the rest
    user_dir_line = next(line for line in blocks["vars"][1].splitlines() if line.startswith("USER_DIR="))
    prelude = "set -euo pipefail\n" + "".join(f"{k}={_quote(v)}\n" for k, v in variables.items()) + user_dir_line + "\n"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", OMP_NUM_THREADS="1")

    def bash(*tags):
        script = prelude + "".join(blocks[tag][1] for tag in tags)
        return subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True)

    return work, variables, blocks, bash


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def _show(proc):
    return f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"


def test_own_checkpoints_doc_runs_as_written(doc_run):
    work, variables, blocks, bash = doc_run

    # 1-2: joined manifests and configs in the MT's vocabularies
    proc = bash("join", "config")
    assert proc.returncode == 0, _show(proc)
    data = work / variables["DATA"]
    assert len(s2t_layout.read_manifest(data / "train.tsv", s2t_layout.JOINT_COLUMNS)) == 200
    assert (data / "config_st.yaml").exists() and (data / "config_asr.yaml").exists()

    # 3: the check refuses the pair, with the error the doc shows
    proc = bash("check")
    assert proc.returncode != 0, _show(proc)
    (error,) = [line for line in proc.stderr.splitlines() if "DictionaryMismatchError:" in line] or [_show(proc)]
    for name in sorted(("ASR", "FAIRSEQ_DATA", "MT_DATA"), key=lambda n: -len(variables[n])):
        error = error.replace(variables[name], f"${name}")
    assert blocks["error"][0] == "text" and error == blocks["error"][1].strip()

    # 4: the ASR retrained on the MT source vocabulary, from its own encoder
    proc = bash("retrain")
    assert proc.returncode == 0, _show(proc)
    retrained = torch.load(work / "asr-on-mt-vocab" / "checkpoint_best.pt", map_location="cpu")["model"]
    foreign = torch.load(variables["ASR"], map_location="cpu")["model"]
    n_mt_symbols = len((Path(variables["MT_DATA"]) / "dict.en.txt").read_text().splitlines()) + 4
    assert retrained["decoder.embed_tokens.weight"].shape[0] == n_mt_symbols
    key = "encoder.transformer_layers.0.fc1.weight"
    # a few warm-up updates from the loaded encoder: still close to it, far from a fresh one
    assert torch.allclose(retrained[key], foreign[key], atol=1e-3)

    # ... and now the check passes
    proc = bash("again", "check")
    assert proc.returncode == 0, _show(proc)
    log = proc.stdout + proc.stderr
    assert "exporter cascade: coupling=exporter source=decoder exporter=mlp" in log and "done training" in log
