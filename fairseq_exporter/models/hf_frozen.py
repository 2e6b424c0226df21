"""What the Hugging Face back-ends (models/lm_text_model.py, models/hf_mt.py) share: a frozen
model that lives in its own local directory, never in an exporter checkpoint. Loading onto
the rank's device, the dtypes it is read in, the module that keeps it frozen and out of
``state_dict``, and the fingerprint an exporter checkpoint keeps instead of its weights."""

import hashlib
from collections import OrderedDict
from pathlib import Path
from typing import List, Optional, Sequence

import torch
from torch import nn

LM_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}



def load_frozen(path: str, dtype: str, device: Optional[torch.device], auto_class: str, mapping: str, *,
                option: str, dtype_option: str, what: str, other: str, error=ValueError):
    """A model of a local Hugging Face directory through ``transformers.<auto_class>``, frozen
    and in eval mode, its weights read in ``dtype`` (no float32 copy first) and onto ``device``
    where one is given. A directory whose config ``<mapping>`` does not list, or whose weights
    lack tensors of that class (an encoder's random LM head), is refused: ``what`` names the
    kind, ``other`` the option for the other kind."""
    import transformers
    from transformers import AutoConfig
    from transformers.models.auto import modeling_auto

    if dtype not in LM_DTYPES:
        raise error(f"{dtype_option} {dtype!r}: choose one of {', '.join(LM_DTYPES)}")
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
    except Exception as err:
        raise error(f"{option} {path}: cannot read its config.json ({err})") from err
    if type(config) not in getattr(modeling_auto, mapping):
        raise error(f"{option} {path}: a '{config.model_type}' model, not {what} "
                    f"({auto_class} cannot load it); {other}")
    try:
        placed = {} if device is None else {"device_map": {"": device}}
        model, info = getattr(transformers, auto_class).from_pretrained(
            path, local_files_only=True, dtype=LM_DTYPES[dtype], output_loading_info=True, **placed)
    except Exception as err:
        raise error(f"{option} {path}: cannot load its weights ({type(err).__name__}: {err})") from err
    if info.get("missing_keys"):
        missing = sorted(info["missing_keys"])
        noun = what.split(" ", 1)[1]  # "a causal LM" -> "causal LM"
        raise error(f"{option} {path}: its weights lack {len(missing)} tensors of a '{config.model_type}' {noun} "
                    f"({', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}): not {what} checkpoint")
    return model.eval().requires_grad_(False)


def load_device() -> Optional[torch.device]:
    """Where each rank loads the LM: under NCCL (fairseq's multi-GPU training) straight onto
    the rank's GPU, not N copies in host memory first; otherwise on the CPU, and fairseq moves
    the model (``--cpu`` leaves it there)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return None





SAFETENSORS_BYTES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2,
                     "I16": 2, "U16": 2}


def files_fingerprint(path: str, samples: int = 256) -> Optional[str]:
    """The LM directory's safetensors weights as stored: each file's tensor names, dtypes and
    shapes, and the bytes of ``samples`` evenly spaced elements of each tensor. Nothing is
    converted, so it does not depend on --lm-dtype (a float16 load rounds a float32 or
    bfloat16 file's values otherwise than a bfloat16 one does), and nothing is read whole (an
    8B LM's fingerprint reads a few MB). None where the weights are not safetensors."""
    import json

    import numpy as np

    files = sorted(Path(path).glob("*.safetensors"))
    if not files:
        return None
    digest = hashlib.sha1()
    for file in files:
        data = np.memmap(file, dtype=np.uint8, mode="r")
        length = int.from_bytes(data[:8].tobytes(), "little")
        header = json.loads(data[8:8 + length].tobytes())
        header.pop("__metadata__", None)
        for name in sorted(header):
            info = header[name]
            begin, end = info["data_offsets"]
            size = SAFETENSORS_BYTES.get(info["dtype"], 1)
            count = (end - begin) // size
            digest.update(f"{name}:{info['dtype']}:{info['shape']}".encode())
            if count:
                first = np.linspace(0, count - 1, min(count, samples)).astype(np.int64) * size + 8 + length + begin
                digest.update(data[(first[:, None] + np.arange(size)).reshape(-1)].tobytes())
    return "files:" + digest.hexdigest()[:16]


def weights_fingerprint(lm: nn.Module, with_dtype: bool = False) -> str:
    """Shapes and 4096 evenly spaced values (rounded to bfloat16) of every tensor of a loaded
    LM: tells one LM from another (a fine-tuned copy, another size) without hashing gigabytes,
    and a float32 load from a bfloat16 one (not from a float16 one: files_fingerprint, where
    the weights are safetensors). ``with_dtype``: the form that also hashed each tensor's
    dtype and float32 values (checkpoints written before the dtype was left out)."""
    digest = hashlib.sha1()
    for name, tensor in sorted(lm.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        sample = flat[::max(1, flat.numel() // 4096)][:4096]
        if with_dtype:
            digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            sample = sample.float()
        else:
            digest.update(f"{name}:{tuple(tensor.shape)}".encode())
            sample = sample.to(torch.bfloat16).float() if sample.is_floating_point() else sample
        digest.update(sample.cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def max_positions_of(config) -> Optional[int]:
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


class FrozenExternal(nn.Module):
    """Holds a module whose weights live elsewhere (the LM directory): always in eval mode,
    never trained, left out of ``state_dict`` so no checkpoint copies it.

    ``checkpointed``: layers (checkpoint_lm_layers) whose own ``training`` flag is set after
    every train()/eval(), so transformers recomputes them in the backward pass; every module
    inside them, and all the rest, stays in eval mode. Without gradient (validation,
    generation) transformers checkpoints nothing, whatever the flag."""

    def __init__(self, module: nn.Module, checkpointed: Sequence[nn.Module] = ()):
        super().__init__()
        self.module = module.requires_grad_(False)
        self._checkpointed = list(checkpointed)  # a plain list: not registered twice as submodules
        self.train(False)

    def state_dict(self, *args, destination=None, prefix="", keep_vars=False):
        return destination if destination is not None else OrderedDict()

    def train(self, mode: bool = True):
        super().train(False)
        for layer in self._checkpointed:
            layer.training = True  # the layer's flag only: nn.Module.train would recurse
        return self

    def _apply(self, fn, recurse=True):
        # moves follow the model (.cuda(), .to(device)); casts do not: fairseq's --fp16/--bf16
        # call .half()/.bfloat16() on the whole model, and the LM stays in --lm-dtype (its RoPE
        # frequencies in float32)
        def move_only(t):
            moved = fn(t)
            return moved if moved.dtype == t.dtype else t.to(moved.device)

        return super()._apply(move_only, recurse)


def external_names(model: nn.Module) -> List[str]:
    """The names of the parameters and buffers of a model's FrozenExternal parts."""
    prefixes = tuple(external_prefixes(model))
    if not prefixes:
        return []
    names = [n for n, _ in model.named_parameters(remove_duplicate=False)]
    names += [n for n, _ in model.named_buffers(remove_duplicate=False)]
    return sorted({n for n in names if n.startswith(prefixes)})


def external_prefixes(model: nn.Module) -> List[str]:
    """Where a model's FrozenExternal parts sit (their keys are never in a checkpoint)."""
    return [name + "." for name, m in model.named_modules(remove_duplicate=False)
            if isinstance(m, FrozenExternal)]




def check_fingerprint(cfg, field: str, model: nn.Module, location: str, option: str, what: str,
                      error=ValueError) -> str:
    """The one fingerprint rule of both back-ends: a fresh build records the model's
    fingerprint in ``cfg.<field>``; a rebuild (fairseq-generate, a resumed run) refuses a
    model whose fingerprint is another (the forms checkpoints hold from before included). Returns the model's fingerprint."""
    from omegaconf import open_dict

    found = files_fingerprint(location) or weights_fingerprint(model)
    recorded = getattr(cfg, field)
    if recorded is None:
        with open_dict(cfg):
            setattr(cfg, field, found)
    elif recorded != found and recorded not in (weights_fingerprint(model),
                                                weights_fingerprint(model, with_dtype=True)):
        name = field.replace("_fingerprint", "_checkpoint")
        raise error(f"{option} {location}: its weights (fingerprint {found}) are not those of the {what} this "
                    f"exporter was trained with ({recorded}); point it at that model "
                    f"(fairseq-generate: --model-overrides \"{{'{name}': 'DIR'}}\")")
    return found
