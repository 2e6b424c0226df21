"""The LM back-end under multi-process training (torch DDP, gloo on CPU), stage 2
(--coupling exporter: the exporter and the ASR train, the LM is frozen).

1. updates on 2 ranks == updates with --update-freq 2 in one process (fairseq's documented
   equivalent: at update u rank r takes batch 2u + r, --update-freq 2 takes batches 2u and
   2u + 1), and every LM tensor is bit-identical on both ranks, and to the LM as loaded:
   torch DDP leaves the LM out (``_ddp_params_and_buffers_to_ignore``), so each rank holds
   its own copy;
2. a rank that loads other LM weights stops every rank at start-up, naming each rank's
   fingerprint and --lm-checkpoint.

Both runs are fairseq-train's own main (``fairseq_cli.train.cli_main``) started as separate
processes by this file (``python tests/test_lm_ddp.py RECORD_DIR FAIRSEQ_TRAIN_ARGS``), with
two additions: it records each rank's trainable parameters at the start and a hash of every
LM tensor at the end; and it lets torch DDP wrap a CPU model. fairseq 0.12 always passes
``device_ids=[--device-id]`` to torch's DistributedDataParallel, which torch refuses for a
CPU module ("device_ids and output_device arguments only work with single-device/multiple-device
GPU modules or CPU modules"), so ``--cpu --distributed-world-size 2`` with the default
``--ddp-backend pytorch_ddp`` stops there; on GPUs fairseq-train runs unchanged. (fairseq's own
``--ddp-backend legacy_ddp`` runs on CPU as it is, but it is not the torch DDP that
``_ddp_params_and_buffers_to_ignore`` speaks to.)"""

import hashlib
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

import tiny_lm  # noqa: E402
from conftest import USER_DIR  # noqa: E402
from tiny_cascade import finished_then_aborted  # noqa: E402

from fairseq_exporter.models.causal_lm import load_causal_lm  # noqa: E402

WORLD = 2
UPDATES = 2  # the second update is where torch DDP stops on a parameter no loss reaches
TIMEOUT = 240  # seconds: a rank that waits forever on the other fails the test instead


def lm_hashes(lm) -> dict:
    """sha256 of the bytes of every parameter and buffer of a Hugging Face module."""
    tensors = [*lm.named_parameters(remove_duplicate=False), *lm.named_buffers(remove_duplicate=False)]
    return {name: hashlib.sha256(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
            .hexdigest() for name, t in tensors}


def trainable(model) -> dict:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def train_and_record(record_dir: str, argv) -> None:
    """fairseq-train (``argv``), recording what the test compares under ``record_dir``."""
    import fairseq.models.distributed_fairseq_model as wrappers
    from fairseq import checkpoint_utils
    from fairseq_cli import train

    class CPUDistributedDataParallel(wrappers.DistributedDataParallel):
        def __init__(self, module, device_ids=None, output_device=None, **kwargs):
            if next(module.parameters()).device.type == "cpu":  # torch takes no device for a CPU module
                device_ids = output_device = None
            super().__init__(module, device_ids=device_ids, output_device=output_device, **kwargs)

    wrappers.DistributedDataParallel = CPUDistributedDataParallel
    load, save = checkpoint_utils.load_checkpoint, checkpoint_utils.save_checkpoint
    record = {}

    def load_and_record(cfg, trainer, **kwargs):
        loaded = load(cfg, trainer, **kwargs)
        record["before"] = trainable(trainer.get_model())
        return loaded

    def record_and_save(cfg, trainer, *args, **kwargs):
        wrapped = getattr(trainer.model, "module", None)  # ModuleProxyWrapper(DDP) on 2 ranks
        if isinstance(wrapped, torch.nn.parallel.DistributedDataParallel):
            record["ddp_ignores"] = sorted(wrapped.parameters_to_ignore)
        record["updates"] = trainer.get_num_updates()
        record["lm"] = lm_hashes(trainer.get_model().decoder.lm.module)
        torch.save(record, Path(record_dir) / f"rank{trainer.data_parallel_rank}.pt")
        return save(cfg, trainer, *args, **kwargs)

    checkpoint_utils.load_checkpoint, checkpoint_utils.save_checkpoint = load_and_record, record_and_save
    sys.argv = ["fairseq-train", *argv]
    train.cli_main()


@pytest.fixture(scope="module")
def lms(tmp_path_factory):
    root = tmp_path_factory.mktemp("lms")
    return {"llama": tiny_lm.build(root / "llama"), "other": tiny_lm.build(root / "other", seed=1)}


@pytest.fixture(scope="module")
def asr_without_dropout(cascade, tmp_path_factory):
    """The cascade's ASR with its dropout set to 0 in its stored config. fairseq reseeds the
    RNG at each update (--seed + update number), the same on every rank: rank 1's batch gets
    the masks --update-freq gives the first batch, and --update-freq's second batch the next
    draws (with the ASR's dropout of 0.1 the two runs differ by 4e-3). fairseq-train has no
    option for it: the exporter model rebuilds the ASR from the config in --asr-checkpoint;
    --exporter-dropout 0 does the same for the exporter, and the LM is always in eval mode."""
    state = torch.load(cascade["asr"], map_location="cpu", weights_only=False)
    model_cfg = state["cfg"]["model"]
    for name in ("dropout", "attention_dropout", "activation_dropout"):
        setattr(model_cfg, name, 0.0)
    path = tmp_path_factory.mktemp("asr") / "asr_no_dropout.pt"
    torch.save(state, path)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_args(cascade, asr, lm_dir, save, *extra):
    return [str(cascade["s2t"]), "--user-dir", USER_DIR, "--task", "speech_to_text_exporter",
            "--config-yaml", "config_st.yaml", "--train-subset", "train", "--valid-subset", "dev",
            "--arch", "exporter", "--criterion", "exporter", "--asr-checkpoint", str(asr),
            "--lm-checkpoint", str(lm_dir), "--onebest-max-len", "12", "--asr-weight", "0.3",
            "--exporter-dropout", "0", "--optimizer", "adam", "--lr", "0.001", "--batch-size", "16",
            "--max-update", str(UPDATES), "--disable-validation", "--save-dir", str(save),
            "--no-epoch-checkpoints", "--no-progress-bar", "--num-workers", "0", "--data-buffer-size", "0",
            "--seed", "1", "--cpu", *extra]


def _start(record_dir, args, name="rank0"):
    """fairseq-train ``args`` through ``train_and_record``, its output in ``record_dir/name.log``
    (a file, not a pipe: a rank blocked on a full pipe would stall the other in a collective)."""
    record_dir.mkdir(parents=True, exist_ok=True)
    log = record_dir / f"{name}.log"
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, __file__, str(record_dir), *args],
                                stdout=out, stderr=subprocess.STDOUT), log


def _finish(started):
    """(returncode, output) of each process; none is left running."""
    try:
        for proc, _ in started:
            proc.wait(timeout=TIMEOUT)
    finally:
        for proc, _ in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return [(proc.returncode, log.read_text()) for proc, log in started]


def _check_finished(results):
    for rank, (code, log) in enumerate(results):
        done = code == 0 or finished_then_aborted("fairseq_cli.train", subprocess.CompletedProcess([], code, log, ""))
        assert done, f"process {rank} failed ({code}):\n{log[-6000:]}"


def _ranks(cascade, asr, lm_dirs, root, *extra):
    port = _free_port()
    return [_start(root / "record", _train_args(
        cascade, asr, lm_dir, root / "save", "--distributed-world-size", str(WORLD),
        "--distributed-backend", "gloo", "--distributed-init-method", f"tcp://127.0.0.1:{port}",
        "--distributed-no-spawn", "--distributed-rank", str(rank), *extra), name=f"rank{rank}")
        for rank, lm_dir in enumerate(lm_dirs)]


def _weights(save):
    return torch.load(save / "checkpoint_last.pt", map_location="cpu", weights_only=False)["model"]


def test_two_ranks_equal_update_freq_and_keep_the_lm(cascade, asr_without_dropout, lms, tmp_path):
    lm_dir = lms["llama"]
    ranks = _ranks(cascade, asr_without_dropout, [lm_dir] * WORLD, tmp_path / "ddp")
    one = _start(tmp_path / "one" / "record", _train_args(cascade, asr_without_dropout, lm_dir,
                                                          tmp_path / "one" / "save", "--update-freq", str(WORLD)))
    _check_finished(_finish([*ranks, one]))

    records = [torch.load(tmp_path / "ddp" / "record" / f"rank{r}.pt") for r in range(WORLD)]
    single = torch.load(tmp_path / "one" / "record" / "rank0.pt")
    assert [r["updates"] for r in records] == [UPDATES] * WORLD and single["updates"] == UPDATES
    # torch DDP wrapped the model on both ranks and left every LM tensor out of it
    lm_names = {"decoder.lm.module." + n for n in records[0]["lm"]}
    assert all(lm_names <= set(r.get("ddp_ignores", ())) for r in records), "the LM is not left out of torch DDP"
    assert "ddp_ignores" not in single
    # every LM tensor, after the updates, bit for bit: on both ranks, and as loaded
    loaded = lm_hashes(load_causal_lm(str(lm_dir)))
    assert loaded and all(r["lm"] == loaded for r in records) and single["lm"] == loaded

    ddp, merged = _weights(tmp_path / "ddp" / "save"), _weights(tmp_path / "one" / "save")
    before = records[0]["before"]
    assert before.keys() == single["before"].keys()
    assert any(n.startswith("encoder.exporter.") for n in before) and any(n.startswith("encoder.asr.") for n in before)
    for name, start in before.items():
        assert torch.equal(start, single["before"][name]), f"{name}: the runs started from other weights"
        assert torch.allclose(ddp[name], merged[name], rtol=0, atol=1e-6), \
            f"{name}: 2 ranks vs --update-freq 2 differ by {(ddp[name] - merged[name]).abs().max():.2e}"
    # the comparison can fail: the updates moved the exporter and the ASR far beyond its tolerance
    for part in ("encoder.exporter.", "encoder.asr."):
        moved = max(float((merged[n] - start).abs().max()) for n, start in before.items() if n.startswith(part))
        assert moved > 1e-4, f"{part}*: the updates did not change it ({moved:.2e})"


def test_ranks_with_other_lm_weights_stop_at_start_up(cascade, asr_without_dropout, lms, tmp_path):
    lm_dirs = [lms["llama"], lms["other"]]
    results = _finish(_ranks(cascade, asr_without_dropout, lm_dirs, tmp_path))
    for rank, (code, log) in enumerate(results):
        assert code != 0 and "LMError" in log, f"rank {rank} did not stop ({code}):\n{log[-4000:]}"
        message = log[log.rindex("LMError"):]
        named = re.search(r"the ranks hold different LM weights "
                          r"\(rank 0: ([\w:]+) \((.+?)\); rank 1: ([\w:]+) \((.+?)\)\)", message)
        assert named, message
        assert named[1] != named[3] and [named[2], named[4]] == [str(d) for d in lm_dirs]
    assert not (tmp_path / "save" / "checkpoint_last.pt").exists()


if __name__ == "__main__":
    train_and_record(sys.argv[1], sys.argv[2:])
