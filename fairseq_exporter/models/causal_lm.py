"""The decoder-only back-end: a frozen Hugging Face causal LM as the text model of the cascade.

The 1-best sits in the ``{src}`` slot of a prompt template. With ``--coupling exporter`` the
exporter's outputs replace the LM's input-embedding lookup at exactly those positions
(``inputs_embeds``); the template keeps the LM's own embeddings. The LM is the decoder of the
fairseq cascade model: ``fairseq-generate`` runs it incrementally, its KV cache kept in
fairseq's incremental state and reordered with the beams; prompts of different lengths are
left-padded with position ids that count real tokens only, so a batch translates as each
prompt alone would.

The LM is frozen (immutable, eval mode) and its weights never enter an exporter
checkpoint: the checkpoint keeps the LM's directory and a fingerprint of its weights.
"""

import hashlib
import inspect
from collections import OrderedDict
from typing import Dict, List, Optional

import torch
from fairseq.models import FairseqIncrementalDecoder
from torch import Tensor, nn

from fairseq_exporter.data.lm_vocabulary import OPTION, check_lm_dir, leading_special_ids, require_transformers

LM_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
SLOT = "{src}"
DEFAULT_PROMPT = "Translate to German: {src}\nGerman:"


class LMError(ValueError):
    pass


def load_causal_lm(path: str, dtype: str = "float32"):
    """The LM of a local Hugging Face directory, frozen and in eval mode."""
    require_transformers()
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    check_lm_dir(path)
    if dtype not in LM_DTYPES:
        raise LMError(f"--lm-dtype {dtype!r}: choose one of {', '.join(LM_DTYPES)}")
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
    except Exception as err:
        raise LMError(f"{OPTION} {path}: cannot read its config.json ({err})") from err
    if type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING:
        raise LMError(f"{OPTION} {path}: a '{config.model_type}' model, not a causal LM "
                      "(AutoModelForCausalLM cannot load it); the MT back-end takes --mt-checkpoint")
    try:
        lm, info = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=LM_DTYPES[dtype],
                                                        output_loading_info=True)
    except Exception as err:
        raise LMError(f"{OPTION} {path}: cannot load its weights ({type(err).__name__}: {err})") from err
    if info.get("missing_keys"):  # e.g. an encoder (BERT) whose LM head would be random
        missing = sorted(info["missing_keys"])
        raise LMError(f"{OPTION} {path}: its weights lack {len(missing)} tensors of a '{config.model_type}' causal "
                      f"LM ({', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}): not a causal LM checkpoint")
    return lm.eval().requires_grad_(False)


def weights_fingerprint(lm: nn.Module) -> str:
    """Shapes, dtypes and 4096 evenly spaced values of every tensor: tells one LM from another
    (a fine-tuned copy, another size) without hashing gigabytes."""
    digest = hashlib.sha1()
    for name, tensor in sorted(lm.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        sample = flat[::max(1, flat.numel() // 4096)][:4096].float().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]


def max_positions_of(config) -> Optional[int]:
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


class FrozenExternal(nn.Module):
    """Holds a module whose weights live elsewhere (the LM directory): always in eval mode,
    never trained, left out of ``state_dict`` so no checkpoint copies it."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module.requires_grad_(False)

    def state_dict(self, *args, destination=None, prefix="", keep_vars=False):
        return destination if destination is not None else OrderedDict()

    def train(self, mode: bool = True):
        return super().train(False)


def external_prefixes(model: nn.Module) -> List[str]:
    """Where a model's FrozenExternal parts sit (their keys are never in a checkpoint)."""
    return [name + "." for name, m in model.named_modules(remove_duplicate=False)
            if isinstance(m, FrozenExternal)]


class PromptTemplate:
    """``prefix {src} suffix``, tokenized once. The transcript's first piece carries its own
    word boundary (a sentencepiece ``▁``, a byte-level ``Ġ``), so whitespace just before the
    slot is not tokenized into the prefix."""

    def __init__(self, text: str, tokenizer):
        if text.count(SLOT) != 1:
            raise LMError(f"--lm-prompt {text!r}: the template must hold {SLOT} exactly once "
                          f"(found {text.count(SLOT)})")
        self.text = text
        prefix, suffix = text.split(SLOT)
        self.prefix = leading_special_ids(tokenizer) + _ids(tokenizer, prefix.rstrip(" "))
        self.suffix = _ids(tokenizer, suffix)
        self.ends_at_newline = "\n" in suffix  # the answer is the rest of the line

    def __len__(self):
        return len(self.prefix) + len(self.suffix)


def _ids(tokenizer, text: str) -> List[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def asr_to_lm_ids(asr_dict, lm_dict, asr_dict_name: str) -> Tensor:
    """LM id of each ASR symbol (the ASR's target vocabulary must be LM pieces, in any order);
    -1 for what has no place in the prompt: fairseq's specials (</s> ends the 1-best; an
    <unk> the LM has no token for) and fairseq's padding symbols (madeupwordNNNN)."""
    vocab = lm_dict.tokenizer.get_vocab()
    specials = {asr_dict.bos(): None, asr_dict.pad(): None, asr_dict.eos(): None,
                asr_dict.unk(): lm_dict.tokenizer.unk_token_id}
    out = []
    for i, symbol in enumerate(asr_dict.symbols):
        if i in specials:
            lm_id = specials[i]
        elif symbol.startswith("madeupword"):
            lm_id = None
        else:
            lm_id = vocab.get(symbol)
            if lm_id is None:
                raise LMError(
                    f"{asr_dict_name}: symbol {symbol!r} (index {i}) is not a token of the LM tokenizer "
                    f"{lm_dict.source}: the ASR must write the LM's pieces (train it with the LM's "
                    "tokenizer: examples/own_llm.md)")
        out.append(-1 if lm_id is None else lm_id)
    return torch.tensor(out, dtype=torch.long)


class LMSource(nn.Module):
    """The LM's input side as the cascade's encoder sees it: the LM embedding of each ASR
    symbol (the exporter's L2 target: what the LM's embedding lookup returns for it)."""

    def __init__(self, embed_tokens: nn.Module, asr_to_lm: Tensor):
        super().__init__()
        self.embed = FrozenExternal(embed_tokens)
        self.register_buffer("asr_to_lm", asr_to_lm, persistent=False)

    def fed(self, tokens: Tensor) -> Tensor:
        """Which 1-best positions reach the prompt."""
        return self.asr_to_lm[tokens].ge(0)

    def rows(self, tokens: Tensor) -> Tensor:
        return self.embed.module(self.asr_to_lm[tokens].clamp(min=0))

    def table(self) -> Tensor:
        return self.rows(torch.arange(len(self.asr_to_lm), device=self.asr_to_lm.device))


class CausalLMDecoder(FairseqIncrementalDecoder):
    """The LM reading ``prompt(1-best or exporter output) + translation so far``."""

    def __init__(self, lm, lm_dict, source: LMSource, template: PromptTemplate, source_limit: int):
        super().__init__(lm_dict)
        self.lm = FrozenExternal(lm)
        self.source = source
        self.padding_idx = lm_dict.pad()
        self.n_rows = lm_dict.n_rows
        self.extra_pad = lm_dict.has_extra_pad
        self.register_buffer("prefix", torch.tensor(template.prefix, dtype=torch.long), persistent=False)
        self.register_buffer("suffix", torch.tensor(template.suffix, dtype=torch.long), persistent=False)
        stop = lm_dict.newline_ids() if template.ends_at_newline else []
        self.register_buffer("stop_ids", torch.tensor(stop, dtype=torch.long), persistent=False)
        lm_max = max_positions_of(lm.config) or 10 ** 6
        self.target_limit = lm_max - len(template) - source_limit
        if self.target_limit < 2:
            raise LMError(f"{OPTION}: the LM takes {lm_max} positions; the prompt template "
                          f"({len(template)} tokens) and a {source_limit}-token 1-best leave no room "
                          "for the translation (lower --onebest-max-len)")
        params = inspect.signature(lm.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._keep_kw = "logits_to_keep" in params

    # ---- the prompt ------------------------------------------------------------------------
    def prompt(self, tokens: Tensor, embeddings: Optional[Tensor]):
        """Left-padded prompt embeddings (B x P x D) and mask (B x P) for 1-best ``tokens``
        (B x L, ASR ids) whose embeddings are ``embeddings`` (B x L x D; None: the LM's own)."""
        lm_ids = self.source.asr_to_lm[tokens]
        keep = lm_ids.ge(0)
        n = keep.sum(1, keepdim=True)
        n_pre, n_suf = len(self.prefix), len(self.suffix)
        lengths = n_pre + n + n_suf
        width = int(lengths.max())
        rel = torch.arange(width, device=tokens.device).unsqueeze(0) - (width - lengths)  # place in the row's prompt
        mask = rel.ge(0)
        in_pre = mask & rel.lt(n_pre)
        in_src = rel.ge(n_pre) & rel.lt(n_pre + n)
        in_suf = rel.ge(n_pre + n)
        ids = torch.zeros_like(rel)
        ids[in_pre] = self.prefix[rel[in_pre]]
        ids[in_src] = lm_ids[keep]  # both row-major: the kept tokens in their order
        ids[in_suf] = self.suffix[(rel - n_pre - n)[in_suf]]
        embeds = self.lm.module.get_input_embeddings()(ids)
        if embeddings is not None:
            embeds = embeds.masked_scatter(in_src.unsqueeze(-1), embeddings[keep].to(embeds.dtype))
        return embeds, mask.long()

    def _embed_targets(self, tokens: Tensor) -> Tensor:
        ids = tokens.masked_fill(tokens.ge(self.n_rows), 0)  # the extra pad: masked out anyway
        return self.lm.module.get_input_embeddings()(ids)

    def _run(self, embeds, mask, positions, cache=None, keep=0):
        kwargs = {self._cache_kw: cache, "use_cache": cache is not None}
        if self._keep_kw:
            kwargs["logits_to_keep"] = keep
        out = self.lm.module(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, **kwargs)
        logits = out.logits if self._keep_kw or not keep else out.logits[:, -keep:]
        return logits, getattr(out, "past_key_values", None)

    def _fairseq_logits(self, logits: Tensor) -> Tensor:
        if self.extra_pad:  # a column for fairseq's pad (no LM token): never generated, never a target
            logits = torch.cat([logits, logits.detach().min(-1, keepdim=True).values], -1)
        return logits

    # ---- fairseq's decoder interface --------------------------------------------------------
    def forward(self, prev_output_tokens, encoder_out=None, incremental_state=None, **unused):
        if incremental_state is not None:
            return self._step(prev_output_tokens, encoder_out, incremental_state)
        embeds, mask = self.prompt(encoder_out["source_tokens"][0], _first(encoder_out["source_embeddings"]))
        target = prev_output_tokens[:, 1:]  # fairseq's first input is a start marker (</s>): the prompt's end
        embeds = torch.cat([embeds, self._embed_targets(target)], 1)
        mask = torch.cat([mask, target.ne(self.padding_idx).long()], 1)
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        logits, _ = self._run(embeds, mask, positions, keep=prev_output_tokens.size(1))
        return self._fairseq_logits(logits), {"attn": [None]}

    def _step(self, prev_output_tokens, encoder_out, incremental_state):
        state = self.get_incremental_state(incremental_state, "lm")
        if state is None:  # the first step reads the whole prompt
            embeds, mask = self.prompt(encoder_out["source_tokens"][0], _first(encoder_out["source_embeddings"]))
            positions = (mask.cumsum(1) - 1).clamp(min=0)
            cache = _new_cache()
        else:
            embeds = self._embed_targets(prev_output_tokens[:, -1:])
            mask = torch.cat([state["mask"], state["mask"].new_ones(len(embeds), 1)], 1)
            positions, cache = state["position"], state["cache"]
        logits, cache = self._run(embeds, mask, positions, cache=cache, keep=1)
        self.set_incremental_state(incremental_state, "lm",
                                   {"cache": cache, "mask": mask, "position": positions[:, -1:] + 1})
        return self._fairseq_logits(logits), {"attn": [None]}

    def reorder_incremental_state(self, incremental_state, new_order):
        state = self.get_incremental_state(incremental_state, "lm")
        if state is None:
            return
        state["cache"].reorder_cache(new_order)
        state["mask"] = state["mask"].index_select(0, new_order)
        state["position"] = state["position"].index_select(0, new_order)
        self.set_incremental_state(incremental_state, "lm", state)

    def get_normalized_probs(self, net_output, log_probs, sample=None):
        lprobs = super().get_normalized_probs(net_output, log_probs, sample)
        if log_probs and len(self.stop_ids):  # a line break ends the answer: its mass goes to </s>
            eos = self.dictionary.eos()
            stops = torch.cat([lprobs[..., eos:eos + 1], lprobs.index_select(-1, self.stop_ids)], -1)
            lprobs = lprobs.index_fill(-1, self.stop_ids, float("-inf"))
            lprobs[..., eos] = torch.logsumexp(stops, -1)
        return lprobs

    def max_positions(self):
        return self.target_limit


def _first(value):
    return value[0] if isinstance(value, list) and value else None


def _new_cache():
    from transformers import DynamicCache

    return DynamicCache()


def source_encoder_out(tokens: Tensor, embeddings: Optional[Tensor]) -> Dict[str, List[Tensor]]:
    """What the cascade's encoder hands the LM decoder: the 1-best and what replaces its lookup."""
    return {"source_tokens": [tokens], "source_embeddings": [] if embeddings is None else [embeddings]}


def reorder_source(encoder_out, new_order):
    return {"source_tokens": [t.index_select(0, new_order) for t in encoder_out["source_tokens"]],
            "source_embeddings": [e.index_select(0, new_order) for e in encoder_out["source_embeddings"]]}
