"""The LM back-end's prompt: the text a user would write, tokenized as the LM's tokenizer
tokenizes it, and where the exporter's outputs go in it.

A user's 1-best cascade puts the ASR's transcript into the template as text,
``prompt.format(src=transcript)``, and lets the tokenizer split the whole prompt. Real LLM
tokenizers merge across the slot's edges (Llama 3 writes ``dog.`` + ``\\n`` as ``dog``, ``.Ċ``;
a sentencepiece tokenizer writes the template's text after ``{src}`` without the ``▁`` it
gets alone), so pasting the 1-best's pieces between separately tokenized template halves is
another prompt. Here the prompt *is* the text prompt's pieces, always:

- ``--coupling onebest`` reads exactly ``tokenizer(prompt.format(src=transcript))``;
- ``--coupling exporter`` (and ``posterior``) replaces the LM's lookup at each prompt piece
  that is one 1-best piece (same LM id, same characters) by that piece's exporter output. A
  prompt piece that is not (``.Ċ`` holds the 1-best's ``.`` and the template's line break)
  reads its own LM row plus the mean offset, exporter output minus LM row, of the 1-best
  pieces whose characters it holds. At L2 = 0 the offsets are 0 and the LM reads the text
  prompt's own rows: the coupled system starts at the text cascade, and the translation loss
  still reaches every 1-best piece.

Pieces are matched by their characters in the prompt text, whitespace left out (a byte-level
``Ġthe`` carries the space before it, which belongs to the template).

The answer: a template whose text after ``{src}`` holds a line break asks for the rest of
the line. The answer then ends with the first token that holds a line break (the text before
the break is kept: ``hund.`` from ``.Ċ``), as ``generate()`` with those tokens as stop tokens
ends it; the translation targets are tokenized the same way: ``" " + translation + "\\n"``
after the template, ending in that token, without ``</s>``. Where no token holds a line
break (or the template has none after ``{src}``), ``</s>`` ends the answer.
"""

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

# how a transcript is split is the ASR's data side (data/lm_pieces.py); the prompt reads it so
from fairseq_exporter.data.lm_pieces import CONTEXT, in_context_ids, transcript_ids  # noqa: F401

SLOT = "{src}"
DEFAULT_PROMPT = "Translate to German: {src}\nGerman:"
STOP = "\n"


class PromptError(ValueError):
    pass


def leading_special_ids(tokenizer) -> List[int]:
    """The ids the tokenizer puts before any text (a Llama-style <s>; nothing for GPT-2)."""
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    for start in range(len(with_special) - len(plain) + 1):
        if with_special[start:start + len(plain)] == plain:
            return list(with_special[:start])
    return []


def _trim(text: str, start: int, end: int) -> Tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


@dataclass
class Prompt:
    """One utterance's prompt: LM ids, and for each position the 1-best piece it is
    (``exact``, -1: none) or the 1-best pieces whose offsets it adds (``mixed``)."""

    ids: List[int]
    exact: List[int]
    mixed: List[Tuple[int, int, float]] = field(default_factory=list)  # (position, 1-best index, weight)
    transcript: str = ""
    edge_merges: int = 0  # mixed prompt pieces that also hold template text (.Ċ)
    inner_mismatches: int = 0  # mixed prompt pieces inside the transcript (a split the tokenizer would not make)


class PromptTemplate:
    """``prefix {src} suffix`` for one LM tokenizer (see the module docstring)."""

    def __init__(self, text: str, tokenizer):
        if text.count(SLOT) != 1:
            raise PromptError(f"--lm-prompt {text!r}: the template must hold {SLOT} exactly once "
                              f"(found {text.count(SLOT)})")
        self.text, self.tokenizer = text, tokenizer
        self.prefix, self.suffix = text.split(SLOT)
        self.ends_at_newline = STOP in self.suffix  # the answer is the rest of the line
        self.special_prefix = leading_special_ids(tokenizer)
        # a template that already starts with the tokenizer's own leading special text (a chat
        # text rendered by hand: "<|begin_of_text|>...") is tokenized as apply_chat_template
        # tokenizes its rendering, without adding it again
        lead = tokenizer.decode(self.special_prefix) if self.special_prefix else ""
        self.add_special_tokens = not (lead and text.startswith(lead))
        # what the answer follows: a space after the template unless it ends in one
        self.answer_sep = "" if not self.suffix or self.suffix[-1].isspace() else " "
        self._stop_ids: Optional[List[int]] = None

    # ---- the prompt ----------------------------------------------------------------------
    def transcript(self, lm_ids: Sequence[int]) -> Tuple[str, List[Optional[Tuple[int, int]]]]:
        """The 1-best's text (stripped, as a user pastes it) and each piece's characters in
        it (None: a piece that ends inside a character; it shares the next piece's)."""
        lm_ids = list(lm_ids)
        if not lm_ids:
            return "", []
        prefixes = self.tokenizer.batch_decode([lm_ids[:i] for i in range(1, len(lm_ids) + 1)],
                                               skip_special_tokens=False, clean_up_tokenization_spaces=False)
        full = prefixes[-1]
        lead = len(full) - len(full.lstrip())
        text = full.strip()
        spans, start = [], 0
        for i, decoded in enumerate(prefixes):
            if i < len(prefixes) - 1 and not full.startswith(decoded):
                spans.append(None)  # decoding stopped inside a character
                continue
            end = len(decoded)
            span = (max(0, start - lead), max(0, min(len(text), end - lead)))
            for j in range(len(spans) - 1, -1, -1):  # the pieces that ended inside a character
                if spans[j] is not None:
                    break
                spans[j] = span
            spans.append(span)
            start = end
        return text, spans

    def build(self, lm_ids: Sequence[int]) -> Prompt:
        """The prompt of a 1-best written as LM ids (see the module docstring)."""
        text, spans = self.transcript(lm_ids)
        prompt_text = self.prefix + text + self.suffix
        encoded = self.tokenizer(prompt_text, add_special_tokens=self.add_special_tokens, return_offsets_mapping=True)
        ids, offsets = list(encoded["input_ids"]), encoded["offset_mapping"]
        base = len(self.prefix)
        slot = (base, base + len(text))
        asr = []  # (trimmed start, end) of each 1-best piece in the prompt text
        for span in spans:
            s, e = (base + span[0], base + span[1]) if span is not None else (0, 0)
            asr.append(_trim(prompt_text, s, e))
        prompt = Prompt(ids=ids, exact=[-1] * len(ids), transcript=text)
        covers = []  # per prompt piece: the 1-best pieces it shares characters with
        first = 0  # both sequences run left to right: a sweep, not all pairs
        for s, e in offsets:
            qs, qe = _trim(prompt_text, s, e)
            while first < len(asr) and asr[first][1] <= qs:
                first += 1
            found, a = [], first
            while qs < qe and a < len(asr) and asr[a][0] < qe:
                if asr[a][0] < asr[a][1] and qs < asr[a][1]:
                    found.append(a)
                a += 1
            covers.append(found)
        users = {}
        for q, found in enumerate(covers):
            for a in found:
                users.setdefault(a, []).append(q)
        for q, found in enumerate(covers):
            if not found:
                continue
            qs, qe = _trim(prompt_text, *offsets[q])
            if len(found) == 1 and users[found[0]] == [q] and asr[found[0]] == (qs, qe) \
                    and ids[q] == lm_ids[found[0]]:
                prompt.exact[q] = found[0]
                continue
            prompt.mixed.extend((q, a, 1.0 / len(found)) for a in found)
            s, e = offsets[q]
            if s < slot[0] or e > slot[1]:  # it holds template text too
                prompt.edge_merges += 1
            else:
                prompt.inner_mismatches += 1
        return prompt

    # ---- the answer ----------------------------------------------------------------------
    def answer_ids(self, translation: str) -> List[int]:
        """A translation's pieces as the LM writes them after the prompt, ending as an
        answer ends (see the module docstring)."""
        text = self.answer_sep + translation.strip() + (STOP if self.ends_at_newline else "")
        return in_context_ids(self.tokenizer, text, self.suffix)

    def answer_text(self, ids: Sequence[int]) -> str:
        text = self.tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False)
        if self.ends_at_newline:
            text = text.split(STOP, 1)[0]
        return text.strip()

    def ends_answer(self, ids: Sequence[int]) -> bool:
        """Whether an answer's pieces end it (its last token holds the line break); else
        ``</s>`` ends it (a tokenizer with no line-break token, a template without one)."""
        return bool(ids) and ids[-1] in self._stop_set()

    def _stop_set(self):
        if self._stop_ids is None:
            self.stop_ids()
        return self._stop_lookup

    def stop_ids(self) -> List[int]:
        """The tokens that end an answer: those whose text holds a line break (when the
        template asks for the rest of the line)."""
        if self._stop_ids is None and not self.ends_at_newline:
            self._stop_ids = []
        if self._stop_ids is None:
            vocab = self.tokenizer.get_vocab()
            ids = sorted(vocab.values())
            texts = self.tokenizer.batch_decode([[i] for i in ids], skip_special_tokens=False,
                                                clean_up_tokenization_spaces=False)
            self._stop_ids = [i for i, t in zip(ids, texts) if STOP in t]
        self._stop_lookup = frozenset(self._stop_ids)
        return self._stop_ids
