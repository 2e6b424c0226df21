"""Loading fairseq checkpoints under torch >= 2.6, where ``torch.load`` defaults to
``weights_only=True``.

fairseq pickles its configuration into every checkpoint: legacy models (all of
speech_to_text, for instance) store an ``argparse.Namespace``, and older checkpoints
carry numpy scalars and arrays in their training state (fairseq issue 5603). Instead
of turning safe loading off (``weights_only=False`` lets a checkpoint run arbitrary
code), we allow exactly these plain-data types and nothing else.
"""

import argparse
import os
import shutil

import numpy as np
import torch


def _numpy_globals():
    # What numpy scalars/arrays pickle to: the reconstructors, ndarray/dtype and the
    # concrete dtype classes (numpy >= 1.25 names them numpy.dtypes.*DType). numpy 2
    # pickles the reconstructors as numpy._core.multiarray.*, numpy 1 as
    # numpy.core.multiarray.*: both names are allowed, so a checkpoint written under
    # either loads under either. (numpy 1.26 ships a numpy._core stub without
    # multiarray: the module is chosen by version, not by what exists.)
    numpy2 = int(np.__version__.split(".")[0]) >= 2
    multiarray = np._core.multiarray if numpy2 else np.core.multiarray
    allowed = [np.ndarray, np.dtype]
    for fn in (multiarray._reconstruct, multiarray.scalar):
        allowed += [(fn, f"numpy.{core}.multiarray.{fn.__name__}") for core in ("core", "_core")]
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


def fsync_directory(path: str):
    """Make a rename in ``path`` durable (POSIX: the new name is data of the directory)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_checkpoint_copies_atomic():
    """fairseq 0.12 writes the first checkpoint of a save atomically (``.tmp`` file, then
    rename, in ``checkpoint_utils.torch_persistent_save``) but *copies* it to the others
    (``checkpoint_last.pt``, ``checkpoint_best.pt``, ...) with ``PathManager.copy``, i.e.
    ``shutil.copyfile`` straight onto the target: a process killed during that copy leaves
    a truncated ``checkpoint_last.pt`` that the restarted run fails to load. Route local
    copies through a temporary file and ``os.replace`` (atomic on POSIX), so a target is
    either the old checkpoint or the new one. The temporary file is fsynced before the
    rename and the directory after it: without that, a crash of the machine (not just of
    the process) can leave the renamed name pointing at blocks never written, a
    zero-length or partly zero checkpoint. Paths with an ioPath handler are left alone."""
    from fairseq.file_io import PathManager

    if getattr(PathManager.copy, "_exporter_atomic", False):
        return
    stock_copy = PathManager.copy

    def copy(src_path: str, dst_path: str, overwrite: bool = False) -> bool:
        if PathManager.path_requires_pathmanager(src_path) or PathManager.path_requires_pathmanager(dst_path):
            return stock_copy(src_path, dst_path, overwrite)
        # overwrite: like fairseq's own local fallback (shutil.copyfile), always
        tmp = f"{dst_path}.tmp-copy"
        with open(src_path, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, dst_path)
        fsync_directory(os.path.dirname(os.path.abspath(dst_path)))
        return True

    copy._exporter_atomic = True
    PathManager.copy = staticmethod(copy)
