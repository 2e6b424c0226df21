"""The LM back-end's cost against the LM's own, measured side by side in one run:

- stage 2, one training step (fairseq's exporter criterion: ASR + 1-best + exporter + the
  frozen LM, forward and backward), and the back-end's part of it alone (the exporter, the
  prompt and the LM forward + backward, on a recognition given), against the LM's own forward
  + backward on the same batch's text prompts and translations: time and peak memory;
- fairseq-generate's search (models/lm_generator.py: prompt building, transformers'
  generate(), the scores) against transformers' generate() on the same prompt ids, greedy
  and beam 4;
- the recovery metric's share of a stage-2 step.

On random Llamas with Llama 3's vocabulary (128,256 rows; tests/real_tokenizers.py) of two
widths, behind an ASR trained on those pieces that may write any of them
(tests/piece_cascade.py; trained for seconds, it writes one or two pieces: the 1-best the
exporter and the LM read is the reference transcript's pieces, after the ASR's search), and on
the toy's stage-9 instruct LM (its chat template) and its ASR with --toy-work. Peak memory is what the
measured call allocates over what was there before it: on CUDA torch's peak, on a CPU the
process's peak resident set (its high-water mark reset before the call; large blocks are
returned to the system when freed, so the mark follows tensors, not allocator caches).

    python benchmarks/lm_backend.py [--toy-work work/toy] [--repeats 5]
    python benchmarks/lm_backend.py --quick     # what tests/test_lm_real_tokenizers.py runs
"""

import argparse
import dataclasses
import json
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


def _cpu_memory():
    """Reset the process's peak resident set to now; return a function giving the peak since
    in MB. (mallopt: blocks over 64 KB are mmap'ed and unmapped when freed, always.)"""
    import ctypes

    ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 16)  # M_MMAP_THRESHOLD: also stops its dynamic rise

    def status(key):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(key)) / 1024

    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current resident set
    base = status("VmRSS:")
    return lambda: status("VmHWM:") - base


def measure(fn, repeats):
    """Median seconds of ``fn()`` over ``repeats`` runs after one warm-up, and the peak memory
    in MB that one run allocates over what was allocated before it (``repeats`` 0: one run,
    timed, no warm-up)."""
    import torch

    if repeats == 0:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start, None
    fn()
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2 ** 20
    else:
        peak_since = _cpu_memory()
        fn()
        peak = peak_since()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), peak


def cascade_setup(data, asr, lm, lm_flags, *extra):
    """A stage-2 model, its criterion and a training batch, built in-process; ``lm_flags``: the
    LM's options after --lm-checkpoint (its prompt, and the toy's chat and data config)."""
    import torch
    from exporter_setup import build, first_batch

    torch.manual_seed(0)
    cascade = {"s2t": data, "asr": asr}
    _, task, model, criterion = build(cascade, "--coupling", "exporter", "--exporter-type", "vocab",
                                      "--asr-weight", "0.3", "--onebest-max-len", "40", *extra,
                                      text_model=("--lm-checkpoint", str(lm), *lm_flags))
    model.to(_device()).train()
    sample = first_batch(task, split="train", max_sentences=16)
    return task, model, criterion, _to(sample)


def _to(sample):
    import torch
    from fairseq import utils

    return utils.move_to_cuda(sample) if torch.cuda.is_available() else sample


def stage2_rows(name, task, model, criterion, sample, repeats, checkpointed=None):
    """``checkpointed``: the same model built with --lm-gradient-checkpointing (its back-end
    part is measured too)."""
    import torch

    def step():
        model.zero_grad(set_to_none=True)
        loss, _, _ = criterion(model, sample)
        loss.backward()

    step_s, step_mb = measure(step, repeats)
    with torch.no_grad():  # the ASR's part done: the 1-best and the exporter's input, kept
        recognition = model.encoder.recognize(**sample["net_input"])
        recognition = dataclasses.replace(recognition, token_states=model.encoder.token_states(recognition))
    tokens = recognition.onebest.tokens
    decoder, lm = model.decoder, model.decoder.lm.module
    target, pad = sample["target"], decoder.padding_idx
    prev = sample["net_input"]["prev_output_tokens"]

    def backend_step(model=model):  # exporter + prompt + LM, forward and backward, on the recognition given
        model.zero_grad(set_to_none=True)
        logits, _ = model(**sample["net_input"], recognition=recognition)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), target.reshape(-1),
                                                 ignore_index=pad, reduction="sum")
        loss.backward()

    backend_s, backend_mb = measure(backend_step, repeats)
    if checkpointed is not None:
        ckpt_s, ckpt_mb = measure(lambda: backend_step(checkpointed), repeats)
    # the LM's own forward + backward (to its input embeddings, as the cascade's) on the same
    # text prompts and translations
    batch = decoder.prompts(tokens)
    ids = torch.cat([batch.ids, prev[:, 1:].clamp(max=decoder.n_rows - 1)], 1)
    mask = torch.cat([batch.mask, prev[:, 1:].ne(pad).long()], 1)
    positions = decoder.positions(mask)
    lookup = lm.get_input_embeddings()

    def lm_step():
        embeds = lookup(ids).detach().requires_grad_()
        logits = lm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                    logits_to_keep=prev.size(1)).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), target.reshape(-1),
                                                 ignore_index=pad, reduction="sum")
        loss.backward()

    lm_s, lm_mb = measure(lm_step, repeats)
    # the recovery metric alone: the full search on this batch's exported vectors (every vector
    # searched: its cost before stage 1 has brought them near their rows), and the criterion's
    # recovered() on vectors at L2 ~0 (the 1-best's rows, noise of 1e-3 of their norm: a trained
    # stage 1), which certifies them without the search (each symbol's separation is searched
    # once per run: the warm-up searches this batch's)
    with torch.no_grad():
        encoder_out = model.encoder(**sample["net_input"], recognition=recognition)
        exported = encoder_out["exported"]
        fed = model.encoder.fed(tokens)
        own = model.encoder.embedding_rows(tokens)[fed]  # each piece's own LM row
        noise = torch.randn(own.shape, generator=torch.Generator().manual_seed(0)).to(own)
        converged = own + 1e-3 * own.norm(dim=-1, keepdim=True) * noise / own.size(-1) ** 0.5
    recovery_s, _ = measure(lambda: model.encoder.nearest_tokens(exported[fed]), repeats)
    certified_s, _ = measure(lambda: model.encoder.recovered(converged, tokens[fed]), repeats)
    rows = [
        [name, "stage-2 step (ASR + 1-best + exporter + LM, fwd + bwd)", f"{step_s * 1000:.1f}", _mb(step_mb),
         f"{step_s / lm_s:.2f}x", _mb_ratio(step_mb, lm_mb)],
        [name, "  its back-end: exporter + prompt + LM, fwd + bwd", f"{backend_s * 1000:.1f}", _mb(backend_mb),
         f"{backend_s / lm_s:.2f}x", _mb_ratio(backend_mb, lm_mb)],
    ]
    if checkpointed is not None:
        rows.append([name, "  the same, --lm-gradient-checkpointing", f"{ckpt_s * 1000:.1f}", _mb(ckpt_mb),
                     f"{ckpt_s / lm_s:.2f}x", _mb_ratio(ckpt_mb, lm_mb)])
    return rows + [
        [name, "the LM's own fwd + bwd, same prompts and translations", f"{lm_s * 1000:.1f}", _mb(lm_mb),
         "1.00x", "1.00x"],
        [name, f"recovery metric, full search (nearest of {model.encoder.lm_source.table().size(0):,} LM rows)",
         f"{recovery_s * 1000:.2f}", "", f"{recovery_s / step_s:.1%} of a step", ""],
        [name, "recovery metric, the criterion's at L2 ~0 (stage 1 trained)",
         f"{certified_s * 1000:.2f}", "", f"{certified_s / step_s:.1%} of a step", ""],
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
    stops = model.decoder.template.search_stop_ids(task.target_dictionary.eos())
    for beam in beams:
        generator = task.build_generator([model], Namespace(beam=beam, nbest=1, max_len_a=0, max_len_b=max_new,
                                                            min_len=1, lenpen=1.0))
        ours, ours_mb = measure(lambda: generator.generate([model], {**sample, "net_input": net_input}), repeats)
        extra = dict(length_penalty=1.0, early_stopping=True) if beam > 1 else {}

        def theirs():
            with torch.no_grad():
                lm.generate(input_ids=batch.ids, attention_mask=batch.mask, do_sample=False, num_beams=beam,
                            max_new_tokens=max_new, min_new_tokens=1, eos_token_id=stops,
                            pad_token_id=task.target_dictionary.eos(), **extra)

        ref, ref_mb = measure(theirs, repeats)
        rows.append([name, f"fairseq-generate --coupling exporter, beam {beam} ({len(sample['id'])} utt.)",
                     f"{ours * 1000:.1f}", _mb(ours_mb), f"{ours / ref:.2f}x", _mb_ratio(ours_mb, ref_mb)])
        rows.append([name, f"transformers generate(), same prompts, beam {beam}", f"{ref * 1000:.1f}", _mb(ref_mb),
                     "1.00x", "1.00x"])
    model.train()
    return rows


def _mb(value):
    return "n/a" if value is None else f"{value:.0f}"


def _mb_ratio(a, b):
    return "n/a" if a is None or b is None or b <= 0 else f"{a / b:.2f}x"


def wide_lm(path: Path, tokenizer_dir: Path, width: int, layers: int) -> Path:
    """A random Llama of the tokenizer's whole vocabulary at ``width`` (heads of 64)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=width, intermediate_size=4 * width,
                         num_hidden_layers=layers, num_attention_heads=width // 64,
                         num_key_value_heads=max(1, width // 256), max_position_embeddings=512,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def read_the_reference(model):
    """The 1-best := the reference transcript's pieces, after the ASR's own search (still run
    and timed): an ASR trained for seconds on a 128k-piece vocabulary writes one or two pieces,
    and the back-end's cost grows with the prompt's length, not with who wrote it."""
    from fairseq_exporter.models.onebest import OneBest

    recognize = model.encoder.recognize

    def recognize_then_read_the_reference(src_tokens, src_lengths, src_txt_tokens=None, **kwargs):
        recognition = recognize(src_tokens, src_lengths, src_txt_tokens, **kwargs)
        return dataclasses.replace(recognition, onebest=OneBest(tokens=src_txt_tokens), token_states=None)

    model.encoder.recognize = recognize_then_read_the_reference


def run(setups, repeats: int, beams, max_new: int = 16) -> str:
    """``setups``: (name, S2T data root, ASR checkpoint, LM dir, the LM's options, whether the
    1-best is the reference transcript); the table, printed."""
    import torch

    rows = []
    for name, data, asr, lm, lm_flags, reference in setups:
        task, model, criterion, sample = cascade_setup(data, asr, lm, lm_flags)
        _, checkpointed, _, _ = cascade_setup(data, asr, lm, lm_flags, "--lm-gradient-checkpointing")
        checkpointed.load_state_dict(model.state_dict())
        if reference:
            read_the_reference(model), read_the_reference(checkpointed)
        n_lm = sum(p.numel() for p in model.decoder.lm.module.parameters())
        n_exporter = sum(p.numel() for p in model.encoder.exporter.parameters())
        name = f"{name} ({n_lm / 1e6:.1f}M; exporter {n_exporter / 1e6:.2f}M)"
        rows += stage2_rows(name, task, model, criterion, sample, repeats, checkpointed)
        rows += generate_rows(name, task, model, sample, beams, repeats, max_new)
        del task, model, criterion, sample, checkpointed
    runs = f"median of {repeats}" if repeats else "one run each, no warm-up"
    out = f"device: {_device()}; threads: {torch.get_num_threads()}; {runs}; up to {max_new} new tokens\n"
    return out + table(rows, ["LM (parameters)", "what", "ms", "peak MB", "time vs LM's own", "memory vs LM's own"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one run of each, no warm-up, 4 new tokens, the narrow LM only, its ASR on the corpus's pieces")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--toy-work", type=Path, default=None,
                        help="the toy study's work dir after stage 9 (its data, ASR and lm/)")
    parser.add_argument("--work", type=Path, default=None, help="where the Llama 3-vocabulary cascade is built")
    parser.add_argument("--cascade", type=Path, default=None,
                        help="a Llama 3-vocabulary cascade already built (tests/piece_cascade.py: s2t/, asr/, lm/)")
    parser.add_argument("--wide", default="512x4", help="WIDTHxLAYERS of the second Llama 3-vocabulary LM")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None,
                        help="also write the table here (benchmarks/results/lm_backend.md: benchmarks/README.md "
                             "shows that file, python -m fairseq_exporter.toy.published benchmarks/README.md)")
    args = parser.parse_args(argv)
    import torch

    import piece_cascade
    import real_tokenizers

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    repeats = 0 if args.quick else args.repeats
    work = args.work or Path(tempfile.mkdtemp(prefix="lm-backend-bench-"))
    tokenizer_dir = real_tokenizers.build()["llama3"]
    if args.cascade is not None:
        root = args.cascade
        built = {"s2t": root / "s2t", "asr": root / "asr" / "checkpoint_best.pt", "lm": root / "lm"}
        asr_vocab = "as built"
    else:  # the ASR writes any of the 128,000 pieces (the recovery metric searches them all) but in --quick
        built = piece_cascade.build(work / "llama3", tokenizer_dir, asr_updates=10 if args.quick else 40,
                                    full_vocab=not args.quick)
        asr_vocab = "the corpus's pieces" if args.quick else "all 128,000 pieces"
    from fairseq_exporter.models.lm_prompt import DEFAULT_PROMPT

    plain = ("--lm-prompt", DEFAULT_PROMPT)
    setups = [(f"Llama 3 vocab, dim 32 x 2 layers; ASR: {asr_vocab}", built["s2t"], built["asr"], built["lm"], plain,
               True)]
    if not args.quick:
        width, layers = map(int, args.wide.split("x"))
        lm = wide_lm(work / "llama3" / f"lm-{args.wide}", tokenizer_dir, width, layers)
        setups.append((f"Llama 3 vocab, dim {width} x {layers} layers", built["s2t"], built["asr"], lm, plain, True))
    if args.toy_work is not None:  # stage 9's instruct LM, prompted through its chat template, and its ASR
        toy = args.toy_work
        message = json.loads((toy / "lm" / "training.json").read_text())["message"]
        setups.append(("toy stage-9 LM", toy / "data" / "st", toy / "asr-lm" / "checkpoint_best.pt", toy / "lm",
                       ("--lm-chat", "--lm-prompt", message, "--config-yaml", "config_st_lm.yaml"), False))
    out = run(setups, repeats, (1, 4), max_new=4 if args.quick else 16)
    print(out)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        command = " ".join(["python benchmarks/lm_backend.py", *(argv if argv is not None else sys.argv[1:])])
        args.out.write_text(f"`{command}`\n\n{out}\n")


if __name__ == "__main__":
    main()
