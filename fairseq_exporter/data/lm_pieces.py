"""Training an ASR whose transcripts are a causal LM's pieces (the LM back-end needs its
target vocabulary to be LM tokens): fairseq's side of the LM's tokenizer.

- ``bpe: hf_tokenizer`` in a data config's ``bpe_tokenizer`` / ``src_bpe_tokenizer``
  (``hf_tokenizer: LM_DIR``) splits text into the LM tokenizer's pieces as a prompt holds
  them after ``": "`` (models/lm_prompt.py builds its prompts from the same split);
- ``fairseq-exporter-lm-vocab LM_DIR --out dict.txt`` writes those pieces as a fairseq
  dictionary (the ASR's ``vocab_filename``).

fairseq's dictionaries and bpe outputs are whitespace-separated symbols, so LM pieces that
hold whitespace (a raw newline or tab token) cannot be written: they are left out and
counted, and the ASR writes <unk> where the LM tokenizer would use them.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import List

from fairseq.data.encoders import register_bpe
from fairseq.dataclass import FairseqDataclass

from fairseq_exporter.data.lm_vocabulary import load_tokenizer

logger = logging.getLogger(__name__)

# the transcript is written as it reads after this text and a space (the slot of a template
# like "...German: {src}"): its first piece has its word boundary (Ġthe, ▁the)
CONTEXT = ":"


def _ids(tokenizer, text: str) -> List[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def in_context_ids(tokenizer, text: str, context: str) -> List[int]:
    """``text``'s pieces as the tokenizer writes them after ``context``: the pieces of
    ``context + text`` after those of ``context`` (where the two merge across the seam,
    ``text`` alone)."""
    head = _ids(tokenizer, context)
    whole = _ids(tokenizer, context + text)
    if whole[:len(head)] == head:
        return whole[len(head):]
    return _ids(tokenizer, text)


def transcript_ids(tokenizer, text: str) -> List[int]:
    """How an ASR that feeds a prompt writes a transcript: its pieces after ``": "``, so the
    first carries its word boundary as in the prompt."""
    return in_context_ids(tokenizer, " " + text.strip(), CONTEXT)


def writable(piece: str) -> bool:
    return bool(piece) and not any(c.isspace() for c in piece)


@dataclass
class HFTokenizerConfig(FairseqDataclass):
    hf_tokenizer: str = field(default="???", metadata={"help": "a Hugging Face model directory whose tokenizer splits the text"})


@register_bpe("hf_tokenizer", dataclass=HFTokenizerConfig)
class HFTokenizerPieces:
    def __init__(self, cfg):
        self.tokenizer = load_tokenizer(cfg.hf_tokenizer, "bpe_tokenizer hf_tokenizer")

    def encode(self, x: str) -> str:
        # the pieces the LM reads in a prompt's {src} slot (after "...: "), so that the ASR's
        # pieces are the text prompt's, its first with its word boundary (Ġthe, ▁the)
        ids = transcript_ids(self.tokenizer, x)
        return " ".join(p if writable(p) else "<unk>" for p in self.tokenizer.convert_ids_to_tokens(ids))

    def decode(self, x: str) -> str:
        return self.tokenizer.convert_tokens_to_string(x.split()).strip()

    def is_beginning_of_word(self, x: str) -> bool:
        return x.startswith(("\u2581", "\u0120"))


def write_vocabulary(lm_dir: str, out: Path):
    """The LM tokenizer's pieces, in id order and without its special tokens, as a fairseq
    dictionary file; returns how many were left out for holding whitespace."""
    tokenizer = load_tokenizer(lm_dir, "LM_DIR")
    specials = set(tokenizer.all_special_tokens)
    pieces = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    kept = [p for p, _ in pieces if p not in specials and writable(p)]
    skipped = sum(1 for p, _ in pieces if p not in specials and not writable(p))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(f"{p} 1\n" for p in kept), encoding="utf-8")
    return len(kept), skipped
