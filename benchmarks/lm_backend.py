"""The LM back-end's cost against the LM's own, measured side by side in one run:

- stage 2: one training step (fairseq's exporter criterion: ASR + 1-best + exporter + the
  frozen LM, forward and backward) against the LM's own forward + backward on the same
  batch's text prompts and translations;
- fairseq-generate's search (models/lm_generator.py: prompt building, transformers'
  generate(), the scoring pass) against transformers' generate() on the same prompt ids,
  greedy and beam 4;
- the recovery metric's share of a stage-2 step.

On a tiny-width random Llama with Llama 3's vocabulary (128,256 rows; tests/real_tokenizers.py,
tests/piece_cascade.py: an ASR trained on its pieces), and on the toy's stage-9 LM with
--toy-work. On CUDA (where one is) also peak memory; on a CPU the memory columns say n/a.

    python benchmarks/lm_backend.py [--toy-work work/toy] [--repeats 5]
    python benchmarks/lm_backend.py --quick     # what tests/test_benchmarks.py runs
"""

import argparse
import statistics
import sys
import tempfile
import time
from argparse import Namespace
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "tests"))
from toy_layout import table  # noqa: E402


def _device():
    import torch

    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def measure(fn, repeats):
    """Median seconds of ``fn()`` over ``repeats`` runs after one warm-up, and its peak memory
    in MB on CUDA (None on a CPU)."""
    import torch

    fn()
    cuda = torch.cuda.is_available()
    times, peak = [], None
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    if cuda:
        peak = (torch.cuda.max_memory_allocated() - base) / 2 ** 20
    return statistics.median(times), peak


def cascade_setup(data, asr, lm, prompt, coupling="exporter"):
    """A stage-2 model, its criterion and a training batch, built in-process."""
    import torch
    from exporter_setup import build, first_batch

    torch.manual_seed(0)
    cascade = {"s2t": data, "asr": asr}
    _, task, model, criterion = build(cascade, "--coupling", coupling, "--exporter-type", "vocab",
                                      "--asr-weight", "0.3", "--onebest-max-len", "40",
                                      text_model=("--lm-checkpoint", str(lm), "--lm-prompt", prompt))
    model.to(_device()).train()
    sample = first_batch(task, split="train", max_sentences=16)
    return task, model, criterion, _to(sample)


def _to(sample):
    import torch
    from fairseq import utils

    return utils.move_to_cuda(sample) if torch.cuda.is_available() else sample


def stage2_rows(name, task, model, criterion, sample, repeats):
    import torch

    def step():
        model.zero_grad(set_to_none=True)
        loss, _, _ = criterion(model, sample)
        loss.backward()

    step_s, step_mb = measure(step, repeats)
    # the LM's own forward + backward on the same text prompts and translations
    with torch.no_grad():
        tokens = model.encoder.recognize(**sample["net_input"]).onebest.tokens
    decoder, lm = model.decoder, model.decoder.lm.module
    batch = decoder.prompts(tokens)
    target = sample["target"]
    ids = torch.cat([batch.ids, target.clamp(max=decoder.n_rows - 1)], 1)
    mask = torch.cat([batch.mask, target.ne(decoder.padding_idx).long()], 1)
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    lookup = lm.get_input_embeddings()

    def lm_step():
        embeds = lookup(ids).detach().requires_grad_()
        logits = lm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                    logits_to_keep=target.size(1) + 1).logits[:, :-1]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), target.reshape(-1),
                                                 ignore_index=decoder.padding_idx)
        loss.backward()

    lm_s, lm_mb = measure(lm_step, repeats)
    # the recovery metric alone, on this batch's exported vectors
    with torch.no_grad():
        encoder_out = model.encoder(**sample["net_input"])
        exported = encoder_out["exported"]
        fed = model.encoder.fed(encoder_out["recognition"].onebest.tokens)
    recovery_s, _ = measure(lambda: model.encoder.nearest_tokens(exported[fed]), repeats)
    return [
        [name, "stage-2 step (ASR + exporter + LM, fwd + bwd)", f"{step_s * 1000:.1f}", _mb(step_mb),
         f"{step_s / lm_s:.2f}x", _mb_ratio(step_mb, lm_mb)],
        [name, "the LM's own fwd + bwd, same batch", f"{lm_s * 1000:.1f}", _mb(lm_mb), "1.00x", "1.00x"],
        [name, "recovery metric (nearest LM row)", f"{recovery_s * 1000:.2f}", "", f"{recovery_s / step_s:.1%} of a step", ""],
    ]


def generate_rows(name, task, model, sample, beams, repeats, max_new=16):
    import torch

    model.eval()
    rows = []
    with torch.no_grad():
        recognition = model.encoder.recognize(**sample["net_input"])
    net_input = dict(sample["net_input"], recognition=recognition)
    batch = model.decoder.prompts(recognition.onebest.tokens)
    lm = model.decoder.lm.module
    stops = sorted({task.target_dictionary.eos(), *model.decoder.template.stop_ids()})
    for beam in beams:
        generator = task.build_generator([model], Namespace(beam=beam, nbest=1, max_len_a=0, max_len_b=max_new,
                                                            min_len=1, lenpen=1.0))
        ours, _ = measure(lambda: generator.generate([model], {**sample, "net_input": net_input}), repeats)
        extra = dict(length_penalty=1.0, early_stopping=True) if beam > 1 else {}

        def theirs():
            with torch.no_grad():
                lm.generate(input_ids=batch.ids, attention_mask=batch.mask, do_sample=False, num_beams=beam,
                            max_new_tokens=max_new, min_new_tokens=1, eos_token_id=stops,
                            pad_token_id=task.target_dictionary.eos(), **extra)

        ref, _ = measure(theirs, repeats)
        rows.append([name, f"fairseq-generate --coupling exporter, beam {beam} ({len(sample['id'])} utt.)",
                     f"{ours * 1000:.1f}", "", f"{ours / ref:.2f}x", ""])
        rows.append([name, f"transformers generate(), same prompts, beam {beam}", f"{ref * 1000:.1f}", "", "1.00x", ""])
    model.train()
    return rows


def _mb(value):
    return "n/a" if value is None else f"{value:.0f}"


def _mb_ratio(a, b):
    return "n/a" if a is None or b is None or b <= 0 else f"{a / b:.2f}x"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one repeat, greedy only (the test's run)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--toy-work", type=Path, default=None,
                        help="the toy study's work dir after stage 9 (its data, ASR and lm/)")
    parser.add_argument("--work", type=Path, default=None, help="where the Llama 3-vocabulary cascade is built")
    args = parser.parse_args(argv)
    import torch

    import piece_cascade
    import real_tokenizers
    from fairseq_exporter.models.lm_prompt import DEFAULT_PROMPT

    torch.manual_seed(0)
    repeats = 1 if args.quick else args.repeats
    beams = (1,) if args.quick else (1, 4)
    work = args.work or Path(tempfile.mkdtemp(prefix="lm-backend-bench-"))
    # the ASR writes any of the 128,000 pieces (the recovery metric searches them all) but in --quick
    built = piece_cascade.build(work / "llama3", real_tokenizers.build()["llama3"],
                                asr_updates=10 if args.quick else 40, full_vocab=not args.quick)
    asr_vocab = "the corpus's pieces" if args.quick else "all 128,000 pieces"
    setups = [(f"Llama 3 vocab (128,256 rows), 2 layers, dim 32; ASR: {asr_vocab}", built["s2t"], built["asr"],
               built["lm"])]
    if args.toy_work is not None:
        toy = args.toy_work
        setups.append(("toy stage-9 LM", toy / "data" / "st", toy / "asr" / "checkpoint_best.pt", toy / "lm"))
    rows = []
    for name, data, asr, lm in setups:
        task, model, criterion, sample = cascade_setup(data, asr, lm, DEFAULT_PROMPT)
        rows += stage2_rows(name, task, model, criterion, sample, repeats)
        rows += generate_rows(name, task, model, sample, beams, repeats)
    print(f"device: {_device()}; repeats: {repeats} (median)")
    print(table(rows, ["LM", "what", "ms", "peak MB", "time vs LM's own", "memory vs LM's own"]))


if __name__ == "__main__":
    main()
