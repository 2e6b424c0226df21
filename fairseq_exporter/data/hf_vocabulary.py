"""The target side of a cascade whose text model is a Hugging Face model (a causal LM:
data/lm_vocabulary.py; an encoder-decoder MT: data/hf_mt_vocabulary.py): the model's own
tokenizer and vocabulary behind fairseq's ``Dictionary`` interface, and the checks of a local
model directory both back-ends make.

fairseq id == the model's id for every token, so the model's output layer is the decoder's
output layer unchanged. fairseq needs a padding index that is no real token: a model whose
tokenizer has no pad token (or pads with its end token) gets one extra symbol after its rows.
"""

import hashlib
import json
import os
from typing import Optional

from fairseq.data import Dictionary

EXTRA_PAD = "<pad>"  # appended when the tokenizer has no pad token of its own


def require_transformers(what: str):
    try:
        import transformers  # noqa: F401
    except ImportError as err:
        raise ImportError(f"{what} needs the Hugging Face transformers package: "
                          "pip install -e '.[llm]' (make install does)") from err


def check_hf_dir(path: Optional[str], option: str) -> str:
    if not path:
        raise ValueError(f"{option} is required")
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"{option} {path}: no such directory (a local Hugging Face model directory: config.json, "
            "weights, tokenizer files; nothing is downloaded, save_pretrained/download it first)")
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise FileNotFoundError(f"{option} {path}: no config.json there: not a Hugging Face model directory")
    return path


def load_tokenizer(path: str, option: str, **kwargs):
    require_transformers(option)
    from transformers import AutoTokenizer

    check_hf_dir(path, option)
    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True, **kwargs)
    except Exception as err:
        raise ValueError(f"{option} {path}: cannot load its tokenizer ({type(err).__name__}: {err})") from err


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.json", "merges.txt", "chat_template.jinja", "chat_template.json")


def _digest(value) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()[:12]


def tokenizer_fingerprint(tokenizer, path: str, extra: Optional[dict] = None) -> str:
    """What of a tokenizer's configuration changes targets, stops and splits, part by part (a
    JSON object, so a mismatch can be named): its bos/eos/pad/unk tokens, its special and added
    tokens, its chat template, its vocabulary, and the bytes of its files (sentencepiece models
    included: they decide the splits)."""
    parts = {name: f"{getattr(tokenizer, name + '_token', None)}={getattr(tokenizer, name + '_token_id', None)}"
             for name in ("bos", "eos", "pad", "unk")}
    parts["special tokens"] = _digest(sorted(map(str, tokenizer.all_special_tokens)))
    parts["added tokens"] = _digest(sorted((str(t), i) for t, i in tokenizer.get_added_vocab().items()))
    parts["chat template"] = _digest(getattr(tokenizer, "chat_template", None))
    parts["vocabulary"] = _digest(sorted(tokenizer.get_vocab().items()))
    files = hashlib.sha1()
    for name in sorted(os.listdir(path)):
        if name in TOKENIZER_FILES or name.endswith((".model", ".spm")):
            files.update(name.encode())
            with open(os.path.join(path, name), "rb") as f:
                files.update(f.read())
    parts["files"] = files.hexdigest()[:12]
    parts.update(extra or {})  # what else of the model decides how an answer ends
    return json.dumps(parts, sort_keys=True)


def check_tokenizer_fingerprint(cfg, tokenizer, location: str, option: str, error=ValueError,
                                extra: Optional[dict] = None):
    """A fresh build records the tokenizer's fingerprint (``cfg.tokenizer_fingerprint``); a
    rebuild refuses a tokenizer configured otherwise, naming what differs."""
    from omegaconf import open_dict

    found = tokenizer_fingerprint(tokenizer, location, extra)
    recorded = getattr(cfg, "tokenizer_fingerprint", None)
    if recorded is None:
        with open_dict(cfg):
            cfg.tokenizer_fingerprint = found
    elif recorded != found:
        was, now = json.loads(recorded), json.loads(found)
        differ = [k for k in sorted(set(was) | set(now)) if was.get(k) != now.get(k)]
        shown = "; ".join(f"{k}: {was.get(k)} then, {now.get(k)} now" if k in ("bos", "eos", "pad", "unk")
                          or k.startswith("generation_config") else k for k in differ)
        raise error(f"{option} {location}: its tokenizer is not configured as when this exporter was trained "
                    f"(differs in {shown}); use the tokenizer files the exporter was trained with")


def is_encoder_decoder(path: str) -> bool:
    """Whether the local model directory holds an encoder-decoder model (its config says so)."""
    import json

    with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
        return bool(json.load(f).get("is_encoder_decoder"))


class TokenizerDictionary(Dictionary):
    """fairseq's view of a Hugging Face model's vocabulary (see the module docstring);
    ``option`` names the model in messages."""

    def __init__(self, tokenizer, n_rows: int, source: str, option: str):
        # Dictionary.__init__ would add fairseq's four specials first: the model's own ids are kept instead
        self.tokenizer, self.source, self.option = tokenizer, source, option
        symbols = [f"<lm_unused_{i}>" for i in range(n_rows)]
        for token, i in tokenizer.get_vocab().items():
            if i >= n_rows:
                raise ValueError(f"{option} {source}: the tokenizer has token {token!r} with id {i}, but the "
                                 f"model has {n_rows} embedding rows")
            symbols[i] = token
        if tokenizer.eos_token_id is None:
            raise ValueError(f"{option} {source}: the tokenizer defines no end-of-sequence token "
                             "(eos_token): the translation could not end")
        self.eos_index = tokenizer.eos_token_id
        pad = tokenizer.pad_token_id
        if pad is None or pad == self.eos_index:
            pad = len(symbols)
            symbols.append(EXTRA_PAD)
        self.pad_index = pad
        self.bos_index = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else self.eos_index
        self.unk_index = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else self.pad_index
        self.bos_word, self.pad_word = symbols[self.bos_index], symbols[self.pad_index]
        self.eos_word, self.unk_word = symbols[self.eos_index], symbols[self.unk_index]
        self.symbols = symbols
        self.count = [1] * len(symbols)
        self.indices = {s: i for i, s in enumerate(symbols)}
        self.nspecial = 0
        self.n_rows = n_rows

    @property
    def has_extra_pad(self) -> bool:
        return self.pad_index >= self.n_rows

    def length_and_unk_pieces(self, line: str):
        """How many tokens the translation ``line`` is (without </s>) and its pieces that are <unk>."""
        ids = self.encode_line(line, append_eos=False).tolist()
        return len(ids), [self.tokenizer.convert_ids_to_tokens(t) for t in ids if t == self.unk()]
