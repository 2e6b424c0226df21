"""The ``speech_to_text_exporter`` task: fairseq's speech_to_text task, with the source
transcript in the MT source vocabulary beside the translation, and a
``fairseq-generate`` that also writes the ASR 1-best (``ASR-<id>``) and the reference
transcript (``S-<id>``) of each utterance, so WER is scored from the same run.
"""

import ast
import logging
import sys
from argparse import Namespace
from pathlib import Path

import torch
from fairseq.data import Dictionary, encoders
from fairseq.data.audio.speech_to_text_joint_dataset import S2TJointDataConfig
from fairseq.tasks import LegacyFairseqTask, register_task
from fairseq.tasks.speech_to_text import SpeechToTextTask
from omegaconf import open_dict

from fairseq_exporter import generate_output
from fairseq_exporter.data import s2t_layout
from fairseq_exporter.data.exporter_dataset import ExporterDataset, ExporterDatasetCreator, SpeechLimits
from fairseq_exporter.models.coupling import COUPLINGS
from fairseq_exporter.models.text_model import names_text_model, task_fields, text_model_named
from fairseq_exporter.models.trainable import freeze_parameters_the_loss_never_uses
from fairseq_exporter.tasks.valid_bleu import bleu_statistics, log_bleu, log_wer, wer_statistics

logger = logging.getLogger(__name__)

# Written into the model config when the model is first built (see ExporterModelConfig),
# with what the text model records of itself (TextModel.RECORDED).
_STORED_MODEL_FIELDS = ("pretrained_asr_cfg", "dictionaries", "exporter_table_rank")


def _load_dictionary(data: Path, filename, key: str, yaml_path: Path) -> Dictionary:
    if not filename:
        raise ValueError(f"{yaml_path} does not set {key}: the exporter task needs both the MT "
                         "source dictionary (src_vocab_filename) and target dictionary (vocab_filename)")
    path = data / filename
    if not path.is_file():
        raise FileNotFoundError(f"{key} of {yaml_path}: {path} does not exist")
    return Dictionary.load(path.as_posix())


@register_task("speech_to_text_exporter")
class SpeechToTextExporterTask(SpeechToTextTask):
    @classmethod
    def add_args(cls, parser):
        super().add_args(parser)
        parser.add_argument("--coupling", default="exporter", choices=COUPLINGS,
                            help="how the MT reads the ASR output: exporter (the paper), onebest "
                                 "(plain cascade: MT looks up the 1-best ids), reference (MT on the "
                                 "reference transcript: an upper bound), posterior (tight integration: "
                                 "the ASR's distribution at each 1-best position times the MT embedding "
                                 "table, no exporter). Can differ between "
                                 "training and fairseq-generate on the same checkpoint")
        parser.add_argument("--posterior-temperature", type=float, default=1.0, metavar="T",
                            help="--coupling posterior: softmax(ASR scores / T); T < 1 sharpens")
        parser.add_argument("--onebest-beam", type=int, default=1, metavar="N",
                            help="beam of the ASR 1-best search (1 = greedy)")
        parser.add_argument("--onebest-max-len", type=int, default=200, metavar="N",
                            help="longest ASR 1-best, in tokens")
        parser.add_argument("--onebest-cache", metavar="DIR", default=None,
                            help="with --freeze-asr: compute each training utterance's ASR 1-best and "
                                 "token states once, keep them in DIR and reuse them in later epochs "
                                 "(an error if DIR was written for another ASR or search options)")
        parser.add_argument("--onebest-cache-dtype", default="float32", choices=("float32", "float16"),
                            help="--onebest-cache: how the token states are stored (float16 halves the disk "
                                 "and page cache)")
        parser.add_argument("--eval-bleu", action="store_true",
                            help="translate the validation set and log its BLEU "
                                 "(use with --best-checkpoint-metric bleu --maximize-best-checkpoint-metric)")
        parser.add_argument("--eval-bleu-args", default="{}", metavar="JSON",
                            help='generation args for --eval-bleu, as fairseq\'s translation task takes them, '
                                 'e.g. \'{"beam": 4, "max_len_b": 100}\' (default: greedy, max_len_b 200)')

    def __init__(self, args, src_dict, tgt_dict, text_model=None, text_location=None):
        super().__init__(args, tgt_dict)
        # the text model's back-end (models/text_model.py), named before the model is built:
        # it says what the target side is
        self.text_model = text_model or text_model_named({})
        self.text_location = text_location
        self.data_cfg = S2TJointDataConfig(Path(args.data) / args.config_yaml)
        self.src_dict = src_dict
        self.coupling = args.coupling
        self.onebest_beam = args.onebest_beam
        self.onebest_max_len = args.onebest_max_len
        self.posterior_temperature = getattr(args, "posterior_temperature", 1.0)
        self.src_bpe = self.build_src_bpe()
        self.src_tokenizer = self.build_src_tokenizer()
        self._transcripts_out = None
        self.speech_limits = None  # known once the model is built (see build_model)

    @classmethod
    def setup_task(cls, args, **kwargs):
        yaml_path = Path(args.data) / args.config_yaml
        if not yaml_path.is_file():
            raise FileNotFoundError(f"data config not found: {yaml_path} (--config-yaml under the data dir)")
        data_cfg = S2TJointDataConfig(yaml_path)
        src_dict = _load_dictionary(Path(args.data), data_cfg.config.get("src_vocab_filename"),
                                    "src_vocab_filename", yaml_path)
        text_cfg = _text_model_options(args)
        text_model = text_model_named(text_cfg)
        text_location = _option(text_cfg, text_model.FIELD)
        tgt_dict = text_model.target_dictionary(text_cfg, lambda: _load_dictionary(
            Path(args.data), data_cfg.config.get("vocab_filename"), "vocab_filename", yaml_path))
        logger.info(f"source (transcript) dictionary: {len(src_dict):,} symbols; "
                    f"target (translation) dictionary: {len(tgt_dict):,} symbols")
        if getattr(args, "train_subset", None) is not None:
            if not all(s.startswith("train") for s in args.train_subset.split(",")):
                raise ValueError('Train splits should be named like "train*".')
        return cls(args, src_dict, tgt_dict, text_model, text_location)

    def dictionary_files(self):
        target = self.text_model.target_dictionary_name(self.text_location, self.data_cfg)
        return (self.data_cfg.config["src_vocab_filename"], target)

    def build_tokenizer(self, args):
        return None if self.text_model.TOKENIZES_TARGETS else super().build_tokenizer(args)

    def build_bpe(self, args):
        return None if self.text_model.TOKENIZES_TARGETS else super().build_bpe(args)

    @property
    def transcript_dictionary(self):
        """The MT source vocabulary, which is also the ASR target vocabulary. Not exposed
        as ``source_dictionary``: fairseq-generate would print the speech features as text."""
        return self.src_dict

    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        creator = ExporterDatasetCreator.with_limits(self.speech_limits, self.data_cfg.audio_root)
        self.datasets[split] = creator.from_tsv(
            root=self.args.data,
            cfg=self.data_cfg,
            splits=split,
            tgt_dict=self.tgt_dict,
            src_dict=self.src_dict,
            pre_tokenizer=self.build_tokenizer(self.args),
            bpe_tokenizer=self.build_bpe(self.args),
            src_pre_tokenizer=self.src_tokenizer,
            src_bpe_tokenizer=self.src_bpe,
            is_train_split=split.startswith("train"),
            epoch=epoch,
            seed=self.args.seed,
        )

    def get_batch_iterator(self, dataset, **kwargs):
        # fairseq's batch_by_size drops the last batch when its size is not a multiple
        # of --required-batch-size-multiple (8 by default): fairseq-generate would
        # silently score a subset of the test set. Evaluation keeps every utterance.
        if not getattr(dataset, "is_train_split", True):
            kwargs["required_batch_size_multiple"] = 1
        return super().get_batch_iterator(dataset, **kwargs)

    def build_src_tokenizer(self):
        return encoders.build_tokenizer(Namespace(**self.data_cfg.src_pre_tokenizer))

    def build_src_bpe(self):
        return encoders.build_bpe(Namespace(**self.data_cfg.src_bpe_tokenizer))

    def build_model(self, cfg, from_checkpoint=False):
        # Skip SpeechToTextTask.build_model: it writes feature sizes into the model
        # config, which the exporter takes from the ASR checkpoint instead.
        model = LegacyFairseqTask.build_model(self, cfg, from_checkpoint)
        # ``cfg`` is the trainer's own model config (fairseq builds from a merged
        # copy), so this is what makes the stored pretrained configs reach checkpoints.
        with open_dict(cfg):
            for key in _STORED_MODEL_FIELDS + model.encoder.text.RECORDED:
                cfg[key] = getattr(model.cfg, key)
        self.speech_limits = _speech_limits(model, self.args)
        if getattr(self.args, "onebest_cache", None):
            model.use_onebest_cache(self.args.onebest_cache, getattr(self.args, "onebest_cache_dtype", "float32"))
        if getattr(self.args, "ast_weight", None) is not None:  # fairseq-train: the criterion is known
            freeze_parameters_the_loss_never_uses(model, self.coupling, self.args.ast_weight,
                                                  self.args.l2_weight, self.args.asr_weight)
        if getattr(self.args, "eval_bleu", False):
            self._valid_generator = self.build_generator([model], Namespace(**_eval_bleu_args(self.args)))
            self._valid_bpe, self._valid_tokenizer = self.build_bpe(self.args), self.build_tokenizer(self.args)
        return model

    def begin_epoch(self, epoch, model):
        super().begin_epoch(epoch, model)
        if getattr(model, "onebest_cache", None) is not None:
            model.onebest_cache.flush()  # what the last epoch computed, on disk for a resumed run

    def build_criterion(self, args):
        from fairseq import criterions

        return criterions.build_criterion(args, self)

    # ---- validation BLEU and WER -------------------------------------------------
    def valid_step(self, sample, model, criterion):
        loss, sample_size, logging_output = super().valid_step(sample, model, criterion)
        if getattr(self.args, "eval_bleu", False):
            hypos, recognition = self._translate(self._valid_generator, [model], sample)
            bpe, tok = self._valid_bpe, self._valid_tokenizer

            def detok(tokens):
                text = self.tgt_dict.string(tokens.int().cpu(), escape_unk=True)
                text = bpe.decode(text) if bpe is not None else text
                text = tok.decode(text) if tok is not None else text
                return generate_output.from_one_line(text) if self.text_model.TOKENIZES_TARGETS else text

            pad = self.tgt_dict.pad()
            logging_output.update(bleu_statistics(
                [detok(h[0]["tokens"]) for h in hypos],
                [detok(t[t.ne(pad)]) for t in sample["target"]]))
            if "src_txt_tokens" in sample["net_input"]:  # the 1-best's WER, transcripts detokenized alike
                logging_output.update(wer_statistics(
                    [self._detokenize_source(row) for row in recognition.onebest.tokens.tolist()],
                    [self._detokenize_source(row) for row in sample["net_input"]["src_txt_tokens"].tolist()]))
        return loss, sample_size, logging_output

    def reduce_metrics(self, logging_outputs, criterion):
        super().reduce_metrics(logging_outputs, criterion)
        if getattr(self.args, "eval_bleu", False):
            log_bleu(logging_outputs)
            log_wer(logging_outputs)

    # ---- generation -------------------------------------------------------------
    def build_generator(self, models, args, seq_gen_cls=None, extra_gen_cls_kwargs=None, **kwargs):
        if not getattr(args, "score_reference", False):
            own = self.text_model.generator(models[0], self.tgt_dict, args)
            if own is not None:  # the text model's own search: its 1-best cascade is the one a user runs
                return own
        return super().build_generator(models, args, seq_gen_cls, extra_gen_cls_kwargs, **kwargs)

    def _translate(self, generator, models, sample, **kwargs):
        if len(models) != 1:
            raise ValueError("ensembles of exporter models are not supported (pass one --path)")
        with torch.no_grad():
            # One ASR search per batch: its result is both printed and fed to the MT.
            recognition = models[0].encoder.recognize(**sample["net_input"])
        net_input = dict(sample["net_input"], recognition=recognition)
        hypos = generator.generate(models, dict(sample, net_input=net_input), **kwargs)
        return hypos, recognition

    def inference_step(self, generator, models, sample, prefix_tokens=None, constraints=None):
        hypos, recognition = self._translate(generator, models, sample, prefix_tokens=prefix_tokens,
                                             constraints=constraints)
        self._write_transcripts(sample, recognition.onebest.tokens)
        return hypos

    def _detokenize_source(self, ids) -> str:
        # Dictionary.string's rule (no pad, </s> or <s>) on a list of ints: Dictionary.string
        # walks a tensor element by element, which made the ASR- lines 2% of a toy decode.
        skip = {self.src_dict.pad(), self.src_dict.eos(), self.src_dict.bos()}
        symbols = self.src_dict.symbols
        text = " ".join(symbols[i] for i in ids if i not in skip)
        if self.src_bpe is not None:
            text = self.src_bpe.decode(text)
        if self.src_tokenizer is not None:
            text = self.src_tokenizer.decode(text)
        return text

    def _write_transcripts(self, sample, onebest):
        if getattr(self.args, "quiet", False):
            return
        dataset = self.datasets.get(getattr(self.args, "gen_subset", None))
        ids = sample["id"].tolist()
        transcripts = [dataset.src_texts[i] for i in ids] if isinstance(dataset, ExporterDataset) else None
        out = self._transcripts_stream()
        out.write(generate_output.transcript_lines(ids, transcripts, map(self._detokenize_source, onebest.tolist())))

    def _transcripts_stream(self):
        """stdout, where fairseq-generate prints without --results-path; with it, the
        transcripts file beside fairseq's generate-<subset>.txt (see generate_output)."""
        if self._transcripts_out is None:
            results_path = getattr(self.args, "results_path", None)
            if results_path is None:
                self._transcripts_out = sys.stdout
            else:
                path = generate_output.transcripts_path(results_path, self.args.gen_subset)
                self._transcripts_out = open(path, "w", buffering=1, encoding="utf-8")
        return self._transcripts_out


def _text_model_options(args):
    """The model options that name the text model: the command line's where the model options
    are on it (fairseq-train), else the model config of the checkpoint being evaluated, with
    --model-overrides over it (fairseq-generate and fairseq-validate set the task up before
    loading the checkpoint)."""
    if names_text_model(args) or getattr(args, "arch", None) == "exporter":
        return args
    overrides = getattr(args, "model_overrides", None) or "{}"
    try:
        overrides = dict(ast.literal_eval(overrides))
    except (ValueError, SyntaxError, TypeError):
        overrides = {}  # fairseq reports a malformed --model-overrides itself
    path = getattr(args, "path", None)
    if not path:
        return overrides
    first = path.split(":")[0]
    if not Path(first).is_file():
        return {}  # fairseq reports the missing --path itself
    model_cfg = (_read_checkpoint_lazily(first).get("cfg") or {}).get("model")
    if not hasattr(model_cfg, "get"):
        return overrides
    return {**{key: model_cfg.get(key) for key in task_fields()}, **overrides}


def _option(cfg, key):
    return cfg.get(key) if isinstance(cfg, dict) else getattr(cfg, key, None)


def _read_checkpoint_lazily(path):
    """A checkpoint whose tensors are memory-mapped, not read (only its config is wanted):
    fairseq then loads it in full itself. fairseq's own reader where torch cannot map it."""
    try:
        return torch.load(path, map_location="cpu", mmap=True)
    except Exception:  # torch < 2.1, a legacy (non-zip) file: read it as fairseq does
        from fairseq import checkpoint_utils

        return checkpoint_utils.load_checkpoint_to_cpu(path)


# --eval-bleu's generation settings unless --eval-bleu-args overrides them.
EVAL_BLEU_DEFAULTS = dict(beam=1, max_len_a=0, max_len_b=200, min_len=1, prefix_size=0, eos_token=None)


def _eval_bleu_args(args) -> dict:
    given = s2t_layout.json_object(getattr(args, "eval_bleu_args", None) or "{}", "--eval-bleu-args")
    return {**EVAL_BLEU_DEFAULTS, **given}


def _speech_limits(model, args) -> SpeechLimits:
    """The input the built cascade can take, for the load-time filter of the data."""
    from fairseq_exporter.models.pretrained import model_cfg_from_json

    asr_encoder = model.encoder.asr.encoder
    min_frames = 1
    subsample = getattr(asr_encoder, "subsample", None)
    if hasattr(subsample, "get_out_seq_lens_tensor"):
        out = subsample.get_out_seq_lens_tensor(torch.arange(0, 256))
        min_frames = int(out.ge(1).nonzero()[0]) if out.ge(1).any() else 256
    max_frames = int(getattr(args, "max_source_positions", None) or 10 ** 9)
    asr_max = getattr(model_cfg_from_json(model.cfg.pretrained_asr_cfg), "max_source_positions", None)
    if asr_max:
        max_frames = min(max_frames, int(asr_max))
    return SpeechLimits(min_frames=max(min_frames, 1), max_frames=max_frames,
                        max_target_tokens=int(model.decoder.max_positions()))
