"""What a CPU run's bits depend on, and what pinning the CPU's code path costs.

Runs one fixed workload, a few Adam updates of a speech-transformer-sized model at the toy
study's full-scale width (conv subsampler, encoder and decoder layers, cross-entropy), in a
fresh process per setting: the library defaults, each pin the toy recipe sets
(`fairseq_exporter/toy/provenance.py`: ATen's kernels, oneDNN's and MKL's code paths), all
of them together, and the libraries' generic paths (what another CPU's code path does to the
bits), at each thread count asked. Prints, side by side, the sha256 of the trained
weights (equal hashes: the setting leaves the bits alone on this machine) and the median
seconds per update relative to the defaults.

    python benchmarks/cpu_pins.py [--threads 1 2] [--updates 20] [--rounds 3] [--width 144]
"""

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def workload(updates: int, width: int):
    """(sha256 of the weights after `updates` Adam steps, seconds per update)"""
    import torch
    from torch import nn

    torch.manual_seed(1)
    layer = dict(d_model=width, nhead=4, dim_feedforward=4 * width, dropout=0.1, batch_first=True)
    model = nn.ModuleDict({
        "conv": nn.Sequential(nn.Conv1d(80, 256, 5, stride=2, padding=2), nn.GLU(dim=1),
                              nn.Conv1d(128, 2 * width, 5, stride=2, padding=2), nn.GLU(dim=1)),
        "encoder": nn.TransformerEncoder(nn.TransformerEncoderLayer(**layer), num_layers=4,
                                         enable_nested_tensor=False),
        "decoder": nn.TransformerDecoder(nn.TransformerDecoderLayer(**layer), num_layers=2),
        "embed": nn.Embedding(256, width), "out": nn.Linear(width, 256)})
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(2)
    batches = [(torch.randn(16, 80, 400, generator=gen), torch.randint(0, 256, (16, 24), generator=gen))
               for _ in range(4)]
    times = []
    for step in range(updates):
        feats, tokens = batches[step % len(batches)]
        started = time.perf_counter()
        frames = model["conv"](feats).transpose(1, 2)
        memory = model["encoder"](frames)
        states = model["decoder"](model["embed"](tokens[:, :-1]), memory,
                                  tgt_mask=nn.Transformer.generate_square_subsequent_mask(tokens.size(1) - 1))
        loss = nn.functional.cross_entropy(model["out"](states).flatten(0, 1), tokens[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().numpy().tobytes())
    return digest.hexdigest(), statistics.median(times[1:] or times)


def settings(pins: dict):
    """name -> environment additions: the defaults, each pin alone, all pins"""
    out = {"library defaults": {}}
    out.update({f"{key}={value}": {key: value} for key, value in pins.items()})
    if len(pins) > 1:
        out["all pins (the recipe)"] = dict(pins)
    # what another machine's code path does to the bits: the libraries' generic paths
    out["another path (generic kernels)"] = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
                                             "MKL_CBWR": "COMPATIBLE"}
    return out


def run_setting(env_add: dict, threads: int, args):
    env = {k: v for k, v in os.environ.items() if k not in ("MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")}
    env.update(env_add, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    proc = subprocess.run([sys.executable, __file__, "--child", "--updates", str(args.updates),
                           "--width", str(args.width)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"cpu_pins.py: the workload failed under {env_add or 'the defaults'}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3, help="runs per setting (the median time is shown)")
    parser.add_argument("--width", type=int, default=144)
    parser.add_argument("--out", type=Path, help="also write the table here (benchmarks/README.md shows "
                                                    "benchmarks/results/cpu_pins.md)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        import torch
        sha, seconds = workload(args.updates, args.width)
        print(json.dumps({"sha256": sha, "seconds": seconds,
                          "capability": torch.backends.cpu.get_cpu_capability()}))
        return

    from fairseq_exporter.toy.provenance import code_path_pins, machine_facts
    pins, why = code_path_pins({})
    facts = machine_facts()
    head = [f"CPU: {facts['cpu']} ({facts['isa']}), {facts['cores']} cores | torch {facts['torch']} | "
            f"MKL {facts['mkl']} | oneDNN {facts['onednn']} | {why}",
            f"Workload: {args.updates} Adam updates of a {args.width}-wide speech transformer, "
            f"median of {args.rounds} runs per setting, each in a fresh process."]
    print("\n".join(head))
    rows = []
    for threads in args.threads:
        base_seconds = None
        for name, env_add in settings(pins).items():
            results = [run_setting(env_add, threads, args) for _ in range(args.rounds)]
            hashes = {r["sha256"] for r in results}
            seconds = statistics.median(r["seconds"] for r in results)
            base_seconds = base_seconds or seconds
            rows.append((threads, name, results[0]["capability"],
                         results[0]["sha256"][:16] + ("" if len(hashes) == 1 else " (runs differ!)"),
                         seconds, seconds / base_seconds))
    table = ["| threads | setting | ATen kernels | sha256 of the weights | s / update | vs defaults |",
             "|---|---|---|---|---|---|"]
    table += [f"| {threads} | {name} | {capability} | `{sha}` | {seconds:.3f} | {ratio:.2f}x |"
              for threads, name, capability, sha, seconds, ratio in rows]
    print("\n" + "\n".join(table))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(head) + "\n\n" + "\n".join(table) + "\n")


if __name__ == "__main__":
    main()
