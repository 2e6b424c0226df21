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
from fairseq_exporter.models.causal_lm import DEFAULT_PROMPT, LM_DTYPES, external_names, external_prefixes
from fairseq_exporter.models.checkpoint_fit import check_state_dict_fits
from fairseq_exporter.models.coupling import SOURCES, CoupledEncoder
from fairseq_exporter.models.ctc import ctc_head
from fairseq_exporter.models.dictionaries import fingerprint
from fairseq_exporter.models.exporter import EXPORTER_TYPES, build_exporter
from fairseq_exporter.models.fairseq_mt import FairseqMT  # noqa: F401  (registers the back-end)
from fairseq_exporter.models.hf_mt import HFMT  # noqa: F401  (registers the back-end)
from fairseq_exporter.models.lm_text_model import CausalLM
from fairseq_exporter.models.text_model import text_model_named

logger = logging.getLogger(__name__)


@dataclass
class ExporterModelConfig(FairseqDataclass):
    asr_checkpoint: Optional[str] = field(
        default=None, metadata={"help": "fairseq speech_to_text checkpoint (s2t_transformer, "
                                        "s2t_conformer) whose target vocabulary is the MT source vocabulary"})
    mt_checkpoint: Optional[str] = field(
        default=None, metadata={"help": "fairseq translation (transformer) checkpoint (or give --hf-mt-checkpoint "
                                        "or --lm-checkpoint)"})
    lm_checkpoint: Optional[str] = field(
        default=None, metadata={"help": "local Hugging Face causal-LM directory (config, weights, tokenizer) "
                                        "as the text model, frozen; the ASR target vocabulary must be "
                                        "pieces of its tokenizer (give this or --mt-checkpoint)"})
    hf_mt_checkpoint: Optional[str] = field(
        default=None, metadata={"help": "local Hugging Face encoder-decoder MT directory (Marian/OPUS-MT, "
                                        "M2M100, NLLB-200, mBART-50: config, weights, tokenizer) as the text "
                                        "model, frozen; the ASR target vocabulary must be pieces of its "
                                        "tokenizer (fairseq-exporter-mt-vocab)"})
    mt_src_lang: Optional[str] = field(
        default=None, metadata={"help": "--hf-mt-checkpoint: the source language code where the family has "
                                        "them (NLLB eng_Latn, mBART-50 en_XX, M2M100 en)"})
    mt_tgt_lang: Optional[str] = field(
        default=None, metadata={"help": "--hf-mt-checkpoint: the target language code (NLLB deu_Latn, "
                                        "mBART-50 de_DE, M2M100 de)"})
    hf_mt_dtype: ChoiceEnum(list(LM_DTYPES)) = field(
        default="float32", metadata={"help": "--hf-mt-checkpoint: the dtype the MT is loaded in "
                                             "(--fp16/--bf16 leave it alone)"})
    lm_prompt: str = field(
        default=DEFAULT_PROMPT, metadata={"help": "--lm-checkpoint: the prompt template; {src} (exactly once) "
                                                  "is where the transcript goes"})
    lm_chat: bool = field(
        default=False, metadata={"help": "--lm-checkpoint: an instruct LM, prompted through its tokenizer's chat "
                                         "template: --lm-prompt is the user's message (holding {src}), the prompt "
                                         "is apply_chat_template(messages, add_generation_prompt=True), and the "
                                         "answer ends at the LM's end-of-turn ids (generation_config.json "
                                         "eos_token_id)"})
    lm_system_prompt: Optional[str] = field(
        default=None, metadata={"help": "--lm-chat: a system message before the user's"})
    lm_chat_template_kwargs: Optional[str] = field(
        default=None, metadata={"help": "--lm-chat: a JSON object of the chat template's own variables, passed to "
                                        "apply_chat_template (e.g. '{\"enable_thinking\": false}' for Qwen 3)"})
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
                                        f"Default: {CausalLM.FROZEN_TABLE_RANK} with --lm-checkpoint, 0 with --mt-checkpoint"})
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
    hf_mt_fingerprint: Optional[str] = field(
        default=None, metadata={"help": "set automatically: a fingerprint of the --hf-mt-checkpoint weights"})
    tokenizer_fingerprint: Optional[str] = field(
        default=None, metadata={"help": "set automatically: the configuration of the --lm-checkpoint or "
                                        "--hf-mt-checkpoint tokenizer (special tokens, chat template, files)"})


def _task_dictionary_fingerprints(task):
    return f"src={fingerprint(task.transcript_dictionary)} tgt={fingerprint(task.target_dictionary)}"


def _resolve_table_rank(cfg, frozen_table_rank, fresh: bool):
    """--exporter-table-rank's default, written into the config: a checkpoint rebuilds the
    exporter it was trained with (one saved before the option had a copy of the table).
    ``frozen_table_rank``: the text model's default (None: its rows are no frozen table)."""
    rank = cfg.exporter_table_rank
    if rank is not None and rank < 0:
        raise ValueError(f"--exporter-table-rank {rank}: 0 (a trainable copy of the table) or a rank >= 1")
    if rank is not None and rank > 0 and frozen_table_rank is None:
        raise ValueError(f"--exporter-table-rank {rank}: a correction to frozen rows is for an LM's table "
                         f"(--lm-checkpoint); the vocab exporter on an MT trains a copy of it (0)")
    if rank is None:
        with open_dict(cfg):
            cfg.exporter_table_rank = frozen_table_rank if frozen_table_rank and fresh else 0


@register_model("exporter", dataclass=ExporterModelConfig)
class ExporterModel(FairseqEncoderDecoderModel):
    def __init__(self, cfg, encoder, decoder):
        super().__init__(encoder, decoder)
        self.cfg = cfg
        for part, frozen in ((self.encoder.asr, cfg.freeze_asr),
                             *((tunable, cfg.freeze_mt) for tunable in self.encoder.text.tunable())):
            if frozen:
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
        text_model = text_model_named(cfg)
        text_model.check_options(cfg)
        asr_state = text_state = None
        if cfg.pretrained_asr_cfg is None or not text_model.recorded(cfg):
            asr_part = pretrained.read_checkpoint(cfg.asr_checkpoint, "--asr-checkpoint",
                                                  pretrained.ASR_TASKS, "--mt-checkpoint")
            text_state = text_model.read_and_check(cfg, task, asr_part)
            with open_dict(cfg):
                cfg.pretrained_asr_cfg = asr_part.model_cfg_json
                cfg.dictionaries = _task_dictionary_fingerprints(task)
            asr_state = asr_part.state_dict
        elif cfg.dictionaries != _task_dictionary_fingerprints(task):
            src_name, tgt_name = task.dictionary_files()
            raise ValueError(
                f"the exporter model was trained with dictionaries {cfg.dictionaries}, but the "
                f"data config names {src_name} / {tgt_name} "
                f"({_task_dictionary_fingerprints(task)}); use the config yaml the model was trained with")
        _resolve_table_rank(cfg, text_model.FROZEN_TABLE_RANK, fresh=asr_state is not None)
        src_dict = task.transcript_dictionary
        asr = pretrained.build_pretrained_model(cfg.pretrained_asr_cfg, None, src_dict, asr_state,
                                                cfg.asr_checkpoint or "")
        text = text_model.build(cfg, task, text_state)
        table = text.table().detach()
        text_dim = table.size(1)
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
                                  output_weight, table.float() if copied else None, output_bias,
                                  frozen_table=text.table,
                                  table_rank=cfg.exporter_table_rank)
        encoder = CoupledEncoder(asr, text, exporter, src_dict, task.coupling,
                                 task.onebest_beam, task.onebest_max_len, cfg.freeze_asr,
                                 cfg.exporter_source, getattr(task, "posterior_temperature", 1.0))
        logger.info(f"exporter cascade: coupling={task.coupling} source={cfg.exporter_source} "
                    f"exporter={cfg.exporter_type} "
                    f"({sum(p.numel() for p in exporter.parameters()):,} params) "
                    f"freeze_asr={cfg.freeze_asr} {text.describe(cfg)}")
        return cls(cfg, encoder, text.decoder)

    def train(self, mode: bool = True):
        # Frozen parts stay in eval mode (no dropout), so the MT model a frozen run
        # back-propagates through is exactly the MT model that will be deployed.
        super().train(mode)
        if self.cfg.freeze_asr:
            self.encoder.asr.eval()
        if self.cfg.freeze_mt:
            for part in self.encoder.text.tunable():
                part.eval()
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
