"""The decoder-only back-end: a local Hugging Face causal LM (``--lm-checkpoint``) as the text
model of the cascade (models/causal_lm.py has its parts: loading, the LM's input side, the
decoder that reads prompt + translation).

The LM's tokenizer is the target side (data/lm_vocabulary.py); the ASR writes the LM's pieces
(each ASR symbol is one); ``fairseq-generate`` searches with ``transformers``' own
``generate()`` (models/lm_generator.py). The LM is frozen and never in a checkpoint, which
keeps its directory and a fingerprint of its weights.
"""

import logging

from fairseq_exporter.data.hf_vocabulary import check_tokenizer_fingerprint
from fairseq_exporter.models import pretrained
from fairseq_exporter.models.causal_lm import (
    CausalLMDecoder,
    LMError,
    LMSource,
    PromptTemplate,
    asr_to_lm_ids,
    checkpoint_lm_layers,
    load_causal_lm,
    load_device,
)
from fairseq_exporter.models.dictionaries import check_same_dictionary
from fairseq_exporter.models.exporter import nearest_rows
from fairseq_exporter.models.hf_frozen import check_fingerprint
from fairseq_exporter.models.lm_prompt import Chat, generation_stop_ids
from fairseq_exporter.models.lm_ranks import check_same_lm_on_every_rank
from fairseq_exporter.models.text_model import TextModel, register_text_model, reorder_source, source_encoder_out

logger = logging.getLogger(__name__)


def chat_template_kwargs(cfg) -> dict:
    """--lm-chat-template-kwargs, parsed (a JSON object; an error naming the option otherwise)."""
    from fairseq_exporter.data.s2t_layout import json_object

    text = getattr(cfg, "lm_chat_template_kwargs", None)
    return json_object(text, "--lm-chat-template-kwargs") if text else {}


@register_text_model
class CausalLM(TextModel):
    OPTION = "--lm-checkpoint"
    FIELD = "lm_checkpoint"
    FROZEN_TABLE_RANK = 64  # no V x D trainable copy of an LLM's table
    TOKENIZES_TARGETS = True
    RECORDED = ("lm_fingerprint", "tokenizer_fingerprint")  # the LM itself stays in its directory

    def __init__(self, source: LMSource, decoder: CausalLMDecoder, source_limit: int):
        self.lm_source, self.decoder, self.source_limit = source, decoder, source_limit

    # ---- the task's target side ----------------------------------------------------------
    @classmethod
    def target_dictionary(cls, text_cfg, from_data_config):
        from fairseq_exporter.data.lm_vocabulary import LMDictionary

        location = text_cfg.get(cls.FIELD) if isinstance(text_cfg, dict) else getattr(text_cfg, cls.FIELD)

        tgt_dict = LMDictionary.from_lm_dir(location)
        logger.info(f"translations are tokenized by the LM's tokenizer ({location}); the data config's "
                    "vocab_filename and bpe_tokenizer are not used")
        return tgt_dict

    @classmethod
    def target_dictionary_name(cls, location, data_cfg):
        return f"the tokenizer of {location}"

    @classmethod
    def generator(cls, model, tgt_dict, args):
        from fairseq_exporter.models.lm_generator import LMGenerator

        # the LM's own search, so that the 1-best cascade is the one a user runs
        return LMGenerator(model, tgt_dict, args)

    # ---- loading and its checks ------------------------------------------------------------
    @classmethod
    def check_options(cls, cfg):
        for option, field in (("--lm-system-prompt", "lm_system_prompt"), ("--lm-chat-template-kwargs",
                                                                          "lm_chat_template_kwargs")):
            if getattr(cfg, field, None) is not None and not getattr(cfg, "lm_chat", False):
                raise LMError(f"{option} is for the LM's chat template: give it with --lm-chat")
        chat_template_kwargs(cfg)

    @classmethod
    def read_and_check(cls, cfg, task, asr_part):
        """ASR target vocab == task source vocab (each symbol an LM piece: build)."""
        src_name, _ = task.dictionary_files()
        asr_dict, asr_dict_path = pretrained.asr_dictionary(asr_part, cfg.asr_dict)
        check_same_dictionary(asr_dict, f"ASR target dictionary ({asr_part.path}: {asr_dict_path})",
                              task.transcript_dictionary, f"source dictionary of the data config ({src_name})",
                              "Point src_vocab_filename in the config yaml at the ASR's target dictionary.")
        return None  # the LM's weights stay in its directory

    @classmethod
    def build(cls, cfg, task, state):
        """The frozen LM as decoder, and its input side as the encoder sees it."""
        lm_dict = task.target_dictionary
        if getattr(lm_dict, "source", None) is None or not hasattr(lm_dict, "tokenizer"):
            raise ValueError(f"--lm-checkpoint {cfg.lm_checkpoint}: the task's target vocabulary is not the LM's "
                             "(the speech_to_text_exporter task reads it from --lm-checkpoint)")
        lm = load_causal_lm(cfg.lm_checkpoint, cfg.lm_dtype, load_device())
        checkpointed = checkpoint_lm_layers(lm) if cfg.lm_gradient_checkpointing else []
        found = check_fingerprint(cfg, "lm_fingerprint", lm, cfg.lm_checkpoint, cls.OPTION, "LM", LMError)
        check_same_lm_on_every_rank(found, cfg.lm_checkpoint)  # torch DDP does not broadcast the LM
        chat = (Chat(generation_stop_ids(lm.generation_config, lm.config), cfg.lm_system_prompt, cfg.lm_checkpoint,
                     chat_template_kwargs(cfg)) if getattr(cfg, "lm_chat", False) else None)
        # an instruct LM's answer ends at its generation_config's ids: a rebuild must stop at the same
        ends = {"generation_config eos_token_id": chat.stop_ids} if chat is not None else None
        check_tokenizer_fingerprint(cfg, lm_dict.tokenizer, cfg.lm_checkpoint, cls.OPTION, LMError, ends)
        template = PromptTemplate(cfg.lm_prompt, lm_dict.tokenizer, chat)
        lm_dict.use_template(template)  # translations are tokenized as answers to this prompt
        src_name, _ = task.dictionary_files()
        source = LMSource(lm.get_input_embeddings(), asr_to_lm_ids(task.transcript_dictionary, lm_dict, src_name))
        source_limit = task.onebest_max_len + 1  # the longest 1-best and its </s>
        decoder = CausalLMDecoder(lm, lm_dict, source, template, source_limit, checkpointed)
        return cls(source, decoder, source_limit)

    def describe(self, cfg):
        return (f"LM {cfg.lm_checkpoint} (frozen, {cfg.lm_dtype}"
                f"{', layers recomputed in backward' if cfg.lm_gradient_checkpointing else ''})")

    # ---- the input side: the LM's embedding of each ASR symbol; the decoder builds the prompt
    def encoder_modules(self):
        return {"lm_source": self.lm_source}

    def table(self):
        return self.lm_source.table()

    def rows(self, tokens):
        return self.lm_source.rows(tokens)

    def nearest(self, vectors):
        table, sq = self.lm_source.search_table()
        return nearest_rows(vectors, table, sq=sq)

    def recovered(self, vectors, tokens):
        return self.lm_source.recovered(vectors, tokens)  # most vectors without the search over 128k rows

    def fed(self, tokens):
        return self.lm_source.fed(tokens)  # a prompt leaves out </s>

    def encode(self, tokens, embeddings):
        return source_encoder_out(tokens, embeddings)  # the LM decoder puts them in its prompt

    def reorder_encoder_out(self, encoder_out, new_order):
        return reorder_source(encoder_out, new_order)
