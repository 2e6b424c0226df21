"""The encoder-decoder MT back-end's cost (--hf-mt-checkpoint) against what a user runs with the
same MT, measured side by side in one run:

- fairseq-generate's path: the ASR search (``model.encoder.recognize``, as the task's
  inference_step runs it) then the back-end's search (models/hf_mt_generator.py, the MT's own
  ``generate()``), with ``--coupling onebest`` and ``--coupling exporter``, against the ASR
  search then the user's cascade on the same 1-bests: the printed transcripts
  (``task._detokenize_source``), ``tokenizer(transcripts, return_tensors="pt", padding=True)``
  and ``mt.generate(**inputs, num_beams=B, ...)`` with the settings the plugin documents;
  greedy and beam 4; goal: at most 1.05x;
- stage 2, one training step (fairseq's exporter criterion: ASR + 1-best + exporter + the
  frozen MT, forward and backward, ASR trained, ``--coupling exporter``), and the back-end's
  part of it alone (the exporter and the MT forward + backward on a recognition given),
  against the MT's own forward + backward on the same batch, ``mt(inputs_embeds=rows of
  tokenizer(transcripts), labels=tokenizer(text_target=translations))`` with the gradient
  flowing to its input embeddings only (a frozen MT that passes gradient on, as in the
  cascade): time and peak memory; and the recovery metric's share of a step.

On random MTs of tests/tiny_hf_mt.py's families, enlarged: a Marian (OPUS-MT's shape by
default, 512 wide, 6 + 6 layers) and an NLLB-architecture (M2M100) model, each with
sentencepiece models of ``--pieces`` pieces trained here on the tiny cascade's sentences and
made-up words (OPUS-MT-like vocabularies: two models and a joint vocab.json for Marian, one
joint BPE model with the 202 language codes for NLLB), untrained (their translations run to
the length limit, on both sides of the comparison); behind an ASR trained for
seconds on the MT's source pieces (tests/hf_mt_cascade.py). The 1-best the exporter and the
MT read is the reference transcript's pieces, after the ASR's own search (still run and
timed; lm_backend.py's ``read_the_reference``): the back-end's cost grows with the 1-best's
length, not with who wrote it. ``--quick``: tests/tiny_hf_mt.py's tiny (trained) Marian only,
one run of each. ``--toy-work``: also the toy study's stage-11 MT (work/toy/hf-mt) and ASR,
their real 1-best. Peak memory as in lm_backend.py: what the measured call allocates over
what was there before it (CUDA: torch's peak; CPU: the process's peak resident set).

    python benchmarks/hf_mt_backend.py [--toy-work work/toy] [--repeats 5]
    python benchmarks/hf_mt_backend.py --quick     # what tests/test_benchmarks.py runs
"""

import argparse
import contextlib
import dataclasses
import itertools
import random
import sys
import tempfile
from argparse import Namespace
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "tests"))
from lm_backend import _device, _mb, _mb_ratio, _to, measure, read_the_reference  # noqa: E402
from toy_layout import table  # noqa: E402

GOAL = 1.05  # fairseq-generate's path against the user's cascade on the same 1-bests


# ---- the MTs ----------------------------------------------------------------------------------
def made_up_sentences(n: int, seed: int):
    """Sentences of made-up lowercase words (Zipf-distributed), from which sentencepiece learns
    thousands of pieces: the tiny cascade's few dozen words alone give a hundred."""
    rng = random.Random(seed)
    syllables = [c + v + e for c in "bcdfghjklmnprstvwz" for v in "aeiou" for e in ("", "n", "r", "s", "t")]
    words = list(dict.fromkeys("".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))) for _ in range(n)))
    cumulative = list(itertools.accumulate(1.0 / (rank + 1) for rank in range(len(words))))
    return [" ".join(rng.choices(words, cum_weights=cumulative, k=rng.randint(5, 12))) for _ in range(n)]


@contextlib.contextmanager
def patched(module, **values):
    kept = {name: getattr(module, name) for name in values}
    for name, value in values.items():
        setattr(module, name, value)
    try:
        yield
    finally:
        for name, value in kept.items():
            setattr(module, name, value)


def wide_mt(path: Path, family: str, width: int, layers: int, pieces: int) -> Path:
    """tests/tiny_hf_mt.py's ``family`` builder (its tokenizer classes and layouts, its config
    and generation_config) at ``width`` (heads of 64, ffn 4 x width) and ``layers`` + ``layers``,
    its sentencepiece models of ``pieces`` pieces each (Marian: a source and a target model;
    NLLB, M2M100, mBART: one joint model of 2 x ``pieces``), random weights (init_std 0.02),
    untrained."""
    import tiny_hf_mt

    en, de = tiny_hf_mt.spm_text()
    n = max(pieces * 5 // 2, 1000)  # enough made-up text for the pieces asked
    model = {**tiny_hf_mt.MODEL, "d_model": width, "encoder_layers": layers, "decoder_layers": layers,
             "encoder_attention_heads": max(1, width // 64), "decoder_attention_heads": max(1, width // 64),
             "encoder_ffn_dim": 4 * width, "decoder_ffn_dim": 4 * width, "max_position_embeddings": 512,
             "init_std": 0.02}
    sizes = {"source": pieces, "target": pieces, "joint_unigram": 2 * pieces, "joint_bpe": 2 * pieces}
    text = (en + made_up_sentences(n, 1), de + made_up_sentences(n, 2))
    with patched(tiny_hf_mt, spm_text=lambda: text,
                 SPM_SIZE=sizes, MODEL=model, train=lambda mt, tokenizer, family, seed: mt.eval()):
        return tiny_hf_mt.build(path, family)


def languages(family):
    import tiny_hf_mt

    src, tgt = tiny_hf_mt.LANGS.get(family, (None, None))
    return ("--mt-src-lang", src, "--mt-tgt-lang", tgt) if src else ()


def users_tokenizer(mt_dir, family):
    """The MT's tokenizer as a user loads it, its languages set."""
    import tiny_hf_mt
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(mt_dir), local_files_only=True)
    src, tgt = tiny_hf_mt.LANGS.get(family, (None, None))
    if src is not None:
        tokenizer.src_lang, tokenizer.tgt_lang = src, tgt
    return tokenizer


def users_settings(tokenizer, family, beam: int, max_new: int) -> dict:
    """generate()'s settings in the user's cascade: models/hf_mt_generator.py's (and
    tests/tiny_hf_mt.py's reference_translate's) for fairseq-generate --beam B --max-len-a 0
    --max-len-b MAX_NEW --min-len 1 --lenpen 1; the rest from the MT's generation_config."""
    import tiny_hf_mt

    code = tiny_hf_mt.TARGET_LANG_TOKEN.get(family)
    settings = dict(num_beams=beam, do_sample=False, max_new_tokens=max_new, length_penalty=1.0,
                    min_new_tokens=1 + (code is not None), forced_eos_token_id=tokenizer.eos_token_id,
                    bad_words_ids=[[tokenizer.pad_token_id]])
    if beam > 1:
        settings["early_stopping"] = True
    if code is not None:
        settings["forced_bos_token_id"] = tokenizer.convert_tokens_to_ids(code)
    return settings


# ---- the cascade --------------------------------------------------------------------------------
def cascade_setup(data, asr, mt, family, coupling):
    """A stage-2 model, its criterion and a training batch, built in-process."""
    import torch
    from exporter_setup import build, first_batch

    torch.manual_seed(0)
    cascade = {"s2t": data, "asr": asr}
    _, task, model, criterion = build(cascade, "--coupling", coupling, "--exporter-type", "vocab",
                                      "--asr-weight", "0.3", "--onebest-max-len", "40",
                                      text_model=("--hf-mt-checkpoint", str(mt), *languages(family)))
    model.to(_device()).train()
    sample = first_batch(task, split="train", max_sentences=16)
    return task, model, criterion, _to(sample)


def transcripts_of(task, recognition):
    """The ASR's transcripts as fairseq-generate prints them (its ASR- lines)."""
    return [task._detokenize_source(row) for row in recognition.onebest.tokens.tolist()]


def _ratio_row(name, what, seconds, mb, ref_s, ref_mb, goal=""):
    return [name, what, f"{seconds * 1000:.1f}", _mb(mb), f"{seconds / ref_s:.2f}x", _mb_ratio(mb, ref_mb), goal]


def stage2_rows(name, task, model, criterion, sample, tokenizer, repeats):
    import torch

    def step():
        model.zero_grad(set_to_none=True)
        loss, _, _ = criterion(model, sample)
        loss.backward()

    step_s, step_mb = measure(step, repeats)
    with torch.no_grad():  # the ASR's part done: the 1-best and the exporter's input, kept
        recognition = model.encoder.recognize(**sample["net_input"])
        recognition = dataclasses.replace(recognition, token_states=model.encoder.token_states(recognition))
    decoder = model.decoder
    target, pad = sample["target"], decoder.padding_idx

    def backend_step():  # exporter + the MT, forward and backward, on the recognition given
        model.zero_grad(set_to_none=True)
        logits, _ = model(**sample["net_input"], recognition=recognition)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), target.reshape(-1),
                                                 ignore_index=pad, reduction="sum")
        loss.backward()

    backend_s, backend_mb = measure(backend_step, repeats)
    # the MT's own forward + backward (to its input embeddings, as the cascade's) on the same
    # transcripts and translations, as a user's tokenizer writes them
    device = target.device
    mt = decoder.mt.module
    source = model.encoder.hf_mt_source  # the rows the MT's encoder reads (Marian's scale included)
    inputs = tokenizer(transcripts_of(task, recognition), return_tensors="pt", padding=True).to(device)
    dataset = task.datasets["train"]
    translations = [dataset.tgt_texts[i] for i in sample["id"].tolist()]
    labels = tokenizer(text_target=translations, return_tensors="pt", padding=True)["input_ids"].to(device)
    labels = labels.masked_fill(labels.eq(tokenizer.pad_token_id), -100)

    def mt_step():
        embeds = source.mt_rows(inputs["input_ids"]).detach().requires_grad_()
        out = mt(inputs_embeds=embeds, attention_mask=inputs["attention_mask"], labels=labels, use_cache=False)
        out.loss.backward()

    mt_s, mt_mb = measure(mt_step, repeats)
    with torch.no_grad():  # the recovery metric alone, on this batch's exported vectors
        encoder_out = model.encoder(**sample["net_input"], recognition=recognition)
        exported = encoder_out["exported"][model.encoder.fed(recognition.onebest.tokens)]
    recovery_s, _ = measure(lambda: model.encoder.nearest_tokens(exported), repeats)
    rows_of = model.encoder.embedding_table().size(0)
    return [
        _ratio_row(name, "stage-2 step (ASR + 1-best + exporter + MT, fwd + bwd)", step_s, step_mb, mt_s, mt_mb),
        _ratio_row(name, "  its back-end: exporter + MT, fwd + bwd", backend_s, backend_mb, mt_s, mt_mb),
        [name, "the MT's own fwd + bwd (to its input embeddings), same batch", f"{mt_s * 1000:.1f}", _mb(mt_mb),
         "1.00x", "1.00x", ""],
        [name, f"recovery metric (nearest of {rows_of:,} MT rows)", f"{recovery_s * 1000:.2f}", "",
         f"{recovery_s / step_s:.1%} of a step", "", ""],
    ]


def generate_rows(name, task, model, plain, sample, tokenizer, family, beams, repeats, max_new):
    """``model``: --coupling exporter; ``plain``: --coupling onebest (the same ASR and MT)."""
    import torch

    model.eval(), plain.eval()
    net_input = sample["net_input"]
    device = sample["target"].device
    mt = plain.decoder.mt.module
    rows = []
    for beam in beams:
        args = Namespace(beam=beam, nbest=1, max_len_a=0, max_len_b=max_new, min_len=1, lenpen=1.0)
        generators = {m: task.build_generator([m], args) for m in (plain, model)}
        settings = users_settings(tokenizer, family, beam, max_new)

        def fairseq_generate(m):  # the task's inference_step, less its printing
            with torch.no_grad():
                recognition = m.encoder.recognize(**net_input)
            return generators[m].generate([m], {**sample, "net_input": dict(net_input, recognition=recognition)})

        def users():
            with torch.no_grad():
                recognition = plain.encoder.recognize(**net_input)
                inputs = tokenizer(transcripts_of(task, recognition), return_tensors="pt", padding=True).to(device)
                return mt.generate(**inputs, **settings)

        eos = tokenizer.eos_token_id
        theirs = [row[1:row.index(eos, 1) + 1] if eos in row[1:] else row[1:] for row in users().tolist()]
        ours = [h[0]["tokens"].tolist() for h in fairseq_generate(plain)]
        same = sum(a == b for a, b in zip(ours, theirs))
        ref_s, ref_mb = measure(users, repeats)
        onebest_s, onebest_mb = measure(lambda: fairseq_generate(plain), repeats)
        exporter_s, exporter_mb = measure(lambda: fairseq_generate(model), repeats)

        def asr_alone():
            with torch.no_grad():
                plain.encoder.recognize(**net_input)

        asr_s, _ = measure(asr_alone, repeats)
        n = len(sample["id"])
        rows += [
            _ratio_row(name, f"fairseq-generate --coupling onebest, beam {beam} ({n} utt.; same translations "
                       f"{same}/{n})", onebest_s, onebest_mb, ref_s, ref_mb, _goal(onebest_s / ref_s, repeats)),
            _ratio_row(name, f"fairseq-generate --coupling exporter, beam {beam} (its own translations)",
                       exporter_s, exporter_mb, ref_s, ref_mb, _goal(exporter_s / ref_s, repeats)),
            [name, f"user's cascade: ASR search, transcripts, tokenizer(), generate(), beam {beam}",
             f"{ref_s * 1000:.1f}", _mb(ref_mb), "1.00x", "1.00x", ""],
            [name, "  of which the ASR search alone", f"{asr_s * 1000:.1f}", "", f"{asr_s / ref_s:.0%} of it", "",
             ""],
        ]
    model.train(), plain.train()
    return rows


def _goal(ratio, repeats):
    verdict = "met" if ratio <= GOAL else "missed"
    return f"<= {GOAL:.2f}x: {verdict}" + (" (one run)" if not repeats else "")


def run(setups, repeats: int, beams, max_new: int = 16) -> str:
    """``setups``: (name, family, S2T data root, ASR checkpoint, MT dir, whether the 1-best is
    the reference transcript); the table, printed."""
    import torch

    rows = []
    for name, family, data, asr, mt_dir, reference in setups:
        task, model, criterion, sample = cascade_setup(data, asr, mt_dir, family, "exporter")
        _, plain, _, _ = cascade_setup(data, asr, mt_dir, family, "onebest")
        if reference:
            read_the_reference(model), read_the_reference(plain)
        tokenizer = users_tokenizer(mt_dir, family)
        mt = model.decoder.mt.module
        n_mt = sum(p.numel() for p in mt.parameters())
        n_exporter = sum(p.numel() for p in model.encoder.exporter.parameters())
        name = (f"{name}, vocab {mt.config.vocab_size:,} ({n_mt / 1e6:.1f}M; exporter {n_exporter / 1e6:.2f}M; "
                f"ASR {len(task.transcript_dictionary):,} symbols)")
        rows += stage2_rows(name, task, model, criterion, sample, tokenizer, repeats)
        rows += generate_rows(name, task, model, plain, sample, tokenizer, family, beams, repeats, max_new)
        del task, model, criterion, sample, plain
    runs = f"median of {repeats}" if repeats else "one run each, no warm-up"
    out = (f"device: {_device()}; threads: {torch.get_num_threads()}; {runs}; up to {max_new} new tokens; "
           f"goal: fairseq-generate's path <= {GOAL:.2f}x the user's cascade\n")
    return out + table(rows, ["MT (parameters)", "what", "ms", "peak MB", "time vs reference",
                              "memory vs reference", "goal"])


def _size(text):
    if text in ("", "none"):
        return None
    width, layers = map(int, text.split("x"))
    return width, layers


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="one run of each, no warm-up, 4 new tokens, tests/tiny_hf_mt.py's tiny Marian only")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--marian", default="512x6", help="WIDTHxLAYERS of the random Marian (none: leave it out)")
    parser.add_argument("--nllb", default="256x3", help="WIDTHxLAYERS of the random NLLB (none: leave it out)")
    parser.add_argument("--pieces", type=int, default=8000, help="pieces of each sentencepiece model")
    parser.add_argument("--toy-work", type=Path, default=None,
                        help="the toy study's work dir after stage 11 (its data, ASR and hf-mt/)")
    parser.add_argument("--work", type=Path, default=None, help="where the MTs and their ASRs are built")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None,
                        help="also write the table here (benchmarks/results/hf_mt_backend.md)")
    args = parser.parse_args(argv)
    import torch

    import hf_mt_cascade
    import tiny_hf_mt

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    repeats = 0 if args.quick else args.repeats
    work = args.work or Path(tempfile.mkdtemp(prefix="hf-mt-backend-bench-"))
    setups = []
    if args.quick:
        mt = tiny_hf_mt.build(work / "marian" / "mt", "marian")
        built = hf_mt_cascade.build(work / "marian", mt, asr_updates=10)
        setups.append(("tiny Marian, dim 32 x 2 layers", "marian", built["s2t"], built["asr"], mt, True))
    else:
        for family, label, size in (("marian", "Marian", _size(args.marian)), ("nllb", "NLLB", _size(args.nllb))):
            if size is None:
                continue
            width, layers = size
            root = work / f"{family}-{width}x{layers}-{args.pieces}"
            mt = wide_mt(root / "mt", family, width, layers, args.pieces)
            built = hf_mt_cascade.build(root, mt)
            setups.append((f"{label}, dim {width} x {layers} layers", family, built["s2t"], built["asr"], mt, True))
    if args.toy_work is not None:
        toy = args.toy_work
        setups.append(("toy stage-11 Marian", "marian", toy / "data" / "st", toy / "asr" / "checkpoint_best.pt",
                       toy / "hf-mt", False))
    out = run(setups, repeats, (1, 4), max_new=4 if args.quick else 16)
    print(out)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        command = " ".join(["python benchmarks/hf_mt_backend.py", *(argv if argv is not None else sys.argv[1:])])
        args.out.write_text(f"`{command}`\n\n{out}\n")


if __name__ == "__main__":
    main()
