"""A warm interpreter for the recipes the tests run: their ``python -m MODULE ...`` and ``python
FILE.py ...`` steps run as forks of a server that has already imported torch, fairseq and
transformers, instead of a fresh interpreter each. A quick fairseq process spends about 5 of its
7 seconds importing; the recipes' ~150 such steps are most of the suite's time.

Each step is still a process of its own, with the caller's argv, working directory, environment,
stdin/stdout/stderr and exit status, and it imports the plugin (``--user-dir``) itself. Anything
else runs the real interpreter: other command lines (``-c CODE``, options), an environment whose
CPU code-path pins, thread counts or Hugging Face settings differ from the server's (its imports
may have read them), or a server that is not up yet.

    python tests/warm_python.py serve SOCKET    # conftest starts one per test process
    tests/warm-python ARGS...                   # what $PYTHON names for the recipes
"""

import json
import os
import struct
import sys

SOCKET = "WARM_PYTHON_SOCKET"
REAL = "WARM_PYTHON_REAL"
EXPECTED = "WARM_PYTHON_ENV"
# what the server's imports may have read from its environment: a step whose values differ runs
# the real interpreter
ENV_READ_AT_IMPORT = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                      "CUDA_VISIBLE_DEVICES", "PYTHONHASHSEED", "PYTHONPATH")
ENV_PREFIXES_READ_AT_IMPORT = ("HF_", "TRANSFORMERS_", "TOKENIZERS_", "TORCH", "FAIRSEQ")
# the libraries, not fairseq itself: importing fairseq configures the root logger (one of its
# models calls logging.basicConfig), which a step must do in its own order (fairseq_cli.train
# configures it first, fairseq_cli.generate after importing fairseq); fairseq alone then takes
# half a second of a step's time
PRELOAD = ("torch", "torch._dynamo", "numpy", "scipy.stats", "sklearn.metrics", "sentencepiece", "sacrebleu",
           "matplotlib", "transformers", "transformers.modeling_utils")


# what torch itself exports when imported (its default): a caller that imported torch holds it
ENV_SET_AT_IMPORT = ("TORCHINDUCTOR_CACHE_DIR",)


def env_read_at_import(environ) -> dict:
    return {k: v for k, v in environ.items()
            if (k in ENV_READ_AT_IMPORT or k.startswith(ENV_PREFIXES_READ_AT_IMPORT)) and k not in ENV_SET_AT_IMPORT}


def _recv_exact(conn, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("warm python: connection closed")
        data += chunk
    return data


# ---------------------------------------------------------------------------------------------
# client: runs under `python -S -E` (stdlib only, no site: a few milliseconds)

def client(argv):
    import signal
    import socket

    real = os.environ[REAL]
    path = os.environ.get(SOCKET)
    warm = (len(argv) >= 2 and argv[0] == "-m") or (len(argv) >= 1 and argv[0].endswith(".py"))
    expected = json.loads(os.environ.get(EXPECTED, "null"))
    if not (path and warm and expected == env_read_at_import(os.environ)):
        os.execv(real, [real, *argv])
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
    except OSError:  # not up yet (or gone): the real interpreter
        conn.close()
        os.execv(real, [real, *argv])
    sys.stdout.flush()
    sys.stderr.flush()
    request = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
    socket.send_fds(conn, [struct.pack("!I", len(request))], [0, 1, 2])
    conn.sendall(request)
    (pid,) = struct.unpack("!i", _recv_exact(conn, 4))
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # a timeout's kill reaches the step
        signal.signal(sig, lambda signum, frame: os.kill(pid, signum))
    try:
        (code,) = struct.unpack("!i", _recv_exact(conn, 4))
    except ConnectionError:  # the step died without reporting (a signal)
        code = 1
    os._exit(code)


# ---------------------------------------------------------------------------------------------
# server

def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def _run_step(conn):
    """In the forked child: become the caller's process, run its step, report the exit status."""
    import atexit
    import io
    import logging
    import runpy
    import socket
    import traceback

    head, fds, _, _ = socket.recv_fds(conn, 4, 3)
    (n,) = struct.unpack("!I", head)
    request = json.loads(_recv_exact(conn, n))
    for target, fd in zip((0, 1, 2), fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
    sys.stdout = sys.__stdout__ = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)))
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), write_through=True,
                                                   errors="backslashreplace")
    root = logging.getLogger()
    for handler in list(root.handlers):  # a fresh interpreter's root logger (the preloads leave it so)
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    conn.sendall(struct.pack("!i", os.getpid()))
    argv = request["argv"]
    sys.orig_argv = [sys.executable, *argv]
    try:
        if argv[0] == "-m":
            sys.argv = ["-m", *argv[2:]]  # as while `python -m` imports the module's package
            sys.path[0] = os.getcwd()
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(argv)
            sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
            runpy.run_path(argv[0], run_name="__main__")
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc)
    except BaseException:  # noqa: B902  (as the interpreter reports an uncaught exception)
        traceback.print_exc()
        code = 1
    try:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        try:
            conn.sendall(struct.pack("!i", code))
        finally:
            os._exit(code)


def serve(path):
    import importlib
    import signal
    import socket

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # an install path without it: its steps import what they need
            pass
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path + ".tmp")
    server.listen(64)
    os.rename(path + ".tmp", path)  # connectable once it has the name the clients use
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the steps are reaped by the kernel
    while True:
        conn, _ = server.accept()
        if os.fork() == 0:
            server.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # a step waits for its own subprocesses
            _run_step(conn)
        conn.close()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        serve(sys.argv[2])
    else:
        client(sys.argv[1:])
