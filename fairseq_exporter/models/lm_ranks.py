"""The frozen LM under multi-process training: every rank must hold the same one.

torch DDP broadcasts rank 0's parameters and buffers to the other ranks when it wraps the
model, but the cascade model asks it to leave the LM's out (``_ddp_params_and_buffers_to_ignore``:
they are frozen and can be gigabytes). Each rank reads the LM from its own ``--lm-checkpoint``
directory instead, so a rank that reads another copy (another node's disk, a half-synced
directory, a different path in its launch command) would translate through another LM with
nothing to say so. fairseq sets up the process group before it builds the model, so the
check below runs at start-up on every rank.
"""

import torch.distributed as dist

from fairseq_exporter.data.lm_vocabulary import OPTION
from fairseq_exporter.models.causal_lm import LMError


def check_same_lm_on_every_rank(fingerprint: str, lm_dir: str, option: str = OPTION, what: str = "LM") -> None:
    """Raise LMError on every rank unless all ranks' LM weights have the same fingerprint
    (``causal_lm.weights_fingerprint``); nothing to check outside multi-process training."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return
    seen = [None] * dist.get_world_size()
    dist.all_gather_object(seen, (fingerprint, str(lm_dir)))
    if len({fp for fp, _ in seen}) == 1:
        return
    ranks = "; ".join(f"rank {rank}: {fp} ({path})" for rank, (fp, path) in enumerate(seen))
    raise LMError(f"{option}: the ranks hold different {what} weights ({ranks}). torch DDP does not broadcast "
                  f"the frozen {what}: give every rank the same {what} directory (the same files on every node)")
