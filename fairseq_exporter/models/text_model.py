"""The text model of the cascade: what the plugin asks of it, whichever back-end answers.

A back-end is one kind of pretrained text model, named by its own option: a fairseq
``translation`` transformer (models/fairseq_mt.py, ``--mt-checkpoint``), a Hugging Face
causal LM (models/lm_text_model.py, ``--lm-checkpoint``) or a Hugging Face encoder-decoder MT
(models/hf_mt.py, ``--hf-mt-checkpoint``). Each answers the questions below in
its own module, as each model family answers ``transformers``' one ``generate()``; the task,
the cascade model, its encoder, the criterion and the trainable-parameter rule ask only these.

Before a model exists (the task sets up its target side from the options alone): the target
dictionary and whether the data config's tokenizer and bpe split the translations; the search
``fairseq-generate`` runs. Building it: loading and its checks (the ASR dictionary against the
model's source vocabulary, fingerprints, dtype, device), what a checkpoint records of it. Then:
the rows the exporter is trained against (exactly what the model's input path reads for the
1-best, before any scale the path applies to the exporter output alike), the model's input from
1-best ids, exporter vectors or posterior mixtures, the decoder of the training forward, and
which of its parameters a loss reaches.
"""

from typing import Callable, Dict, Iterable, List, Optional, Tuple, Type

from fairseq.data import Dictionary
from torch import Tensor, nn

from fairseq_exporter.models.exporter import nearest_rows

# config field that names a back-end's model -> the back-end, in registration order
TEXT_MODELS: Dict[str, Type["TextModel"]] = {}
DEFAULT_FIELD = "mt_checkpoint"  # a saved MT cascade rebuilds with no text-model option given


def register_text_model(cls):
    TEXT_MODELS[cls.FIELD] = cls
    return cls


def task_fields() -> Tuple[str, ...]:
    """Every model-config field some back-end's task side reads."""
    return tuple(dict.fromkeys(f for cls in TEXT_MODELS.values() for f in (cls.FIELD, *cls.TASK_FIELDS)))


def _value(cfg, key):
    return cfg.get(key) if isinstance(cfg, dict) else getattr(cfg, key, None)


def names_text_model(cfg) -> bool:
    """Whether ``cfg`` (a model config, a namespace or a dict of overrides) names a text model."""
    return any(_value(cfg, key) for key in TEXT_MODELS)


def text_model_named(cfg) -> Type["TextModel"]:
    """The back-end whose option ``cfg`` sets (the fairseq MT where none is set)."""
    given = [key for key in TEXT_MODELS if _value(cfg, key)]
    if len(given) > 1:
        options = " and ".join(f"{TEXT_MODELS[key].OPTION} {_value(cfg, key)}" for key in given)
        raise ValueError(f"{options}: the text model is one or the other")
    return TEXT_MODELS[given[0] if given else DEFAULT_FIELD]


def refuse_chat_options(cfg, option: str):
    """--lm-chat and --lm-system-prompt prompt an instruct LM; the model ``option`` names is none."""
    for name, value in (("--lm-chat", getattr(cfg, "lm_chat", False)),
                        ("--lm-system-prompt", getattr(cfg, "lm_system_prompt", None)),
                        ("--lm-chat-template-kwargs", getattr(cfg, "lm_chat_template_kwargs", None))):
        if value:
            raise ValueError(f"{name} prompts an instruct --lm-checkpoint LM through its chat template; "
                             f"leave it out with {option}")


class TextModel:
    """One loaded text model of the cascade (see the module docstring)."""

    OPTION: str  # the option that names it, for messages
    FIELD: str  # the model-config field that holds it
    # the vocab exporter's default correction rank on the model's frozen rows
    # (--exporter-table-rank); None: its rows are no frozen table, the exporter copies them
    FROZEN_TABLE_RANK: Optional[int] = None
    # the model-config fields it fills in when first built (what an exporter checkpoint
    # records of it, so the cascade rebuilds with the same model)
    RECORDED: Tuple[str, ...] = ()

    # ---- the task's target side, from the options alone ---------------------------------
    # the model-config fields the task reads before the model exists (fairseq-generate: from
    # the checkpoint's config): the model's location and what its target side depends on
    TASK_FIELDS: Tuple[str, ...] = ()

    @classmethod
    def target_dictionary(cls, text_cfg, from_data_config: Callable[[], Dictionary]) -> Dictionary:
        """The translation vocabulary (default: the data config's ``vocab_filename``);
        ``text_cfg``: the options (a namespace, a config or a dict) holding TASK_FIELDS."""
        return from_data_config()

    @classmethod
    def target_dictionary_name(cls, location: Optional[str], data_cfg) -> str:
        return data_cfg.vocab_filename

    # True where the target dictionary splits raw translations itself (the data config's
    # pre_tokenizer and bpe_tokenizer are then not used)
    TOKENIZES_TARGETS = False

    @classmethod
    def generator(cls, model, tgt_dict, args):
        """The search of ``fairseq-generate``; None: fairseq's own (SequenceGenerator)."""
        return None

    # ---- loading and its checks -------------------------------------------------------
    @classmethod
    def check_options(cls, cfg) -> None:
        """Refuse options that are for another back-end."""

    @classmethod
    def recorded(cls, cfg) -> bool:
        """Whether ``cfg`` holds what this model's checkpoint records (else it is read and checked)."""
        return True

    @classmethod
    def read_and_check(cls, cfg, task, asr_part) -> Optional[dict]:
        """Read the pretrained model (its weights, where a checkpoint keeps them: returned) and
        check its vocabularies against the ASR's (``asr_part``) and the data config's; record
        in ``cfg`` what a rebuild needs."""
        raise NotImplementedError

    @classmethod
    def build(cls, cfg, task, state: Optional[dict]) -> "TextModel":
        """The model, loaded (``state``: the weights :meth:`read_and_check` returned, or None)."""
        raise NotImplementedError

    def describe(self, cfg) -> str:
        """What the build log says of it."""
        raise NotImplementedError

    # ---- the input side the cascade's encoder holds -----------------------------------
    def encoder_modules(self) -> Dict[str, nn.Module]:
        """The modules the cascade's encoder holds, by name (their checkpoint keys)."""
        raise NotImplementedError

    source_limit: int  # the longest 1-best the model reads, </s> included

    def table(self) -> Tensor:
        """The model's row of every ASR symbol (V x D): the exporter's L2 target, exactly the
        vector the model's input path reads for that symbol."""
        raise NotImplementedError

    def rows(self, tokens: Tensor) -> Tensor:
        """``table()[tokens]``, without building a large model's table."""
        return self.table()[tokens]

    def nearest(self, vectors: Tensor) -> Tensor:
        """The ASR symbol whose row is nearest each vector (the recovery metric)."""
        return nearest_rows(vectors, self.table().detach())

    def recovered(self, vectors: Tensor, tokens: Tensor) -> Tensor:
        """Whether each vector's nearest row is its token's (the recovery metric)."""
        return self.nearest(vectors).eq(tokens)

    def fed(self, tokens: Tensor) -> Tensor:
        """The 1-best positions the model reads."""
        raise NotImplementedError

    def encode(self, tokens: Tensor, embeddings: Optional[Tensor]):
        """The encoder output the decoder reads: from the 1-best ``tokens`` (B x L ASR ids)
        and what replaces their lookup (B x L x D exporter outputs or posterior mixtures;
        None: the 1-best's own rows)."""
        raise NotImplementedError

    def reorder_encoder_out(self, encoder_out, new_order: Tensor):
        raise NotImplementedError

    # ---- the training forward --------------------------------------------------------
    decoder: nn.Module  # a FairseqDecoder: translation logits over the target dictionary

    def tunable(self) -> List[nn.Module]:
        """The modules --freeze-mt keeps fixed (in eval mode, no gradient step); none where
        the model is always frozen."""
        return []

    def table_parameters(self) -> Iterable[nn.Parameter]:
        """The trainable parameters of the rows (a posterior mixture reads them)."""
        return []

    def translation_parameters(self, looks_up: bool) -> Iterable[nn.Parameter]:
        """The trainable parameters the translation forward reaches; ``looks_up``: whether
        the input path looks up the 1-best's rows (not where the exporter replaces them)."""
        return self.decoder.parameters()


def source_encoder_out(tokens: Tensor, embeddings: Optional[Tensor]) -> Dict[str, List[Tensor]]:
    """What the cascade's encoder hands a decoder that reads the 1-best itself (an LM's prompt,
    an HF MT's inputs): the 1-best and what replaces its lookup."""
    return {"source_tokens": [tokens], "source_embeddings": [] if embeddings is None else [embeddings]}


def reorder_source(encoder_out, new_order):
    return {"source_tokens": [t.index_select(0, new_order) for t in encoder_out["source_tokens"]],
            "source_embeddings": [e.index_select(0, new_order) for e in encoder_out["source_embeddings"]]}
