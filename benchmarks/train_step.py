"""Training at the cost of its parts: one stage-2 update of the exporter cascade against
one ASR update plus one MT forward/backward, on the same batch.

    python benchmarks/train_step.py --work work/toy          # after `make demo`

Stage 2 is the toy recipe's (ASR + exporter trained, MT frozen, --ast-weight 1
--l2-weight 1 --asr-weight 0.3, vocab exporter): forward + backward + Adam step. With
``--exporter-source ctc`` (the study's, default) the forward is the ASR encoder, the CTC
head's best path (no gradient), the encoder frames of each token's segment mean-pooled,
exporter, MT, CTC loss on the reference; with ``decoder`` it is the ASR encoder, a
greedy 1-best search of the attention decoder (no gradient), teacher-forced token
states, exporter, MT, CE on the reference. Its parts, on the same batch: the ASR's own
update as the recipe trains it (encoder + decoder on the reference transcript,
label-smoothed CE + --asr-ctc-weight x CTC, backward, Adam step) and the MT's
forward/backward on the (reference transcript, translation) pairs, with its parameters
trainable. The models are built in-process as fairseq-train builds
them. Times: median of --updates updates, the configurations interleaved. Peak memory:
each configuration in its own process, the rise above the memory held before the step
(CUDA: max allocated; CPU: peak RSS, glibc's mmap threshold pinned so freed blocks
return to the system). Not a test: it prints a table.
"""

import argparse
import copy
import ctypes
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from toy_layout import USER_DIR, ToyWork, table  # noqa: E402

CONFIGS = ("stage2", "asr", "mt")


def build(args):
    from fairseq import options, tasks, utils
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    work = ToyWork(args.work)
    data = work.data_root(Path(args.scratch))
    cli = [str(data), "--user-dir", USER_DIR, "--task", "speech_to_text_exporter", "--config-yaml", "config_st.yaml",
           "--arch", "exporter", "--criterion", "exporter",
           "--asr-checkpoint", str(work.checkpoint("asr")), "--mt-checkpoint", str(work.checkpoint("mt")),
           "--asr-dict", str(work.st / "dict.en.txt"), "--mt-data", str(work.mt_bin),
           "--exporter-source", args.exporter_source,
           "--exporter-type", args.exporter_type, "--exporter-hidden-dim", "256", "--freeze-mt",
           "--ast-weight", "1", "--l2-weight", "1", "--asr-weight", "0.3", "--label-smoothing", "0.1",
           "--onebest-max-len", str(args.onebest_max_len), "--optimizer", "adam", "--lr", "3e-4",
           "--max-tokens", str(args.max_tokens), "--seed", "1"]
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(options.get_training_parser(), cli))
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    criterion = task.build_criterion(cfg.criterion)
    task.load_dataset(args.split)
    itr = task.get_batch_iterator(dataset=task.dataset(args.split), max_tokens=args.max_tokens,
                                  max_positions=None, seed=1).next_epoch_itr(shuffle=False)
    sample = next(iter(itr))
    if args.device == "cuda":
        model, sample = model.cuda(), utils.move_to_cuda(sample)
    return task, model, criterion, sample


def steps(task, model, criterion, sample, args):
    """One callable per configuration: a stage-2 update, an ASR update, an MT fwd/bwd."""
    from fairseq.criterions.label_smoothed_cross_entropy import label_smoothed_nll_loss
    from fairseq.models import FairseqEncoderDecoderModel
    from torch.nn import functional as F

    from fairseq_exporter.models.ctc import ctc_log_probs, frame_lengths

    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(trainable, lr=3e-4)
    ni = sample["net_input"]
    pad, eos = task.transcript_dictionary.pad(), task.transcript_dictionary.eos()
    ref = ni["src_txt_tokens"]

    def ce(logits, target, ignore):
        lprobs = torch.log_softmax(logits.float(), dim=-1)
        loss, _ = label_smoothed_nll_loss(lprobs.view(-1, lprobs.size(-1)), target.reshape(-1, 1), 0.1,
                                          ignore_index=ignore)
        return loss

    def stage2():
        model.train()
        opt.zero_grad(set_to_none=True)
        loss, _, _ = criterion(model, sample)
        loss.backward()
        opt.step()

    asr = copy.deepcopy(model.encoder.asr).train().requires_grad_(True)
    asr_opt = torch.optim.Adam(asr.parameters(), lr=3e-4)
    prev_ref = torch.cat([ref.new_full((ref.size(0), 1), eos), ref[:, :-1]], dim=1)

    ref_mask = ref.ne(pad)  # CTC targets: the transcript with its </s>, as fairseq's get_ctc_target

    def asr_update():
        asr_opt.zero_grad(set_to_none=True)
        enc = asr.encoder(ni["src_tokens"], ni["src_lengths"])
        logits, _ = asr.decoder(prev_ref, encoder_out=enc)
        loss = ce(logits, ref, pad)
        if args.asr_ctc_weight > 0:
            lprobs = ctc_log_probs(asr.encoder.ctc_proj, enc)
            loss = loss + args.asr_ctc_weight * F.ctc_loss(
                lprobs, ref[ref_mask], frame_lengths(enc), ref_mask.sum(1), blank=task.transcript_dictionary.bos(),
                reduction="sum", zero_infinity=True)
        loss.backward()
        asr_opt.step()

    mt = copy.deepcopy(FairseqEncoderDecoderModel(model.encoder.mt_encoder, model.decoder)).train().requires_grad_(True)

    def mt_fwd_bwd():
        mt.zero_grad(set_to_none=True)
        logits, _ = mt(ref, ref.ne(pad).sum(1), ni["prev_output_tokens"])
        ce(logits, sample["target"], task.target_dictionary.pad()).backward()

    def search():
        with torch.no_grad():
            model.encoder.recognize(**ni)

    return {"stage2": stage2, "asr": asr_update, "mt": mt_fwd_bwd, "search": search}


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def peak_rise(fn, device):
    """Memory the step needs above what is held before it, in MB."""
    fn()  # warm-up: optimizer state, allocator pools
    sync(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        sync(device)
        return (torch.cuda.max_memory_allocated() - before) / 2 ** 20
    import gc

    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    before = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets the peak RSS (VmHWM) to the current RSS
    fn()
    return (_status_kb("VmHWM") - before) / 1024


def _status_kb(key):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="work/toy", help="the toy recipe's work dir")
    parser.add_argument("--split", default="train")
    parser.add_argument("--exporter-source", choices=("ctc", "decoder"), default="ctc",
                        help="stage 2's 1-best: the CTC head's (the study's) or the attention decoder's")
    parser.add_argument("--exporter-type", default="vocab", help="the recipe's (hidden dim 256)")
    parser.add_argument("--asr-ctc-weight", type=float, default=0.5,
                        help="CTC weight of the ASR's own update (the recipe trains the ASR with 0.5)")
    parser.add_argument("--max-tokens", type=int, default=20000, help="batch size in frames (the recipe's)")
    parser.add_argument("--onebest-max-len", type=int, default=40)
    parser.add_argument("--updates", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--fp16", action="store_true", help="CUDA: autocast fp16 in every configuration")
    parser.add_argument("--scratch", default="/tmp/fairseq_exporter_bench/train_step")
    parser.add_argument("--no-memory", action="store_true", help="times only (no peak-memory processes)")
    parser.add_argument("--memory-of", choices=CONFIGS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    task, model, criterion, sample = build(args)
    fns = steps(task, model, criterion, sample, args)
    if args.fp16:
        fns = {k: _autocast(f) for k, f in fns.items()}
    if args.memory_of:
        print(json.dumps({"peak_mb": peak_rise(fns[args.memory_of], args.device)}))
        return

    names = ("stage2", "asr", "mt", "search")
    times = {k: [] for k in names}
    for r in range(args.updates + 1):  # round 0 warms up
        for k in names[r % len(names):] + names[: r % len(names)]:
            sync(args.device)
            start = time.perf_counter()
            fns[k]()
            sync(args.device)
            if r:
                times[k].append(time.perf_counter() - start)
    med = {k: 1000 * statistics.median(v) for k, v in times.items()}

    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS=str(args.threads))
    peak = dict.fromkeys(CONFIGS, float("nan"))
    for k in () if args.no_memory else CONFIGS:
        proc = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--memory-of", k],
                              capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-3000:])
            raise SystemExit(f"memory of {k} failed")
        peak[k] = json.loads(proc.stdout.strip().splitlines()[-1])["peak_mb"]

    parts = med["asr"] + med["mt"]
    mem_parts = peak["asr"] + peak["mt"]
    ntok = int(sample["net_input"]["src_txt_tokens"].ne(task.transcript_dictionary.pad()).sum())
    print(f"training step, --exporter-source {args.exporter_source} --exporter-type {args.exporter_type}: {int(sample['nsentences'])} utterances of {args.split} ({ntok} transcript tokens, "
          f"--max-tokens {args.max_tokens}), device {args.device}{' fp16' if args.fp16 else ''}, "
          f"{args.threads} thread(s), median of {args.updates}")
    rows = [["ASR update (fwd + bwd + Adam)", f"{med['asr']:.0f}", f"{peak['asr']:.0f}"],
            ["MT forward/backward", f"{med['mt']:.0f}", f"{peak['mt']:.0f}"],
            ["parts: ASR update + MT fwd/bwd", f"{parts:.0f}", f"{mem_parts:.0f} (max {max(peak['asr'], peak['mt']):.0f})"],
            ["stage-2 update (fwd + bwd + Adam)", f"{med['stage2']:.0f}", f"{peak['stage2']:.0f}"],
            ["  of which ASR encoder + 1-best search (no grad)", f"{med['search']:.0f}", ""],
            ["stage-2 / parts", f"{med['stage2'] / parts:.2f}x",
             f"{peak['stage2'] / mem_parts:.2f}x (vs max {peak['stage2'] / max(peak['asr'], peak['mt']):.2f}x)"]]
    print(table(rows, ["what", "ms", "peak memory rise (MB)"]))
    print("targets: <= 1.3x time, <= 1.2x peak memory")


def _autocast(fn):
    def run():
        with torch.autocast("cuda", dtype=torch.float16):
            fn()
    return run


if __name__ == "__main__":
    main()
