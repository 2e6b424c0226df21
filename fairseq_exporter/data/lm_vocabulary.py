"""The target side of a cascade whose text model is a Hugging Face causal LM: the LM's own
tokenizer and vocabulary, behind fairseq's ``Dictionary`` interface.

fairseq id == LM id for every LM token, so the LM's output layer is the decoder's output
layer unchanged. fairseq needs a padding index that is no real token: an LM without a pad
token gets one extra symbol after its rows. Translations are tokenized from raw text as the
LM writes them after the prompt (``encode_line``: the prompt template's ``answer_ids``), and
hypotheses are detokenized as a user reads the answer (``string``: ``answer_text``): the config
yaml's ``vocab_filename`` and ``bpe_tokenizer`` are not used on this side. The template is the
model's (``--lm-prompt``): the model sets it when it is built, before any data is read.
"""

import os
from typing import List, Optional

import torch
from fairseq.data import Dictionary

OPTION = "--lm-checkpoint"
EXTRA_PAD = "<pad>"  # appended when the LM's tokenizer has no pad token


def require_transformers(what: str = OPTION):
    try:
        import transformers  # noqa: F401
    except ImportError as err:
        raise ImportError(f"{what} needs the Hugging Face transformers package: "
                          "pip install -e '.[llm]' (make install does)") from err


def check_lm_dir(path: Optional[str], option: str = OPTION) -> str:
    if not path:
        raise ValueError(f"{option} is required")
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"{option} {path}: no such directory (a local Hugging Face model directory: config.json, "
            "weights, tokenizer files; nothing is downloaded, save_pretrained/download it first)")
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise FileNotFoundError(f"{option} {path}: no config.json there: not a Hugging Face model directory")
    return path


def load_tokenizer(path: str, option: str = OPTION):
    require_transformers(option)
    from transformers import AutoTokenizer

    check_lm_dir(path, option)
    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as err:
        raise ValueError(f"{option} {path}: cannot load its tokenizer ({type(err).__name__}: {err})") from err


class LMDictionary(Dictionary):
    """fairseq's view of an LM vocabulary (see the module docstring)."""

    def __init__(self, tokenizer, n_rows: int, source: str):
        # Dictionary.__init__ would add fairseq's four specials first: the LM's own ids are kept instead
        self.tokenizer, self.source = tokenizer, source
        symbols = [f"<lm_unused_{i}>" for i in range(n_rows)]
        for token, i in tokenizer.get_vocab().items():
            if i >= n_rows:
                raise ValueError(f"{OPTION} {source}: the tokenizer has token {token!r} with id {i}, but the "
                                 f"model has {n_rows} embedding rows")
            symbols[i] = token
        if tokenizer.eos_token_id is None:
            raise ValueError(f"{OPTION} {source}: the tokenizer defines no end-of-sequence token "
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
        self.template = None  # the model's PromptTemplate (use_template)

    def use_template(self, template):
        self.template = template

    def _template(self):
        if self.template is None:
            raise RuntimeError(f"{OPTION} {self.source}: translations are tokenized as answers to the "
                               "prompt, and the model that sets --lm-prompt is not built yet")
        return self.template

    @classmethod
    def from_lm_dir(cls, path: str):
        from transformers import AutoConfig

        tokenizer = load_tokenizer(path)
        config = AutoConfig.from_pretrained(path, local_files_only=True)
        n_rows = getattr(config, "vocab_size", None) or len(tokenizer)
        return cls(tokenizer, int(n_rows), path)

    @property
    def has_extra_pad(self) -> bool:
        return self.pad_index >= self.n_rows

    def encode_line(self, line, line_tokenizer=None, add_if_not_exist=False, consumer=None,
                    append_eos=True, reverse_order=False) -> torch.IntTensor:
        template = self._template()
        ids = template.answer_ids(line)
        if reverse_order:
            ids = ids[::-1]
        if append_eos and not template.ends_answer(ids):  # a last token holding a line break ends it
            ids = ids + [self.eos_index]
        return torch.IntTensor(ids)

    def length_and_unk_pieces(self, line: str):
        """How many tokens the answer ``line`` is (without </s>) and its pieces that are <unk>."""
        ids = self.encode_line(line, append_eos=False).tolist()
        return len(ids), [self.tokenizer.convert_ids_to_tokens(t) for t in ids if t == self.unk()]

    def string(self, tensor, bpe_symbol=None, escape_unk=False, extra_symbols_to_ignore=None,
               unk_string=None, include_eos=False, separator=" "):
        if torch.is_tensor(tensor) and tensor.dim() == 2:
            return "\n".join(self.string(t, bpe_symbol, escape_unk, extra_symbols_to_ignore, unk_string,
                                         include_eos) for t in tensor)
        skip = {self.pad_index, self.bos_index} | set(extra_symbols_to_ignore or ())
        if not include_eos:
            skip.add(self.eos_index)
        ids = [int(i) for i in tensor if int(i) not in skip and int(i) < self.n_rows]
        return self._template().answer_text(ids)
