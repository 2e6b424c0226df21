"""MuST-C scale: how data loading, the 1-best cache, stage 1, fairseq-generate and the
CTC prefix beam search grow with the number of utterances N, measured on synthesized
data (nothing downloaded).

    python benchmarks/scaling.py                 # N = 1k, 10k, 100k, 230k (MuST-C En-De train)
    python benchmarks/scaling.py --quick         # small N: what tests/test_benchmarks.py runs

Per N, each part in a process of its own (peak memory is the process's):
- load: the exporter task's ``load_dataset`` (manifest read and checked, audio entries
  checked, empty/too long skipped, texts encoded) and ``get_batch_iterator`` (fairseq's
  size filter and batching) on a manifest with MuST-C's length distribution (log-normal
  n_frames, median 520 frames, mean ~640: 6.4 s, MuST-C En-De's 408 h / 230k). The rows
  point at a small pool of stored entries: loading checks each entry's header, it does
  not read the features.
- cache: ``--onebest-cache`` filled with N utterances of ~26 token states at dim 512 (a
  stand-in ASR that returns random states of MuST-C 1-best lengths; the cache's own code
  runs as in training), then read back in batches as epoch 2 does, in a new process:
  size on disk, time, and resident memory, anonymous (what the process holds) and
  file-backed (the memory-mapped shards: page cache the kernel may drop).
- stage 1 and fairseq-generate: the tiny test cascade (tests/tiny_cascade.py, 32 dims) on
  its synthetic speech, for the smaller --train-sizes only (their cost per utterance is
  the model's, which a MuST-C model multiplies; the point is that it stays flat in N).
- CTC: the batched prefix beam search against the per-utterance definition
  (tests/ctc_reference.py) on the same CTC posteriors, side by side.
Growth: time ~ N^k fitted over the sizes (k = 1: linear). Not a test: it prints tables.
"""

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "tests"))  # the tiny cascade and the per-utterance CTC definition
from toy_layout import USER_DIR, fresh_dir, table  # noqa: E402

STATE_DIM = 512
MEDIAN_FRAMES, SIGMA = 520, 0.65  # log-normal: mean ~640 frames (6.4 s)


def memory():
    """Resident memory of this process in MB: anonymous, file-backed, peak (VmHWM)."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    mb = {k: int(fields[k].split()[0]) / 1024 for k in ("RssAnon", "RssFile", "VmHWM")}
    return mb["RssAnon"], mb["RssFile"], mb["VmHWM"]


def mustc_frames(rng, n):
    return np.clip(rng.lognormal(math.log(MEDIAN_FRAMES), SIGMA, n), 5, 9000).astype(int)


# ---- data ---------------------------------------------------------------------------

def data_root(scratch: Path, models) -> Path:
    root = scratch / "data"
    if not root.is_dir():
        root.mkdir(parents=True)
        for name in ("dict.en.txt", "dict.de.txt", "config_st.yaml"):
            shutil.copy(models["s2t"] / name, root / name)
    return root


def write_load_split(root: Path, n: int, seed=1):
    """load_{n}.tsv: MuST-C lengths; texts of ~2.5 words a second from the tiny vocabulary."""
    from fairseq_exporter.data.s2t_layout import FeatureZipWriter, write_manifest, zip_entries
    from tiny_cascade import DE, EN

    pool = root / "pool.zip"
    if not pool.is_file():
        with FeatureZipWriter(pool) as z:
            for i in range(1000):
                z.add(f"p{i}", np.zeros((10, 80), dtype=np.float32))
    entries = [e.audio for e in zip_entries(pool).values()]
    rng = np.random.RandomState(seed)
    frames = mustc_frames(rng, n)
    rows = []
    for i, f in enumerate(frames):
        words = [EN[j] for j in rng.randint(0, len(EN), max(1, int(f / 100 * 2.5)))]
        rows.append([f"ted_{i // 50}_{i % 50}", (root / entries[i % 1000]).as_posix(), int(f), " ".join(words),
                     " ".join(DE[w] for w in reversed(words)), f"spk{i // 50}"])
    write_manifest(root / f"load_{n}.tsv", rows)


def write_speech_split(root: Path, split: str, n: int, seed=2):
    """{split}.tsv: the tiny cascade's synthetic speech (a word is 8 frames of its pattern)."""
    from fairseq_exporter.data.s2t_layout import FeatureZipWriter, write_manifest, zip_entries
    from tiny_cascade import EN, sentences

    pattern_rng = np.random.RandomState(0)  # tiny_cascade.write_features: the ASR's word patterns
    patterns = {w: pattern_rng.randn(80).astype("float32") * 2 for w in EN}
    rng = np.random.RandomState(seed)
    pairs = sentences(n, seed)
    with FeatureZipWriter(root / f"{split}.zip") as z:
        for i, (en, _) in enumerate(pairs):
            x = np.concatenate([np.tile(patterns[w], (8, 1)) for w in en.split()])
            z.add(f"{split}_{i}", x + 0.3 * rng.randn(*x.shape).astype("float32"))
    entries = zip_entries(root / f"{split}.zip")
    write_manifest(root / f"{split}.tsv", [
        [f"{split}_{i}", (root / entries[f"{split}_{i}"].audio).as_posix(), entries[f"{split}_{i}"].n_frames, en, de, "spk0"]
        for i, (en, de) in enumerate(pairs)])


# ---- parts, each in its own process -------------------------------------------------------

def _build(models, root, *extra):
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    args = options.parse_args_and_arch(options.get_training_parser(), [
        str(root), "--user-dir", USER_DIR, "--task", "speech_to_text_exporter", "--config-yaml", "config_st.yaml",
        "--arch", "exporter", "--criterion", "exporter", "--asr-checkpoint", str(models["asr"]),
        "--mt-checkpoint", str(models["mt"]), "--freeze-asr", "--freeze-mt", "--optimizer", "adam", *extra])
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    return task, task.build_model(cfg.model)


def part_load(models, root, n):
    from fairseq import utils

    task, model = _build(models, root)
    anon0, _, _ = memory()
    start = time.perf_counter()
    task.load_dataset(f"load_{n}")
    loaded = time.perf_counter()
    dataset = task.dataset(f"load_{n}")
    itr = task.get_batch_iterator(dataset, max_tokens=40000, ignore_invalid_inputs=True, seed=1,
                                  max_positions=utils.resolve_max_positions(task.max_positions(), model.max_positions()))
    batches = len(itr.next_epoch_itr(shuffle=True))
    done = time.perf_counter()
    anon, _, peak = memory()
    return {"load_s": loaded - start, "batch_s": done - loaded, "kept": len(dataset), "batches": batches,
            "peak_rise_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - anon0,
            "held_mb": anon - anon0}


class StandInASR:
    """What ``OneBestCache.recognize`` calls on the cascade's encoder, returning random
    token states of dimension 512 for 1-bests of the batch's lengths."""
    pad, eos = 1, 2

    def __init__(self):
        import torch

        self.asr = torch.nn.Linear(1, 1)
        self.pool = torch.randn(64, 400, STATE_DIM)

    def recognize(self, src_tokens, src_lengths, **unused):
        import torch

        from fairseq_exporter.models.coupling import Recognition
        from fairseq_exporter.models.onebest import OneBest

        lengths = src_lengths.tolist()
        width = max(lengths)
        tokens = torch.full((len(lengths), width), self.pad, dtype=torch.long)
        for i, n in enumerate(lengths):
            tokens[i, :n] = torch.arange(n) % 500 + 4
            tokens[i, n - 1] = self.eos
        states = self.pool[: len(lengths), :width] * tokens.ne(self.pad).unsqueeze(-1)
        return Recognition(None, OneBest(tokens=tokens, truncated=torch.zeros(len(lengths), dtype=torch.bool)),
                           token_states=states)


def _cache_batches(n, batch=64, seed=3):
    rng = np.random.RandomState(seed)
    tokens = np.clip(mustc_frames(rng, n) // 25, 2, 200)  # ~26 tokens an utterance, </s> included
    for at in range(0, n, batch):
        yield [f"train/ted_{i}" for i in range(at, min(at + batch, n))], tokens[at: at + batch]


def part_cache(cache_dir, n, dtype, fill):
    import torch

    from fairseq_exporter.models.onebest_cache import OneBestCache

    asr = StandInASR()
    key = {"format": "scaling-benchmark"}
    anon0, file0, _ = memory()
    start = time.perf_counter()
    cache = OneBestCache(cache_dir, key, state_dtype=dtype)
    opened = time.perf_counter()
    index_mb = memory()[0] - anon0
    peak_anon = peak_file = 0.0
    for keys, lengths in _cache_batches(n):
        net_input = {"src_tokens": torch.zeros(len(keys), 1), "src_lengths": torch.tensor(lengths)}
        rec = cache.recognize(asr, net_input, keys, need_states=True, need_encoder=False)
        assert rec.token_states.size(-1) == STATE_DIM
        anon, file, _ = memory()
        peak_anon, peak_file = max(peak_anon, anon - anon0), max(peak_file, file - file0)
    cache.flush()
    took = time.perf_counter() - start
    assert (cache.misses, cache.hits) == ((n, 0) if fill else (0, n)), (cache.misses, cache.hits)
    disk = sum(p.stat().st_size for p in Path(cache_dir).iterdir())
    return {"s": took, "open_s": opened - start, "index_mb": index_mb, "peak_anon_mb": peak_anon,
            "peak_file_mb": peak_file, "disk_mb": disk / 2 ** 20}


def timed_fairseq_train(argv):
    from onebest_cache_epochs import timed_fairseq_train as run

    run(argv)


def stage1(models, root, split, save_dir, threads):
    cli = [root, "--user-dir", USER_DIR, "--task", "speech_to_text_exporter", "--config-yaml", "config_st.yaml",
           "--train-subset", split, "--valid-subset", split, "--arch", "exporter",
           "--asr-checkpoint", models["asr"], "--mt-checkpoint", models["mt"], "--exporter-type", "mlp",
           "--freeze-asr", "--freeze-mt", "--criterion", "exporter", "--ast-weight", "0", "--l2-weight", "1",
           "--optimizer", "adam", "--lr", "3e-3", "--max-tokens", "4000", "--max-epoch", "2",
           "--disable-validation", "--no-epoch-checkpoints", "--no-progress-bar", "--log-format", "json",
           "--log-interval", "1000", "--seed", "1", "--num-workers", "0", "--data-buffer-size", "0",
           "--onebest-cache", save_dir / "onebest-cache", "--save-dir", save_dir]
    log = save_dir / "train.log"
    save_dir.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        proc = subprocess.run([sys.executable, __file__, "--fairseq-train", *map(str, cli)], stdout=out,
                              stderr=subprocess.STDOUT, env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
    text = log.read_text()
    if proc.returncode != 0 and "done training in" not in text:  # 134 after done: see tests/tiny_cascade.py
        sys.stderr.write(text[-4000:])
        raise SystemExit(f"fairseq-train failed (log: {log})")
    return [float(line.split()[1]) for line in text.splitlines() if line.startswith("EPOCH_SECONDS")]


def generate_seconds(models, root, split, checkpoint, out, threads):
    start = time.perf_counter()
    with open(out, "w") as log:
        subprocess.run([sys.executable, "-m", "fairseq_cli.generate", str(root), "--user-dir", USER_DIR,
                        "--task", "speech_to_text_exporter", "--config-yaml", "config_st.yaml", "--gen-subset", split,
                        "--path", str(checkpoint), "--beam", "5", "--max-tokens", "4000", "--num-workers", "0"],
                       stdout=log, stderr=subprocess.STDOUT, check=True,
                       env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
    return time.perf_counter() - start


def ctc_posteriors(rng, bsz, n_frames, vocab):
    """CTC log-probs of a trained head's shape: blank on most frames, a confident label
    held for 1-3 frames every ~6 frames (~26 tokens in 160 frames), noise elsewhere."""
    import torch

    gen = torch.Generator().manual_seed(int(rng.randint(1 << 30)))
    label = torch.randint(3, vocab, (n_frames, bsz), generator=gen)
    path = torch.where(torch.rand(n_frames, bsz, generator=gen) < 0.17, label, 0)
    path = torch.where(torch.rand(n_frames, bsz, generator=gen) < 0.4, path.roll(1, 0), path)  # held labels
    logits = torch.randn(n_frames, bsz, vocab, generator=gen) * 1.5
    logits.scatter_add_(2, path.unsqueeze(2), 8 + 2 * torch.randn(n_frames, bsz, 1, generator=gen))
    return logits.log_softmax(-1)


def part_ctc(batches, bsz, beam, vocab):
    import torch

    from ctc_reference import prefix_beam_one_by_one
    from fairseq_exporter.models.ctc import CTCSearch

    class Dictionary:
        bos, pad, eos = (lambda self: 0), (lambda self: 1), (lambda self: 2)

    search = CTCSearch(Dictionary(), beam, 200, 1024)
    rng = np.random.RandomState(4)
    batched = one_by_one = 0.0
    same = utts = 0
    for _ in range(batches):
        frames = torch.from_numpy(np.clip(mustc_frames(rng, bsz) // 4, 1, None))  # 4x subsampled
        lp = ctc_posteriors(rng, bsz, int(frames.max()), vocab)
        start = time.perf_counter()
        found = search(lp, frames)
        batched += time.perf_counter() - start
        start = time.perf_counter()
        expected = prefix_beam_one_by_one(lp, frames, 0, 1, 2, beam, 200, 1024)
        one_by_one += time.perf_counter() - start
        for b, (tokens, segments, _) in enumerate(expected):
            utts += 1
            same += found.tokens[b, : len(tokens)].tolist() == tokens and \
                found.segments[b, : len(tokens)].tolist() == segments
    return {"batched_s": batched, "one_by_one_s": one_by_one, "same": same, "utts": utts}


def in_process(part, argv_json):
    """Run one part in this (fresh) process and print its result as JSON."""
    kw = json.loads(argv_json)
    out = {"load": lambda: part_load(kw["models"], Path(kw["root"]), kw["n"]),
           "cache": lambda: part_cache(kw["dir"], kw["n"], kw["dtype"], kw["fill"]),
           "ctc": lambda: part_ctc(kw["batches"], kw["bsz"], kw["beam"], kw["vocab"])}[part]()
    print("RESULT " + json.dumps(out), flush=True)


def fresh_process(part, threads, **kw):
    kw = {k: (str(v) if isinstance(v, Path) else v) for k, v in kw.items()}
    if "models" in kw:
        kw["models"] = {k: str(v) for k, v in kw["models"].items()}
    proc = subprocess.run([sys.executable, __file__, "--part", part, json.dumps(kw)], capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"part {part} {kw} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def growth(sizes, values):
    """k of values ~ N^k (least squares on logs); '-' with fewer than two sizes."""
    pts = [(math.log(n), math.log(v)) for n, v in zip(sizes, values) if v > 0]
    if len(pts) < 2:
        return "-"
    x, y = np.array(pts).T
    return f"{np.polyfit(x, y, 1)[0]:.2f}"


def per_1k(seconds, n):
    return seconds / n * 1000


def main():
    if sys.argv[1:2] == ["--fairseq-train"]:
        return timed_fairseq_train(sys.argv[2:])
    if sys.argv[1:2] == ["--part"]:
        return in_process(sys.argv[2], sys.argv[3])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000,230000", help="N for loading and the cache")
    parser.add_argument("--train-sizes", default="1000,4000", help="N for stage 1 and fairseq-generate")
    parser.add_argument("--state-dtypes", default="float32,float16", help="cache state storage to measure")
    parser.add_argument("--ctc-batches", type=int, default=3)
    parser.add_argument("--ctc-batch-size", type=int, default=64)
    parser.add_argument("--ctc-vocab", type=int, default=5000)
    parser.add_argument("--ctc-beam", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small N (the smoke test)")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS")
    parser.add_argument("--models", default=None, help="the tiny cascade's dir (built there if absent)")
    parser.add_argument("--scratch", default="/tmp/fairseq_exporter_bench/scaling")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.train_sizes, args.ctc_batches, args.ctc_batch_size, args.ctc_vocab = "200,600", "40", 1, 8, 300
        args.state_dtypes = "float32"  # each dtype is 4 fresh processes; float16 storage has its own unit test
    sizes = [int(n) for n in args.sizes.split(",")]
    train_sizes = [int(n) for n in args.train_sizes.split(",")]
    dtypes = args.state_dtypes.split(",")
    scratch = Path(args.scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    for d in ("data", "cache", "train"):
        if (scratch / d).exists():
            shutil.rmtree(scratch / d)
    models_dir = Path(args.models) if args.models else scratch / "models"
    if not (models_dir / "asr" / "checkpoint_best.pt").is_file():
        import tiny_cascade

        tiny_cascade.build(fresh_dir(models_dir))
    models = {"s2t": models_dir / "s2t", "asr": models_dir / "asr" / "checkpoint_best.pt",
              "mt": models_dir / "mt" / "checkpoint_best.pt"}
    root = data_root(scratch, models)
    free_gb = shutil.disk_usage(scratch).free / 2 ** 30
    print(f"scaling: sizes {sizes}, stage 1 / generate sizes {train_sizes}, state dim {STATE_DIM}, "
          f"OMP_NUM_THREADS={args.threads}, {os.cpu_count()} CPUs, {free_gb:.0f} GB free in {scratch}")

    rows, measured = [], {k: [] for k in ("load", "fill", "read", "peak", "disk")}
    for n in sizes:
        start = time.perf_counter()
        write_load_split(root, n)
        made = time.perf_counter() - start
        load = fresh_process("load", args.threads, models=models, root=root, n=n)
        row = [f"{n:,}", f"{made:.1f}", f"{load['load_s']:.2f}", f"{load['batch_s']:.2f}", f"{load['kept']:,}",
               f"{load['peak_rise_mb']:.0f}"]
        measured["load"].append(load["load_s"] + load["batch_s"])
        measured["peak"].append(load["peak_rise_mb"])
        for dtype in dtypes:
            cache_dir = fresh_dir(scratch / "cache" / dtype)
            fill = fresh_process("cache", args.threads, dir=cache_dir, n=n, dtype=dtype, fill=True)
            read = fresh_process("cache", args.threads, dir=cache_dir, n=n, dtype=dtype, fill=False)
            shutil.rmtree(cache_dir)
            row += [f"{fill['disk_mb']:,.0f}", f"{per_1k(fill['s'], n):.2f} / {per_1k(read['s'], n):.2f}",
                    f"{read['index_mb']:.0f}", f"{max(fill['peak_anon_mb'], read['peak_anon_mb']):.0f}",
                    f"{read['peak_file_mb']:,.0f}"]
            if dtype == dtypes[0]:
                measured["fill"].append(fill["s"])
                measured["read"].append(read["s"])
                measured["disk"].append(fill["disk_mb"])
        (root / f"load_{n}.tsv").unlink()
        rows.append(row)
        print(f"  N={n:,} done", flush=True)
    header = ["N", "make data (s)", "load_dataset (s)", "filter + batches (s)", "kept", "load peak rise (MB)"]
    for dtype in dtypes:
        header += [f"cache {dtype}: disk (MB)", "fill / read s per 1k", "index RSS (MB)", "peak anon RSS (MB)",
                   "file-backed RSS (MB)"]
    print("\nloading and --onebest-cache (state dim 512)")
    print(table(rows, header))
    print(f"growth k (~N^k): load + batches {growth(sizes, measured['load'])}, load peak memory "
          f"{growth(sizes, measured['peak'])}, cache disk {growth(sizes, measured['disk'])}, cache fill "
          f"{growth(sizes, measured['fill'])}, cache read {growth(sizes, measured['read'])} ({dtypes[0]})")

    rows, epoch1, epoch2, gen = [], [], [], []
    write_speech_split(root, "gen_small", 20, seed=5)
    for n in train_sizes:
        split = f"train_{n}"
        write_speech_split(root, split, n)
        e1, e2 = stage1(models, root, split, scratch / "train" / split, args.threads)[:2]
        checkpoint = scratch / "train" / split / "checkpoint_last.pt"
        full = generate_seconds(models, root, split, checkpoint, scratch / "train" / split / "gen.log", args.threads)
        small = generate_seconds(models, root, "gen_small", checkpoint, scratch / "train" / split / "gen0.log",
                                 args.threads)
        epoch1.append(e1)
        epoch2.append(e2)
        gen.append(max(full - small, 1e-3))
        rows.append([f"{n:,}", f"{per_1k(e1, n):.2f}", f"{per_1k(e2, n):.2f}", f"{e2 / e1:.2f}",
                     f"{per_1k(gen[-1], n - 20):.2f}"])
    print("\nstage 1 (tiny cascade, decoder source, mlp exporter, --onebest-cache) and fairseq-generate (beam 5)")
    print(table(rows, ["N", "epoch 1 s per 1k", "epoch 2 s per 1k", "epoch 2 / epoch 1", "generate s per 1k"]))
    print(f"growth k: epoch 1 {growth(train_sizes, epoch1)}, epoch 2 {growth(train_sizes, epoch2)}, "
          f"generate {growth([n - 20 for n in train_sizes], gen)} (generate: time of N utterances minus "
          "that of 20, so start-up and model loading cancel)")

    ctc = fresh_process("ctc", args.threads, batches=args.ctc_batches, bsz=args.ctc_batch_size, beam=args.ctc_beam,
                        vocab=args.ctc_vocab)
    print(f"\nCTC prefix beam search, beam {args.ctc_beam}, vocabulary {args.ctc_vocab}, {args.ctc_batches} batches "
          f"of {args.ctc_batch_size} (MuST-C lengths / 4 frames)")
    print(table([["per utterance (tests/ctc_reference.py)", f"{ctc['one_by_one_s']:.2f}",
                  f"{per_1k(ctc['one_by_one_s'], ctc['utts']):.2f}", "1.00x"],
                 ["batched (CTCSearch)", f"{ctc['batched_s']:.2f}", f"{per_1k(ctc['batched_s'], ctc['utts']):.2f}",
                  f"**{ctc['one_by_one_s'] / ctc['batched_s']:.1f}x**"]],
                ["search", "seconds", "s per 1k utterances", "speed-up"]))
    print(f"same 1-best and segments in {ctc['same']}/{ctc['utts']} utterances")


if __name__ == "__main__":
    main()
