"""The decoder-only back-end: a frozen Hugging Face causal LM as the text model of the cascade.

The 1-best's text sits in the ``{src}`` slot of a prompt template, and the LM reads the
pieces its tokenizer makes of the whole prompt text; with ``--coupling exporter`` the
exporter's outputs replace the LM's input-embedding lookup at the 1-best's pieces
(``inputs_embeds``; models/lm_prompt.py says where). The LM is the decoder of the fairseq
cascade model for training (teacher-forced over prompt + translation, prompts left-padded
with position ids that count real tokens only); ``fairseq-generate`` runs ``transformers``'
own search on those prompt embeddings (models/lm_generator.py).

The LM is frozen (immutable, eval mode) and its weights never enter an exporter
checkpoint: the checkpoint keeps the LM's directory and a fingerprint of its weights.
"""

import inspect
import re
from functools import lru_cache
from typing import Dict, List, NamedTuple, Optional, Sequence

import torch
from fairseq.models import FairseqDecoder
from torch import Tensor, nn

from fairseq_exporter.data.lm_vocabulary import OPTION, check_lm_dir, require_transformers
from fairseq_exporter.models.hf_frozen import (  # noqa: F401  (the LM back-end's names for them)
    LM_DTYPES,
    FrozenExternal,
    external_names,
    external_prefixes,
    files_fingerprint,
    load_device,
    load_frozen,
    max_positions_of,
    weights_fingerprint,
)
from fairseq_exporter.models.exporter import recovered_rows, row_separation
from fairseq_exporter.models.lm_prompt import DEFAULT_PROMPT, PromptError, PromptTemplate  # noqa: F401
from fairseq_exporter.models.text_model import reorder_source, source_encoder_out  # noqa: F401

PROMPT_CACHE = 65536  # prompts kept per decoder: a 1-best recurs across epochs


class LMError(PromptError):
    pass


def load_causal_lm(path: str, dtype: str = "float32", device: Optional[torch.device] = None):
    """The LM of a local Hugging Face directory, frozen and in eval mode, its weights read in
    ``dtype`` and onto ``device`` where one is given."""
    require_transformers()
    check_lm_dir(path)
    return load_frozen(path, dtype, device, "AutoModelForCausalLM", "MODEL_FOR_CAUSAL_LM_MAPPING", option=OPTION,
                       dtype_option="--lm-dtype", what="a causal LM", error=LMError,
                       other="the MT back-end takes --mt-checkpoint (an encoder-decoder MT: --hf-mt-checkpoint)")


CHECKPOINTING_OPTION = "--lm-gradient-checkpointing"


def checkpoint_lm_layers(lm: nn.Module) -> List[nn.Module]:
    """--lm-gradient-checkpointing: turn on transformers' activation checkpointing of the LM's
    layers and return them. transformers checkpoints a layer only while the layer's own
    ``training`` flag is set; the frozen LM stays in eval mode, so FrozenExternal sets just
    those flags (not their children's: attention and dropout modules read their own). That is
    safe only where the layer's own code reads ``self.training`` nowhere (Llama, GPT-2, Qwen,
    Mistral, Gemma in transformers 5.24); a layer that applies dropout itself (OPT's, Falcon's)
    would drop out, so such an LM is refused."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    model_type = getattr(getattr(lm, "config", None), "model_type", type(lm).__name__)
    if not getattr(lm, "supports_gradient_checkpointing", False):
        raise LMError(f"{CHECKPOINTING_OPTION}: transformers cannot checkpoint a '{model_type}' LM "
                      f"({type(lm).__name__} does not support gradient checkpointing); train without it")
    layers = [m for m in lm.modules() if isinstance(m, GradientCheckpointingLayer)]
    if not layers:
        raise LMError(f"{CHECKPOINTING_OPTION}: the '{model_type}' LM ({type(lm).__name__}) has no "
                      "GradientCheckpointingLayer layers (it checkpoints inside its model's forward, which "
                      "would need the model in training mode); train without it")
    for cls in dict.fromkeys(type(m) for m in layers):
        reason = _reads_training(cls)
        if reason:
            raise LMError(f"{CHECKPOINTING_OPTION}: the '{model_type}' LM's layer {reason}: transformers checkpoints "
                          "a layer only in training mode, where such a layer behaves otherwise (e.g. a dropout of "
                          "its own), and the frozen LM stays in eval mode; train without it")
    lm.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    # transformers also hooks the input embeddings so that their output requires grad (for
    # reentrant checkpointing of adapters); here that made every lookup of the frozen table, the
    # exporter's L2 target and the vocab exporter's V x D rows included, grow a gradient of its
    # own (250 MB and a V x D matmul a step with Llama 3's vocabulary at dim 512). Non-reentrant
    # checkpointing needs no such hook: the exporter's outputs carry the gradient in.
    lm.disable_input_require_grads()
    return [m for m in layers if m.gradient_checkpointing]


def _reads_training(layer_class: type) -> Optional[str]:
    """Why ``layer_class`` cannot be checkpointed in eval mode: a class of its own hierarchy
    (below transformers' GradientCheckpointingLayer) whose code reads ``self.training``, or
    whose source cannot be read to tell; None when none does."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    for cls in layer_class.__mro__:
        if not issubclass(cls, GradientCheckpointingLayer) or cls is GradientCheckpointingLayer:
            continue
        try:
            source = inspect.getsource(cls)
        except (OSError, TypeError):
            return f"{cls.__name__} has no readable source (it may read self.training)"
        if re.search(r"\bself\.training\b", source):
            return f"{cls.__name__} reads self.training"
    return None


def asr_to_lm_ids(asr_dict, lm_dict, asr_dict_name: str) -> Tensor:
    """LM id of each ASR symbol (the ASR's target vocabulary must be LM pieces, in any order);
    -1 for what has no text in the prompt: fairseq's specials (</s> ends the 1-best; <unk> is
    no text, and GPT-2's tokenizers would read it as end-of-text) and fairseq's padding
    symbols (madeupwordNNNN)."""
    vocab = lm_dict.tokenizer.get_vocab()
    specials = {asr_dict.bos(), asr_dict.pad(), asr_dict.eos(), asr_dict.unk()}
    out = []
    for i, symbol in enumerate(asr_dict.symbols):
        if i in specials or symbol.startswith("madeupword"):
            out.append(-1)
            continue
        lm_id = vocab.get(symbol)
        if lm_id is None:
            raise LMError(
                f"{asr_dict_name}: symbol {symbol!r} (index {i}) is not a token of the LM tokenizer "
                f"{lm_dict.source}: the ASR must write the LM's pieces (train it with the LM's "
                "tokenizer: examples/own_llm.md)")
        out.append(lm_id)
    return torch.tensor(out, dtype=torch.long)


class LMSource(nn.Module):
    """The LM's input side as the cascade's encoder sees it: the LM embedding of each ASR
    symbol (the exporter's L2 target: what the LM's embedding lookup returns for it)."""

    def __init__(self, embed_tokens: nn.Module, asr_to_lm: Tensor):
        super().__init__()
        self.embed = FrozenExternal(embed_tokens)
        self.register_buffer("asr_to_lm", asr_to_lm, persistent=False)
        self._tables = None  # (key, rows, squared norms): the LM is frozen, so once per device
        self._separation = None  # (key, each ASR symbol's row_separation, NaN until a batch holds it)

    def fed(self, tokens: Tensor) -> Tensor:
        """Which 1-best positions have text in the prompt."""
        return self.asr_to_lm[tokens].ge(0)

    def rows(self, tokens: Tensor) -> Tensor:
        return self.embed.module(self.asr_to_lm[tokens].clamp(min=0))

    def table(self) -> Tensor:
        return self.search_table()[0]

    def search_table(self):
        """The LM rows of every ASR symbol (V x D, the LM's dtype) and their squared norms
        (float32), for the nearest-row search: built once per device and dtype, not per step."""
        weight = next(self.embed.module.parameters())
        key = (weight.data_ptr(), weight.device, weight.dtype)
        if self._tables is None or self._tables[0] != key:
            with torch.no_grad():
                rows = self.rows(torch.arange(len(self.asr_to_lm), device=self.asr_to_lm.device))
                self._tables = (key, rows, rows.float().pow(2).sum(-1))
        return self._tables[1], self._tables[2]

    def recovered(self, vectors: Tensor, tokens: Tensor) -> Tensor:
        """``recovered_rows`` on the LM's rows; each symbol's separation from the other rows is
        searched once, the first time a batch holds it (the LM is frozen)."""
        table, sq = self.search_table()
        if self._separation is None or self._separation[0] != self._tables[0]:
            self._separation = (self._tables[0], torch.full((len(table),), float("nan"), device=table.device))
        separation = self._separation[1]
        with torch.no_grad():
            new = tokens.unique()
            new = new[separation[new].isnan()]
            if len(new):
                separation[new] = row_separation(new, table, sq)
            return recovered_rows(vectors, tokens, table, sq, separation)


class PromptBatch(NamedTuple):
    """Left-padded prompts of a batch: LM ids and mask (B x P); for each position the 1-best
    position whose exporter output replaces its lookup (-1: none); and the offsets the other
    prompt pieces add (flat index tensors into the batch, with weights)."""

    ids: Tensor
    mask: Tensor
    exact: Tensor
    mixed: Tensor  # K x 4: row, prompt position, 1-best position, weight (float)
    prompts: list


class CausalLMDecoder(FairseqDecoder):
    """The LM reading ``prompt(1-best or exporter output) + translation so far``."""

    def __init__(self, lm, lm_dict, source: LMSource, template: PromptTemplate, source_limit: int,
                 checkpointed: Sequence[nn.Module] = ()):
        super().__init__(lm_dict)
        self.lm = FrozenExternal(lm, checkpointed)
        self.source = source
        self.template = template
        self.padding_idx = lm_dict.pad()
        self.n_rows = lm_dict.n_rows
        self.extra_pad = lm_dict.has_extra_pad
        self._build_prompt = lru_cache(maxsize=PROMPT_CACHE)(template.build)
        lm_max = max_positions_of(lm.config) or 10 ** 6
        # a transcript's pieces can grow when the tokenizer re-splits its text: one spare per piece
        template_len = len(template.build(()).ids)
        self.target_limit = lm_max - template_len - 2 * source_limit
        if self.target_limit < 2:
            raise LMError(f"{OPTION}: the LM takes {lm_max} positions; the prompt template "
                          f"({template_len} tokens) and a {source_limit}-token 1-best leave no room "
                          "for the translation (lower --onebest-max-len)")
        params = inspect.signature(lm.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._keep_kw = "logits_to_keep" in params

    # ---- the prompt ------------------------------------------------------------------------
    def prompts(self, tokens: Tensor) -> PromptBatch:
        """The text prompts of 1-best ``tokens`` (B x L, ASR ids), left-padded."""
        lm_ids = self.source.asr_to_lm[tokens].tolist()
        built, where = [], []
        for row in lm_ids:
            kept = [(j, i) for j, i in enumerate(row) if i >= 0]
            where.append([j for j, _ in kept])
            built.append(self._build_prompt(tuple(i for _, i in kept)))
        width = max(len(p.ids) for p in built)
        ids = torch.zeros(len(built), width, dtype=torch.long)
        mask = torch.zeros(len(built), width, dtype=torch.long)
        exact = torch.full((len(built), width), -1, dtype=torch.long)
        mixed = []
        for b, (p, positions) in enumerate(zip(built, where)):
            pad = width - len(p.ids)
            ids[b, pad:] = torch.tensor(p.ids)
            mask[b, pad:] = 1
            exact[b, pad:] = torch.tensor([positions[a] if a >= 0 else -1 for a in p.exact])
            mixed.extend((b, pad + q, positions[a], w) for q, a, w in p.mixed)
        device = tokens.device
        mixed_t = torch.tensor(mixed, dtype=torch.float64).reshape(-1, 4)
        return PromptBatch(ids.to(device), mask.to(device), exact.to(device), mixed_t, built)

    def embed_prompts(self, batch: PromptBatch, tokens: Tensor, embeddings: Optional[Tensor]) -> Tensor:
        """The prompt's input embeddings: the LM's lookup, with the exporter outputs
        ``embeddings`` (B x L x D, None: the lookup alone) where the module docstring of
        models/lm_prompt.py puts them."""
        lookup = self.lm.module.get_input_embeddings()
        embeds = lookup(batch.ids)
        if embeddings is None:
            return embeds
        embeddings = embeddings.to(embeds.dtype)
        has = batch.exact.ge(0).unsqueeze(-1)
        index = batch.exact.clamp(min=0).unsqueeze(-1).expand(-1, -1, embeddings.size(-1))
        embeds = torch.where(has, embeddings.gather(1, index), embeds)
        if len(batch.mixed):
            b, q, a = (batch.mixed[:, k].long().to(tokens.device) for k in range(3))
            weight = batch.mixed[:, 3].to(device=tokens.device, dtype=embeds.dtype).unsqueeze(-1)
            offsets = (embeddings[b, a] - self.source.rows(tokens[b, a]).to(embeds.dtype)) * weight
            embeds = embeds.index_put((b, q), offsets, accumulate=True)
        return embeds

    def prompt(self, tokens: Tensor, embeddings: Optional[Tensor]):
        """Left-padded prompt embeddings (B x P x D) and mask (B x P)."""
        batch = self.prompts(tokens)
        return self.embed_prompts(batch, tokens, embeddings), batch.mask

    def _embed_targets(self, tokens: Tensor) -> Tensor:
        ids = tokens.masked_fill(tokens.ge(self.n_rows), 0)  # the extra pad: masked out anyway
        return self.lm.module.get_input_embeddings()(ids)

    @staticmethod
    def positions(mask: Tensor) -> Tensor:
        """Position ids counting real tokens only (left padding at 0)."""
        return (mask.cumsum(1) - 1).clamp(min=0)

    def prefill(self, mask: Tensor, beams: int, input_ids=None, inputs_embeds=None):
        """The LM's cache of every prompt position but the last, computed once at the batch's
        size and copied to ``beams`` rows per prompt (generate() continues from it), and the
        keyword generate() takes it by."""
        first = {"input_ids": input_ids[:, :-1]} if inputs_embeds is None else {"inputs_embeds": inputs_embeds[:, :-1]}
        kwargs = {"logits_to_keep": 1} if self._keep_kw else {}
        out = self.lm.module(**first, attention_mask=mask[:, :-1], position_ids=self.positions(mask)[:, :-1],
                             use_cache=True, **kwargs)
        cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        cache.batch_repeat_interleave(beams)
        return {self._cache_kw: cache}

    def _run(self, embeds, mask, positions, keep=0):
        kwargs = {self._cache_kw: None, "use_cache": False}
        if self._keep_kw:
            kwargs["logits_to_keep"] = keep
        out = self.lm.module(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, **kwargs)
        return out.logits if self._keep_kw or not keep else out.logits[:, -keep:]

    def _fairseq_logits(self, logits: Tensor) -> Tensor:
        if self.extra_pad:  # a column for fairseq's pad (no LM token): never generated, never a target
            logits = torch.cat([logits, logits.detach().min(-1, keepdim=True).values], -1)
        return logits

    # ---- fairseq's decoder interface --------------------------------------------------------
    def forward(self, prev_output_tokens, encoder_out=None, **unused):
        tokens = encoder_out["source_tokens"][0]
        embeds, mask = self.prompt(tokens, _first(encoder_out["source_embeddings"]))
        target = prev_output_tokens[:, 1:]  # fairseq's first input is a start marker (</s>): the prompt's end
        embeds = torch.cat([embeds, self._embed_targets(target)], 1)
        mask = torch.cat([mask, target.ne(self.padding_idx).long()], 1)
        logits = self._run(embeds, mask, self.positions(mask), keep=prev_output_tokens.size(1))
        return self._fairseq_logits(logits), {"attn": [None]}

    def max_positions(self):
        return self.target_limit


def _first(value):
    return value[0] if isinstance(value, list) and value else None
