"""The tiny Hugging Face MT fixtures of tests/tiny_hf_mt.py: each family's directory loads back
with the Auto classes, its tokenizer lays out source and target ids as the real family's does,
and the reference cascade (transformers' generate() alone) gives non-empty translations of
varied lengths, greedy and beam 4, batched == one sentence at a time."""

import pytest

transformers = pytest.importorskip("transformers")

import sentencepiece  # noqa: E402

import tiny_cascade  # noqa: E402
import tiny_hf_mt  # noqa: E402

# unequal lengths, so the batch is padded
SENTENCES = ["the dog", "a big red cat sees the old man", "woman likes house", "small tree"]
MAX_NEW = 10
CLASSES = {"marian": ("MarianTokenizer", "MarianMTModel"),
           "m2m100": ("M2M100Tokenizer", "M2M100ForConditionalGeneration"),
           "mbart50": ("MBart50Tokenizer", "MBartForConditionalGeneration"),
           "nllb": ("NllbTokenizer", "M2M100ForConditionalGeneration")}
# decoder start, eos, pad
IDS = {"marian": ("pad", 0, "pad"), "m2m100": (2, 2, 1), "mbart50": (2, 2, 1), "nllb": (2, 2, 1)}


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf_mt")
    return {family: tiny_hf_mt.build(root / family, family) for family in tiny_hf_mt.FAMILIES}


def load(path):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    return (AutoTokenizer.from_pretrained(str(path), local_files_only=True),
            AutoModelForSeq2SeqLM.from_pretrained(str(path), local_files_only=True))


def spm_ids(tokenizer, spm_path, text):
    """The tokenizer's ids of the sentencepiece model's pieces of ``text``."""
    pieces = sentencepiece.SentencePieceProcessor(model_file=str(spm_path)).encode(text, out_type=str)
    return tokenizer.convert_tokens_to_ids(pieces)


@pytest.mark.parametrize("family", tiny_hf_mt.FAMILIES)
def test_loads_back(dirs, family):
    tokenizer, model = load(dirs[family])
    assert (type(tokenizer).__name__, type(model).__name__) == CLASSES[family]
    config = model.config
    start, eos, pad = (tokenizer.pad_token_id if x == "pad" else x for x in IDS[family])
    assert (config.decoder_start_token_id, config.eos_token_id, config.pad_token_id) == (start, eos, pad)
    assert (tokenizer.eos_token_id, tokenizer.pad_token_id) == (eos, pad)
    assert config.scale_embedding and config.d_model == 32
    assert model.get_input_embeddings().weight.shape[0] == config.vocab_size >= tiny_hf_mt.vocab_size(tokenizer)
    if family == "marian":
        assert pad == config.vocab_size - 1 and tokenizer.unk_token_id == 1
        assert model.generation_config.bad_words_ids == [[pad]] and model.generation_config.num_beams == 4
    else:
        assert tokenizer.convert_tokens_to_ids(tiny_hf_mt.TARGET_LANG_TOKEN[family]) != tokenizer.unk_token_id


@pytest.mark.parametrize("family", tiny_hf_mt.FAMILIES)
def test_token_layout(dirs, family):
    tokenizer, _ = load(dirs[family])
    src, tgt = tiny_hf_mt.LANGS[family]
    source_spm, target_spm = ((dirs[family] / "source.spm", dirs[family] / "target.spm") if family == "marian"
                              else (dirs[family] / "sentencepiece.bpe.model",) * 2)
    en = "a big red cat sees the old man"
    de = " ".join(tiny_cascade.DE[w] for w in en.split())
    if src is not None:
        tokenizer.src_lang, tokenizer.tgt_lang = src, tgt
    prefix = lambda token: [] if token is None else [tokenizer.convert_tokens_to_ids(token)]  # noqa: E731
    assert tokenizer(en)["input_ids"] == (prefix(tiny_hf_mt.SOURCE_LANG_TOKEN[family])
                                          + spm_ids(tokenizer, source_spm, en) + [tokenizer.eos_token_id])
    assert tokenizer(text_target=de)["input_ids"] == (prefix(tiny_hf_mt.TARGET_LANG_TOKEN[family])
                                                      + spm_ids(tokenizer, target_spm, de) + [tokenizer.eos_token_id])
    # every word of the tiny corpus is made of known pieces, on its side
    for words, spm_path in ((tiny_cascade.EN, source_spm), (tiny_cascade.DE.values(), target_spm)):
        for word in words:
            assert tokenizer.unk_token_id not in spm_ids(tokenizer, spm_path, word), word
    assert tokenizer.decode(tokenizer(text_target=de)["input_ids"], skip_special_tokens=True) == de


@pytest.mark.parametrize("family", tiny_hf_mt.FAMILIES)
def test_reference_translate(dirs, family):
    tokenizer, model = load(dirs[family])
    eos, pad = model.config.eos_token_id, model.config.pad_token_id
    target = tiny_hf_mt.TARGET_LANG_TOKEN[family]
    outputs = {}
    for beam in (1, 4):
        ids, texts = tiny_hf_mt.reference_translate(dirs[family], SENTENCES, beam, MAX_NEW, family)
        assert len(ids) == len(texts) == len(SENTENCES)
        assert all(texts) and len(set(texts)) > 1, texts
        assert len({len(row) for row in ids}) > 1, ids
        for row, text in zip(ids, texts):
            assert 2 <= len(row) <= MAX_NEW and pad not in row
            assert row[-1] == eos or len(row) == MAX_NEW
            if target is not None:
                assert row[0] == tokenizer.convert_tokens_to_ids(target)
            assert tokenizer.decode(row, skip_special_tokens=True) == text
        alone = [tiny_hf_mt.reference_translate(dirs[family], [s], beam, MAX_NEW, family) for s in SENTENCES]
        assert [a[0][0] for a in alone] == ids and [a[1][0] for a in alone] == texts
        outputs[beam] = ids
    assert any(len(row) > 3 for row in outputs[1]), outputs
