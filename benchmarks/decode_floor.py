"""Decode floor: the exporter cascade's fairseq-generate step against ASR search alone
plus MT search alone on the ASR 1-best, in one process, on the same batches.

    python benchmarks/decode_floor.py --work work/toy          # after `make demo`

The cascade is what fairseq-generate runs per batch: the task's ``inference_step``
(ASR encoder, 1-best search, teacher-forced token states, exporter, MT beam search, and
the S-/ASR- lines, written to /dev/null). The floor is the stock ``SequenceGenerator`` on
the cascade's own ASR model (greedy, the same length limit; for a ``--exporter-source ctc``
model, which fairseq 0.12 cannot decode, the ASR encoder and the CTC best path), then the
stock ``SequenceGenerator`` on its own MT model fed the 1-best ids. The batches (same
--max-tokens) are read once and kept in memory, so neither side pays for features;
each round times every batch on each side, side by side; the table shows the median
round, and for each MT search what it wrote (tokens of the best hypotheses) and how many
steps it ran (per batch, the longest hypothesis it finished): a beam search runs until its
longest hypothesis ends, so one runaway translation makes a whole batch search longer.
Not a test: it prints a table.
"""

import argparse
import os
import statistics
import sys
import time
from argparse import Namespace
from pathlib import Path

import torch
from fairseq.models import FairseqEncoder

sys.path.insert(0, str(Path(__file__).parent))
from toy_layout import USER_DIR, ToyWork, table  # noqa: E402


def load(args, scratch):
    from fairseq import checkpoint_utils, utils

    utils.import_user_module(Namespace(user_dir=USER_DIR))
    work = ToyWork(args.work)
    data = work.data_root(scratch)
    models, _, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(work.checkpoint(args.model))],
        arg_overrides={"data": str(data), "config_yaml": "config_st.yaml",
                       "onebest_max_len": args.onebest_max_len, "coupling": "exporter"})
    model = models[0].eval()
    if args.fp16:
        model = model.half()
    model = model.to(args.device)
    task.load_dataset(args.subset)
    itr = task.get_batch_iterator(task.dataset(args.subset), max_tokens=args.max_tokens,
                                  max_positions=None).next_epoch_itr(shuffle=False)
    batches = [utils.move_to_cuda(s) if args.device == "cuda" else s for s in itr]
    if args.fp16:
        batches = [utils.apply_to_sample(lambda t: t.half() if t.is_floating_point() else t, s) for s in batches]
    return task, model, batches


def generators(task, model, args):
    from fairseq.models import FairseqEncoderDecoderModel
    from fairseq.sequence_generator import SequenceGenerator

    gen_args = Namespace(beam=args.beam, max_len_a=0, max_len_b=200, min_len=1, lenpen=1,
                         unkpen=0, prefix_size=0)
    cascade = task.build_generator([model], gen_args)
    asr = model.encoder.asr
    asr_search = SequenceGenerator([asr], task.transcript_dictionary, beam_size=model.encoder.search.beam,
                                   max_len_a=0, max_len_b=args.onebest_max_len,
                                   max_len=asr.decoder.max_positions())
    mt = FairseqEncoderDecoderModel(model.encoder.mt_encoder, model.decoder)
    mt_search = SequenceGenerator([mt], task.target_dictionary, beam_size=args.beam,
                                  max_len_a=0, max_len_b=200, max_len=model.decoder.max_positions())
    # the same MT search, fed the exporter's output instead of looking up the 1-best ids:
    # the floor for the translations the exporter cascade actually produces
    mt_exported = FairseqEncoderDecoderModel(_GivenEmbeddings(model.encoder.mt_encoder), model.decoder)
    mt_exported_search = SequenceGenerator([mt_exported], task.target_dictionary, beam_size=args.beam,
                                           max_len_a=0, max_len_b=200, max_len=model.decoder.max_positions())
    return cascade, asr_search, mt_search, mt_exported_search


class _GivenEmbeddings(FairseqEncoder):
    def __init__(self, mt_encoder):
        super().__init__(None)
        self.mt_encoder = mt_encoder

    def forward(self, src_tokens, src_lengths, token_embeddings):
        return self.mt_encoder(src_tokens, src_lengths=src_lengths, token_embeddings=token_embeddings)

    def reorder_encoder_out(self, encoder_out, new_order):
        return self.mt_encoder.reorder_encoder_out(encoder_out, new_order)


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="work/toy", help="the toy recipe's work dir")
    parser.add_argument("--model", default="stage2-decoder",
                        help="exporter checkpoint under --work (default stage2-decoder: --exporter-source "
                             "decoder, whose floor is stock fairseq's ASR decoder search; with a ctc-source "
                             "model such as stage2 the floor is the ASR encoder + CTC best path)")
    parser.add_argument("--subset", default="test")
    parser.add_argument("--beam", type=int, default=5, help="MT beam (the recipe's)")
    parser.add_argument("--onebest-max-len", type=int, default=40, help="the recipe's --onebest-max-len")
    parser.add_argument("--max-tokens", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--fp16", action="store_true")
    parser.add_argument("--scratch", default="/tmp/fairseq_exporter_bench/decode_floor")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from fairseq.data import data_utils

    from fairseq_exporter.models.ctc import ctc_log_probs, frame_lengths

    task, model, batches = load(args, Path(args.scratch))
    cascade, asr_search, mt_search, mt_exported_search = generators(task, model, args)
    task._transcripts_out = open(os.devnull, "w")  # S-/ASR- lines are formatted and written, to nowhere
    pad, eos = task.transcript_dictionary.pad(), task.transcript_dictionary.eos()

    def floor_asr(sample):
        speech = {k: sample["net_input"][k] for k in ("src_tokens", "src_lengths")}
        if model.encoder.source == "ctc":
            # fairseq 0.12 has no CTC decoding for s2t_transformer: the floor is the ASR encoder,
            # its CTC head and the best path (the plugin's batched greedy search), nothing else
            asr_encoder = model.encoder.asr.encoder
            enc = asr_encoder(**speech)
            return model.encoder.search(ctc_log_probs(asr_encoder.ctc_proj, enc), frame_lengths(enc)).tokens
        hypos = asr_search.generate(None, {"id": sample["id"], "net_input": speech})
        return data_utils.collate_tokens([h[0]["tokens"] for h in hypos], pad, eos, left_pad=False)

    def floor_mt(onebest):
        sample = {"net_input": {"src_tokens": onebest, "src_lengths": onebest.ne(pad).sum(1)}}
        return mt_search.generate(None, sample)

    def timed(fn, *a):
        sync(args.device)
        start = time.perf_counter()
        out = fn(*a)
        sync(args.device)
        return time.perf_counter() - start, out

    totals = {k: [] for k in ("cascade", "onebest", "asr", "mt", "mt_exported")}
    # What each MT search had to write: a search costs its steps (the longest hypothesis it
    # finished, per batch) and its output, so a side that translates into longer text is slower
    # for that reason alone.
    workload = {k: [0, 0] for k in ("cascade", "onebest", "mt", "mt_exported")}
    same_onebest = runs = 0
    with torch.no_grad():
        for r in range(args.rounds + 1):  # round 0 warms up on two batches and is not counted
            t = dict.fromkeys(totals, 0.0)
            for i, sample in enumerate(batches if r else batches[:2]):
                recognition = model.encoder.recognize(**sample["net_input"])
                ours = recognition.onebest.tokens
                exported = model.encoder.export(recognition)
                net_input = {"src_tokens": ours, "src_lengths": ours.ne(pad).sum(1), "token_embeddings": exported}

                def cascade_with(coupling):
                    model.encoder.coupling = coupling
                    return task.inference_step(cascade, [model], sample)

                jobs = [("cascade", cascade_with, "exporter"), ("onebest", cascade_with, "onebest"),
                        ("asr", floor_asr, sample), ("mt", floor_mt, ours),
                        ("mt_exported", mt_exported_search.generate, None, {"net_input": net_input})]
                for name, fn, *fn_args in jobs[i % len(jobs):] + jobs[: i % len(jobs)]:  # rotate the order
                    dt, out = timed(fn, *fn_args)
                    t[name] += dt
                    if name == "asr":
                        onebest = out
                    elif r == 1:
                        workload[name][0] += sum(len(nbest[0]["tokens"]) for nbest in out)
                        workload[name][1] += max(len(h["tokens"]) for nbest in out for h in nbest)
                runs += 1
                same_onebest += int(ours.shape == onebest.shape and bool(ours.eq(onebest).all()))
            for k in totals:
                totals[k].append(t[k])
    med = {k: statistics.median(v[1:]) for k, v in totals.items()}
    floor = med["asr"] + med["mt"]
    floor_exported = med["asr"] + med["mt_exported"]
    n = len(task.dataset(args.subset))
    print(f"decode floor: {args.model} (--exporter-source {model.encoder.source}) on {args.subset} ({n} utterances, {len(batches)} batches of "
          f"--max-tokens {args.max_tokens}), MT beam {args.beam}, device {args.device}"
          f"{' fp16' if args.fp16 else ''}, {args.threads} thread(s), median of {args.rounds} rounds")
    def work(name):
        tokens, steps = workload[name]
        return [str(tokens), str(steps)]

    rows = [["ASR search alone (floor)", f"{med['asr']:.2f}", "", "", ""],
            ["MT search alone on the 1-best (floor)", f"{med['mt']:.2f}", "", *work("mt")],
            ["floor: ASR + MT", f"{floor:.2f}", "1.00x", "", ""],
            ["cascade, --coupling onebest", f"{med['onebest']:.2f}", f"{med['onebest'] / floor:.3f}x",
             *work("onebest")],
            ["cascade, --coupling exporter", f"{med['cascade']:.2f}", f"{med['cascade'] / floor:.3f}x",
             *work("cascade")],
            ["MT search alone on the exporter's embeddings", f"{med['mt_exported']:.2f}", "",
             *work("mt_exported")],
            ["floor of the exporter's translations: ASR + that", f"{floor_exported:.2f}",
             f"{floor_exported / floor:.3f}x", "", ""]]
    print(table(rows, ["what", "seconds", "vs floor", "MT output tokens", "MT search steps"]))
    print(f"exporter cascade vs the floor of its own translations: {med['cascade'] / floor_exported:.3f}x")
    print(f"target: exporter cascade <= 1.05x floor; 1-best identical to the floor's in "
          f"{same_onebest}/{runs} batch runs")


if __name__ == "__main__":
    main()
