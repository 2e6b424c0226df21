"""Interrupted runs and two processes, through the real fairseq-train on CPU:
a SIGKILL mid-run resumes to the parameters of an uninterrupted run, a kill while a
checkpoint is written leaves the old checkpoint loadable, and two gloo processes
reproduce a one-process run with the same total batch."""

import gc
import os
import re
import signal
import socket
import subprocess
import sys

import pytest
import torch

from tiny_cascade import weights

import fairseq_exporter  # noqa: F401  (the checkpoint allowlist, atomic copies)
from fairseq import checkpoint_utils


def _args(cascade, user_dir, save_dir, *extra, asr=None):
    return [sys.executable, "-m", "fairseq_cli.train", str(cascade["s2t"]), "--user-dir", user_dir,
            "--task", "speech_to_text_exporter", "--config-yaml", "config_st.yaml",
            "--train-subset", "train", "--valid-subset", "dev", "--arch", "exporter", "--criterion", "exporter",
            "--asr-checkpoint", str(asr or cascade["asr"]), "--mt-checkpoint", str(cascade["mt"]),
            "--freeze-mt", "--asr-weight", "0", "--optimizer", "adam", "--lr", "0.001", "--max-tokens", "1000",
            "--save-dir", str(save_dir), "--no-epoch-checkpoints", "--no-progress-bar", "--log-format", "simple",
            "--log-interval", "1", "--num-workers", "0", "--seed", "1", "--cpu", "--data-buffer-size", "0",
            *map(str, extra)]


def _run(args):
    proc = subprocess.run(args, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout + proc.stderr


def _losses(log):
    return [float(re.search(r" loss=([^,]+)", line).group(1))
            for line in log.splitlines() if "| train_inner |" in line]


def _params(path):
    return weights(path)  # without official fairseq's uninitialized buffer


def test_sigkill_mid_run_then_same_command_resumes_to_the_uninterrupted_parameters(cascade, user_dir, tmp_path):
    extra = ("--max-update", 4, "--save-interval-updates", 2, "--keep-interval-updates", 1)
    _run(_args(cascade, user_dir, tmp_path / "whole", *extra))

    cmd = _args(cascade, user_dir, tmp_path / "killed", *extra)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:  # fairseq logs to stdout, one flushed line per update
        if "| train_inner |" in line and "num_updates=3," in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before update 3"
    log = _run(cmd)  # the same command again
    assert "Loaded checkpoint" in log and "@ 2 updates" in log, log[-3000:]
    assert len(_losses(log)) == 2  # updates 3 and 4 only

    whole, resumed = _params(tmp_path / "whole" / "checkpoint_last.pt"), _params(tmp_path / "killed" / "checkpoint_last.pt")
    diff = max((whole[k].float() - resumed[k].float()).abs().max().item() for k in whole)
    print(f"resume: largest parameter difference {diff:.3g}")
    assert diff < 1e-5


def _killed_midway(write):
    """Run ``write`` in a child process whose byte copies stop half-way with SIGKILL."""
    pid = os.fork()
    if pid == 0:  # child: no pytest, no return
        import shutil

        def half_then_die(fsrc, fdst, *args, **kwargs):
            data = fsrc.read()
            fdst.write(data[: len(data) // 2])
            fdst.flush()
            os.kill(os.getpid(), signal.SIGKILL)

        shutil.copyfileobj = shutil._fastcopy_sendfile = half_then_die
        real_save = torch.save

        def save_half_then_die(obj, f, *args, **kwargs):
            import io
            buf = io.BytesIO()
            real_save(obj, buf)
            half_then_die(io.BytesIO(buf.getvalue()), f)

        torch.save = save_half_then_die
        try:
            write()
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status


def test_kill_while_writing_checkpoints_leaves_the_old_ones_loadable(tmp_path):
    old = {"model": {"w": torch.arange(5.0)}}
    new = {"model": {"w": torch.randn(200_000)}}
    last, best, first = tmp_path / "checkpoint_last.pt", tmp_path / "checkpoint_best.pt", tmp_path / "checkpoint_1_4.pt"
    for path in (last, best):
        torch.save(old, path)
    torch.save(new, first)
    # fairseq's save_checkpoint: the first file by torch_persistent_save, the others by PathManager.copy
    _killed_midway(lambda: checkpoint_utils.torch_persistent_save(new, str(best)))
    _killed_midway(lambda: checkpoint_utils.PathManager.copy(str(first), str(last), overwrite=True))
    for path in (last, best):
        assert torch.equal(torch.load(path)["model"]["w"], old["model"]["w"]), path
    # and a copy that is not killed does replace the target
    checkpoint_utils.PathManager.copy(str(first), str(last), overwrite=True)
    assert torch.equal(torch.load(last)["model"]["w"], new["model"]["w"])


def test_torch_ddp_needs_no_find_unused_parameters(cascade, monkeypatch):
    """The ASR output projection gets no gradient with --asr-weight 0; the model leaves
    it out of training, so torch's DistributedDataParallel (what fairseq uses on GPUs)
    runs without --find-unused-parameters."""
    import torch.distributed as dist
    from exporter_setup import build, first_batch
    from torch.nn.parallel import DistributedDataParallel

    _, task, model, criterion = build(cascade, "--asr-weight", "0")
    assert not model.encoder.asr.decoder.output_projection.weight.requires_grad
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        ddp = DistributedDataParallel(model)  # find_unused_parameters=False, fairseq's default
        batch = first_batch(task, "train", max_sentences=4)
        for _ in range(2):  # the second forward is where DDP reports unused parameters
            loss, _, _ = criterion(ddp, batch)
            loss.backward()
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
        # DDP's reducer holds the process group: free it first (seen: freed after
        # destroy_process_group, the group's destructor waited forever on its threads)
        del ddp, loss
        gc.collect()
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def dropout_free_asr(cascade, tmp_path_factory):
    """The tiny ASR without dropout, so that one and two processes compute the same
    thing (fairseq seeds dropout per update, not per micro-batch)."""
    state = torch.load(cascade["asr"])
    for key in ("dropout", "attention_dropout", "activation_dropout", "relu_dropout"):
        setattr(state["cfg"]["model"], key, 0.0)
    path = tmp_path_factory.mktemp("asr") / "asr_nodropout.pt"
    torch.save(state, path)
    return path


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_match_one_process_with_the_same_total_batch(cascade, user_dir, tmp_path,
                                                                       dropout_free_asr):
    # ASR trained, its output projection unused by the loss (--asr-weight 0): the case
    # where distributed training would wait for a gradient that never comes
    extra = ("--max-update", 2, "--exporter-dropout", 0)
    one = _losses(_run(_args(cascade, user_dir, tmp_path / "one", *extra, "--update-freq", 2, asr=dropout_free_asr)))

    # fairseq 0.12 spawns one process per GPU and passes device_ids to torch's DDP, so on
    # CPU each rank is started by hand and fairseq's own all-reduce (legacy_ddp) is used
    port = _free_port()
    procs = [subprocess.Popen(_args(cascade, user_dir, tmp_path / "two", *extra, "--distributed-world-size", 2,
                                    "--distributed-rank", rank, "--distributed-backend", "gloo",
                                    "--distributed-init-method", f"tcp://127.0.0.1:{port}",
                                    "--distributed-no-spawn", "--ddp-backend", "legacy_ddp",
                                    asr=dropout_free_asr),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank in (0, 1)]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-4000:]
    two = _losses(logs[0])  # rank 0 logs the all-reduced figures
    assert len(one) == len(two) == 2, (one, two)
    diff = max(abs(a - b) for a, b in zip(one, two))
    print(f"two processes: first-update loss {one[0]} vs {two[0]}; largest difference {diff:.3g}")
    assert diff <= 2e-3  # the log rounds to 3 decimals
