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

An instruct LM (``--lm-chat``): ``--lm-prompt`` is the user's message, and the prompt is the
tokenizer's own chat template around it (an optional system message first), with the
generation prompt: exactly ``tokenizer.apply_chat_template(messages, add_generation_prompt=True,
**kwargs)`` (``--lm-chat-template-kwargs``: the template's variables, Qwen 3's ``enable_thinking``)
(its rendered text tokenized without adding special tokens, as transformers does). The answer
ends at the ids ``generate()`` stops at for that model (its ``generation_config.eos_token_id``:
``<|eot_id|>``, ``<|im_end|>``, ``<end_of_turn>``), a line break inside it kept; the targets are
the translation as the template writes an assistant turn, up to and with its end of turn.
"""

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

# how a transcript is split is the ASR's data side (data/lm_pieces.py); the prompt reads it so
from fairseq_exporter.data.lm_pieces import CONTEXT, in_context_ids, transcript_ids  # noqa: F401

SLOT = "{src}"
DEFAULT_PROMPT = "Translate to German: {src}\nGerman:"
STOP = "\n"


# a transcript and a translation that the chat template is tried on: it must put a message's
# text into the prompt unchanged, and write an assistant turn after its generation prompt
PROBE_TRANSCRIPT, PROBE_ANSWER = "Two dogs see a cat.", "Zwei Hunde sehen eine Katze."


class PromptError(ValueError):
    pass


@dataclass
class Chat:
    """How an instruct LM is prompted (``--lm-chat``): its tokenizer's chat template, an
    optional system message, and the ids its ``generate()`` stops at (the LM's
    ``generation_config.eos_token_id``)."""

    stop_ids: List[int]
    system: Optional[str] = None
    source: str = "the LM"  # where the tokenizer comes from, for messages
    kwargs: Dict[str, object] = field(default_factory=dict)  # the template's own variables (enable_thinking)

    def messages(self, user: str, answer: Optional[str] = None) -> List[Dict[str, str]]:
        found = [{"role": "system", "content": self.system}] if self.system else []
        found.append({"role": "user", "content": user})
        if answer is not None:
            found.append({"role": "assistant", "content": answer})
        return found

    def render(self, tokenizer, user: str, answer: Optional[str] = None) -> str:
        """The chat text of the messages: with the generation prompt, or ending in ``answer``'s turn."""
        try:
            return tokenizer.apply_chat_template(self.messages(user, answer), tokenize=False,
                                                 add_generation_prompt=answer is None, **self.kwargs)
        except Exception as err:  # jinja2's TemplateError (raise_exception in the template) and others
            shown = " with --lm-system-prompt" if self.system else ""
            raise PromptError(f"--lm-chat: the chat template of {self.source} refuses the messages{shown} "
                              f"({type(err).__name__}: {err})") from err


def generation_stop_ids(generation_config, config=None) -> List[int]:
    """The ids ``generate()`` stops at when given none: the model's generation_config's
    ``eos_token_id`` (a list for Llama 3 Instruct), else its config's."""
    found = getattr(generation_config, "eos_token_id", None)
    if found is None:
        found = getattr(config, "eos_token_id", None)
    found = [found] if isinstance(found, int) else list(found or [])
    return sorted(set(int(i) for i in found))


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

    def __init__(self, text: str, tokenizer, chat: Optional[Chat] = None):
        if text.count(SLOT) != 1:
            raise PromptError(f"--lm-prompt {text!r}: the template must hold {SLOT} exactly once "
                              f"(found {text.count(SLOT)})")
        self.text, self.tokenizer, self.chat = text, tokenizer, chat
        self._stop_ids: Optional[List[int]] = None
        self.special_prefix = leading_special_ids(tokenizer)
        if chat is not None:
            self._use_chat_template(chat)
            return
        self.prefix, self.suffix = text.split(SLOT)
        self.ends_at_newline = STOP in self.suffix  # the answer is the rest of the line
        # a template that already starts with the tokenizer's own leading special text (a chat
        # text rendered by hand: "<|begin_of_text|>...") is tokenized as apply_chat_template
        # tokenizes its rendering, without adding it again
        lead = tokenizer.decode(self.special_prefix) if self.special_prefix else ""
        self.add_special_tokens = not (lead and text.startswith(lead))
        # what the answer follows: a space after the template unless it ends in one
        self.answer_sep = "" if not self.suffix or self.suffix[-1].isspace() else " "

    def _use_chat_template(self, chat: Chat):
        """The prompt is the chat template's rendering of the message (see the module docstring)."""
        tokenizer, where = self.tokenizer, f"--lm-chat: the chat template of {chat.source}"
        if not getattr(tokenizer, "chat_template", None):
            raise PromptError(f"--lm-chat: the tokenizer of {chat.source} has no chat template (tokenizer_config.json "
                              "chat_template, or chat_template.jinja); without --lm-chat, --lm-prompt is the "
                              "prompt's text")
        if chat.system and SLOT in chat.system:
            raise PromptError(f"--lm-system-prompt {chat.system!r}: {SLOT} goes in the user's message (--lm-prompt)")
        if not chat.stop_ids:
            raise PromptError(f"--lm-chat: {chat.source} names no end-of-turn ids (generation_config.json "
                              "eos_token_id): the answer could not end")
        rendered = chat.render(tokenizer, self.text)
        if rendered.count(SLOT) != 1:
            raise PromptError(f"{where} does not put the message {self.text!r} into the prompt once")
        self.prefix, self.suffix = rendered.split(SLOT)
        user = self.text.replace(SLOT, PROBE_TRANSCRIPT)
        if chat.render(tokenizer, user) != self.prefix + PROBE_TRANSCRIPT + self.suffix:
            raise PromptError(f"{where} changes the message's text (it renders {user!r} otherwise than "
                              f"{self.text!r} with the transcript in {SLOT})")
        asked = chat.render(tokenizer, user)
        answered = chat.render(tokenizer, user, PROBE_ANSWER)
        if not answered.startswith(asked) or answered[len(asked):].count(PROBE_ANSWER) != 1:
            raise PromptError(f"{where} writes an assistant turn that does not continue its generation prompt "
                              "(the translation targets are that turn)")
        self.answer_head, self.answer_tail = answered[len(asked):].split(PROBE_ANSWER)
        self.ends_at_newline, self.add_special_tokens, self.answer_sep = False, False, ""
        self._stop_ids = sorted(set(chat.stop_ids))
        self._stop_lookup = frozenset(self._stop_ids)
        probe = in_context_ids(tokenizer, self.answer_head + PROBE_ANSWER + self.answer_tail, self.suffix)
        if not any(i in self._stop_lookup for i in probe):
            raise PromptError(f"{where} ends an assistant turn with {self.answer_tail!r}, which holds none of the "
                              f"ids generate() stops at ({self._stop_ids}: generation_config.json eos_token_id)")

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
        if self.chat is not None:  # the template's own rendering (one that trims writes an empty message otherwise)
            rendered = self.chat.render(self.tokenizer, self.text.replace(SLOT, text))
            if rendered != prompt_text and text:
                raise PromptError(f"--lm-chat: the chat template of {self.chat.source} renders the transcript "
                                  f"{text!r} otherwise than the message {self.text!r} with it in {SLOT}")
            prompt_text = rendered
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
        if self.chat is not None:  # the assistant turn, up to and with its end of turn
            ids = in_context_ids(self.tokenizer, self.answer_head + translation.strip() + self.answer_tail, self.suffix)
            return self._through_first_stop(ids)
        text = self.answer_sep + translation.strip() + (STOP if self.ends_at_newline else "")
        return in_context_ids(self.tokenizer, text, self.suffix)

    def _through_first_stop(self, ids: Sequence[int]) -> List[int]:
        stops = self._stop_set()
        for i, t in enumerate(ids):
            if t in stops:
                return list(ids[:i + 1])
        return list(ids)

    def answer_text(self, ids: Sequence[int]) -> str:
        ids = list(ids)
        if self.chat is not None:  # the text before the end of turn, line breaks kept
            ids = self._through_first_stop(ids)
            if ids and ids[-1] in self._stop_set():
                ids = ids[:-1]
        text = self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
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

    def search_stop_ids(self, eos: int) -> List[int]:
        """What generate() stops at: with a chat template the LM's own end-of-turn ids, as
        generate() given none; else the end-of-text and the line-break tokens."""
        return list(self.stop_ids()) if self.chat is not None else sorted({eos, *self.stop_ids()})

    def stop_ids(self) -> List[int]:
        """The tokens that end an answer: those whose text holds a line break (when the
        template asks for the rest of the line); with a chat template, the end-of-turn ids."""
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
