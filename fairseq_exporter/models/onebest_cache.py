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
(exporter source, beam, max length, the MT's source positions) and the stored state
dtype: a directory written with another ASR or other options is an error, never
silently reused. Other processes (DDP workers, a resumed run) read what was written
before they started.

Memory is bounded by a buffer, not by the training set (MuST-C En-De: 230k utterances x
~25 tokens x 512 dims x 4 bytes is ~12 GB of token states): entries go to append-only
shards of ``FLUSH_EVERY`` utterances, each three files, ``shard-P-N.tokens.npy`` (the
1-best ids, concatenated), ``shard-P-N.states.npy`` (their token states, one row per
token) and ``shard-P-N.json``, the index (utterance keys, offsets, lengths, truncated
flags), written last: a shard is read only if its index exists and its arrays have the
sizes the index names, so a run that crashed while writing leaves nothing that reads as
valid. The arrays are opened with ``np.load(mmap_mode="r")`` and a batch copies only its
own rows; what stays in memory is the index, ~100 bytes an utterance.

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
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from fairseq.data import data_utils
from torch import Tensor

from fairseq_exporter.models.onebest import OneBest

logger = logging.getLogger(__name__)

OPTION = "--onebest-cache"
FLUSH_EVERY = 1000  # utterances per shard: the write buffer
CACHE_FORMAT = 3  # append-only .npy shards + a json index per shard (2: whole-dict .pt shards)
STATE_DTYPES = {"float32": np.float32, "float16": np.float16}


class StaleOneBestCache(ValueError):
    """The cache directory was written for another ASR or other search options."""


@dataclass
class Entry:
    tokens: np.ndarray  # L (1-best ids, ending in </s>)
    states: Optional[np.ndarray]  # L x D (token states), None when only the 1-best was needed
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
        "mt_max_source_positions": int(encoder.source_limit),  # longer 1-bests are cut
    }


def _write_atomically(path: Path, write):
    """``write(file)`` to a temporary file, then rename: the file is whole or absent."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class _Shard:
    """One shard's arrays, memory-mapped: pages are read when a batch asks for its rows."""

    def __init__(self, index_path: Path, meta: Dict):
        stem = index_path.with_suffix("")
        self.tokens = np.load(f"{stem}.tokens.npy", mmap_mode="r")
        self.states = np.load(f"{stem}.states.npy", mmap_mode="r") if meta["n_state_rows"] else None
        if len(self.tokens) != meta["n_tokens"] or (self.states is not None and len(self.states) != meta["n_state_rows"]):
            raise ValueError(f"arrays of {stem} do not have the sizes its index names")


class OneBestCache:
    def __init__(self, directory, key: Dict[str, object], state_dtype: str = "float32"):
        """``state_dtype``: how token states are stored; float16 halves the disk and page
        cache (benchmarks/scaling.py measures what it changes in the exporter's output)."""
        if state_dtype not in STATE_DTYPES:
            raise ValueError(f"{OPTION}: state dtype {state_dtype!r} is not one of {', '.join(STATE_DTYPES)}")
        key = dict(key, state_dtype=state_dtype)
        self.state_dtype = STATE_DTYPES[state_dtype]
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
            _write_atomically(meta, lambda f: f.write((json.dumps(key, indent=1) + "\n").encode()))
        # key -> (shard, token offset, length, state row offset or -1, truncated)
        self.index: Dict[str, Tuple[int, int, int, int, bool]] = {}
        self.shards: List[_Shard] = []
        for index_path in sorted(self.dir.glob("shard-*.json")):
            self._open_shard(index_path)
        self._pending: Dict[str, Entry] = {}
        # shard names unique to this process and run: a later run may reuse a pid
        self._shard_prefix = f"shard-{os.getpid()}-{secrets.token_hex(4)}"
        self._written = 0
        self.hits = self.misses = 0
        if self.index:
            logger.info(f"{OPTION} {self.dir}: {len(self.index):,} utterances cached in {len(self.shards)} shard(s)")
        atexit.register(self.flush)

    def _open_shard(self, index_path: Path):
        try:
            meta = json.loads(index_path.read_text())
            shard = _Shard(index_path, meta)
        except (OSError, ValueError) as err:  # a shard another process is writing, or damaged
            logger.warning(f"{OPTION}: {index_path} left out ({err}); its utterances are recomputed")
            return
        n = len(self.shards)
        self.shards.append(shard)
        for uid, tok_at, length, state_at, truncated in zip(meta["keys"], meta["token_offsets"], meta["lengths"],
                                                             meta["state_offsets"], meta["truncated"]):
            self.index[uid] = (n, tok_at, length, state_at, bool(truncated))

    def flush(self):
        """Write the buffered entries as one shard; the index goes last (see the module docstring)."""
        if not self._pending:
            return
        self._written += 1
        stem = self.dir / f"{self._shard_prefix}-{self._written:05d}"
        entries = list(self._pending.items())
        lengths = [len(e.tokens) for _, e in entries]
        token_offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).tolist()
        with_states = [e.states for _, e in entries if e.states is not None]
        state_offsets, at = [], 0
        for _, e in entries:
            state_offsets.append(at if e.states is not None else -1)
            at += len(e.tokens) if e.states is not None else 0
        tokens = np.concatenate([e.tokens for _, e in entries]).astype(np.int32)
        _write_atomically(Path(f"{stem}.tokens.npy"), lambda f: np.save(f, tokens))
        if with_states:
            states = np.concatenate(with_states).astype(self.state_dtype)
            _write_atomically(Path(f"{stem}.states.npy"), lambda f: np.save(f, states))
        meta = {"keys": [uid for uid, _ in entries], "token_offsets": token_offsets, "lengths": lengths,
                "state_offsets": state_offsets, "truncated": [bool(e.truncated) for _, e in entries],
                "n_tokens": int(len(tokens)), "n_state_rows": int(at)}
        index_path = Path(f"{stem}.json")
        _write_atomically(index_path, lambda f: f.write(json.dumps(meta).encode()))
        self._pending = {}
        self._open_shard(index_path)

    def _store(self, uid: str, entry: Entry):
        self._pending[uid] = entry
        if len(self._pending) >= FLUSH_EVERY:
            self.flush()

    def _entry(self, uid: str, need_states: bool) -> Optional[Entry]:
        """The cached entry (states read from disk only if needed), or None."""
        if uid in self._pending:
            entry = self._pending[uid]
            return entry if entry.states is not None or not need_states else None
        where = self.index.get(uid)
        if where is None:
            return None
        n, tok_at, length, state_at, truncated = where
        if need_states and state_at < 0:
            return None
        shard = self.shards[n]
        states = shard.states[state_at: state_at + length] if need_states else None
        return Entry(shard.tokens[tok_at: tok_at + length], states, truncated)

    def __len__(self) -> int:
        return len(self.index.keys() | self._pending.keys())

    def recognize(self, encoder, net_input, ids: List[str], need_states: bool, need_encoder: bool):
        """The batch's ``Recognition`` with ``token_states`` filled in: from the cache if
        every utterance is there, otherwise computed (whole batch) and stored."""
        from fairseq_exporter.models.coupling import Recognition

        cached = [self._entry(uid, need_states) for uid in ids]
        if all(e is not None for e in cached):
            self.hits += len(ids)
            device = net_input["src_tokens"].device
            tokens = data_utils.collate_tokens([torch.from_numpy(e.tokens.astype(np.int64)) for e in cached],
                                               encoder.pad, encoder.eos, left_pad=False).to(device)
            states = None
            if need_states:  # B x L x D, zeros past each 1-best's end (the MT zeroes those positions)
                dtype = next(encoder.asr.parameters()).dtype  # what the ASR computes them in
                padded = np.zeros((len(cached), tokens.size(1), cached[0].states.shape[1]), dtype=np.float32)
                for i, e in enumerate(cached):
                    padded[i, : len(e.states)] = e.states
                states = torch.from_numpy(padded).to(device=device, dtype=dtype)
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
            self._store(uid, Entry(tokens[i, :n].cpu().numpy().astype(np.int32),
                                   states[i, :n].detach().float().cpu().numpy().astype(self.state_dtype)
                                   if states is not None else None,
                                   bool(truncated[i]) if truncated is not None else False))
        return recognition


def cache_keys(utterance) -> List[str]:
    """Cache keys of a batch's (split, manifest id) pairs: ids may repeat across splits."""
    return [f"{split}/{utt_id}" for split, utt_id in utterance]
