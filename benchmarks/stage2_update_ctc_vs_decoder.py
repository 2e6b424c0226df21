"""One stage-2 update (ASR + exporter trained, MT frozen) with the 1-best from the
ASR's CTC head (``--exporter-source ctc``) against the 1-best from its attention
decoder (``--exporter-source decoder``), on the same batch and the same checkpoints.

The decoder source runs an autoregressive search (fairseq's SequenceGenerator) and a
teacher-forced decoder pass; the CTC source reads the best path off the CTC head and
mean-pools encoder frames, with no search. Both are built in-process exactly as
fairseq-train builds them; an update is forward + backward + Adam step. Each source
runs in its own process, so its peak memory (max RSS on CPU, max allocated on CUDA)
is its own.

    OMP_NUM_THREADS=1 python benchmarks/stage2_update_ctc_vs_decoder.py \\
        --data work/toy/data/st --asr work/toy/asr/checkpoint_best.pt --mt work/toy/mt/checkpoint_best.pt

The ASR must have a CTC head (trained with --ctc-weight > 0). Not a test: it prints
a table.
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("decoder", "ctc")


def measure(args, source):
    import torch
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    torch.manual_seed(1)
    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    cli = [args.data, "--user-dir", str(REPO / "fairseq_exporter"), "--task", "speech_to_text_exporter",
           "--config-yaml", args.config_yaml, "--arch", "exporter", "--criterion", "exporter",
           "--asr-checkpoint", args.asr, "--mt-checkpoint", args.mt, "--exporter-source", source,
           "--exporter-type", args.exporter_type, "--freeze-mt", "--ast-weight", "1", "--l2-weight", "1",
           "--asr-weight", str(args.asr_weight), "--onebest-max-len", str(args.onebest_max_len),
           "--optimizer", "adam", "--lr", "1e-4", "--max-tokens", str(args.max_tokens)]
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(options.get_training_parser(), cli))
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model).to(device)
    criterion = task.build_criterion(cfg.criterion)
    task.load_dataset(args.split)
    itr = task.get_batch_iterator(dataset=task.dataset(args.split), max_tokens=args.max_tokens,
                                  max_sentences=args.batch_size, seed=1).next_epoch_itr(shuffle=False)
    sample = next(iter(itr))
    if device == "cuda":
        from fairseq import utils
        sample = utils.move_to_cuda(sample)
    model.train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    update_ms, search_ms = [], []
    for step in range(args.warmup + args.updates):
        # the weights move every update, so each update searches the new ASR's 1-best
        sync()
        start = time.perf_counter()
        with torch.no_grad():
            rec = model.encoder.recognize(**sample["net_input"])
        sync()
        searched = time.perf_counter()
        optimizer.zero_grad()
        loss, _, log = criterion(model, sample)
        loss.backward()
        optimizer.step()
        sync()
        done = time.perf_counter()
        if step >= args.warmup:
            # the update alone: the separate recognize() above only measures the search part
            update_ms.append(1000 * (done - searched))
            search_ms.append(1000 * (searched - start))
    mask = rec.onebest.tokens.ne(task.transcript_dictionary.pad())
    peak = (torch.cuda.max_memory_allocated() / 2 ** 20 if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"source": source, "device": device, "utterances": int(sample["nsentences"]),
            "onebest_tokens": int(mask.sum()), "update_ms": statistics.median(update_ms),
            "onebest_ms": statistics.median(search_ms), "peak_mb": peak}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="S2T data root (the toy's work/toy/data/st)")
    parser.add_argument("--config-yaml", default="config_st.yaml")
    parser.add_argument("--asr", required=True, help="speech_to_text checkpoint with a CTC head")
    parser.add_argument("--mt", required=True, help="translation checkpoint")
    parser.add_argument("--split", default="train")
    parser.add_argument("--max-tokens", type=int, default=20000, help="batch size in frames (the toy's stage 2)")
    parser.add_argument("--batch-size", type=int, default=None, help="cap on utterances per batch")
    parser.add_argument("--exporter-type", default="mlp")
    parser.add_argument("--asr-weight", type=float, default=0.3)
    parser.add_argument("--onebest-max-len", type=int, default=40)
    parser.add_argument("--updates", type=int, default=5, help="timed updates (median reported)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--cpu", action="store_true")
    parser.add_argument("--only", choices=SOURCES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        print(json.dumps(measure(args, args.only)))
        return
    rows = []
    for source in SOURCES:
        proc = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--only", source],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-4000:])
            raise SystemExit(f"--exporter-source {source} failed")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    dec, ctc = rows
    print(f"stage-2 update (forward + backward + Adam step), MT frozen, --asr-weight {args.asr_weight}, "
          f"{dec['utterances']} utterances of {args.split}, {dec['device']}, median of {args.updates}")
    print("| --exporter-source | 1-best tokens | ms / update | recognition alone (encoder + 1-best, no grad) | peak memory (MB) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['source']} | {r['onebest_tokens']} | {r['update_ms']:.0f} | {r['onebest_ms']:.0f} "
              f"| {r['peak_mb']:.0f} |")
    print(f"ratio ctc / decoder: {ctc['update_ms'] / dec['update_ms']:.2f} (time), "
          f"{ctc['peak_mb'] / dec['peak_mb']:.2f} (peak memory: "
          f"{'max allocated' if dec['device'] == 'cuda' else 'max RSS of the process, model and data included'})")


if __name__ == "__main__":
    main()
