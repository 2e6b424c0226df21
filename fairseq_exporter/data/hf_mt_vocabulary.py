"""The two sides of a Hugging Face encoder-decoder MT (``--hf-mt-checkpoint``: Marian/OPUS-MT,
M2M100, NLLB-200, mBART-50) as the cascade sees them, read from its own tokenizer.

Target: the translation vocabulary behind fairseq's ``Dictionary`` interface (fairseq id ==
the model's id). A translation is tokenized as ``tokenizer(text_target=translation)`` tokenizes
it (the target language code first where the family writes one, ``</s>`` last), and a
hypothesis is read as a user reads the model's output, ``tokenizer.decode(ids,
skip_special_tokens=True)``: the config yaml's ``vocab_filename`` and ``bpe_tokenizer`` are not
used on this side.

Source: what ``tokenizer(transcript)`` writes around the transcript's pieces (the source
language code first for NLLB, M2M100 and mBART-50; ``</s>`` last for all), the MT id of each
ASR symbol, and the languages the families with language codes need.
"""

from typing import List, NamedTuple, Optional

import torch

from fairseq_exporter.data.hf_vocabulary import TokenizerDictionary, check_hf_dir, is_encoder_decoder, load_tokenizer
from fairseq_exporter.generate_output import one_line

OPTION = "--hf-mt-checkpoint"
PROBE = "a b"  # any text: what the tokenizer writes around its pieces does not depend on it


class MTLanguages(NamedTuple):
    source_prefix: List[int]  # ids tokenizer(transcript) writes before the transcript's pieces
    target_prefix: List[int]  # ids tokenizer(text_target=...) writes before the translation's
    forced_bos: Optional[int]  # the target language code generate() is made to start with


def has_languages(tokenizer) -> bool:
    """Whether the tokenizer writes language codes (NLLB, M2M100, mBART-50 have ``src_lang``)."""
    return hasattr(tokenizer, "src_lang") and hasattr(tokenizer, "tgt_lang")


def set_languages(tokenizer, src_lang: Optional[str], tgt_lang: Optional[str], location: str) -> None:
    """The source and target language of a family with language codes; refused by option name
    where they are missing, unknown, or given to a family without language codes (Marian: one
    model per language pair)."""
    if not has_languages(tokenizer):
        given = [o for o, v in (("--mt-src-lang", src_lang), ("--mt-tgt-lang", tgt_lang)) if v]
        if given:
            raise ValueError(f"{' and '.join(given)}: {OPTION} {location} ({type(tokenizer).__name__}) has no "
                             "language codes (one model per language pair): leave them out")
        return
    codes = _language_codes(tokenizer)
    for option, value, attr in (("--mt-src-lang", src_lang, "src_lang"), ("--mt-tgt-lang", tgt_lang, "tgt_lang")):
        if not value:
            raise ValueError(f"{OPTION} {location} ({type(tokenizer).__name__}) translates between languages "
                             f"it names by code: give {option} (one of {_examples(codes)})")
        if codes and value not in codes:
            raise ValueError(f"{option} {value}: not a language code of {OPTION} {location} "
                             f"(it knows {_examples(codes)})")
        try:
            setattr(tokenizer, attr, value)
        except (KeyError, ValueError) as err:
            raise ValueError(f"{option} {value}: not a language code of {OPTION} {location} "
                             f"({type(tokenizer).__name__} refuses it: {err})") from err
        ids = tokenizer(PROBE)["input_ids"] if attr == "src_lang" else tokenizer(text_target=PROBE)["input_ids"]
        if tokenizer.unk_token_id in ids[:1] or not set(ids) - set(tokenizer(PROBE, add_special_tokens=False)["input_ids"]):
            raise ValueError(f"{option} {value}: not a language code of {OPTION} {location} "
                             f"(its tokenizer writes it as <unk>; it knows {_examples(codes)})")


def _language_codes(tokenizer) -> List[str]:
    for attr in ("lang_code_to_id", "lang_token_to_id"):
        table = getattr(tokenizer, attr, None)
        if isinstance(table, dict) and table:
            if attr == "lang_token_to_id":  # M2M100: __en__ -> en
                return sorted(getattr(tokenizer, "lang_code_to_token", {}) or
                              [t.strip("_") for t in table])
            return sorted(table)
    codes = getattr(tokenizer, "language_codes", None) or getattr(tokenizer, "_additional_special_tokens", None)
    return sorted(str(c) for c in codes) if codes else []


def _examples(codes: List[str]) -> str:
    preferred = [c for c in ("eng_Latn", "deu_Latn", "en_XX", "de_DE", "en", "de") if c in codes]
    shown = preferred or codes[:4]
    return ", ".join(shown) + (f", ... ({len(codes)} codes)" if len(codes) > len(shown) else "")


def _around(tokenizer, ids: List[int], bare: List[int], what: str, location: str):
    for k in range(len(ids) - len(bare) + 1):
        if ids[k:k + len(bare)] == bare:
            return ids[:k], ids[k + len(bare):]
    raise ValueError(f"{OPTION} {location}: {what} does not hold the text's own pieces "
                     f"({ids} around {bare}): a tokenizer this back-end cannot follow")


def read_languages(tokenizer, location: str) -> MTLanguages:
    """What the tokenizer writes around a source text and a target text (its languages set)."""
    eos = tokenizer.eos_token_id
    bare = tokenizer(PROBE, add_special_tokens=False)["input_ids"]
    src_prefix, src_suffix = _around(tokenizer, tokenizer(PROBE)["input_ids"], bare, "tokenizer(text)", location)
    tgt_bare = tokenizer(text_target=PROBE, add_special_tokens=False)["input_ids"]
    tgt_prefix, tgt_suffix = _around(tokenizer, tokenizer(text_target=PROBE)["input_ids"], tgt_bare,
                                     "tokenizer(text_target=text)", location)
    for side, suffix in (("source", src_suffix), ("target", tgt_suffix)):
        if suffix != [eos]:  # e.g. mBART-cc25's legacy [</s>, language code]
            raise ValueError(f"{OPTION} {location}: its tokenizer ends a {side} text with {suffix}, not with "
                             f"</s> ({eos}) alone: the 1-best's </s> is the MT's; a tokenizer this back-end "
                             "does not follow (mBART-50, NLLB, M2M100 and Marian tokenizers do)")
    if len(tgt_prefix) > 1:
        raise ValueError(f"{OPTION} {location}: its tokenizer starts a translation with {tgt_prefix}: "
                         "generate() forces one first token, not several")
    return MTLanguages(list(src_prefix), list(tgt_prefix), tgt_prefix[0] if tgt_prefix else None)


def load_mt_tokenizer(location: str, src_lang: Optional[str], tgt_lang: Optional[str]):
    tokenizer = load_tokenizer(location, OPTION)
    set_languages(tokenizer, src_lang, tgt_lang, location)
    if tokenizer.pad_token_id is None:
        raise ValueError(f"{OPTION} {location}: the tokenizer defines no pad token: batches of source texts "
                         "of unequal length cannot be padded as the model expects")
    return tokenizer


def decoder_rows(config) -> int:
    """The size of the MT's output layer (Marian may keep a decoder vocabulary of its own)."""
    return int(getattr(config, "decoder_vocab_size", None) or config.vocab_size)


class MTTargetDictionary(TokenizerDictionary):
    """fairseq's view of the MT's target vocabulary (see the module docstring)."""

    def __init__(self, tokenizer, n_rows: int, source: str):
        super().__init__(tokenizer, n_rows, source, OPTION)
        self.languages = read_languages(tokenizer, source)

    @classmethod
    def from_mt_dir(cls, location: str, src_lang: Optional[str], tgt_lang: Optional[str]):
        from transformers import AutoConfig

        check_hf_dir(location, OPTION)
        if not is_encoder_decoder(location):  # before its tokenizer: an LM's has no pad, say
            config = AutoConfig.from_pretrained(location, local_files_only=True)
            raise ValueError(f"{OPTION} {location}: a '{config.model_type}' model, not an encoder-decoder MT; "
                             "a causal LM takes --lm-checkpoint")
        tokenizer = load_mt_tokenizer(location, src_lang, tgt_lang)
        config = AutoConfig.from_pretrained(location, local_files_only=True)
        return cls(tokenizer, decoder_rows(config), location)

    def encode_line(self, line, line_tokenizer=None, add_if_not_exist=False, consumer=None,
                    append_eos=True, reverse_order=False) -> torch.IntTensor:
        ids = list(self.tokenizer(text_target=line.strip())["input_ids"])
        if not append_eos and ids and ids[-1] == self.eos_index:
            ids = ids[:-1]
        if reverse_order:
            ids = ids[::-1]
        return torch.IntTensor(ids)

    def string(self, tensor, bpe_symbol=None, escape_unk=False, extra_symbols_to_ignore=None,
               unk_string=None, include_eos=False, separator=" "):
        if torch.is_tensor(tensor) and tensor.dim() == 2:
            return "\n".join(self.string(t, bpe_symbol, escape_unk, extra_symbols_to_ignore, unk_string,
                                         include_eos) for t in tensor)
        ids = [int(i) for i in tensor if int(i) != self.pad_index and int(i) < self.n_rows]
        return one_line(self.tokenizer.decode(ids, skip_special_tokens=True).strip())  # one line of fairseq's output
