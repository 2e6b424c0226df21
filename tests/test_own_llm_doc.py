"""examples/own_llm.md, run: its bash blocks in order, with its variables pointing at a tiny
random Llama (tests/tiny_lm.py) and the tiny cascade's speech (tests/tiny_cascade.py)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

import tiny_lm  # noqa: E402
from fairseq_exporter.generate_output import read_generate_output  # noqa: E402
from test_own_checkpoints_doc import TINY_ASR, _quote, _show  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "examples" / "own_llm.md"
TAGGED_BLOCK = re.compile(r"<!-- doc-test: (\w+) -->\n```(\w+)\n(.*?)```", re.DOTALL)


def test_own_llm_doc_runs_as_written(cascade, tmp_path):
    text = DOC.read_text()
    blocks = {tag: body for tag, _, body in TAGGED_BLOCK.findall(text)}
    assert text.count("```") == 2 * len(blocks), "an untagged fenced block in the doc"
    data = tmp_path / "exporter-data"
    data.mkdir()
    for split in ("train", "dev", "test", "train_asr", "dev_asr"):
        shutil.copy(cascade["s2t"] / f"{split}.tsv", data)
    llm = tiny_lm.build(tmp_path / "llm", "llama")
    variables = {"LLM": str(llm), "DATA": str(data), "INSTRUCT_LLM": str(tiny_lm.instruct(llm, tmp_path / "instruct")),
                 "MESSAGE": "Translate to German: {src}", "SYSTEM": "Translate to German:",
                 "PROMPT": tiny_lm.PROMPT, "ASR_ARCH": TINY_ASR, "ASR_SIZE": "--max-tokens 4000 --max-update 30 --seed 1",
                 "STAGE_SIZE": "--max-tokens 4000 --max-update 3 --seed 1", "LLM_DTYPE": "float32"}
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
    pieces = [line.split()[0] for line in (data / "dict.llm.txt").read_text().splitlines()]
    assert set(pieces) <= set(tiny_lm.word_tokenizer(True).get_vocab()) and "katze" in pieces and "<s>" not in pieces
    bash("asr")
    asr = torch.load(tmp_path / "asr-llm" / "checkpoint_best.pt", map_location="cpu", weights_only=False)["model"]
    assert asr["decoder.embed_tokens.weight"].shape[0] >= len(pieces) + 4  # the LLM's pieces + fairseq's specials
    bash("stage1")
    bash("stage2")
    log = bash("generate")
    for coupling in ("onebest", "exporter"):
        assert (tmp_path / f"gen-llm-{coupling}" / "generate-test.txt").exists()
    assert "BLEU" in log
    bash("chat")
    records = read_generate_output(tmp_path / "gen-chat-onebest" / "generate-test.txt")
    assert records and all(r.detok_hypothesis is not None for r in records.values())
