"""The ``exporter`` model: one fairseq encoder-decoder model that *is* the cascade.

encoder = ASR + 1-best + exporter + MT encoder (``CoupledEncoder``); decoder = the MT
decoder, unchanged. Its sizes come from the two pretrained checkpoints; only the
exporter network has options of its own.
"""

import logging
from dataclasses import dataclass, field
from typing import Optional

from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.models import FairseqEncoderDecoderModel, register_model
from omegaconf import open_dict

from fairseq_exporter.models import onebest_cache, pretrained
from fairseq_exporter.models.causal_lm import (
    DEFAULT_PROMPT,
    LM_DTYPES,
    CausalLMDecoder,
    LMError,
    LMSource,
    PromptTemplate,
    asr_to_lm_ids,
    checkpoint_lm_layers,
    external_names,
    external_prefixes,
    files_fingerprint,
    load_causal_lm,
    load_device,
    weights_fingerprint,
)
from fairseq_exporter.models.checkpoint_fit import check_state_dict_fits
from fairseq_exporter.models.coupling import SOURCES, CoupledEncoder
from fairseq_exporter.models.ctc import ctc_head
from fairseq_exporter.models.dictionaries import check_same_dictionary, fingerprint
from fairseq_exporter.models.exporter import EXPORTER_TYPES, build_exporter
from fairseq_exporter.models.lm_ranks import check_same_lm_on_every_rank

logger = logging.getLogger(__name__)

# the vocab exporter's correction rank on an LM's frozen rows (--exporter-table-rank)
LM_TABLE_RANK = 64

REBUILD_ADVICE = ("Train the ASR with the MT source vocabulary as its target vocabulary "
                  "(see examples/own_checkpoints.md).")


@dataclass
class ExporterModelConfig(FairseqDataclass):
    asr_checkpoint: Optional[str] = field(
        default=None, metadata={"help": "fairseq speech_to_text checkpoint (s2t_transformer, "
                                        "s2t_conformer) whose target vocabulary is the MT source vocabulary"})
    mt_checkpoint: Optional[str] = field(
        default=None, metadata={"help": "fairseq translation (transformer) checkpoint (give this or --lm-checkpoint)"})
    lm_checkpoint: Optional[str] = field(
        default=None, metadata={"help": "local Hugging Face causal-LM directory (config, weights, tokenizer) "
                                        "as the text model, frozen; the ASR target vocabulary must be "
                                        "pieces of its tokenizer (give this or --mt-checkpoint)"})
    lm_prompt: str = field(
        default=DEFAULT_PROMPT, metadata={"help": "--lm-checkpoint: the prompt template; {src} (exactly once) "
                                                  "is where the transcript goes"})
    lm_dtype: ChoiceEnum(list(LM_DTYPES)) = field(
        default="float32", metadata={"help": "--lm-checkpoint: the dtype the LM is loaded in"})
    lm_gradient_checkpointing: bool = field(
        default=False, metadata={"help": "--lm-checkpoint: keep only each LM layer's input for the backward "
                                         "pass and recompute the layer there (transformers' activation "
                                         "checkpointing), instead of keeping all the LM's activations that "
                                         "the translation loss back-propagates through (GBs per GPU for an "
                                         "8B LM). Costs about one extra LM forward per training step; the "
                                         "results are the same (the LM stays in eval mode)"})
    asr_dict: Optional[str] = field(
        default=None, metadata={"help": "ASR target dictionary file, if the ASR checkpoint's "
                                        "data dir (task.data + config_yaml) has moved"})
    mt_data: Optional[str] = field(
        default=None, metadata={"help": "directory with the MT's dict.{src,tgt}.txt, if the MT "
                                        "checkpoint's task.data has moved"})
    exporter_source: ChoiceEnum(list(SOURCES)) = field(
        default="decoder", metadata={"help": "where the 1-best and what the exporter reads come from: "
                                             "decoder (ASR attention-decoder search; the decoder state "
                                             "that predicted each 1-best token) or ctc (the ASR encoder's "
                                             "CTC head, as in the paper; the speech-encoder frames of each "
                                             "token's CTC segment, mean-pooled). ctc needs an ASR trained "
                                             "with --ctc-weight > 0"})
    exporter_type: ChoiceEnum(list(EXPORTER_TYPES)) = field(
        default="mlp", metadata={"help": "exporter network: linear, mlp, transformer (self-attention "
                                         "over tokens + cross-attention to speech frames), or vocab "
                                         "(softmax over the vocabulary from the ASR output layer, mixing "
                                         "a copy of the MT embedding table, plus an MLP correction: "
                                         "starts at the 1-best cascade)"})
    exporter_table_rank: Optional[int] = field(
        default=None, metadata={"help": "vocab exporter: 0 = it trains a copy of the text model's embedding "
                                        "table; R > 0 = it mixes the LM's frozen rows plus a trainable rank-R "
                                        "correction (--lm-checkpoint only; no V x D copy of an LLM's table). "
                                        f"Default: {LM_TABLE_RANK} with --lm-checkpoint, 0 with --mt-checkpoint"})
    exporter_hidden_dim: int = field(default=512, metadata={"help": "mlp hidden / transformer model dim"})
    exporter_layers: int = field(default=1, metadata={"help": "mlp hidden layers / transformer layers"})
    exporter_heads: int = field(default=4, metadata={"help": "transformer exporter attention heads"})
    exporter_dropout: float = field(default=0.1, metadata={"help": "exporter dropout"})
    freeze_asr: bool = field(default=False, metadata={"help": "keep the ASR model fixed (eval mode, "
                                                              "no gradient step)"})
    freeze_mt: bool = field(default=False, metadata={"help": "keep the MT model fixed; gradient still "
                                                             "flows through it (the paper's main case)"})
    # Filled in when the model is first built, so a saved exporter model rebuilds
    # without the original checkpoints and refuses foreign dictionaries.
    pretrained_asr_cfg: Optional[str] = field(
        default=None, metadata={"help": "set automatically: the ASR model config (JSON)"})
    pretrained_mt_cfg: Optional[str] = field(
        default=None, metadata={"help": "set automatically: the MT model config (JSON)"})
    dictionaries: Optional[str] = field(
        default=None, metadata={"help": "set automatically: size:hash of the source and target dictionaries"})
    lm_fingerprint: Optional[str] = field(
        default=None, metadata={"help": "set automatically: a fingerprint of the --lm-checkpoint weights"})


def _task_dictionary_fingerprints(task):
    return f"src={fingerprint(task.transcript_dictionary)} tgt={fingerprint(task.target_dictionary)}"


def _check_pretrained_dictionaries(cfg, task, asr_part, mt_part):
    """ASR target vocab == MT source vocab == task source vocab; MT target == task target."""
    src_name, tgt_name = task.dictionary_files()
    if cfg.asr_dict:
        asr_dict_path = cfg.asr_dict
    else:
        asr_dict_path = pretrained.asr_dictionary_path(asr_part)
    asr_dict = pretrained.load_dictionary(
        asr_dict_path, f"ASR target dictionary (of {asr_part.path})", "pass --asr-dict PATH")
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


def _check_asr_dictionary(cfg, task, asr_part):
    """LM back-end: ASR target vocab == task source vocab (each symbol an LM piece: _build_lm)."""
    src_name, _ = task.dictionary_files()
    asr_dict_path = cfg.asr_dict or pretrained.asr_dictionary_path(asr_part)
    asr_dict = pretrained.load_dictionary(
        asr_dict_path, f"ASR target dictionary (of {asr_part.path})", "pass --asr-dict PATH")
    check_same_dictionary(asr_dict, f"ASR target dictionary ({asr_part.path}: {asr_dict_path})",
                          task.transcript_dictionary, f"source dictionary of the data config ({src_name})",
                          "Point src_vocab_filename in the config yaml at the ASR's target dictionary.")


def _resolve_table_rank(cfg, use_lm: bool, fresh: bool):
    """--exporter-table-rank's default, written into the config: a checkpoint rebuilds the
    exporter it was trained with (one saved before the option had a copy of the table)."""
    rank = cfg.exporter_table_rank
    if rank is not None and rank < 0:
        raise ValueError(f"--exporter-table-rank {rank}: 0 (a trainable copy of the table) or a rank >= 1")
    if rank is not None and rank > 0 and not use_lm:
        raise ValueError(f"--exporter-table-rank {rank}: a correction to frozen rows is for an LM's table "
                         f"(--lm-checkpoint); the vocab exporter on an MT trains a copy of it (0)")
    if rank is None:
        with open_dict(cfg):
            cfg.exporter_table_rank = LM_TABLE_RANK if use_lm and fresh else 0


def _build_lm(cfg, task):
    """The frozen LM as decoder, and its input side as the encoder sees it."""
    lm_dict = task.target_dictionary
    if getattr(lm_dict, "source", None) is None or not hasattr(lm_dict, "tokenizer"):
        raise ValueError(f"--lm-checkpoint {cfg.lm_checkpoint}: the task's target vocabulary is not the LM's "
                         "(the speech_to_text_exporter task reads it from --lm-checkpoint)")
    lm = load_causal_lm(cfg.lm_checkpoint, cfg.lm_dtype, load_device())
    checkpointed = checkpoint_lm_layers(lm) if cfg.lm_gradient_checkpointing else []
    found = files_fingerprint(cfg.lm_checkpoint) or weights_fingerprint(lm)
    check_same_lm_on_every_rank(found, cfg.lm_checkpoint)  # torch DDP does not broadcast the LM
    if cfg.lm_fingerprint is None:
        with open_dict(cfg):
            cfg.lm_fingerprint = found
    elif cfg.lm_fingerprint != found and cfg.lm_fingerprint not in (  # the forms checkpoints hold from before
            weights_fingerprint(lm), weights_fingerprint(lm, with_dtype=True)):
        raise LMError(f"--lm-checkpoint {cfg.lm_checkpoint}: its weights (fingerprint {found}) are not those of the "
                      f"LM this exporter was trained with ({cfg.lm_fingerprint}); point it at that LM "
                      "(fairseq-generate: --model-overrides \"{{'lm_checkpoint': 'DIR'}}\")")
    template = PromptTemplate(cfg.lm_prompt, lm_dict.tokenizer)
    lm_dict.use_template(template)  # translations are tokenized as answers to this prompt
    src_name, _ = task.dictionary_files()
    source = LMSource(lm.get_input_embeddings(), asr_to_lm_ids(task.transcript_dictionary, lm_dict, src_name))
    source_limit = task.onebest_max_len + 1  # the longest 1-best and its </s>
    decoder = CausalLMDecoder(lm, lm_dict, source, template, source_limit, checkpointed)
    return dict(mt_encoder=None, decoder=decoder, lm_source=source, source_limit=source_limit,
                table=source.table().detach())


@register_model("exporter", dataclass=ExporterModelConfig)
class ExporterModel(FairseqEncoderDecoderModel):
    def __init__(self, cfg, encoder, decoder):
        super().__init__(encoder, decoder)
        self.cfg = cfg
        for part, frozen in ((self.encoder.asr, cfg.freeze_asr),
                             (self.encoder.mt_encoder, cfg.freeze_mt),
                             (self.decoder, cfg.freeze_mt)):
            if frozen and part is not None:
                part.requires_grad_(False)
        self.onebest_cache_dir: Optional[str] = None  # --onebest-cache (see use_onebest_cache)
        self.onebest_cache_dtype = "float32"  # --onebest-cache-dtype
        self.onebest_cache: Optional[onebest_cache.OneBestCache] = None
        # torch DDP neither broadcasts nor buckets these: the LM is frozen, the same on every
        # rank (its fingerprint says so), and can be gigabytes
        self._ddp_params_and_buffers_to_ignore = external_names(self)
        self.train()

    def use_onebest_cache(self, directory: str, state_dtype: str = "float32"):
        """--onebest-cache DIR: in training, each utterance's recognition comes from DIR
        once computed (models/onebest_cache.py). Opened at the first training forward,
        once the ASR weights are loaded (a resumed run loads them after building)."""
        onebest_cache.check_cacheable(self, self.encoder.coupling)
        self.onebest_cache_dir, self.onebest_cache_dtype = directory, state_dtype

    def _cached_recognition(self, net_input, utterance, compute_asr_reference: bool):
        if utterance is None:
            raise ValueError(f"{onebest_cache.OPTION}: the training batches do not name their utterances "
                             "(they do not come from the speech_to_text_exporter task's dataset)")
        if self.onebest_cache is None:
            key = onebest_cache.fingerprint(self.encoder, self.encoder.onebest_beam, self.encoder.onebest_max_len)
            self.onebest_cache = onebest_cache.OneBestCache(self.onebest_cache_dir, key, self.onebest_cache_dtype)
        # the speech encoder output is still needed by the ASR loss and the transformer exporter
        need_encoder = compute_asr_reference or self.cfg.exporter_type == "transformer"
        return self.onebest_cache.recognize(self.encoder, net_input, onebest_cache.cache_keys(utterance),
                                            need_states=self.encoder.coupling == "exporter",
                                            need_encoder=need_encoder)

    @classmethod
    def build_model(cls, cfg: ExporterModelConfig, task):
        use_lm = bool(cfg.lm_checkpoint)
        if use_lm and cfg.mt_checkpoint:
            raise ValueError(f"--mt-checkpoint {cfg.mt_checkpoint} and --lm-checkpoint {cfg.lm_checkpoint}: "
                             "the text model is one or the other")
        if cfg.lm_gradient_checkpointing and not use_lm:
            raise ValueError("--lm-gradient-checkpointing recomputes the layers of the --lm-checkpoint LM; "
                             "the MT back-end (--mt-checkpoint) has none: leave it out")
        asr_state = mt_state = None
        if cfg.pretrained_asr_cfg is None or (not use_lm and cfg.pretrained_mt_cfg is None):
            asr_part = pretrained.read_checkpoint(cfg.asr_checkpoint, "--asr-checkpoint",
                                                  pretrained.ASR_TASKS, "--mt-checkpoint")
            if use_lm:
                _check_asr_dictionary(cfg, task, asr_part)
            else:
                mt_part = pretrained.read_checkpoint(cfg.mt_checkpoint, "--mt-checkpoint",
                                                     pretrained.MT_TASKS, "--asr-checkpoint")
                _check_pretrained_dictionaries(cfg, task, asr_part, mt_part)
            with open_dict(cfg):
                cfg.pretrained_asr_cfg = asr_part.model_cfg_json
                cfg.pretrained_mt_cfg = None if use_lm else mt_part.model_cfg_json
                cfg.dictionaries = _task_dictionary_fingerprints(task)
            asr_state = asr_part.state_dict
            mt_state = None if use_lm else mt_part.state_dict
        elif cfg.dictionaries != _task_dictionary_fingerprints(task):
            src_name, tgt_name = task.dictionary_files()
            raise ValueError(
                f"the exporter model was trained with dictionaries {cfg.dictionaries}, but the "
                f"data config names {src_name} / {tgt_name} "
                f"({_task_dictionary_fingerprints(task)}); use the config yaml the model was trained with")
        _resolve_table_rank(cfg, use_lm, fresh=asr_state is not None)
        src_dict, tgt_dict = task.transcript_dictionary, task.target_dictionary
        asr = pretrained.build_pretrained_model(cfg.pretrained_asr_cfg, None, src_dict, asr_state,
                                                cfg.asr_checkpoint or "")
        if use_lm:
            text = _build_lm(cfg, task)
        else:
            mt = pretrained.build_pretrained_model(cfg.pretrained_mt_cfg, src_dict, tgt_dict, mt_state,
                                                   cfg.mt_checkpoint or "")
            text = dict(mt_encoder=mt.encoder, decoder=mt.decoder, lm_source=None, source_limit=0,
                        table=mt.encoder.embed_tokens.weight.detach())
        text_dim = text["table"].size(1)
        asr_cfg = pretrained.model_cfg_from_json(cfg.pretrained_asr_cfg)
        asr_enc_dim = asr_cfg.encoder_embed_dim
        if cfg.exporter_source == "ctc":
            # pooled encoder frames live where the CTC head reads: the vocab exporter
            # starts from that head. Its blank (<s>, a row the MT never reads) starts out
            # of the mixture, so a </s> over trailing blank frames is not mixed towards <s>
            # (toy dev set: recovery at init 98.7% -> 99.3%).
            head = ctc_head(asr, cfg.asr_checkpoint, getattr(asr_cfg, "arch", "?"), len(src_dict))
            in_dim = asr_enc_dim
            output_weight, output_bias = head.weight.detach(), head.bias.detach().clone()
            output_bias[src_dict.bos()] = -1e4
        else:
            in_dim = asr.decoder.output_projection.weight.size(1)
            output_weight, output_bias = asr.decoder.output_projection.weight.detach(), None
        copied = cfg.exporter_type == "vocab" and cfg.exporter_table_rank == 0
        exporter = build_exporter(cfg.exporter_type, in_dim, text_dim, asr_enc_dim,
                                  cfg.exporter_hidden_dim, cfg.exporter_layers,
                                  cfg.exporter_heads, cfg.exporter_dropout,
                                  output_weight, text["table"].float() if copied else None, output_bias,
                                  frozen_table=text["lm_source"].table if use_lm else None,
                                  table_rank=cfg.exporter_table_rank)
        encoder = CoupledEncoder(asr, text["mt_encoder"], exporter, src_dict, task.coupling,
                                 task.onebest_beam, task.onebest_max_len, cfg.freeze_asr,
                                 cfg.exporter_source, getattr(task, "posterior_temperature", 1.0),
                                 lm_source=text["lm_source"], lm_source_limit=text["source_limit"])
        logger.info(f"exporter cascade: coupling={task.coupling} source={cfg.exporter_source} "
                    f"exporter={cfg.exporter_type} "
                    f"({sum(p.numel() for p in exporter.parameters()):,} params) "
                    f"freeze_asr={cfg.freeze_asr} "
                    + (f"LM {cfg.lm_checkpoint} (frozen, {cfg.lm_dtype}"
                       f"{', layers recomputed in backward' if cfg.lm_gradient_checkpointing else ''})"
                       if use_lm else f"freeze_mt={cfg.freeze_mt}"))
        return cls(cfg, encoder, text["decoder"])

    def train(self, mode: bool = True):
        # Frozen parts stay in eval mode (no dropout), so the MT model a frozen run
        # back-propagates through is exactly the MT model that will be deployed.
        super().train(mode)
        if self.cfg.freeze_asr:
            self.encoder.asr.eval()
        if self.cfg.freeze_mt and self.encoder.mt_encoder is not None:
            self.encoder.mt_encoder.eval()
            self.decoder.eval()
        return self

    def forward(self, src_tokens, src_lengths, prev_output_tokens, src_txt_tokens=None,
                src_txt_lengths=None, recognition=None, compute_translation: bool = True,
                compute_asr_reference: bool = False, utterance=None, **unused):
        if recognition is None and self.training and self.onebest_cache_dir is not None:
            recognition = self._cached_recognition(
                dict(src_tokens=src_tokens, src_lengths=src_lengths, src_txt_tokens=src_txt_tokens),
                utterance, compute_asr_reference)
        encoder_out = self.encoder(src_tokens, src_lengths, src_txt_tokens=src_txt_tokens,
                                   recognition=recognition)
        if compute_translation:
            logits, extra = self.decoder(prev_output_tokens, encoder_out=encoder_out)
        else:  # L2-only training (stage 1) never needs the MT decoder
            logits, extra = None, {}
        extra["coupled"] = encoder_out
        if compute_asr_reference:  # inside forward, so DDP sees every parameter it uses
            if self.cfg.exporter_source == "ctc":  # the 1-best is the CTC head's: keep its WER
                extra["asr_reference_ctc"] = self.encoder.reference_ctc(encoder_out["recognition"])
            else:
                extra["asr_reference_logits"] = self.encoder.reference_logits(
                    src_txt_tokens, encoder_out["recognition"])
        return logits, extra

    def load_state_dict(self, state_dict, strict=True, model_cfg=None, args=None):
        check_state_dict_fits(self, state_dict)  # a clear error before torch's shape list
        external = external_prefixes(self)
        if not external:
            return super().load_state_dict(state_dict, strict=strict, model_cfg=model_cfg, args=args)
        # the frozen LM's weights are not in the checkpoint (they stay in --lm-checkpoint)
        result = super().load_state_dict(state_dict, strict=False, model_cfg=model_cfg, args=args)
        missing = [k for k in result.missing_keys if not k.startswith(tuple(external))]
        if strict and (missing or result.unexpected_keys):
            raise RuntimeError(f"the exporter checkpoint does not fit this cascade: missing {missing[:5]}, "
                               f"unexpected {result.unexpected_keys[:5]}")
        return result

    def max_positions(self):
        return (self.encoder.max_positions(), self.decoder.max_positions())
