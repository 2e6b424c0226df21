"""Loading fairseq checkpoints under torch >= 2.6, where ``torch.load`` defaults to
``weights_only=True``.

fairseq pickles its configuration into every checkpoint: legacy models (all of
speech_to_text, for instance) store an ``argparse.Namespace``, and older checkpoints
carry numpy scalars and arrays in their training state (fairseq issue 5603). Instead
of turning safe loading off (``weights_only=False`` lets a checkpoint run arbitrary
code), we allow exactly these plain-data types and nothing else.
"""

import argparse

import numpy as np
import torch


def _numpy_globals():
    # What numpy scalars/arrays pickle to: the reconstructors, ndarray/dtype and the
    # concrete dtype classes (numpy >= 1.25 names them numpy.dtypes.*DType).
    multiarray = getattr(np, "_core", np.core).multiarray
    allowed = [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype]
    for scalar in (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8,
                   np.float16, np.float32, np.float64):
        allowed.append(type(np.dtype(scalar)))
    return allowed


def allowed_checkpoint_globals():
    """The only non-torch globals a fairseq checkpoint may carry."""
    return [argparse.Namespace] + _numpy_globals()


def allow_fairseq_checkpoint_globals():
    """Register the allowlist with torch's weights-only unpickler (idempotent)."""
    add = getattr(torch.serialization, "add_safe_globals", None)
    if add is not None:  # torch < 2.4 has no weights-only default to satisfy
        add(allowed_checkpoint_globals())
