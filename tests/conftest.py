import os
import sys
from pathlib import Path

import pytest

# The tests start many fairseq processes one after another on small CPU machines; one
# OpenMP thread each avoids oversubscription when a test and its subprocess overlap.
os.environ.setdefault("OMP_NUM_THREADS", "1")

sys.path.insert(0, str(Path(__file__).parent))

import tiny_cascade  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
USER_DIR = str(REPO / "fairseq_exporter")


@pytest.fixture(scope="session")
def cascade(tmp_path_factory):
    """A tiny MT and ASR checkpoint trained with the stock fairseq CLIs, and their data."""
    return tiny_cascade.build(tmp_path_factory.mktemp("cascade"))


@pytest.fixture(scope="session")
def user_dir():
    return USER_DIR
