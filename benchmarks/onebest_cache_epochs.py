"""Stage 1 with the ASR frozen: what epoch 2 costs against epoch 1 with ``--onebest-cache``
(epoch 1 computes and stores each utterance's 1-best and token states, epoch 2 reads
them), and without it.

    python benchmarks/onebest_cache_epochs.py --work work/toy      # after `make demo`

Each run is the toy recipe's stage-1 ``fairseq-train`` (mlp exporter, ASR and MT
frozen, L2 only) for two epochs over the first --utterances of the training set, without
validation or checkpoints; an epoch's time is that of fairseq-train's one-epoch
function (``fairseq_cli.train.train``), timed inside the fairseq-train process. Speech features are still read every
epoch (fairseq's data loading). Not a test: it prints a table.
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from toy_layout import USER_DIR, ToyWork, fresh_dir, table  # noqa: E402


def timed_fairseq_train(argv):
    """fairseq-train, printing how long each epoch (fairseq_cli.train.train) takes."""
    import fairseq_cli.train as fairseq_train

    one_epoch = fairseq_train.train

    def timed(*args, **kwargs):
        start = time.perf_counter()
        out = one_epoch(*args, **kwargs)
        print(f"EPOCH_SECONDS {time.perf_counter() - start:.3f}", flush=True)
        return out

    fairseq_train.train = timed
    sys.argv = ["fairseq-train", *argv]
    fairseq_train.cli_main()


def epoch_seconds(log: Path):
    return [float(line.split()[1]) for line in log.read_text().splitlines() if line.startswith("EPOCH_SECONDS")]


def train(work, data, out, args, env, cache):
    cli = [data, "--user-dir", USER_DIR, "--task", "speech_to_text_exporter",
           "--config-yaml", "config_st.yaml", "--train-subset", "train_bench", "--valid-subset", "dev",
           "--arch", "exporter", "--asr-checkpoint", work.checkpoint("asr"), "--mt-checkpoint", work.checkpoint("mt"),
           "--asr-dict", work.st / "dict.en.txt", "--mt-data", work.mt_bin,
           "--exporter-type", "mlp", "--exporter-hidden-dim", "512", "--freeze-asr", "--freeze-mt",
           "--criterion", "exporter", "--ast-weight", "0", "--l2-weight", "1",
           "--optimizer", "adam", "--lr", "3e-3", "--max-tokens", args.max_tokens, "--max-epoch", "2",
           "--onebest-max-len", args.onebest_max_len, "--disable-validation", "--no-save",
           "--no-progress-bar", "--log-format", "json", "--log-interval", "1000", "--seed", "1",
           "--num-workers", "0", "--save-dir", out / "ckpt"]
    if cache:
        cli += ["--onebest-cache", out / "onebest-cache"]
    log = out / ("train-cache.log" if cache else "train-plain.log")
    with open(log, "w") as out_log:
        proc = subprocess.run([sys.executable, __file__, "--fairseq-train", *map(str, cli)], stdout=out_log,
                              stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        sys.stderr.write(log.read_text()[-4000:])
        raise SystemExit(f"fairseq-train failed (log: {log})")
    return epoch_seconds(log)


def main():
    if sys.argv[1:2] == ["--fairseq-train"]:
        return timed_fairseq_train(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="work/toy", help="the toy recipe's work dir")
    parser.add_argument("--utterances", type=int, default=1000, help="first N utterances of train.tsv")
    parser.add_argument("--max-tokens", type=int, default=20000)
    parser.add_argument("--onebest-max-len", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS")
    parser.add_argument("--scratch", default="/tmp/fairseq_exporter_bench/onebest_cache")
    args = parser.parse_args()

    work = ToyWork(args.work)
    scratch = fresh_dir(args.scratch)
    data = work.data_root(scratch, subsets={"train_bench": ("train", args.utterances)})
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    rows = []
    for cache in (True, False):
        e1, e2 = train(work, data, scratch, args, env, cache)[:2]
        rows.append([f"stage 1{', --onebest-cache' if cache else ', no cache'}", f"{e1:.1f}", f"{e2:.1f}",
                     f"{e2 / e1:.2f}"])
    print(f"stage-1 epochs (ASR and MT frozen, mlp exporter, L2): first {args.utterances} training "
          f"utterances, --max-tokens {args.max_tokens}, OMP_NUM_THREADS={args.threads}")
    print(table(rows, ["run", "epoch 1 (s)", "epoch 2 (s)", "epoch 2 / epoch 1"]))


if __name__ == "__main__":
    main()
