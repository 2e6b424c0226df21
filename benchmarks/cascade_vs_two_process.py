"""The exporter cascade against what users run today: a two-process cascade, end to end,
wall clock, on the toy test set.

    python benchmarks/cascade_vs_two_process.py --work work/toy      # after `make demo`

Today: (1) ASR ``fairseq-generate --task speech_to_text`` (greedy, the recipe's length
limit), (2) take its detokenised 1-best (D- lines), re-encode it with the MT's
sentencepiece model, (3) MT ``fairseq-interactive`` (beam 5) on that text. Ours: one
``fairseq-generate --task speech_to_text_exporter --coupling onebest`` on the stage-1
checkpoint, whose ASR and MT are the frozen toy ASR and MT, so both must give the same
1-best and the same translations (the script counts the ones that differ). Every step
is its own process, timed from start to exit (so start-up and model loading count, as
they do for a user). Not a test: it prints a table.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from toy_layout import USER_DIR, ToyWork, fresh_dir, run_cli, table  # noqa: E402

from fairseq_exporter.generate_output import read_generate_output  # noqa: E402


def read_lines(path, field):
    """{id: text} of one kind of line in a generate output (fairseq_exporter.generate_output)."""
    return {i: getattr(r, field) for i, r in read_generate_output(path).items() if getattr(r, field) is not None}


def two_process(work, data, out, args, env):
    times = {}
    spm_model = work.st / "spm_en.model"
    times["ASR fairseq-generate"] = run_cli(
        ["fairseq_cli.generate", data, "--user-dir", USER_DIR, "--task", "speech_to_text",
         "--config-yaml", "config_asr.yaml", "--gen-subset", f"{args.subset}_asr",
         "--path", work.checkpoint("asr"), "--beam", "1", "--max-len-a", "0",
         "--max-len-b", args.onebest_max_len, "--max-tokens", args.max_tokens,
         "--required-batch-size-multiple", "1", "--results-path", out / "asr"], out / "asr.log", env)

    start = time.perf_counter()
    import sentencepiece as spm

    onebest = read_lines(out / "asr" / f"generate-{args.subset}_asr.txt", "detok_hypothesis")
    sp = spm.SentencePieceProcessor(model_file=str(spm_model)) if spm_model.is_file() else None  # else words
    order = sorted(onebest)
    with open(out / "onebest.spm.en", "w", encoding="utf-8") as f:
        for i in order:
            f.write((" ".join(sp.encode(onebest[i], out_type=str)) if sp else onebest[i]) + "\n")
    times["re-encode the 1-best (sentencepiece)"] = time.perf_counter() - start

    with open(out / "onebest.spm.en") as stdin, open(out / "mt.txt", "w") as stdout:
        import subprocess

        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "fairseq_cli.interactive", str(work.mt_bin), "--user-dir", USER_DIR,
             "--path", str(work.checkpoint("mt")), "--source-lang", "en", "--target-lang", "de",
             "--beam", str(args.beam), "--buffer-size", "100000", "--max-tokens", "4096",
             *(["--post-process", "sentencepiece"] if sp else [])], stdin=stdin, stdout=stdout, stderr=subprocess.DEVNULL, env=env)
        times["MT fairseq-interactive"] = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit("fairseq-interactive failed")
    translations = read_lines(out / "mt.txt", "detok_hypothesis")
    return times, onebest, {order[i]: t for i, t in translations.items()}


def exporter(work, data, out, args, env):
    took = run_cli(
        ["fairseq_cli.generate", data, "--user-dir", USER_DIR, "--task", "speech_to_text_exporter",
         "--config-yaml", "config_st.yaml", "--gen-subset", args.subset, "--path", work.checkpoint(args.model),
         "--coupling", "onebest", "--beam", args.beam, "--onebest-max-len", args.onebest_max_len,
         "--max-tokens", args.max_tokens, "--results-path", out / "exporter"], out / "exporter.log", env)
    path = out / "exporter" / f"generate-{args.subset}.txt"
    return took, read_lines(path, "asr"), read_lines(path, "detok_hypothesis")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="work/toy", help="the toy recipe's work dir")
    parser.add_argument("--model", default="stage1-decoder",
                        help="exporter checkpoint under --work, --exporter-source decoder, whose ASR and MT "
                             "are the toy ASR and MT (stage1-decoder): stock fairseq-generate decodes "
                             "with the attention decoder")
    parser.add_argument("--subset", default="test")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--onebest-max-len", type=int, default=40)
    parser.add_argument("--max-tokens", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of every process")
    parser.add_argument("--scratch", default="/tmp/fairseq_exporter_bench/two_process")
    args = parser.parse_args()

    work = ToyWork(args.work)
    scratch = fresh_dir(args.scratch)
    data = work.data_root(scratch)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    ours, theirs, parts = [], [], {}
    for r in range(args.rounds):
        out = fresh_dir(scratch / f"round{r}")
        # alternate which goes first, so neither always meets a cold page cache
        if r % 2 == 0:
            times, asr_1best, mt_out = two_process(work, data, out, args, env)
            took, our_1best, our_out = exporter(work, data, out, args, env)
        else:
            took, our_1best, our_out = exporter(work, data, out, args, env)
            times, asr_1best, mt_out = two_process(work, data, out, args, env)
        ours.append(took)
        theirs.append(sum(times.values()))
        for k, v in times.items():
            parts.setdefault(k, []).append(v)

    ids = sorted(asr_1best)
    same_1best = sum(asr_1best.get(i) == our_1best.get(i) for i in ids)
    same_mt = sum(mt_out.get(i) == our_out.get(i) for i in ids)
    them, us = statistics.median(theirs), statistics.median(ours)
    print(f"two-process cascade vs exporter cascade: {args.subset} ({len(ids)} utterances), greedy ASR, "
          f"MT beam {args.beam}, OMP_NUM_THREADS={args.threads}, median of {args.rounds} round(s), wall clock")
    rows = [[k, f"{statistics.median(v):.1f}", ""] for k, v in parts.items()]
    rows += [["two-process cascade, total", f"{them:.1f}", "1.00x"],
             ["exporter cascade: one fairseq-generate --coupling onebest", f"{us:.1f}", f"{them / us:.2f}x faster"]]
    print(table(rows, ["step", "seconds", "speed-up"]))
    print(f"same 1-best: {same_1best}/{len(ids)}; same translation: {same_mt}/{len(ids)} "
          f"(utterances in the exporter output: {len(our_1best)}); target: >= 1.5x faster")
    if same_1best < len(ids) or same_mt < len(ids):
        diff = [i for i in ids if asr_1best.get(i) != our_1best.get(i) or mt_out.get(i) != our_out.get(i)][:3]
        for i in diff:
            print(f"  {i}: 1-best {asr_1best.get(i)!r} vs {our_1best.get(i)!r}\n"
                  f"      translation {mt_out.get(i)!r} vs {our_out.get(i)!r}")


if __name__ == "__main__":
    main()
