import argparse

import pytest
import torch

import fairseq_exporter  # noqa: F401  (registers the allowlist)
from fairseq_exporter.compat import allowed_checkpoint_globals


def global_name(entry) -> str:
    """The pickled name an allowlist entry admits: ``(obj, name)`` or ``obj``'s own."""
    return entry[1] if isinstance(entry, tuple) else f"{entry.__module__}.{entry.__qualname__}"

# torch < 2.4 (torch 1.12.1 of the Python 3.10 install path) loads without an allowlist
needs_weights_only = pytest.mark.skipif(not hasattr(torch.serialization, "add_safe_globals"),
                                        reason="this torch has no weights-only allowlist")


@needs_weights_only
def test_fresh_fairseq_checkpoints_load_with_weights_only(cascade):
    for path in (cascade["mt"], cascade["asr"]):
        state = torch.load(path, weights_only=True)
        assert "model" in state


def test_allowlist_is_plain_data_only():
    names = {global_name(g) for g in allowed_checkpoint_globals()}
    assert "argparse.Namespace" in names
    assert not any(n.startswith(("os.", "builtins.", "subprocess.", "posix.")) for n in names), names


@needs_weights_only
def test_numpy_scalars_in_old_checkpoints_load(tmp_path):
    import numpy as np

    path = tmp_path / "old.pt"
    torch.save({"args": argparse.Namespace(lr=[0.1]), "extra_state": {"best": np.float64(3.5),
                                                                    "arr": np.arange(3)}}, path)
    state = torch.load(path, weights_only=True)
    assert state["extra_state"]["best"] == 3.5


@needs_weights_only
def test_unlisted_global_is_refused(tmp_path):
    import collections

    path = tmp_path / "x.pt"
    torch.save({"x": collections.OrderedDict(a=1), "f": print}, path)
    with pytest.raises(Exception, match="Unsupported global"):
        torch.load(path, weights_only=True)


@needs_weights_only
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # numpy 2 on numpy.core
@pytest.mark.parametrize("written_as", ["numpy.core", "numpy._core"])
def test_numpy_arrays_pickled_by_numpy_1_or_2_load(tmp_path, written_as):
    """numpy 1 pickles arrays as numpy.core.multiarray._reconstruct, numpy 2 as
    numpy._core.multiarray._reconstruct: either loads under the installed numpy."""
    import numpy as np

    path = tmp_path / "old.pt"
    torch.save({"arr": np.arange(3), "best": np.float64(3.5)}, path, _use_new_zipfile_serialization=False)
    raw = path.read_bytes()
    here = b"numpy._core.multiarray" if b"numpy._core.multiarray" in raw else b"numpy.core.multiarray"
    assert here in raw
    path.write_bytes(raw.replace(here, written_as.encode() + b".multiarray"))  # a plain pickle stream
    state = torch.load(path, weights_only=True)
    assert state["arr"].tolist() == [0, 1, 2] and state["best"] == 3.5


def test_the_plugin_starts_without_transformers():
    """fairseq imports every module of the plugin's models/ (and tasks/, criterions/) when it loads
    --user-dir: none may need transformers, an optional extra (the Python 3.10 install has none)."""
    import subprocess
    import sys

    code = ("import sys, importlib, pkgutil; sys.modules['transformers'] = None\n"
            "import fairseq_exporter\n"
            "for package in ('models', 'tasks', 'criterions', 'data'):\n"
            "    path = importlib.import_module(f'fairseq_exporter.{package}').__path__\n"
            "    for module in pkgutil.iter_modules(path):\n"
            "        importlib.import_module(f'fairseq_exporter.{package}.{module.name}')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
