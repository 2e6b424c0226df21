import fcntl
import os
import pickle
import shutil
import sys
from pathlib import Path

import pytest

# The tests start many fairseq processes one after another on small CPU machines; one
# OpenMP thread each avoids oversubscription when a test and its subprocess overlap.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# The recipes the tests run use the tests' own interpreter (and so its venv), whatever
# PYTHON the environment holds (`make test PYTHON=python3.10` exports the bare interpreter);
# the warm_python fixture below then points PYTHON at a warm copy of it.
os.environ["PYTHON"] = sys.executable

sys.path.insert(0, str(Path(__file__).parent))

import tiny_cascade  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
USER_DIR = str(REPO / "fairseq_exporter")


def shared(tmp_path_factory, name, build):
    """build(folder)'s result, built once per test run in a folder every xdist worker sees (the
    first worker to ask builds it, under a lock; the others wait for it and read it back).
    What build writes there is the others' to read, not to change."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's basetemp, above each worker's own
    folder, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # a build that failed
            folder.mkdir()
            done.write_bytes(pickle.dumps(build(folder)))
        return pickle.loads(done.read_bytes())


@pytest.fixture(scope="session", autouse=True)
def warm_python():
    """$PYTHON for the recipes: their python steps run as forks of one warm interpreter per test
    process (tests/warm_python.py says why and how), with the CPU code-path pins the recipes set."""
    import importlib.util
    import json
    import subprocess
    import tempfile

    import warm_python as warm

    spec = importlib.util.spec_from_file_location("toy_provenance", REPO / "fairseq_exporter/toy/provenance.py")
    provenance = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(provenance)  # as a file: the package would import fairseq here
    env = dict(os.environ)
    env.update(provenance.code_path_pins(env)[0])
    folder = Path(tempfile.mkdtemp(prefix="warm-python-"))  # short: a socket's path has ~100 bytes
    socket_path = folder / "socket"
    with open(folder / "server.log", "w") as log:
        server = subprocess.Popen([sys.executable, str(Path(warm.__file__)), "serve", str(socket_path)], env=env,
                                  stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    saved = {key: os.environ.get(key) for key in ("PYTHON", warm.REAL, warm.SOCKET, warm.EXPECTED)}
    os.environ.update({"PYTHON": str(REPO / "tests/warm-python"), warm.REAL: sys.executable,
                       warm.SOCKET: str(socket_path), warm.EXPECTED: json.dumps(warm.env_read_at_import(env))})
    yield
    server.kill()
    server.wait()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def cascade(tmp_path_factory):
    """A tiny MT and ASR checkpoint trained with the stock fairseq CLIs, and their data (one
    build shared by the xdist workers)."""
    return shared(tmp_path_factory, "cascade", tiny_cascade.build)


@pytest.fixture(scope="session")
def user_dir():
    return USER_DIR


# Longest files first (their time on the 2-core machine, most first): with `-n 2 --dist
# loadfile --no-loadscope-reorder` pytest-xdist hands whole files to the two workers in
# collection order, so a long file started last cannot keep one worker busy for minutes after
# the other has run out of work (xdist's own reorder, by number of tests, would undo this).
# The two toy files go first, one to each worker: both read the quick study (tests/toy_study.py)
# that whichever asks first builds (shared), and test_toy_seed_and_tune.py asks for it last.
SLOW_FILES_FIRST = ("test_toy_recipe.py", "test_toy_seed_and_tune.py", "test_mustc_recipe.py", "test_benchmarks.py",
                    "test_lm_real_tokenizers.py", "test_lm_chat.py", "test_lm_backend.py", "test_cli.py",
                    "test_own_hf_mt_doc.py", "test_own_llm_doc.py", "test_hf_mt_backend.py", "test_reliability_runs.py",
                    "test_own_checkpoints_doc.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(Path(str(item.fspath)).name, len(SLOW_FILES_FIRST)))  # stable
