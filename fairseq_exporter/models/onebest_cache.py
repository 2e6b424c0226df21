"""``--onebest-cache DIR``: with the ASR frozen, each training utterance's 1-best and the
token states the exporter reads from it are computed once and reused in later epochs.

A frozen ASR is in eval mode and never updated, so its 1-best and token states for an
utterance are the same every epoch; only the exporter (and the MT, if it trains) sees
something new. Recomputing them is most of a stage-1 step (the ASR encoder and the
autoregressive 1-best search), so caching them is the first speed lever of stage 1.

What is kept, per utterance (split and manifest id): the 1-best ids and, with ``--coupling
exporter``, the token states (the exporter input, float, one row per 1-best token).
When every utterance of a batch is cached, the ASR is not run at all, unless something
still needs the speech encoder output: the transformer exporter (it cross-attends to
it) or ``--asr-weight`` > 0 (the ASR loss on the reference); then only the encoder runs.

The cache is keyed by a fingerprint of the ASR parameters and the search options
(exporter source, beam, max length, the MT's source positions): a directory written
with another ASR or other options is an error, never silently reused. Entries are
written as shards (``shard-*.pt``) beside ``cache.json``; other processes (DDP workers,
a resumed run) read them when they start.

One difference from running without the cache: training features get SpecAugment
(``_train`` transforms of the config yaml) with a new draw every epoch, so without the
cache the frozen ASR's 1-best varies a little between epochs; with it, every epoch sees
the 1-best of the first epoch's draw.
"""

import atexit
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import torch
from fairseq.data import data_utils
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from fairseq_exporter.models.onebest import OneBest

logger = logging.getLogger(__name__)

OPTION = "--onebest-cache"
FLUSH_EVERY = 1000  # utterances per shard
CACHE_FORMAT = 2  # shard entries: (tokens, states, truncated)


class StaleOneBestCache(ValueError):
    """The cache directory was written for another ASR or other search options."""


@dataclass
class Entry:
    tokens: Tensor  # L (1-best ids, ending in </s>)
    states: Optional[Tensor]  # L x D (token states), None when only the 1-best was needed
    truncated: bool  # the search's 1-best was cut to the MT's source positions


def check_cacheable(model, coupling: str):
    """Refuse the cache where its entries would go stale or mean nothing."""
    if not model.cfg.freeze_asr:
        raise ValueError(f"{OPTION} needs --freeze-asr: the 1-best and token states of an ASR that "
                         "trains change every update, so they cannot be computed once "
                         f"(drop {OPTION}, or add --freeze-asr)")
    if coupling not in ("exporter", "onebest"):
        raise ValueError(f"{OPTION} caches the ASR 1-best of --coupling exporter or onebest, "
                         f"not --coupling {coupling} (drop {OPTION})")


def fingerprint(encoder, onebest_beam: int, onebest_max_len: int) -> Dict[str, object]:
    """What the cached entries depend on: the ASR parameters and the search options."""
    digest = hashlib.sha256()
    for name, tensor in sorted(encoder.asr.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return {
        "format": CACHE_FORMAT,
        "asr_parameters_sha256": digest.hexdigest(),
        "exporter_source": str(getattr(encoder, "source", "decoder")),
        "onebest_beam": int(onebest_beam),
        "onebest_max_len": int(onebest_max_len),
        "mt_max_source_positions": int(encoder.mt_encoder.max_positions()),  # longer 1-bests are cut
    }


class OneBestCache:
    def __init__(self, directory, key: Dict[str, object]):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = self.dir / "cache.json"
        if meta.is_file():
            stored = json.loads(meta.read_text())
            changed = {k: (stored.get(k), v) for k, v in key.items() if stored.get(k) != v}
            if changed:
                what = "; ".join(f"{k}: cached {a!r}, now {b!r}" for k, (a, b) in changed.items())
                raise StaleOneBestCache(
                    f"{OPTION} {self.dir} holds the 1-best of another ASR or search ({what}). "
                    f"Delete {self.dir} or point {OPTION} at a new directory.")
        else:
            meta.write_text(json.dumps(key, indent=1) + "\n")
        self.entries: Dict[str, Entry] = {}
        for shard in sorted(self.dir.glob("shard-*.pt")):
            for uid, (tokens, states, truncated) in torch.load(shard, map_location="cpu").items():
                self.entries[uid] = Entry(tokens, states, truncated)
        self._pending: Dict[str, Entry] = {}
        self._shards = 0
        self.hits = self.misses = 0
        if self.entries:
            logger.info(f"{OPTION} {self.dir}: {len(self.entries):,} utterances cached")
        atexit.register(self.flush)

    def flush(self):
        if not self._pending:
            return
        self._shards += 1
        name = self.dir / f"shard-{os.getpid()}-{self._shards:05d}.pt"
        tmp = name.with_suffix(".tmp")
        torch.save({uid: (e.tokens, e.states, e.truncated) for uid, e in self._pending.items()}, tmp)
        os.replace(tmp, name)  # a shard is whole or absent
        self._pending = {}

    def _store(self, uid: str, entry: Entry):
        self.entries[uid] = entry
        self._pending[uid] = entry
        if len(self._pending) >= FLUSH_EVERY:
            self.flush()

    def recognize(self, encoder, net_input, ids: List[str], need_states: bool, need_encoder: bool):
        """The batch's ``Recognition`` with ``token_states`` filled in: from the cache if
        every utterance is there, otherwise computed (whole batch) and stored."""
        from fairseq_exporter.models.coupling import Recognition

        cached = [self.entries.get(uid) for uid in ids]
        if all(e is not None and (e.states is not None or not need_states) for e in cached):
            self.hits += len(ids)
            device = net_input["src_tokens"].device
            tokens = data_utils.collate_tokens([e.tokens for e in cached], encoder.pad, encoder.eos,
                                               left_pad=False).to(device)
            states = None
            if need_states:  # B x L x D, zeros past each 1-best's end (the MT zeroes those positions)
                states = pad_sequence([e.states for e in cached], batch_first=True).to(device)
            truncated = torch.tensor([e.truncated for e in cached], device=device)
            asr_encoder_out = None
            if need_encoder:
                with torch.no_grad():
                    asr_encoder_out = encoder.asr.encoder(net_input["src_tokens"], net_input["src_lengths"])
            return Recognition(asr_encoder_out, OneBest(tokens=tokens, truncated=truncated),
                               token_states=states)
        self.misses += len(ids)
        with torch.no_grad():
            recognition = encoder.recognize(**net_input)
            states = recognition.token_states  # kept from a greedy search, else teacher-forced
            if need_states and states is None:
                states = encoder.token_states(recognition)
        recognition.token_states = states
        tokens = recognition.onebest.tokens
        lengths = tokens.ne(encoder.pad).sum(1).tolist()
        truncated = recognition.onebest.truncated
        for i, uid in enumerate(ids):
            n = lengths[i]
            self._store(uid, Entry(tokens[i, :n].cpu().clone(),
                                   states[i, :n].cpu().clone() if states is not None else None,
                                   bool(truncated[i]) if truncated is not None else False))
        return recognition


def cache_keys(utterance) -> List[str]:
    """Cache keys of a batch's (split, manifest id) pairs: ids may repeat across splits."""
    return [f"{split}/{utt_id}" for split, utt_id in utterance]
