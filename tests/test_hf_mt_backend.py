"""The encoder-decoder back-end (--hf-mt-checkpoint): a frozen Hugging Face MT behind the
exporter, on tiny random Marian, M2M100, mBART-50 and NLLB models whose tokenizers are the
families' real classes (tests/tiny_hf_mt.py), and an ASR trained on each MT's source pieces
(tests/hf_mt_cascade.py).

1. the 1-best cascade is the user's cascade: ``tokenizer(transcripts)`` (with ``src_lang``)
   then ``generate()`` (with the target language forced first), computed by transformers
   alone from the ASR's printed transcripts, greedy and beam 4, on a batch of unequal
   lengths; with the exporter output equal to the MT's rows of the 1-best, the same;
2. the rows are what the MT's encoder reads (Marian's scale included);
3. the MT's own generation_config does not reach the search;
4. the MT is frozen: unchanged by a step, while the ASR gets gradient through it;
5. stages 1 and 2 through fairseq-train and fairseq-generate, the MT bit-identical after;
6. the fixtures: each family's directory loads back with the Auto classes, its tokenizer lays
   out source and target ids as the real family's does, and the reference cascade gives
   translations of varied lengths, batched == one sentence at a time."""

from argparse import Namespace

import pytest
import torch

transformers = pytest.importorskip("transformers")

import hf_mt_cascade  # noqa: E402
import sentencepiece  # noqa: E402
import tiny_cascade  # noqa: E402
import tiny_hf_mt  # noqa: E402
from exporter_setup import build, first_batch  # noqa: E402
from tiny_cascade import run  # noqa: E402

from fairseq_exporter.generate_output import read_generate_output  # noqa: E402

FAMILIES = tiny_hf_mt.FAMILIES
MAX_NEW = 10


@pytest.fixture(scope="module")
def cascades(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf_mt")
    built = {}
    for family in FAMILIES:
        mt = tiny_hf_mt.build(root / family / "mt", family)
        built[family] = hf_mt_cascade.build(root / family, mt)
    return built


def languages(family):
    src, tgt = tiny_hf_mt.LANGS[family]
    return ("--mt-src-lang", src, "--mt-tgt-lang", tgt) if src else ()


def _build(cascade, family, *extra):
    torch.manual_seed(0)
    return build(cascade, "--onebest-max-len", "12", *extra,
                 text_model=("--hf-mt-checkpoint", str(cascade["mt"]), *languages(family)))


def _generate(task, model, sample, beam, recognition):
    gen_args = Namespace(beam=beam, max_len_a=0, max_len_b=MAX_NEW, min_len=1, prefix_size=0, eos_token=None)
    generator = task.build_generator([model], gen_args)
    net_input = dict(sample["net_input"], recognition=recognition)
    return generator.generate([model], {**sample, "net_input": net_input})


@pytest.fixture(scope="module")
def setups(cascades):
    """Each family's task, cascades and first test batch, built once (the tests leave them as found)."""
    built = {}

    def get(family):
        if family not in built:
            built[family] = _setup(cascades[family], family)
        return built[family]
    return get


def _setup(cascade, family):
    _, task, model, _ = _build(cascade, family, "--coupling", "exporter")
    _, _, plain, _ = _build(cascade, family, "--coupling", "onebest")
    model.eval(), plain.eval()
    sample = first_batch(task)
    with torch.no_grad():
        recognition = model.encoder.recognize(**sample["net_input"])
    return task, model, plain, sample, recognition


def _transcripts(task, recognition):
    """The ASR's transcripts as fairseq-generate prints them (its ASR- lines)."""
    return [task._detokenize_source(row) for row in recognition.onebest.tokens.tolist()]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("beam", [1, 4])
def test_onebest_is_the_users_cascade(cascades, setups, family, beam):
    """fairseq-generate's 1-best cascade == tokenizer(transcripts) then generate(), token for
    token and as text, on the batch as a user would pad it."""
    task, _, plain, sample, recognition = setups(family)
    transcripts = _transcripts(task, recognition)
    assert len({len(t.split()) for t in transcripts}) > 1, "the test needs transcripts of unequal length"
    hypos = _generate(task, plain, sample, beam, recognition)
    expected_ids, expected_text = tiny_hf_mt.reference_translate(cascades[family]["mt"], transcripts, beam,
                                                                 MAX_NEW, family)
    assert len({len(e) for e in expected_ids}) > 1, "the reference translations must differ in length"
    for row, transcript in enumerate(transcripts):
        assert hypos[row][0]["tokens"].tolist() == list(expected_ids[row]), (row, transcript)
        assert task.target_dictionary.string(hypos[row][0]["tokens"]) == expected_text[row].strip()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("beam", [1, 4])
def test_mt_fed_its_own_rows_is_the_onebest_cascade(cascades, setups, family, beam):
    task, model, plain, sample, recognition = setups(family)
    model.encoder.export = lambda rec: model.encoder.embedding_rows(rec.onebest.tokens)
    try:
        coupled = _generate(task, model, sample, beam, recognition)
    finally:
        del model.encoder.export  # the instance's override: the class's method again
    cascade_out = _generate(task, plain, sample, beam, recognition)
    for c, p in zip(coupled, cascade_out):
        assert torch.equal(c[0]["tokens"], p[0]["tokens"])
        assert torch.allclose(c[0]["positional_scores"], p[0]["positional_scores"], atol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_positional_scores_are_the_mts_own(cascades, setups, family):
    """Greedy (read as it searches) and beam (one teacher-forced pass) give the MT's log-probabilities."""
    task, _, plain, sample, recognition = setups(family)
    mt = plain.decoder.mt.module
    inputs = plain.decoder.source.inputs(recognition.onebest.tokens, None)
    for beam in (1, 4):
        hypos = _generate(task, plain, sample, beam, recognition)
        for row, h in enumerate(hypos):
            ids = h[0]["tokens"]
            start = torch.tensor([[mt.config.decoder_start_token_id]])
            with torch.no_grad():
                logits = mt(**{k: v[row:row + 1] for k, v in inputs.items()},
                            decoder_input_ids=torch.cat([start, ids[None, :-1]], 1)).logits[0]
            expected = torch.log_softmax(logits.float(), -1).gather(1, ids[:, None]).squeeze(1)
            assert torch.allclose(h[0]["positional_scores"], expected, atol=1e-4), (beam, row)


@pytest.mark.parametrize("family", FAMILIES)
def test_rows_are_what_the_encoder_reads(cascades, setups, family):
    """The exporter's L2 target is the MT's raw embedding rows, and the encoder reads them times
    the family's scale (sqrt(d_model) here): Marian's encoder scales on its input_ids path
    only, the others inside the lookup module, so for none of them is the L2 on the scaled
    lookup."""
    task, model, _, _, _ = setups(family)
    source = model.encoder.hf_mt_source
    mt = model.decoder.mt.module
    encoder = mt.get_encoder()
    tokens = torch.arange(4, 12).unsqueeze(0)
    mt_ids = source.asr_to_mt[tokens]
    rows = model.encoder.embedding_rows(tokens)
    assert torch.equal(rows, mt.get_input_embeddings().weight[mt_ids])
    assert source.scale == pytest.approx(mt.config.d_model ** 0.5)
    if family == "marian":
        assert torch.equal(encoder.embed_tokens(mt_ids), rows)  # the scale is the encoder's
    else:
        assert torch.allclose(encoder.embed_tokens(mt_ids), rows * source.scale)
    mask = torch.ones_like(mt_ids)
    with torch.no_grad():
        from_ids = encoder(input_ids=mt_ids, attention_mask=mask).last_hidden_state
        from_rows = encoder(inputs_embeds=rows * source.scale, attention_mask=mask).last_hidden_state
    assert torch.allclose(from_ids, from_rows, atol=1e-5)


def test_the_mts_own_generation_config_is_not_read(cascades):
    """OPUS-MT's generation_config (num_beams 4, max_length 512, bad_words_ids) and anything
    else in it (a repetition penalty, suppressed tokens, n-gram blocking, sampling) leave
    fairseq-generate's search as its options say."""
    family = "marian"
    task, _, plain, sample, recognition = _setup(cascades[family], family)
    before = _generate(task, plain, sample, 1, recognition)
    first = sorted({int(h[0]["tokens"][0]) for h in before})
    config = plain.decoder.mt.module.generation_config
    config.num_beams, config.do_sample, config.repetition_penalty = 6, True, 3.0
    config.no_repeat_ngram_size, config.suppress_tokens, config.max_length = 1, first, 3
    config.forced_bos_token_id, config.sequence_bias = first[0], {(first[0],): -10.0}
    after = _generate(task, plain, sample, 1, recognition)
    assert [h[0]["tokens"].tolist() for h in before] == [h[0]["tokens"].tolist() for h in after]


@pytest.mark.parametrize("family", ["marian", "nllb"])
def test_a_random_exporter_changes_the_translation(cascades, setups, family):
    """The guarantee tests above must be able to fail."""
    task, model, plain, sample, recognition = setups(family)
    prev = torch.full((len(sample["id"]), 2), task.target_dictionary.eos())
    with torch.no_grad():
        coupled, _ = model.decoder(prev, encoder_out=model.encoder(**sample["net_input"], recognition=recognition))
        cascade_out, _ = plain.decoder(prev, encoder_out=plain.encoder(**sample["net_input"], recognition=recognition))
    assert (coupled - cascade_out).abs().max() > 1e-3


def test_frozen_mt_is_unchanged_and_passes_gradient_to_the_asr(cascades):
    family = "mbart50"
    _, task, model, criterion = _build(cascades[family], family, "--l2-weight", "0")
    model.train()
    mt = model.decoder.mt.module
    before = {k: v.clone() for k, v in mt.state_dict().items()}
    sample = first_batch(task, split="train", max_sentences=8)
    loss, _, log = criterion(model, sample)
    assert "ast_loss" in log
    loss.backward()
    assert not mt.training and all(not p.requires_grad and p.grad is None for p in mt.parameters())
    asr_grad = sum(float(p.grad.abs().sum()) for p in model.encoder.asr.encoder.parameters() if p.grad is not None)
    assert asr_grad > 0, "the translation loss through the frozen MT must reach the ASR encoder"
    torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2).step()
    for k, v in mt.state_dict().items():
        assert torch.equal(v, before[k]), f"frozen MT tensor {k} changed"
    assert not any(k.startswith(("decoder.mt.", "encoder.hf_mt_source.")) for k in model.state_dict())


def test_training_targets_are_the_tokenizers(cascades):
    """A translation is tokenized as tokenizer(text_target=...) does: the target language code
    first (NLLB), </s> last; fairseq's start marker becomes the model's decoder start."""
    family = "nllb"
    _, task, model, _ = _build(cascades[family], family)
    task.load_dataset("train")
    item = task.datasets["train"][0]
    tokenizer = task.target_dictionary.tokenizer
    text = task.datasets["train"].tgt_texts[0]
    assert item.target.tolist() == tokenizer(text_target=text)["input_ids"]
    assert item.target[0] == tokenizer.convert_tokens_to_ids(tiny_hf_mt.TARGET_LANG_TOKEN[family])


def _cli_train(cascade, user_dir, family, save, *extra):
    return run(["fairseq_cli.train", str(cascade["s2t"]), "--user-dir", user_dir,
                "--task", "speech_to_text_exporter", "--config-yaml", "config_mt.yaml",
                "--train-subset", "train", "--valid-subset", "dev", "--arch", "exporter", "--criterion", "exporter",
                "--asr-checkpoint", str(cascade["asr"]), "--hf-mt-checkpoint", str(cascade["mt"]), *languages(family),
                "--onebest-max-len", "12", "--optimizer", "adam", "--lr", "0.001", "--max-tokens", "4000",
                "--max-update", "3", "--save-dir", str(save), "--no-epoch-checkpoints", "--no-progress-bar",
                "--num-workers", "0", "--seed", "1", *extra])


def _mt_tensors(mt_dir):
    from safetensors.torch import load_file

    return {k: v for f in sorted(mt_dir.glob("*.safetensors")) for k, v in load_file(f).items()}


@pytest.mark.parametrize("family", ["nllb"])  # Marian's path is the same, without languages
def test_stages_and_generate_through_the_fairseq_clis(cascades, user_dir, family, tmp_path):
    cascade = cascades[family]
    before = _mt_tensors(cascade["mt"])
    _cli_train(cascade, user_dir, family, tmp_path / "stage1", "--freeze-asr", "--ast-weight", "0")
    stage1 = tmp_path / "stage1" / "checkpoint_last.pt"
    _cli_train(cascade, user_dir, family, tmp_path / "stage2", "--finetune-from-model", str(stage1),
               "--asr-weight", "0.3", "--eval-bleu")
    saved = torch.load(tmp_path / "stage2" / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    assert not any(".mt." in k or "hf_mt_source" in k for k in saved["model"])  # the MT stays in its directory
    assert saved["cfg"]["model"]["hf_mt_fingerprint"]
    after = _mt_tensors(cascade["mt"])
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    run(["fairseq_cli.generate", str(cascade["s2t"]), "--user-dir", user_dir, "--task", "speech_to_text_exporter",
         "--config-yaml", "config_mt.yaml", "--gen-subset", "test", "--path", str(tmp_path / "stage2" / "checkpoint_last.pt"),
         "--beam", "3", "--max-tokens", "4000", "--onebest-max-len", "12", "--max-len-b", "6",
         "--results-path", str(tmp_path / "gen")])
    records = read_generate_output(tmp_path / "gen" / "generate-test.txt").values()
    n_test = len(cascade["s2t"].joinpath("test.tsv").read_text().splitlines()) - 1
    assert len(records) == n_test and all(r.asr is not None for r in records)
    lang = tiny_hf_mt.TARGET_LANG_TOKEN[family]
    # H- lines are the MT tokenizer's text: never its language code or special symbols
    assert all(not ({"<unk>", "<s>", "</s>", "<pad>", lang} & set(r.detok_hypothesis.split())) for r in records)


def test_a_rebuild_refuses_another_mt(cascades, tmp_path):
    """An exporter checkpoint keeps the MT's fingerprint, not its weights: rebuilt on an MT of the
    same family and vocabulary but other weights (what fairseq-generate's --model-overrides
    would point it at), it stops and names both."""
    from fairseq_exporter.models.hf_mt import HFMTError

    family = "marian"
    cfg, task, _, _ = _build(cascades[family], family)
    assert cfg.model.hf_mt_fingerprint
    other = tiny_hf_mt.build(tmp_path / "other", family, seed=1)
    cfg.model.hf_mt_checkpoint = str(other)
    with pytest.raises(HFMTError, match="are not those of the MT this exporter was trained with"):
        task.build_model(cfg.model)


def test_mt_vocab_writes_source_pieces_only(cascades, tmp_path):
    from fairseq_exporter.cli import mt_vocab

    for family in ("marian", "nllb"):
        out = tmp_path / family / "dict.txt"
        mt_vocab.main([str(cascades[family]["mt"]), "--out", str(out)])
        pieces = [line.split()[0] for line in out.read_text().splitlines()]
        tokenizer = transformers.AutoTokenizer.from_pretrained(cascades[family]["mt"], local_files_only=True)
        assert not set(pieces) & set(tokenizer.all_special_tokens), family  # no language codes, </s>, <pad>
        assert len(pieces) == len(set(pieces))
        if family == "marian":  # its vocabulary is joint: the source sentencepiece model's pieces only
            assert set(pieces) == {p for p in tiny_hf_mt.spm_pieces(cascades[family]["mt"] / "source.spm")
                                   if p in tokenizer.get_vocab()} - set(tokenizer.all_special_tokens)


@pytest.mark.parametrize("case", ["no-lang", "unknown-lang", "lang-for-marian", "causal-lm", "both", "fairseq-option",
                                  "missing-symbol"])
def test_bad_hf_mt_setups_are_named(cascades, tmp_path, case):
    import tiny_lm

    nllb, marian = cascades["nllb"], cascades["marian"]
    cascade, text_model, expected = nllb, None, None
    if case == "no-lang":
        text_model, expected = ("--hf-mt-checkpoint", str(nllb["mt"])), "give --mt-src-lang"
    elif case == "unknown-lang":
        text_model = ("--hf-mt-checkpoint", str(nllb["mt"]), "--mt-src-lang", "eng_Latn", "--mt-tgt-lang", "xx_YY")
        expected = "--mt-tgt-lang xx_YY: not a language code"
    elif case == "lang-for-marian":
        cascade = marian
        text_model = ("--hf-mt-checkpoint", str(marian["mt"]), "--mt-src-lang", "en", "--mt-tgt-lang", "de")
        expected = "has no language codes"
    elif case == "causal-lm":
        lm = tiny_lm.build(tmp_path / "lm", "llama")
        text_model, expected = ("--hf-mt-checkpoint", str(lm)), "not an encoder-decoder MT; a causal LM takes --lm-checkpoint"
    elif case == "both":
        text_model = ("--hf-mt-checkpoint", str(nllb["mt"]), *languages("nllb"), "--lm-checkpoint", str(nllb["mt"]))
        expected = "the text model is one or the other"
    elif case == "fairseq-option":
        text_model, expected = ("--mt-checkpoint", str(nllb["mt"])), "--hf-mt-checkpoint"
    elif case == "missing-symbol":
        cascade = {**marian, "mt": nllb["mt"]}  # an ASR of Marian's pieces against NLLB's tokenizer
        text_model = ("--hf-mt-checkpoint", str(nllb["mt"]), *languages("nllb"))
        expected = "is not a piece of the MT tokenizer"
    with pytest.raises((ValueError, FileNotFoundError, IsADirectoryError)) as err:
        build(cascade, "--onebest-max-len", "12", text_model=text_model)
    assert expected in str(err.value), str(err.value)


# ---- the fixtures themselves (tests/tiny_hf_mt.py) ----------------------------------------
# unequal lengths, so the batch is padded
SENTENCES = ["the dog", "a big red cat sees the old man", "woman likes house", "small tree"]
FIXTURE_MAX_NEW = 10
CLASSES = {"marian": ("MarianTokenizer", "MarianMTModel"),
           "m2m100": ("M2M100Tokenizer", "M2M100ForConditionalGeneration"),
           "mbart50": ("MBart50Tokenizer", "MBartForConditionalGeneration"),
           "nllb": ("NllbTokenizer", "M2M100ForConditionalGeneration")}
# decoder start, eos, pad
IDS = {"marian": ("pad", 0, "pad"), "m2m100": (2, 2, 1), "mbart50": (2, 2, 1), "nllb": (2, 2, 1)}


@pytest.fixture(scope="module")
def dirs(cascades):
    return {family: cascades[family]["mt"] for family in tiny_hf_mt.FAMILIES}


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
        ids, texts = tiny_hf_mt.reference_translate(dirs[family], SENTENCES, beam, FIXTURE_MAX_NEW, family)
        assert len(ids) == len(texts) == len(SENTENCES)
        assert all(texts) and len(set(texts)) > 1, texts
        assert len({len(row) for row in ids}) > 1, ids
        for row, text in zip(ids, texts):
            assert 2 <= len(row) <= FIXTURE_MAX_NEW and pad not in row
            assert row[-1] == eos or len(row) == FIXTURE_MAX_NEW
            if target is not None:
                assert row[0] == tokenizer.convert_tokens_to_ids(target)
            assert tokenizer.decode(row, skip_special_tokens=True) == text
        alone = [tiny_hf_mt.reference_translate(dirs[family], [s], beam, FIXTURE_MAX_NEW, family) for s in SENTENCES]
        assert [a[0][0] for a in alone] == ids and [a[1][0] for a in alone] == texts
        outputs[beam] = ids
    assert any(len(row) > 3 for row in outputs[1]), outputs
