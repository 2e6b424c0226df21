"""examples/own_hf_mt.md, run: its bash blocks in order, with its variables pointing at a tiny
NLLB model (tests/tiny_hf_mt.py; its language options given) and the tiny cascade's speech
(tests/tiny_cascade.py)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

import hf_mt_cascade  # noqa: E402
import tiny_cascade  # noqa: E402
import tiny_hf_mt  # noqa: E402
from test_own_checkpoints_doc import TINY_ASR, _quote, _show  # noqa: E402

from fairseq_exporter.generate_output import read_generate_output  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "examples" / "own_hf_mt.md"
TAGGED_BLOCK = re.compile(r"<!-- doc-test: (\w+) -->\n```(\w+)\n(.*?)```", re.DOTALL)
FAMILY = "nllb"


def _corpus(data: Path) -> int:
    """{split}.tsv and {split}_asr.tsv of the tiny cascade's speech, and a features config;
    returns the number of test utterances."""
    pairs = {"train": tiny_cascade.sentences(200, 1), "dev": tiny_cascade.sentences(20, 2),
             "test": tiny_cascade.sentences(12, 3)}
    for split, rows in tiny_cascade.write_features(data, pairs).items():
        tiny_cascade.write_manifest(data / f"{split}.tsv", rows)
        tiny_cascade.write_manifest(data / f"{split}_asr.tsv", rows, target="src")
    (data / "config_asr.yaml").write_text(hf_mt_cascade.FEATURES)
    return len(pairs["test"])


def test_own_hf_mt_doc_runs_as_written(tmp_path):
    text = DOC.read_text()
    blocks = {tag: body for tag, _, body in TAGGED_BLOCK.findall(text)}
    assert text.count("```") == 2 * len(blocks), "an untagged fenced block in the doc"
    data = tmp_path / "exporter-data"
    n_test = _corpus(data)
    mt = tiny_hf_mt.build(tmp_path / "mt", FAMILY)
    src_lang, tgt_lang = tiny_hf_mt.LANGS[FAMILY]
    langs = f"--mt-src-lang {src_lang} --mt-tgt-lang {tgt_lang}" if src_lang else ""  # Marian: none
    variables = {"MT": str(mt), "MT_LANGS": langs,
                 "DATA": str(data), "FEATURES": str(data / "config_asr.yaml"), "ASR_ARCH": TINY_ASR,
                 "ASR_SIZE": "--max-tokens 4000 --max-update 20 --seed 1",
                 "STAGE_SIZE": "--max-tokens 4000 --max-update 3 --seed 1", "MT_DTYPE": "float32"}
    doc_variables = re.findall(r"^([A-Z_]+)=", blocks["vars"], re.MULTILINE)
    assert set(doc_variables) == set(variables) | {"USER_DIR"}, doc_variables
    user_dir_line = next(line for line in blocks["vars"].splitlines() if line.startswith("USER_DIR="))
    prelude = "set -euo pipefail\n" + "".join(f"{k}={_quote(v)}\n" for k, v in variables.items()) + user_dir_line + "\n"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", OMP_NUM_THREADS="1")

    def bash(tag):
        proc = subprocess.run(["bash", "-c", prelude + blocks[tag]], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, f"block {tag}: {_show(proc)}"
        return proc.stdout + proc.stderr

    assert "wrote" in bash("vocab")
    tokenizer = transformers.AutoTokenizer.from_pretrained(mt, local_files_only=True)
    pieces = [line.split()[0] for line in (data / "dict.mt.txt").read_text().splitlines()]
    assert pieces and set(pieces) <= set(tokenizer.get_vocab())
    assert not set(pieces) & set(tokenizer.all_special_tokens)  # no language codes, </s>, <pad>
    for config in ("config_asr_mt.yaml", "config_mt.yaml"):
        assert "hf_tokenizer" in (data / config).read_text()
    bash("asr")
    asr = torch.load(tmp_path / "asr-mt" / "checkpoint_best.pt", map_location="cpu", weights_only=False)["model"]
    assert asr["decoder.embed_tokens.weight"].shape[0] >= len(pieces) + 4  # the MT's pieces + fairseq's specials
    assert "exporter=mlp" in bash("stage1")
    bash("stage2")
    saved = torch.load(tmp_path / "stage2-mt" / "checkpoint_best.pt", map_location="cpu", weights_only=False)
    assert not any(".mt." in k or "hf_mt_source" in k for k in saved["model"])  # the MT stays in its directory
    model_cfg = saved["cfg"]["model"]
    assert model_cfg["hf_mt_fingerprint"] and (model_cfg["mt_src_lang"], model_cfg["mt_tgt_lang"]) == (src_lang, tgt_lang)
    log = bash("generate")
    for coupling in ("onebest", "exporter"):
        records = read_generate_output(tmp_path / f"gen-mt-{coupling}" / "generate-test.txt")
        assert len(records) == n_test and all(r.asr is not None and r.detok_hypothesis is not None
                                              for r in records.values()), coupling
        assert not any({"<unk>", "</s>", "<pad>", tgt_lang} & set(r.detok_hypothesis.split()) for r in records.values())
    assert "BLEU" in log
