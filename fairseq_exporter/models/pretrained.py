"""Loading the two pretrained halves of the cascade: a fairseq ``speech_to_text`` ASR
checkpoint and a fairseq ``translation`` checkpoint.

Each half is rebuilt from the model config stored in its checkpoint, against the
dictionaries of the exporter task (checked to be the ones it was trained with). The
config is also kept, as JSON, in the exporter's own config, so a saved exporter model
rebuilds without the original checkpoints (fairseq's wav2vec fine-tuning keeps
``w2v_args`` for the same reason).
"""

import argparse
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from fairseq import checkpoint_utils
from fairseq.data import Dictionary
from fairseq.models import build_model
from omegaconf import DictConfig, OmegaConf

logger = logging.getLogger(__name__)

ASR_TASKS = ("speech_to_text",)
MT_TASKS = ("translation", "translation_multi_simple_epoch")


class CheckpointRoleError(ValueError):
    """A checkpoint given for one half of the cascade is of the other kind."""


@dataclass
class PretrainedPart:
    """One half of the cascade as read from its checkpoint."""

    path: str
    task_name: str
    model_cfg_json: str  # the model config, resolved, as JSON
    state_dict: Optional[dict]  # None when rebuilt from a stored config
    task_cfg: Optional[object]  # the checkpoint's task config (to find its dictionaries)


def _to_plain(cfg):
    if isinstance(cfg, argparse.Namespace):
        return {"__namespace__": True, **{k: v for k, v in vars(cfg).items()}}
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)
    return dict(cfg)


def model_cfg_from_json(text: str):
    """Inverse of the JSON kept in the exporter config: a Namespace for legacy
    (argparse) models such as s2t_transformer, a DictConfig for dataclass models."""
    plain = json.loads(text)
    if plain.pop("__namespace__", False):
        return argparse.Namespace(**plain)
    return OmegaConf.create(plain)


def refuse_hf_directory(path: str, option: str) -> None:
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "config.json")):
        raise ValueError(f"{option} {path}: a Hugging Face model directory, not a fairseq checkpoint: "
                         "an encoder-decoder MT takes --hf-mt-checkpoint, a causal LM --lm-checkpoint")


def read_checkpoint(path: str, option: str, expected_tasks, other_option: str) -> PretrainedPart:
    """Read a fairseq checkpoint and check it is the kind ``option`` asks for."""
    if not path:
        raise ValueError(f"{option} is required to build the exporter model")
    refuse_hf_directory(path, option)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{option} {path}: no such file")
    try:
        state = checkpoint_utils.load_checkpoint_to_cpu(path)
    except Exception as err:
        raise ValueError(f"{option} {path}: not a loadable fairseq checkpoint ({err})") from err
    cfg = state.get("cfg")
    if cfg is None or cfg.get("model") is None or cfg.get("task") is None:
        raise ValueError(f"{option} {path}: checkpoint carries no fairseq model/task config")
    task = cfg.task
    task_name = getattr(task, "_name", None) or getattr(task, "task", None)
    model_cfg = cfg.model
    arch = getattr(model_cfg, "arch", None) or getattr(model_cfg, "_name", None)
    if task_name not in expected_tasks:
        if task_name in ASR_TASKS + MT_TASKS or task_name == "speech_to_text_exporter":
            raise CheckpointRoleError(
                f"{option} {path} is a '{task_name}' checkpoint (arch {arch}), "
                f"but {option} takes a {' / '.join(expected_tasks)} checkpoint. "
                + (f"Did you mean to pass it as {other_option}?" if other_option else "")
            )
        raise CheckpointRoleError(
            f"{option} {path}: task '{task_name}' (arch {arch}) is not supported; "
            f"expected {' / '.join(expected_tasks)}"
        )
    return PretrainedPart(
        path=path,
        task_name=task_name,
        model_cfg_json=json.dumps(_to_plain(model_cfg)),
        state_dict=state["model"],
        task_cfg=task,
    )


class _DictionaryHolder:
    """The little of a fairseq task that ``build_model`` of a translation or
    speech-to-text model reads: its dictionaries."""

    def __init__(self, source_dictionary, target_dictionary):
        self.source_dictionary = source_dictionary
        self.target_dictionary = target_dictionary


def build_pretrained_model(model_cfg_json: str, source_dictionary, target_dictionary,
                           state_dict: Optional[dict] = None, path: str = ""):
    """Build a fairseq model from its stored config; load weights when given."""
    model_cfg = model_cfg_from_json(model_cfg_json)
    model = build_model(model_cfg, _DictionaryHolder(source_dictionary, target_dictionary),
                        from_checkpoint=True)
    disable_fused_encoder_layers(model)
    if state_dict is not None:
        try:
            model.load_state_dict(state_dict, strict=True)
        except RuntimeError as err:
            raise ValueError(f"{path}: weights do not fit the model its config describes: {err}") from err
    return model


# Official fairseq 0.12.2's encoder layers keep fused copies of their weights as extra
# parameters, for the fast path below; they are derived, never trained, and unused here.
FUSED_COPIES = ("in_proj_weight", "in_proj_bias", "out_proj_weight", "out_proj_bias",
                "fc1_weight", "fc1_bias", "fc2_weight", "fc2_bias")


def disable_fused_encoder_layers(model):
    """Official fairseq 0.12.2 runs an encoder layer loaded from a checkpoint in eval mode
    through torch's fused ``_transformer_encoder_layer_fwd``, which has no backward (torch
    1.12) or another signature (torch >= 1.13). A frozen part here is in eval mode and the
    translation loss back-propagates through it: keep the plain layer."""
    for module in model.modules():
        if hasattr(module, "can_use_fastpath"):  # read by the layer and by its encoder
            module.can_use_fastpath = False
            for name in FUSED_COPIES:
                copy = getattr(module, name, None)
                if isinstance(copy, torch.nn.Parameter):
                    copy.requires_grad_(False)


def asr_dictionary_path(part: PretrainedPart) -> Path:
    """Where the ASR checkpoint's target dictionary lives: fairseq's speech_to_text
    task reads ``vocab_filename`` from ``{data}/{config_yaml}``."""
    from fairseq.data.audio.data_cfg import S2TDataConfig

    data = Path(str(part.task_cfg.data).split(":")[0])
    yaml_path = data / getattr(part.task_cfg, "config_yaml", "config.yaml")
    if not yaml_path.is_file():
        raise FileNotFoundError(
            f"cannot find the ASR dictionary of {part.path}: its data config {yaml_path} "
            "(task.data + config_yaml in the checkpoint) does not exist; pass --asr-dict PATH"
        )
    return data / S2TDataConfig(yaml_path).vocab_filename


def mt_dictionary_paths(part: PretrainedPart, mt_data: Optional[str]):
    """fairseq's translation task reads ``{data}/dict.{lang}.txt``."""
    from fairseq.data import data_utils

    data = Path(mt_data or str(part.task_cfg.data).split(":")[0])
    src, tgt = part.task_cfg.source_lang, part.task_cfg.target_lang
    if src is None or tgt is None:
        # trained without --source-lang/--target-lang: fairseq inferred them from the file names
        src, tgt = data_utils.infer_language_pair(str(data))
    if src is None or tgt is None:
        raise FileNotFoundError(
            f"{part.path} does not record --source-lang/--target-lang and its data dir {data} "
            "has no binarized files to infer them from; pass --mt-data DIR with its dict.{src,tgt}.txt")
    return data / f"dict.{src}.txt", data / f"dict.{tgt}.txt"


def load_dictionary(path: Path, what: str, hint: str) -> Dictionary:
    if not Path(path).is_file():
        raise FileNotFoundError(f"{what} {path} does not exist; {hint}")
    return Dictionary.load(str(path))


def asr_dictionary(part: PretrainedPart, given: Optional[str]):
    """The ASR checkpoint's target dictionary (``given``: --asr-dict, where its data dir has
    moved) and where it was read."""
    path = given or asr_dictionary_path(part)
    return load_dictionary(path, f"ASR target dictionary (of {part.path})", "pass --asr-dict PATH"), path
