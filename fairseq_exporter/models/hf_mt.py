"""The encoder-decoder back-end: a local Hugging Face MT (``--hf-mt-checkpoint DIR``: Marian /
OPUS-MT, M2M100, NLLB-200, mBART-50) as the frozen text model of the cascade.

The MT reads what ``tokenizer(transcript)`` gives it: the source language code first where the
family has one (data/hf_mt_vocabulary.py reads it off the tokenizer), the 1-best's pieces (the
ASR writes the MT tokenizer's source pieces: ``fairseq-exporter-mt-vocab``), and ``</s>``,
which is the 1-best's own. With ``--coupling exporter`` the exporter outputs replace the
lookup at the 1-best's positions (its ``</s>`` included, as for a fairseq MT) through
``inputs_embeds``; the language code keeps the MT's own row.

The rows the exporter is trained against are the MT's raw embedding rows of those ids, and
what the encoder reads is a row (or exporter output) times the family's embedding scale, as
for a fairseq MT, whose encoder scales after the lookup: the L2 is on one scale whatever the
family. Families differ in where that scale is applied: M2M100, NLLB and mBART scale inside
their embedding module, Marian's encoder only on its ``input_ids`` path; ``inputs_embeds``
therefore come scaled. The scale is checked when the model is loaded: the encoder's output
from the ids and from their scaled rows must agree.

The MT is the decoder of the fairseq cascade model for training (encoder and decoder, teacher
forced: fairseq's start marker becomes the model's ``decoder_start_token_id``), and
``fairseq-generate`` runs ``transformers``' own ``generate()`` on the same inputs
(models/hf_mt_generator.py). Frozen, never in a checkpoint: the checkpoint keeps the directory,
the languages and a fingerprint of the weights.
"""

from functools import lru_cache
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
from fairseq.models import FairseqDecoder
from torch import Tensor, nn

from fairseq_exporter.data.hf_mt_vocabulary import OPTION, MTTargetDictionary
from fairseq_exporter.data.hf_vocabulary import check_hf_dir, check_tokenizer_fingerprint, require_transformers
from fairseq_exporter.models.dictionaries import check_same_dictionary
from fairseq_exporter.models.hf_frozen import (
    LM_DTYPES,
    FrozenExternal,
    check_fingerprint,
    load_device,
    load_frozen,
    max_positions_of,
)
from fairseq_exporter.models.lm_ranks import check_same_lm_on_every_rank
from fairseq_exporter.models.text_model import TextModel, refuse_chat_options, register_text_model, reorder_source, source_encoder_out

PROMPT_CACHE = 65536  # 1-best layouts kept: a 1-best recurs across epochs
VOCAB_ADVICE = ("Train the ASR on the MT tokenizer's source pieces: fairseq-exporter-mt-vocab writes them "
                "(examples/own_hf_mt.md)")


class HFMTError(ValueError):
    pass


def load_seq2seq(path: str, dtype: str = "float32", device: Optional[torch.device] = None):
    """The MT of a local Hugging Face directory, frozen and in eval mode, its weights read in
    ``dtype`` and onto ``device`` where one is given."""
    require_transformers(OPTION)
    check_hf_dir(path, OPTION)
    return load_frozen(path, dtype, device, "AutoModelForSeq2SeqLM", "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING",
                       option=OPTION, dtype_option="--hf-mt-dtype", what="an encoder-decoder MT", error=HFMTError,
                       other="a causal LM takes --lm-checkpoint")


def asr_to_mt_ids(asr_dict, tokenizer, asr_dict_name: str, location: str) -> Tensor:
    """The MT id of each ASR symbol: the ASR's target vocabulary must be the MT tokenizer's
    pieces (in any order). fairseq's </s> (the end of the 1-best) is the MT's </s>, its pad
    the MT's pad; <unk>, <s> and fairseq's padding symbols (madeupwordNNNN), which a 1-best
    holds only as an error, read the MT's <unk>."""
    vocab = tokenizer.get_vocab()
    unk = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else tokenizer.pad_token_id
    fixed = {asr_dict.eos(): tokenizer.eos_token_id, asr_dict.pad(): tokenizer.pad_token_id,
             asr_dict.unk(): unk, asr_dict.bos(): unk}
    out = []
    for i, symbol in enumerate(asr_dict.symbols):
        if i in fixed:
            out.append(fixed[i])
        elif symbol.startswith("madeupword"):
            out.append(unk)
        elif symbol in vocab:
            out.append(vocab[symbol])
        else:
            raise HFMTError(f"{asr_dict_name}: symbol {symbol!r} (index {i}) is not a piece of the MT tokenizer "
                            f"of {OPTION} {location}. {VOCAB_ADVICE}")
    return torch.tensor(out, dtype=torch.long)


WORD = "\u2581"  # sentencepiece's word-start mark


class SourceLayout(NamedTuple):
    """One 1-best as the MT reads it: the ids ``tokenizer(transcript)`` gives, and for each
    position the 1-best position whose exporter output replaces its lookup (``exact``, -1:
    none) or the 1-best positions whose offsets it adds (``mixed``: position, 1-best
    position, weight)."""

    ids: List[int]
    exact: List[int]
    mixed: List[Tuple[int, int, float]]


def _spans(pieces: Sequence[str]) -> Tuple[str, List[Tuple[int, int]]]:
    """The pieces' text (sentencepiece's word marks as spaces, stripped) and each piece's
    characters in it, spaces left out."""
    text, spans = "", []
    for piece in pieces:
        start = len(text)
        text += piece.replace(WORD, " ")
        spans.append((start, len(text)))
    lead = len(text) - len(text.lstrip())
    trimmed = []
    for s, e in spans:
        s, e = max(s - lead, 0), max(e - lead, 0)
        body = text[lead + s:lead + e]
        s += len(body) - len(body.lstrip())
        trimmed.append((s, max(s, e)))
    return text.strip(), trimmed


class HFMTSource(nn.Module):
    """The MT's input side as the cascade's encoder sees it: the row the MT's encoder reads for
    each ASR symbol (the exporter's L2 target), and the model inputs of a batch of 1-bests.

    The MT reads ``tokenizer(transcript)``, the transcript being the ASR's printed 1-best:
    where the tokenizer splits it as the ASR wrote it (the rule), each 1-best piece, and its
    </s>, is one input position, where its exporter output goes. Where it splits otherwise
    (an ASR that wrote ``▁ca`` ``t`` for ``▁cat``), an input piece reads its own row plus the
    mean offset, exporter output minus row, of the 1-best pieces whose characters it holds:
    at L2 = 0 the MT reads the user's input, and the translation loss still reaches every
    1-best piece."""

    def __init__(self, embed_tokens: nn.Module, scale: float, asr_to_mt: Tensor, prefix: List[int],
                 asr_pad: int, asr_eos: int, tokenizer):
        super().__init__()
        self.embed = FrozenExternal(embed_tokens)
        self.scale = scale
        self.asr_pad, self.asr_eos = asr_pad, asr_eos
        self.tokenizer = tokenizer
        self.prefix = list(prefix)
        self.mt_pad, self.mt_eos = tokenizer.pad_token_id, tokenizer.eos_token_id
        self.register_buffer("asr_to_mt", asr_to_mt, persistent=False)
        self._table = None  # (key, rows): the MT is frozen, so once per device and dtype
        self._layout = lru_cache(maxsize=PROMPT_CACHE)(self.layout)

    def mt_rows(self, mt_ids: Tensor) -> Tensor:
        """The raw rows (the embedding matrix's, before any scale)."""
        return nn.functional.embedding(mt_ids, self.embed.module.weight)

    def rows(self, tokens: Tensor) -> Tensor:
        return self.mt_rows(self.asr_to_mt[tokens])

    def table(self) -> Tensor:
        weight = next(self.embed.module.parameters())
        key = (weight.data_ptr(), weight.device, weight.dtype)
        if self._table is None or self._table[0] != key:
            with torch.no_grad():
                self._table = (key, self.rows(torch.arange(len(self.asr_to_mt), device=self.asr_to_mt.device)))
        return self._table[1]

    def layout(self, mt_ids: Tuple[int, ...]) -> SourceLayout:
        """The MT input of one 1-best (its MT ids, </s> last, no padding)."""
        pieces = mt_ids[:-1] if mt_ids and mt_ids[-1] == self.mt_eos else mt_ids
        tokens = self.tokenizer.convert_ids_to_tokens(list(pieces))
        text = self.tokenizer.convert_tokens_to_string(tokens).strip()  # the ASR- line
        ids = list(self.tokenizer(text)["input_ids"])
        head = len(self.prefix)
        exact = [-1] * len(ids)
        eos_at = len(ids) - 1 if ids and ids[-1] == self.mt_eos else None
        if eos_at is not None and len(mt_ids) > len(pieces):
            exact[eos_at] = len(pieces)  # the 1-best's own </s>
        inner = ids[head:eos_at]
        if inner == list(pieces):  # split as the ASR wrote it
            exact[head:head + len(inner)] = range(len(inner))
            return SourceLayout(ids, exact, [])
        mixed = []
        asr_text, asr_spans = _spans(tokens)
        mt_text, mt_spans = _spans(self.tokenizer.convert_ids_to_tokens(inner))
        if asr_text == mt_text:  # else no characters to match: the input keeps its own rows
            for q, (qs, qe) in enumerate(mt_spans):
                found = [a for a, (s, e) in enumerate(asr_spans) if s < e and s < qe and qs < e]
                if len(found) == 1 and asr_spans[found[0]] == (qs, qe) and inner[q] == pieces[found[0]]:
                    exact[head + q] = found[0]
                else:
                    mixed.extend((head + q, a, 1.0 / len(found)) for a in found)
        return SourceLayout(ids, exact, mixed)

    def inputs(self, tokens: Tensor, embeddings: Optional[Tensor]) -> Dict[str, Tensor]:
        """The MT's keyword inputs for 1-best ``tokens`` (B x L ASR ids, right-padded, </s>
        last): ``input_ids`` as ``tokenizer(transcripts, padding=True)`` writes them, or,
        with ``embeddings`` (B x L x D) at the 1-best's positions, ``inputs_embeds``."""
        lengths = tokens.ne(self.asr_pad).sum(1).tolist()
        layouts = [self._layout(tuple(row[:n])) for row, n in zip(self.asr_to_mt[tokens].tolist(), lengths)]
        width = max(len(p.ids) for p in layouts)
        device = tokens.device
        ids = torch.full((len(layouts), width), self.mt_pad, dtype=torch.long)
        mask = torch.zeros(len(layouts), width, dtype=torch.long)
        exact = torch.full((len(layouts), width), -1, dtype=torch.long)
        mixed = []
        for b, p in enumerate(layouts):
            ids[b, :len(p.ids)] = torch.tensor(p.ids)
            mask[b, :len(p.ids)] = 1
            exact[b, :len(p.ids)] = torch.tensor(p.exact)
            mixed.extend((b, q, a, w) for q, a, w in p.mixed)
        ids, mask, exact = ids.to(device), mask.to(device), exact.to(device)
        if embeddings is None:
            return {"input_ids": ids, "attention_mask": mask}
        embeds = self.mt_rows(ids)
        embeddings = embeddings.to(embeds.dtype)
        has = exact.ge(0).unsqueeze(-1)
        index = exact.clamp(min=0).unsqueeze(-1).expand(-1, -1, embeddings.size(-1))
        embeds = torch.where(has, embeddings.gather(1, index), embeds)
        if mixed:
            table = torch.tensor(mixed, dtype=torch.float64)
            b, q, a = (table[:, k].long().to(device) for k in range(3))
            weight = table[:, 3].to(device=device, dtype=embeds.dtype).unsqueeze(-1)
            offsets = (embeddings[b, a] - self.rows(tokens[b, a]).to(embeds.dtype)) * weight
            embeds = embeds.index_put((b, q), offsets, accumulate=True)
        if self.scale != 1.0:  # what the lookup path multiplies by (Marian's encoder, the others' module)
            embeds = embeds * self.scale
        return {"inputs_embeds": embeds, "attention_mask": mask}


def embedding_scale(mt, location: str) -> float:
    """The factor between the MT's raw embedding rows and what its encoder reads: Marian's
    encoder multiplies by ``embed_scale`` on the ``input_ids`` path only, M2M100/NLLB/mBART
    inside their embedding module. Checked on a padded batch: the encoder's output from the
    ids and from the scaled rows must agree, else exporter outputs would not be read as rows."""
    encoder = mt.get_encoder()
    embed = encoder.embed_tokens
    scale = float(getattr(encoder, "embed_scale", 1.0) or 1.0) * float(getattr(embed, "embed_scale", 1.0) or 1.0)
    n = embed.weight.size(0)
    real = [i for i in (n - 2, n - 3, 5, 6, 7, 8) if i != mt.config.pad_token_id and 0 <= i < n]
    ids = torch.tensor([real[:4], real[4:6] + real[:2]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    ids, mask = ids.to(embed.weight.device), mask.to(embed.weight.device)
    with torch.no_grad():
        from_ids = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        rows = nn.functional.embedding(ids, embed.weight)
        from_rows = encoder(inputs_embeds=rows * scale, attention_mask=mask).last_hidden_state
    real = mask.bool()
    if not torch.allclose(from_ids[real].float(), from_rows[real].float(), atol=1e-3, rtol=1e-3):
        raise HFMTError(f"{OPTION} {location}: its encoder ({type(encoder).__name__}) reads token ids otherwise "
                        f"than their embedding rows times {scale:g}: a family this back-end cannot feed "
                        "exporter outputs to")
    return scale


class HFMTDecoder(FairseqDecoder):
    """The MT reading the 1-best (or exporter outputs) and the translation so far."""

    def __init__(self, mt, tgt_dict: MTTargetDictionary, source: HFMTSource):
        super().__init__(tgt_dict)
        self.mt = FrozenExternal(mt)
        self.source = source
        self.n_rows = tgt_dict.n_rows
        self.extra_pad = tgt_dict.has_extra_pad
        self.padding_idx = tgt_dict.pad()
        self.decoder_start = mt.config.decoder_start_token_id
        if self.decoder_start is None:
            raise HFMTError(f"{OPTION} {tgt_dict.source}: its config sets no decoder_start_token_id")
        self.target_limit = max_positions_of(mt.config) or 10 ** 6

    def forward(self, prev_output_tokens, encoder_out=None, **unused):
        tokens = encoder_out["source_tokens"][0]
        embeddings = encoder_out["source_embeddings"][0] if encoder_out["source_embeddings"] else None
        start = prev_output_tokens.clone()
        start[:, 0] = self.decoder_start  # fairseq's first input is a start marker (</s>)
        if self.extra_pad:
            start = start.masked_fill(start.ge(self.n_rows), 0)  # masked out by the loss anyway
        out = self.mt.module(**self.source.inputs(tokens, embeddings), decoder_input_ids=start, use_cache=False)
        logits = out.logits
        if self.extra_pad:  # a column for fairseq's pad: never generated, never a target
            logits = torch.cat([logits, logits.detach().min(-1, keepdim=True).values], -1)
        return logits, {"attn": [None]}

    def max_positions(self):
        return self.target_limit


@register_text_model
class HFMT(TextModel):
    OPTION = OPTION
    FIELD = "hf_mt_checkpoint"
    TASK_FIELDS = ("hf_mt_checkpoint", "mt_src_lang", "mt_tgt_lang")
    TOKENIZES_TARGETS = True
    RECORDED = ("hf_mt_fingerprint", "tokenizer_fingerprint")  # the MT itself stays in its directory

    def __init__(self, source: HFMTSource, decoder: HFMTDecoder, source_limit: int):
        self.hf_source, self.decoder, self.source_limit = source, decoder, source_limit

    # ---- the task's target side ----------------------------------------------------------
    @classmethod
    def target_dictionary(cls, text_cfg, from_data_config):
        get = text_cfg.get if isinstance(text_cfg, dict) else lambda k: getattr(text_cfg, k, None)
        return MTTargetDictionary.from_mt_dir(get(cls.FIELD), get("mt_src_lang"), get("mt_tgt_lang"))

    @classmethod
    def target_dictionary_name(cls, location, data_cfg):
        return f"the tokenizer of {location}"

    @classmethod
    def generator(cls, model, tgt_dict, args):
        from fairseq_exporter.models.hf_mt_generator import HFMTGenerator

        return HFMTGenerator(model, tgt_dict, args)  # the MT's own search: the user's cascade

    # ---- loading and its checks ------------------------------------------------------------
    @classmethod
    def check_options(cls, cfg):
        if cfg.lm_gradient_checkpointing:
            raise ValueError("--lm-gradient-checkpointing recomputes the layers of the --lm-checkpoint LM; "
                             f"leave it out with {OPTION}")
        refuse_chat_options(cfg, OPTION)

    @classmethod
    def read_and_check(cls, cfg, task, asr_part):
        from fairseq_exporter.models import pretrained

        src_name, _ = task.dictionary_files()
        asr_dict, asr_dict_path = pretrained.asr_dictionary(asr_part, cfg.asr_dict)
        check_same_dictionary(asr_dict, f"ASR target dictionary ({asr_part.path}: {asr_dict_path})",
                              task.transcript_dictionary, f"source dictionary of the data config ({src_name})",
                              "Point src_vocab_filename in the config yaml at the ASR's target dictionary.")
        return None  # the MT's weights stay in its directory

    @classmethod
    def build(cls, cfg, task, state):
        tgt_dict = task.target_dictionary
        location = cfg.hf_mt_checkpoint
        if not isinstance(tgt_dict, MTTargetDictionary):
            raise HFMTError(f"{OPTION} {location}: the task's target vocabulary is not the MT's "
                            "(the speech_to_text_exporter task reads it from --hf-mt-checkpoint)")
        mt = load_seq2seq(location, cfg.hf_mt_dtype, load_device())
        found = check_fingerprint(cfg, "hf_mt_fingerprint", mt, location, OPTION, "MT", HFMTError)
        check_same_lm_on_every_rank(found, location, OPTION, "MT")  # torch DDP does not broadcast it
        check_tokenizer_fingerprint(cfg, tgt_dict.tokenizer, location, OPTION, HFMTError)
        src_name, _ = task.dictionary_files()
        tokenizer = tgt_dict.tokenizer  # its languages set: tokenizer(text) writes the source side
        prefix = tgt_dict.languages.source_prefix
        asr_dict = task.transcript_dictionary
        source = HFMTSource(mt.get_encoder().embed_tokens, embedding_scale(mt, location),
                            asr_to_mt_ids(asr_dict, tokenizer, src_name, location),
                            prefix, asr_dict.pad(), asr_dict.eos(), tokenizer)
        limit = (max_positions_of(mt.config) or 10 ** 6) - len(prefix)
        return cls(source, HFMTDecoder(mt, tgt_dict, source), limit)

    def describe(self, cfg):
        langs = f", {cfg.mt_src_lang} -> {cfg.mt_tgt_lang}" if cfg.mt_src_lang else ""
        return f"MT {cfg.hf_mt_checkpoint} (frozen, {cfg.hf_mt_dtype}{langs})"

    # ---- the input side -------------------------------------------------------------------
    def encoder_modules(self):
        return {"hf_mt_source": self.hf_source}

    def table(self):
        return self.hf_source.table()

    def rows(self, tokens):
        return self.hf_source.rows(tokens)

    def fed(self, tokens):
        return tokens.ne(self.hf_source.asr_pad)

    def encode(self, tokens, embeddings):
        return source_encoder_out(tokens, embeddings)  # the MT decoder runs the MT's encoder on them

    def reorder_encoder_out(self, encoder_out, new_order):
        return reorder_source(encoder_out, new_order)
