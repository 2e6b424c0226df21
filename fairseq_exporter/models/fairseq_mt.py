"""The fairseq back-end: a fairseq ``translation`` transformer (``--mt-checkpoint``) as the text
model of the cascade.

Its encoder reads the exporter outputs through the seam fairseq's ``TransformerEncoder`` offers
(``token_embeddings``: positions and padding still come from the 1-best ids, ``embed_scale``
applies to both), its decoder is the cascade's decoder, and ``fairseq-generate`` searches it
with fairseq's own ``SequenceGenerator``. It is rebuilt from the model config the exporter
config keeps, and its weights are in every exporter checkpoint (``--freeze-mt`` or not).
"""

from omegaconf import open_dict

from fairseq_exporter.models import pretrained
from fairseq_exporter.models.dictionaries import check_same_dictionary
from fairseq_exporter.models.text_model import TextModel, refuse_chat_options, register_text_model

REBUILD_ADVICE = ("Train the ASR with the MT source vocabulary as its target vocabulary "
                  "(see examples/own_checkpoints.md).")


@register_text_model
class FairseqMT(TextModel):
    OPTION = "--mt-checkpoint"
    FIELD = "mt_checkpoint"
    RECORDED = ("pretrained_mt_cfg",)  # its weights are in the exporter checkpoint too

    def __init__(self, mt, pad: int):
        self.mt_encoder, self.decoder = mt.encoder, mt.decoder
        self.pad = pad
        self.source_limit = mt.encoder.max_positions()

    @classmethod
    def target_dictionary(cls, text_cfg, from_data_config):
        location = text_cfg.get(cls.FIELD) if isinstance(text_cfg, dict) else getattr(text_cfg, cls.FIELD, None)
        if location:
            pretrained.refuse_hf_directory(location, cls.OPTION)  # before the data config's vocabularies
        return from_data_config()

    @classmethod
    def check_options(cls, cfg):
        if cfg.lm_gradient_checkpointing:
            raise ValueError("--lm-gradient-checkpointing recomputes the layers of the --lm-checkpoint LM; "
                             "the MT back-end (--mt-checkpoint) has none: leave it out")
        refuse_chat_options(cfg, cls.OPTION)

    @classmethod
    def recorded(cls, cfg):
        return cfg.pretrained_mt_cfg is not None

    @classmethod
    def read_and_check(cls, cfg, task, asr_part):
        mt_part = pretrained.read_checkpoint(cfg.mt_checkpoint, cls.OPTION, pretrained.MT_TASKS, "--asr-checkpoint")
        _check_dictionaries(cfg, task, asr_part, mt_part)
        with open_dict(cfg):
            cfg.pretrained_mt_cfg = mt_part.model_cfg_json
        return mt_part.state_dict

    @classmethod
    def build(cls, cfg, task, state):
        src_dict = task.transcript_dictionary
        mt = pretrained.build_pretrained_model(cfg.pretrained_mt_cfg, src_dict, task.target_dictionary, state,
                                               cfg.mt_checkpoint or "")
        return cls(mt, src_dict.pad())

    def describe(self, cfg):
        return f"freeze_mt={cfg.freeze_mt}"

    # ---- the input side -----------------------------------------------------------------
    def encoder_modules(self):
        return {"mt_encoder": self.mt_encoder}

    def table(self):
        # the raw rows: TransformerEncoder.forward_embedding scales them and the exporter
        # outputs alike (embed_scale), so the exporter is trained against the unscaled ones
        return self.mt_encoder.embed_tokens.weight

    def rows(self, tokens):
        return self.mt_encoder.embed_tokens.weight[tokens]

    def fed(self, tokens):
        return tokens.ne(self.pad)

    def encode(self, tokens, embeddings):
        # positions and padding still come from the 1-best ids; only the lookup is replaced
        return self.mt_encoder(tokens, src_lengths=tokens.ne(self.pad).sum(1), token_embeddings=embeddings)

    def reorder_encoder_out(self, encoder_out, new_order):
        return self.mt_encoder.reorder_encoder_out(encoder_out, new_order)

    # ---- training -----------------------------------------------------------------------
    def tunable(self):
        return [self.mt_encoder, self.decoder]

    def table_parameters(self):
        return self.mt_encoder.embed_tokens.parameters()

    def translation_parameters(self, looks_up):
        skip = () if looks_up else ("embed_tokens.",)
        return [*self.decoder.parameters(),
                *(p for n, p in self.mt_encoder.named_parameters() if not n.startswith(skip))]


def _check_dictionaries(cfg, task, asr_part, mt_part):
    """ASR target vocab == MT source vocab == task source vocab; MT target == task target."""
    src_name, tgt_name = task.dictionary_files()
    asr_dict, asr_dict_path = pretrained.asr_dictionary(asr_part, cfg.asr_dict)
    mt_src_path, mt_tgt_path = pretrained.mt_dictionary_paths(mt_part, cfg.mt_data)
    mt_src = pretrained.load_dictionary(
        mt_src_path, f"MT source dictionary (of {mt_part.path})", "pass --mt-data DIR")
    mt_tgt = pretrained.load_dictionary(
        mt_tgt_path, f"MT target dictionary (of {mt_part.path})", "pass --mt-data DIR")
    check_same_dictionary(asr_dict, f"ASR target dictionary ({asr_part.path}: {asr_dict_path})",
                          mt_src, f"MT source dictionary ({mt_src_path})", REBUILD_ADVICE)
    check_same_dictionary(task.transcript_dictionary, f"source dictionary of the data config ({src_name})",
                          mt_src, f"MT source dictionary ({mt_src_path})",
                          "Point src_vocab_filename in the config yaml at the MT source dictionary.")
    check_same_dictionary(task.target_dictionary, f"target dictionary of the data config ({tgt_name})",
                          mt_tgt, f"MT target dictionary ({mt_tgt_path})",
                          "Point vocab_filename in the config yaml at the MT target dictionary.")
