"""The toy's instruct LM (fairseq_exporter/toy/chat_lm.py), trained for a few updates on text
files in the toy corpus's layout: a byte-level BPE with Llama 3's split and specials, Llama 3
Instruct's chat template, generation_config's end-of-turn ids; its training examples are what
--lm-chat feeds it (apply_chat_template with the generation prompt, then the answer through
<|eot_id|>)."""

import json

import pytest
import torch

pytest.importorskip("transformers")

import tiny_cascade  # noqa: E402

from fairseq_exporter.data.lm_pieces import transcript_ids, write_vocabulary  # noqa: E402
from fairseq_exporter.models.lm_prompt import Chat, PromptTemplate  # noqa: E402
from fairseq_exporter.toy import chat_lm  # noqa: E402


def _pieced(text):
    return " ".join("\u2581" + w for w in text.split())  # the corpus's text files: sentencepiece pieces


@pytest.fixture(scope="module")
def chat_lm_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("chat-lm")
    text = root / "data" / "text"
    text.mkdir(parents=True)
    for split, n, seed in (("general.train", 120, 1), ("general.valid", 12, 2), ("task.train", 40, 3)):
        pairs = tiny_cascade.sentences(n, seed)
        (text / f"{split}.en").write_text("".join(_pieced(en) + "\n" for en, _ in pairs))
        (text / f"{split}.de").write_text("".join(_pieced(de[0].upper() + de[1:] + ".") + "\n" for _, de in pairs))
    out = root / "lm"
    chat_lm.main(["--data", str(root / "data"), "--out", str(out), "--updates", "4", "--vocab-size", "450",
                  "--dim", "32", "--layers", "1"])
    return out


def test_the_instruct_lm_is_prompted_as_its_users_prompt_it(chat_lm_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(chat_lm_dir, local_files_only=True)
    lm = AutoModelForCausalLM.from_pretrained(chat_lm_dir, local_files_only=True)
    stops = [tokenizer.convert_tokens_to_ids(t) for t in ("<|end_of_text|>", "<|eot_id|>")]
    assert lm.generation_config.eos_token_id == stops and tokenizer.eos_token == "<|eot_id|>"
    assert json.loads((chat_lm_dir / "training.json").read_text())["updates"] == 4
    # a byte-level BPE with Llama 3's split: words carry their leading space (Ġ), pieces merge
    pieces = tokenizer.convert_ids_to_tokens(transcript_ids(tokenizer, "the dog sees the cat"))
    assert pieces[0].startswith("\u0120") and "\u0120the" in pieces
    # the prompt --lm-chat builds is Llama 3 Instruct's chat template's, one <|begin_of_text|>
    template = PromptTemplate(chat_lm.MESSAGE, tokenizer, Chat(stops))
    message = [{"role": "user", "content": chat_lm.MESSAGE.format(src="the dog sees the cat")}]
    ids = tokenizer.apply_chat_template(message, add_generation_prompt=True)
    ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
    assert template.build(transcript_ids(tokenizer, "the dog sees the cat")).ids == ids
    assert ids.count(tokenizer.bos_token_id) == 1
    assert tokenizer.decode(ids).endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    # the targets: the German answer through the end of turn
    target = template.answer_ids("Der Hund sieht die Katze.")
    assert target[-1] == tokenizer.convert_tokens_to_ids("<|eot_id|>")
    assert tokenizer.decode(target[:-1]) == "Der Hund sieht die Katze."
    example, start = chat_lm.examples(tokenizer, template, [_pieced("the dog sees the cat")],
                                      [_pieced("Der Hund sieht die Katze.")])[0]
    assert example[:start] == ids and example[start:] == target


def test_the_asr_can_write_its_pieces(chat_lm_dir, tmp_path):
    kept, skipped = write_vocabulary(str(chat_lm_dir), tmp_path / "dict.lm.txt")
    pieces = {line.split()[0] for line in (tmp_path / "dict.lm.txt").read_text().splitlines()}
    assert kept == len(pieces) > 100 and "<|eot_id|>" not in pieces
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(chat_lm_dir, local_files_only=True)
    for en, _ in tiny_cascade.sentences(20, 9):
        assert set(tokenizer.convert_ids_to_tokens(transcript_ids(tokenizer, en))) <= pieces, en


def test_stage9_configs_put_the_transcripts_in_the_lm_pieces(chat_lm_dir, tmp_path):
    """make_corpus --lm-configs (toy stage 9): an ASR config and an exporter-task config whose
    English side is the LM's dictionary and its hf_tokenizer pieces; the German side and the
    features as the corpus's own configs."""
    from argparse import Namespace

    import yaml
    from fairseq.data.encoders import build_bpe
    from transformers import AutoTokenizer

    from fairseq_exporter.toy import make_corpus

    data = tmp_path / "data"
    with pytest.raises(SystemExit, match="no corpus here"):
        make_corpus.main(["--out", str(data), "--lm-configs", str(chat_lm_dir)])
    (data / "st").mkdir(parents=True)
    for lang in ("en", "de"):
        (data / "st" / f"spm_{lang}.model").write_bytes(b"")  # (only their paths are written)
    make_corpus.write_configs(data / "st")
    make_corpus.main(["--out", str(data), "--lm-configs", str(chat_lm_dir)])

    def config(name):
        return yaml.safe_load((data / "st" / name).read_text())

    asr, task, own = config("config_asr_lm.yaml"), config("config_st_lm.yaml"), config("config_st.yaml")
    assert asr["vocab_filename"] == task["src_vocab_filename"] == "dict.lm.txt"
    assert asr["bpe_tokenizer"] == task["src_bpe_tokenizer"] == {"bpe": "hf_tokenizer",
                                                                  "hf_tokenizer": str(chat_lm_dir.resolve())}
    for key in ("vocab_filename", "bpe_tokenizer", "transforms", "audio_root", "input_feat_per_channel"):
        assert task[key] == own[key], key
    # the ASR's targets: the pieces the LM reads in the prompt's {src} slot, all in its dictionary
    tokenizer = AutoTokenizer.from_pretrained(chat_lm_dir, local_files_only=True)
    written = build_bpe(Namespace(**asr["bpe_tokenizer"])).encode("the dog sees the cat").split()
    assert written == tokenizer.convert_ids_to_tokens(transcript_ids(tokenizer, "the dog sees the cat"))
    pieces = {line.split()[0] for line in (data / "st" / "dict.lm.txt").read_text().splitlines()}
    assert set(written) <= pieces


def test_text_only_ablation_trains_the_input_table_alone(chat_lm_dir, tmp_path):
    """chat_lm --adapt-input-table (toy stage 10 on the LM): only the input embedding rows move;
    the output layer, untied, and every other weight stay the LM's."""
    from transformers import AutoModelForCausalLM

    pairs = tmp_path / "st.train"
    sentences = tiny_cascade.sentences(12, 5)
    (tmp_path / "st.train.en").write_text("".join(_pieced(en) + "\n" for en, _ in sentences))
    (tmp_path / "st.train.de").write_text("".join(_pieced(de) + "\n" for _, de in sentences))
    out = tmp_path / "adapted"
    chat_lm.main(["--adapt-input-table", str(chat_lm_dir), "--train-pairs", str(pairs), "--valid-pairs", str(pairs),
                  "--out", str(out), "--updates", "3", "--lr", "1e-2", "--warmup", "1"])
    before = AutoModelForCausalLM.from_pretrained(chat_lm_dir, local_files_only=True).state_dict()
    after_lm = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    after = after_lm.state_dict()
    assert not after_lm.config.tie_word_embeddings
    assert after_lm.lm_head.weight.data_ptr() != after_lm.get_input_embeddings().weight.data_ptr()
    table = "model.embed_tokens.weight"
    assert not torch.equal(after[table], before[table])
    assert torch.equal(after["lm_head.weight"], before[table])  # the tied table as it was
    for name, value in before.items():
        if name not in (table, "lm_head.weight"):
            assert torch.equal(after[name], value), name
    assert json.loads((out / "training.json").read_text())["adapted"] == "input table"
    with pytest.raises(SystemExit):
        chat_lm.main(["--adapt-input-table", str(chat_lm_dir), "--out", str(out)])  # no pairs

