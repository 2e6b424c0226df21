"""Tiny Hugging Face encoder-decoder MT models for tests, of four families, each saved like any
local Hugging Face model directory (nothing downloaded; `build(path, family)`), with a tokenizer
of the family's real class around sentencepiece models trained here on sentences of the tiny
cascade's words (tests/tiny_cascade.py: English source, German target), so every word of the
tiny corpus is made of pieces (some words one piece, some several):

    marian   MarianMTModel + MarianTokenizer: source.spm, target.spm (unigram) and a joint
             vocab.json laid out like OPUS-MT's (</s> 0, <unk> 1, the pieces of both, <pad> last;
             decoder start = pad); a generation_config like OPUS-MT's (bad_words_ids [[pad]],
             num_beams 4, max_length 512). Source ids: `pieces </s>`.
    m2m100   M2M100ForConditionalGeneration + M2M100Tokenizer: vocab.json (<s> 0, <pad> 1, </s> 2,
             <unk> 3, pieces) + sentencepiece.bpe.model (BPE), the 100 "__xx__" codes right after
             vocab.json, then 8 made-up words (model vocab = len(vocab.json) + 108, as facebook/
             m2m100_418M's 128112). Source ids: `__en__ pieces </s>`.
    mbart50  MBartForConditionalGeneration + MBart50Tokenizer (= MBart50TokenizerFast): <s> 0,
             <pad> 1, </s> 2, <unk> 3, pieces (unigram), the 52 "xx_YY" codes, <mask>.
             Source ids: `en_XX pieces </s>`.
    nllb     M2M100ForConditionalGeneration + NllbTokenizer (= NllbTokenizerFast, non-legacy):
             <s> 0, <pad> 1, </s> 2, <unk> 3, pieces (BPE), the 202 "xxx_Yyyy" codes, <mask>.
             Source ids: `eng_Latn pieces </s>`.

All: d_model 32, 2 + 2 layers, 4 heads, ffn 64, 128 positions, scale_embedding, no dropout,
tied embeddings (as the real ones). A model of random weights alone loops on one token and
never stops (tied embeddings make the decoder copy its input; tried: spread embeddings, stronger
layers, sharper cross-attention), so `build` trains it briefly (TRAIN_STEPS Adam steps on the
tiny cascade's 200 training pairs, a few seconds): the model then translates each sentence
into a few German pieces and </s>, different for different sentences, with real choices left
(beam 4 and greedy differ on some sentences), and its outputs depend on the encoder's inputs.

What transformers 5.24 does with the encoder's inputs, as read in .venv's source (for a plugin
that feeds `inputs_embeds` to the encoder instead of `input_ids`):

marian (models/marian/modeling_marian.py)
  (a) MarianModel.shared / MarianEncoder.embed_tokens is a plain nn.Embedding. The scale
      (embed_scale = sqrt(d_model) when config.scale_embedding) is applied in
      MarianEncoder.forward ONLY on the input_ids path: `if inputs_embeds is None: inputs_embeds
      = self.embed_tokens(input_ids) * self.embed_scale`; inputs_embeds passed in are used
      unscaled, so a caller must multiply by sqrt(d_model) itself. (MarianDecoder.forward, unlike
      the encoder, scales after its `if`, "in case user passes `embeds`": decoder inputs_embeds
      ARE scaled.)
  (b) MarianEncoder.forward calls `self.embed_positions(inputs_embeds.shape[:-1])`:
      MarianSinusoidalPositionalEmbedding.forward makes position_ids = arange(cache_length,
      cache_length + seq_len) (cache_length 0 in the encoder), no offset, whatever the padding,
      the same on both paths; the table is create_weight's (sin in the first half of the
      features, cos in the second). No embedding layer norm (post-norm layers).
m2m100 and nllb (models/m2m_100/modeling_m2m_100.py)
  (a) The scale is inside the embedding module: M2M100ScaledWordEmbedding.forward returns
      `super().forward(input_ids) * self.embed_scale` (M2M100Model.shared, tied to the encoder's
      and decoder's embed_tokens). M2M100Encoder.forward only does `inputs_embeds =
      self.embed_tokens(input_ids)` when inputs_embeds is None and never scales given
      inputs_embeds: a caller must pass embeddings already multiplied by sqrt(d_model).
  (b) M2M100Encoder.forward calls `self.embed_positions(input_ids, inputs_embeds)`;
      M2M100SinusoidalPositionalEmbedding.forward uses, when input_ids is given,
      create_position_ids_from_input_ids (fairseq's make_positions: cumsum of the non-pad mask,
      times the mask, + padding_idx: real tokens get pad+1, pad+2, ... = 2, 3, ...; pads get
      padding_idx, whose table row is zero), and when input_ids is None
      create_position_ids_from_inputs_embeds: arange(padding_idx + 1, seq_len + padding_idx + 1)
      (+ cache_length) for every row, blind to padding. For right-padded batches (these
      tokenizers pad on the right) both give the same positions to the real tokens and differ
      only at pad positions (masked out as keys). No embedding layer norm (pre-norm layers, a
      final encoder layer_norm).
mbart50 (models/mbart/modeling_mbart.py)
  (a) The scale is inside the embedding module: MBartScaledWordEmbedding.forward
      (`super().forward(input_ids) * self.embed_scale`); MBartEncoder.forward only does
      `inputs_embeds = self.embed_tokens(input_ids)` when inputs_embeds is None and does not
      scale given inputs_embeds.
  (b) MBartEncoder.forward calls `self.embed_positions(inputs_embeds[..., -1])` ("just for the
      shape"): MBartLearnedPositionalEmbedding.forward makes arange(cache_length, cache_length +
      seq_len) expanded over the batch, looked up at + offset 2, whatever the padding, the same
      on both paths; then `layernorm_embedding(inputs_embeds + positions)`.
Checked on these models (right-padded batch of 4, beam 4): for all four families
`generate(inputs_embeds=model.get_input_embeddings().weight[input_ids] * sqrt(d_model),
attention_mask=...)` gives exactly the ids of `generate(input_ids=...)` (and the encoder's
outputs on the real tokens are equal); without the sqrt(d_model) the translations change; for
Marian, `model.get_encoder().embed_tokens(input_ids)` is the unscaled row and changes them too.
"""

import io
import json
import shutil
import tempfile
from pathlib import Path

import tiny_cascade

FAMILIES = ("marian", "m2m100", "mbart50", "nllb")
# (source, target) language codes as the tokenizer's src_lang / tgt_lang take them
LANGS = {"marian": (None, None), "m2m100": ("en", "de"), "mbart50": ("en_XX", "de_DE"),
         "nllb": ("eng_Latn", "deu_Latn")}
# the token forced_bos_token_id names (the target language code); Marian forces none
TARGET_LANG_TOKEN = {"marian": None, "m2m100": "__de__", "mbart50": "de_DE", "nllb": "deu_Latn"}
# the token the tokenizer puts first in the source ids; Marian puts none
SOURCE_LANG_TOKEN = {"marian": None, "m2m100": "__en__", "mbart50": "en_XX", "nllb": "eng_Latn"}

# sentencepiece sizes (hard_vocab_limit=False): most words one piece, a few (Marian, mBART) or
# a third (the BPE of M2M100 and NLLB) several
SPM_SIZE = {"source": 36, "target": 36, "joint_unigram": 54, "joint_bpe": 96}
SPM_SENTENCES, SPM_SEED = 400, 7
MODEL = dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
             decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
             max_position_embeddings=128, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
             encoder_layerdrop=0.0, decoder_layerdrop=0.0,
             init_std=0.2)  # not 0.02: the brief training below learns from it reliably
# the brief training: the tiny cascade's training pairs, warm-up then linear decay, clipped
TRAIN_PAIRS, TRAIN_PAIRS_SEED = 200, 1
TRAIN_STEPS, TRAIN_BATCH, TRAIN_LR, TRAIN_WARMUP = 80, 16, 0.02, 15


def spm_text():
    """The English and the German sides of sentences of the tiny cascade's words."""
    pairs = tiny_cascade.sentences(SPM_SENTENCES, SPM_SEED)
    return [en for en, _ in pairs], [de for _, de in pairs]


def train_spm(lines, path: Path, vocab_size: int, model_type: str) -> Path:
    """A sentencepiece model (<unk> 0, <s> 1, </s> 2, the ids fairseq's and OPUS-MT's models have)
    on ``lines``, with the identity normalization (nothing for a tokenizer to lose; the text is
    lowercase ASCII)."""
    import sentencepiece as spm

    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=proto, vocab_size=vocab_size,
                                   model_type=model_type, character_coverage=1.0, hard_vocab_limit=False,
                                   normalization_rule_name="identity", minloglevel=2, num_threads=1)
    path.write_bytes(proto.getvalue())
    return path


def spm_pieces(path: Path):
    """The pieces of a sentencepiece model after <unk>, <s>, </s>."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(path))
    return [sp.id_to_piece(i) for i in range(3, sp.get_piece_size())]


def _marian_tokenizer(stage: Path):
    from transformers import MarianTokenizer

    en, de = spm_text()
    src = train_spm(en, stage / "source.spm", SPM_SIZE["source"], "unigram")
    tgt = train_spm(de, stage / "target.spm", SPM_SIZE["target"], "unigram")
    pieces = list(dict.fromkeys(spm_pieces(src) + spm_pieces(tgt)))
    vocab = {tok: i for i, tok in enumerate(["</s>", "<unk>", *pieces, "<pad>"])}
    (stage / "vocab.json").write_text(json.dumps(vocab, indent=2, ensure_ascii=False))
    return MarianTokenizer(str(src), str(tgt), str(stage / "vocab.json"), source_lang="en", target_lang="de")


def _m2m100_tokenizer(stage: Path):
    from transformers import M2M100Tokenizer
    from transformers.models.m2m_100.tokenization_m2m_100 import FAIRSEQ_LANGUAGE_CODES

    en, de = spm_text()
    model = train_spm(en + de, stage / "sentencepiece.bpe.model", SPM_SIZE["joint_bpe"], "bpe")
    vocab = {tok: i for i, tok in enumerate(["<s>", "<pad>", "</s>", "<unk>", *spm_pieces(model)])}
    (stage / "vocab.json").write_text(json.dumps(vocab, indent=2, ensure_ascii=False))
    # The codes passed as the hub's tokenizer_config.json passes them: without them, transformers
    # 5.24's M2M100Tokenizer.__init__ makes none of them special (its test `lang_code not in
    # str(token) not in self.added_tokens_encoder` is always false), and
    # batch_decode(skip_special_tokens=True) would keep "__de__".
    codes = [f"__{code}__" for code in FAIRSEQ_LANGUAGE_CODES["m2m100"]]
    return M2M100Tokenizer(str(stage / "vocab.json"), str(model), src_lang="en", tgt_lang="de",
                           additional_special_tokens=codes)


def _fast_tokenizer(stage: Path, family: str):
    """MBart50Tokenizer / NllbTokenizer (tokenizers-backed) around a joint sentencepiece model,
    built as transformers' own conversion of a lone sentencepiece.bpe.model builds it
    (TokenizersBackend._convert_from_sentencepiece: pieces and scores, BPE merges by
    generate_merges, the family converter's fairseq order <s> 0, <pad> 1, </s> 2, <unk> 3,
    pieces from 4), but read through the sentencepiece API: that path parses the model with
    protobuf, which is not installed here."""
    import sentencepiece as spm
    from transformers import MBart50Tokenizer, NllbTokenizer
    from transformers.convert_slow_tokenizer import NllbConverter
    from transformers.models.nllb.tokenization_nllb import FAIRSEQ_LANGUAGE_CODES as NLLB_CODES
    from transformers.tokenization_utils_base import generate_merges

    en, de = spm_text()
    src, tgt = LANGS[family]
    if family == "mbart50":
        path = train_spm(en + de, stage / "sentencepiece.bpe.model", SPM_SIZE["joint_unigram"], "unigram")
        sp = spm.SentencePieceProcessor(model_file=str(path))
        vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
        return MBart50Tokenizer(vocab=vocab, vocab_file=str(path), src_lang=src, tgt_lang=tgt)
    path = train_spm(en + de, stage / "sentencepiece.bpe.model", SPM_SIZE["joint_bpe"], "bpe")
    sp = spm.SentencePieceProcessor(model_file=str(path))
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    merges = generate_merges(vocab)
    vocab = NllbConverter.convert_from_spm(vocab=vocab)["vocab"]
    # the codes, then <mask>, after the pieces, as in facebook/nllb-200-*'s tokenizer.json (left
    # to NllbTokenizer.__init__, <mask> would be added first, before the codes)
    for token in [*NLLB_CODES, "<mask>"]:
        vocab[token] = len(vocab)
    return NllbTokenizer(vocab=vocab, merges=merges, vocab_file=str(path), src_lang=src, tgt_lang=tgt)


def tokenizer_for(stage: Path, family: str):
    """The family's tokenizer, its sentencepiece (and vocab.json) files written under ``stage``."""
    if family == "marian":
        return _marian_tokenizer(stage)
    if family == "m2m100":
        return _m2m100_tokenizer(stage)
    if family in ("mbart50", "nllb"):
        return _fast_tokenizer(stage, family)
    raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")


def vocab_size(tokenizer) -> int:
    """1 + the largest id the tokenizer gives (M2M100Tokenizer's language codes lie after its
    vocab.json without all counting in len(tokenizer))."""
    ids = list(tokenizer.get_vocab().values()) + list(getattr(tokenizer, "lang_token_to_id", {}).values())
    return max(len(tokenizer), max(ids) + 1)


def _model(family: str, tokenizer):
    from transformers import (GenerationConfig, M2M100Config, M2M100ForConditionalGeneration, MarianConfig,
                              MarianMTModel, MBartConfig, MBartForConditionalGeneration)

    if family == "marian":
        pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
        config = MarianConfig(vocab_size=vocab_size(tokenizer), decoder_start_token_id=pad, pad_token_id=pad,
                              eos_token_id=eos, forced_eos_token_id=eos, bos_token_id=None, scale_embedding=True,
                              share_encoder_decoder_embeddings=True, activation_function="swish", **MODEL)
        model = MarianMTModel(config)
        # as Helsinki-NLP/opus-mt-*'s generation_config.json
        model.generation_config = GenerationConfig(bad_words_ids=[[pad]], num_beams=4, max_length=512,
                                                   decoder_start_token_id=pad, pad_token_id=pad, eos_token_id=eos,
                                                   forced_eos_token_id=eos)
        return model
    if family in ("m2m100", "nllb"):
        n = vocab_size(tokenizer) + (tokenizer.num_madeup_words if family == "m2m100" else 0)
        config = M2M100Config(vocab_size=n, decoder_start_token_id=2, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                              scale_embedding=True, **MODEL)
        model = M2M100ForConditionalGeneration(config)
        # like facebook/m2m100_418M's (num_beams 5, early stopping) and NLLB's (max_length 200)
        extra = {"num_beams": 5, "early_stopping": True} if family == "m2m100" else {}
        model.generation_config = GenerationConfig(bos_token_id=0, decoder_start_token_id=2, eos_token_id=2,
                                                   pad_token_id=1, max_length=200, **extra)
        return model
    config = MBartConfig(vocab_size=vocab_size(tokenizer), decoder_start_token_id=2, pad_token_id=1, bos_token_id=0,
                         eos_token_id=2, forced_eos_token_id=2, scale_embedding=True, **MODEL)
    model = MBartForConditionalGeneration(config)
    # like facebook/mbart-large-50-many-to-many-mmt's
    model.generation_config = GenerationConfig(bos_token_id=0, decoder_start_token_id=2, eos_token_id=2, pad_token_id=1,
                                               forced_eos_token_id=2, max_length=200, num_beams=5, early_stopping=True)
    return model


def train(model, tokenizer, family: str, seed: int):
    """A few Adam steps of teacher-forced cross-entropy on the tiny cascade's training pairs
    (labels: the tokenizer's target ids, `[tgt code] pieces </s>`, Marian `pieces </s>`;
    the model shifts them right after its decoder start token)."""
    import torch

    pairs = tiny_cascade.sentences(TRAIN_PAIRS, TRAIN_PAIRS_SEED)
    src, tgt = LANGS[family]
    if src is not None:
        tokenizer.src_lang, tokenizer.tgt_lang = src, tgt
    batch = tokenizer([en for en, _ in pairs], text_target=[de for _, de in pairs], return_tensors="pt",
                      padding=True)
    labels = batch["labels"].masked_fill(batch["labels"] == tokenizer.pad_token_id, -100)
    opt = torch.optim.AdamW(model.parameters(), lr=TRAIN_LR)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min((i + 1) / TRAIN_WARMUP, (TRAIN_STEPS - i) / (TRAIN_STEPS - TRAIN_WARMUP)))
    order = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(TRAIN_STEPS):
        idx = torch.randint(0, len(pairs), (TRAIN_BATCH,), generator=order)
        loss = model(input_ids=batch["input_ids"][idx], attention_mask=batch["attention_mask"][idx],
                     labels=labels[idx]).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
    return model.eval()


def build(path: Path, family: str, seed: int = 0) -> Path:
    """A tiny MT model of ``family`` (FAMILIES) and its tokenizer saved under ``path``; returns
    ``path``. ``seed``: the weights' initialization and the training batches."""
    import torch

    path = Path(path)
    with tempfile.TemporaryDirectory() as stage:
        tokenizer = tokenizer_for(Path(stage), family)
        torch.manual_seed(seed)
        model = train(_model(family, tokenizer), tokenizer, family, seed)
        path.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        spm_model = Path(stage) / "sentencepiece.bpe.model"
        if family in ("mbart50", "nllb"):  # the hub's directories hold it beside tokenizer.json
            shutil.copyfile(spm_model, path / spm_model.name)
    return path


def reference_translate(model_dir, transcripts, beam: int, max_new_tokens: int, family: str):
    """The user's text cascade's MT step, by transformers alone: ``(ids, texts)``, one per
    transcript.

    Loads ``AutoTokenizer`` and ``AutoModelForSeq2SeqLM`` from ``model_dir`` (local files only;
    model.eval()), sets ``tokenizer.src_lang = LANGS[family][0]`` where the family has one (not
    Marian), encodes the batch with ``tokenizer(transcripts, return_tensors="pt", padding=True)``
    and calls ``model.generate(**inputs, num_beams=beam, do_sample=False,
    max_new_tokens=max_new_tokens, length_penalty=1.0)`` plus ``early_stopping=True`` when beam > 1
    and ``forced_bos_token_id=tokenizer.convert_tokens_to_ids(TARGET_LANG_TOKEN[family])`` except
    for Marian, and the settings the plugin says it sets (min_new_tokens 1, plus 1 for the
    language code; forced_eos_token_id eos; bad_words_ids [[pad]]). Everything else comes from
    the model's own generation_config, as for a user:
    its decoder_start_token_id (Marian: pad; the others: eos), eos/pad ids, forced_eos_token_id
    (Marian, mBART: eos forced at the last allowed step), Marian's bad_words_ids=[[pad]];
    its num_beams, max_length and early_stopping are overridden by the arguments above (greedy
    ignores early_stopping).

    ids: each output row after the decoder start token, cut after its first eos (the eos kept;
    what follows is padding), or whole when it has none (it ran into max_new_tokens). So for
    m2m100/mbart50/nllb ids start with the target language code. texts:
    ``tokenizer.batch_decode(out, skip_special_tokens=True)``."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    model = AutoModelForSeq2SeqLM.from_pretrained(str(model_dir), local_files_only=True).eval()
    src, _ = LANGS[family]
    if src is not None:
        tokenizer.src_lang = src
    inputs = tokenizer(list(transcripts), return_tensors="pt", padding=True)
    kwargs = dict(num_beams=beam, do_sample=False, max_new_tokens=max_new_tokens, length_penalty=1.0)
    if beam > 1:
        kwargs["early_stopping"] = True
    if TARGET_LANG_TOKEN[family] is not None:
        kwargs["forced_bos_token_id"] = tokenizer.convert_tokens_to_ids(TARGET_LANG_TOKEN[family])
    # the settings the plugin documents for fairseq-generate --min-len 1 (models/hf_mt_generator.py):
    # one token of text at least, </s> forced at the length limit, never <pad>
    kwargs.update(min_new_tokens=1 + (TARGET_LANG_TOKEN[family] is not None),
                  forced_eos_token_id=tokenizer.eos_token_id, bad_words_ids=[[tokenizer.pad_token_id]])
    with torch.no_grad():
        out = model.generate(**inputs, **kwargs)
    eos = model.generation_config.eos_token_id
    ids = []
    for row in out.tolist():
        row = row[1:]
        ids.append(row[:row.index(eos) + 1] if eos in row else row)
    return ids, tokenizer.batch_decode(out, skip_special_tokens=True)
