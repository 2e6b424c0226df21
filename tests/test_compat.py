import argparse

import pytest
import torch

import fairseq_exporter  # noqa: F401  (registers the allowlist)
from fairseq_exporter.compat import allowed_checkpoint_globals


def test_fresh_fairseq_checkpoints_load_with_weights_only(cascade):
    for path in (cascade["mt"], cascade["asr"]):
        state = torch.load(path, weights_only=True)
        assert "model" in state


def test_allowlist_is_plain_data_only():
    names = {f"{g.__module__}.{g.__name__}" for g in allowed_checkpoint_globals()}
    assert "argparse.Namespace" in names
    assert not any(n.startswith(("os.", "builtins.", "subprocess.", "posix.")) for n in names), names


def test_numpy_scalars_in_old_checkpoints_load(tmp_path):
    import numpy as np

    path = tmp_path / "old.pt"
    torch.save({"args": argparse.Namespace(lr=[0.1]), "extra_state": {"best": np.float64(3.5),
                                                                    "arr": np.arange(3)}}, path)
    state = torch.load(path, weights_only=True)
    assert state["extra_state"]["best"] == 3.5


def test_unlisted_global_is_refused(tmp_path):
    import collections

    path = tmp_path / "x.pt"
    torch.save({"x": collections.OrderedDict(a=1), "f": print}, path)
    with pytest.raises(Exception, match="Unsupported global"):
        torch.load(path, weights_only=True)
