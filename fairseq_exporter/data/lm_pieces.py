"""Training an ASR whose transcripts are a Hugging Face text model's pieces (the LM and HF MT
back-ends need its target vocabulary to be the model's tokens): fairseq's side of the model's
tokenizer.

- ``bpe: hf_tokenizer`` in a data config's ``bpe_tokenizer`` / ``src_bpe_tokenizer``
  (``hf_tokenizer: DIR``) splits text into the tokenizer's pieces: a causal LM's as a prompt
  holds them after ``": "`` (models/lm_prompt.py builds its prompts from the same split); an
  encoder-decoder MT's as ``tokenizer(transcript)`` splits it;
- ``fairseq-exporter-lm-vocab LM_DIR --out dict.txt`` and ``fairseq-exporter-mt-vocab MT_DIR
  --out dict.txt`` write those pieces as a fairseq dictionary (the ASR's ``vocab_filename``).

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

from fairseq_exporter.data.hf_vocabulary import is_encoder_decoder
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
        self.in_prompt = not is_encoder_decoder(cfg.hf_tokenizer)

    def encode(self, x: str) -> str:
        # an LM: the pieces it reads in a prompt's {src} slot (after "...: "), so that the
        # ASR's pieces are the text prompt's, its first with its word boundary (Ġthe, ▁the);
        # an MT: the pieces tokenizer(transcript) gives it
        if self.in_prompt:
            ids = transcript_ids(self.tokenizer, x)
        else:
            ids = self.tokenizer(x.strip(), add_special_tokens=False)["input_ids"]
        return " ".join(p if writable(p) else "<unk>" for p in self.tokenizer.convert_ids_to_tokens(ids))

    def decode(self, x: str) -> str:
        return self.tokenizer.convert_tokens_to_string(x.split()).strip()

    def is_beginning_of_word(self, x: str) -> bool:
        return x.startswith(("\u2581", "\u0120"))


def source_pieces(tokenizer) -> List[str]:
    """The pieces a tokenizer writes source text in: Marian's source sentencepiece model's (its
    vocabulary is shared with the target side), else every piece of its vocabulary."""
    vocab = tokenizer.get_vocab()
    spm = getattr(tokenizer, "spm_source", None)
    if spm is not None:
        return [p for p in (spm.id_to_piece(i) for i in range(spm.get_piece_size())) if p in vocab]
    return list(vocab)


def write_vocabulary(model_dir: str, out: Path, name: str = "LM_DIR"):
    """The tokenizer's pieces (an encoder-decoder MT's source pieces), in id order and without
    its special tokens (language codes included), as a fairseq dictionary file; returns how
    many were written and how many left out for holding whitespace."""
    tokenizer = load_tokenizer(model_dir, name)
    specials = set(tokenizer.all_special_tokens)
    vocab = tokenizer.get_vocab()
    pieces = sorted(((p, vocab[p]) for p in source_pieces(tokenizer)), key=lambda item: item[1])
    kept = [p for p, _ in pieces if p not in specials and writable(p)]
    skipped = sum(1 for p, _ in pieces if p not in specials and not writable(p))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(f"{p} 1\n" for p in kept), encoding="utf-8")
    return len(kept), skipped
