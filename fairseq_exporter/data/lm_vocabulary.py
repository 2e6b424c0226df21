"""The target side of a cascade whose text model is a Hugging Face causal LM: the LM's own
tokenizer and vocabulary, behind fairseq's ``Dictionary`` interface.

fairseq id == LM id for every LM token, so the LM's output layer is the decoder's output
layer unchanged. fairseq needs a padding index that is no real token: an LM without a pad
token gets one extra symbol after its rows. Translations are tokenized from raw text as the
LM writes them after the prompt (``encode_line``: the prompt template's ``answer_ids``), and
hypotheses are detokenized as a user reads the answer (``string``: ``answer_text``, on one
line of fairseq's output: generate_output.py's ``one_line``): the config
yaml's ``vocab_filename`` and ``bpe_tokenizer`` are not used on this side. The template is the
model's (``--lm-prompt``): the model sets it when it is built, before any data is read.
"""

import torch

from fairseq_exporter.data import hf_vocabulary
from fairseq_exporter.generate_output import one_line
from fairseq_exporter.data.hf_vocabulary import EXTRA_PAD, TokenizerDictionary  # noqa: F401

OPTION = "--lm-checkpoint"


def require_transformers(what: str = OPTION):
    hf_vocabulary.require_transformers(what)


def check_lm_dir(path, option: str = OPTION) -> str:
    return hf_vocabulary.check_hf_dir(path, option)


def load_tokenizer(path: str, option: str = OPTION):
    return hf_vocabulary.load_tokenizer(path, option)


class LMDictionary(TokenizerDictionary):
    """fairseq's view of an LM vocabulary (see the module docstring)."""

    def __init__(self, tokenizer, n_rows: int, source: str):
        super().__init__(tokenizer, n_rows, source, OPTION)
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

    def encode_line(self, line, line_tokenizer=None, add_if_not_exist=False, consumer=None,
                    append_eos=True, reverse_order=False) -> torch.IntTensor:
        template = self._template()
        ids = template.answer_ids(line)
        if reverse_order:
            ids = ids[::-1]
        if append_eos and not template.ends_answer(ids):  # a last token holding a line break ends it
            ids = ids + [self.eos_index]
        return torch.IntTensor(ids)

    def string(self, tensor, bpe_symbol=None, escape_unk=False, extra_symbols_to_ignore=None,
               unk_string=None, include_eos=False, separator=" "):
        if torch.is_tensor(tensor) and tensor.dim() == 2:
            return "\n".join(self.string(t, bpe_symbol, escape_unk, extra_symbols_to_ignore, unk_string,
                                         include_eos) for t in tensor)
        skip = {self.pad_index, self.bos_index} | set(extra_symbols_to_ignore or ())
        if not include_eos:
            skip.add(self.eos_index)
        ids = [int(i) for i in tensor if int(i) not in skip and int(i) < self.n_rows]
        return one_line(self._template().answer_text(ids))  # an instruct LM's answer may hold line breaks
