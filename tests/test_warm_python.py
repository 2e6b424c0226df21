"""The recipes' warm interpreter (tests/warm_python.py) runs a step as the real one does: the
same output, exit status, working directory, environment and argv; anything it does not serve
goes to the real interpreter."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import warm_python as warm

STEP = """
import os, sys, logging
print("argv", sys.argv[1:], "cwd", os.getcwd(), "env", os.environ.get("STEP_VALUE"), "main", __name__)
print("root handlers", len(logging.getLogger().handlers), "fairseq loaded", "fairseq" in sys.modules)
print("to stderr", file=sys.stderr)
sys.exit(int(os.environ.get("STEP_EXIT", "0")))
"""


@pytest.fixture(scope="module")
def served():
    socket_path = Path(os.environ[warm.SOCKET])
    deadline = time.time() + 120
    while not socket_path.exists():  # the session's server finishes its imports
        assert time.time() < deadline, "the warm python server did not come up"
        time.sleep(0.5)
    return os.environ["PYTHON"]


def _run(python, args, tmp_path, **env):
    """As the recipes run a step: with the CPU code-path pins they export, as the server has them."""
    served_env = json.loads(os.environ[warm.EXPECTED])  # (earlier tests may have set others)
    ours = {key: value for key, value in os.environ.items() if key not in warm.env_read_at_import(os.environ)}
    return subprocess.run([python, *args], cwd=tmp_path, capture_output=True, text=True,
                          env={**ours, **served_env, **env})


@pytest.mark.parametrize("form", ["module", "file"])
def test_a_step_runs_as_in_a_fresh_interpreter(served, tmp_path, form):
    (tmp_path / "step_module.py").write_text(STEP)
    args = ["-m", "step_module", "a", "b c"] if form == "module" else [str(tmp_path / "step_module.py"), "a", "b c"]
    ours = _run(served, args, tmp_path, STEP_VALUE="x", STEP_EXIT="3")
    real = _run(sys.executable, args, tmp_path, STEP_VALUE="x", STEP_EXIT="3")
    assert (ours.returncode, ours.stdout, ours.stderr) == (real.returncode, real.stdout, real.stderr) == \
        (3, real.stdout, "to stderr\n")
    assert f"cwd {tmp_path}" in ours.stdout and "env x main __main__" in ours.stdout
    assert "root handlers 0 fairseq loaded False" in ours.stdout


def test_an_uncaught_exception_prints_its_traceback_and_exits_1(served, tmp_path):
    (tmp_path / "failing.py").write_text("raise ValueError('named here')\n")
    ours = _run(served, [str(tmp_path / "failing.py")], tmp_path)
    assert ours.returncode == 1 and "ValueError: named here" in ours.stderr and "Traceback" in ours.stderr


def test_what_it_does_not_serve_runs_the_real_interpreter(served, tmp_path):
    code = "import sys; print('warm' if 'torch' in sys.modules else 'fresh')"
    assert _run(served, ["-c", code], tmp_path).stdout == "fresh\n"  # -c: not served
    (tmp_path / "which.py").write_text(code)
    assert _run(served, [str(tmp_path / "which.py")], tmp_path).stdout == "warm\n"
    # what torch exports itself on import, in a caller that imported torch: still served
    assert _run(served, [str(tmp_path / "which.py")], tmp_path, TORCHINDUCTOR_CACHE_DIR="/tmp/x").stdout == "warm\n"
    # an environment the server's imports may have read otherwise: the real interpreter
    assert _run(served, [str(tmp_path / "which.py")], tmp_path, OMP_NUM_THREADS="7").stdout == "fresh\n"
    assert _run(served, [str(tmp_path / "which.py")], tmp_path, WARM_PYTHON_SOCKET=str(tmp_path / "none")).stdout \
        == "fresh\n"
