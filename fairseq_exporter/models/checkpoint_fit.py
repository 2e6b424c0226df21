"""A saved exporter model continues only with the ASR and MT it was trained with.

``--finetune-from-model`` / ``--restore-file`` load a saved exporter into a model built
from the ``--asr-checkpoint`` / ``--mt-checkpoint`` of the new command; if one of them has
other sizes (an MT with another embedding size, say), torch reports a list of tensor
shapes and fairseq adds "please ensure that the architectures match". This says which
half of the cascade does not fit and which option built it."""

PARTS = (("encoder.asr.", "ASR", "--asr-checkpoint"),
         ("encoder.mt_encoder.", "MT", "--mt-checkpoint"),
         ("decoder.", "MT", "--mt-checkpoint"),
         ("encoder.exporter.", "exporter", "--exporter-type/--exporter-hidden-dim/--exporter-layers"))


class CheckpointMismatchError(ValueError):
    pass


def _part(key):
    for prefix, name, option in PARTS:
        if key.startswith(prefix):
            return name, option
    return "model", "the model options"


def check_state_dict_fits(model, state_dict):
    own = model.state_dict()
    mismatched = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in state_dict.items()
                  if k in own and hasattr(v, "shape") and tuple(v.shape) != tuple(own[k].shape)]
    if not mismatched:
        return
    lines, seen = [], set()
    for key, saved, built in mismatched:
        name, option = _part(key)
        if name in seen:
            continue
        seen.add(name)
        source = {"ASR": getattr(model.cfg, "asr_checkpoint", None),
                  "MT": getattr(model.cfg, "mt_checkpoint", None)}.get(name)
        lines.append(f"{name} part: {key} is {'x'.join(map(str, saved))} in the checkpoint but "
                     f"{'x'.join(map(str, built))} in the model built from {option}"
                     + (f" {source}" if source else ""))
    emb = "encoder.mt_encoder.embed_tokens.weight"
    hint = ""
    if emb in state_dict and emb in own and state_dict[emb].shape[1] != own[emb].shape[1]:
        hint = (f" The MT embedding size is {state_dict[emb].shape[1]} in the checkpoint and "
                f"{own[emb].shape[1]} in --mt-checkpoint: the exporter maps into one MT's embedding space.")
    raise CheckpointMismatchError(
        f"the exporter checkpoint does not fit this cascade ({len(mismatched)} tensor(s) differ in shape): "
        + "; ".join(lines) + "." + hint
        + " Continue a saved exporter with the ASR and MT checkpoints it was trained with.")
