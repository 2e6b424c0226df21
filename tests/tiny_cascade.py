"""A tiny ASR + MT cascade built with the stock fairseq CLIs, for tests.

The "speech" is synthetic: each word is a fixed random 80-dim fbank pattern held for a
few frames, plus noise, so a 1-layer s2t_transformer learns something in a few dozen
updates. The ASR is joint CTC/attention (``--ctc-weight``), so both exporter sources
run. Word-level vocabularies (no bpe) keep it fast; the real-speech path is tested
through the toy recipe."""

import random
import subprocess
import sys
from pathlib import Path

import numpy as np

EN = "the a cat dog sees likes big small red blue house tree river bank old man woman".split()
DE = {"the": "der", "a": "ein", "cat": "katze", "dog": "hund", "sees": "sieht", "likes": "mag",
      "big": "gross", "small": "klein", "red": "rot", "blue": "blau", "house": "haus",
      "tree": "baum", "river": "fluss", "bank": "bank", "old": "alt", "man": "mann", "woman": "frau"}


def sentences(n, seed):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(EN) for _ in range(rng.randint(2, 6))]
        out.append((" ".join(words), " ".join(DE[w] for w in reversed(words))))
    return out


def finished_then_aborted(module, proc):
    """fairseq-train logged "done training" (its last checkpoint is saved) and then aborted at
    interpreter exit (134, "terminate called without an active exception"): the run's work is
    complete. Anything else that is not exit 0 is a failure."""
    return module == "fairseq_cli.train" and proc.returncode in (134, -6) and \
        "done training in" in proc.stdout + proc.stderr


def weights(path):
    """A checkpoint's model weights, without what official fairseq 0.12.2 stores beside
    them: an uninitialized dummy buffer and fused copies of encoder-layer weights."""
    import torch

    from fairseq_exporter.models.pretrained import FUSED_COPIES

    derived = ("._float_tensor",) + tuple(f".{name}" for name in FUSED_COPIES)
    return {k: v for k, v in torch.load(path, map_location="cpu")["model"].items() if not k.endswith(derived)}


def run(args, cwd=None):
    """Run a fairseq CLI module with this interpreter; fail with its output."""
    if args[0] == "fairseq_cli.train" and "--data-buffer-size" not in args:
        args = [*args, "--data-buffer-size", "0"]  # no prefetch thread left alive at exit
    proc = subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0 and not finished_then_aborted(args[0], proc):
        raise AssertionError(f"{' '.join(args[:2])} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def write_features(root: Path, split_rows, seed=0):
    rng = np.random.RandomState(seed)
    patterns = {w: rng.randn(80).astype("float32") * 2 for w in EN}
    feats = root / "feats"
    feats.mkdir(parents=True, exist_ok=True)
    rows = {}
    for split, pairs in split_rows.items():
        rows[split] = []
        for i, (en, de) in enumerate(pairs):
            frames = [np.tile(patterns[w], (8, 1)) for w in en.split()]
            x = np.concatenate(frames) + 0.3 * rng.randn(8 * len(en.split()), 80).astype("float32")
            path = feats / f"{split}_{i}.npy"
            np.save(path, x.astype("float32"))
            rows[split].append((f"{split}_{i}", path.as_posix(), len(x), en, de))
    return rows


def write_manifest(path: Path, rows, target="tgt"):
    with open(path, "w") as f:
        f.write("id\taudio\tn_frames\tsrc_text\ttgt_text\tspeaker\n")
        for uid, audio, n, en, de in rows:
            f.write(f"{uid}\t{audio}\t{n}\t{en}\t{de if target == 'tgt' else en}\tspk0\n")


def build(root: Path, mt_updates=60, asr_updates=120):
    """Data, MT checkpoint and ASR checkpoint under ``root``; returns a dict of paths."""
    root.mkdir(parents=True, exist_ok=True)
    text, s2t, mt_bin = root / "text", root / "s2t", root / "mt-bin"
    for d in (text, s2t):
        d.mkdir(exist_ok=True)
    pairs = {"train": sentences(200, 1), "dev": sentences(20, 2), "test": sentences(12, 3)}
    for split, name in (("train", "train"), ("dev", "valid")):
        (text / f"{name}.en").write_text("\n".join(e for e, _ in pairs[split]) + "\n")
        (text / f"{name}.de").write_text("\n".join(d for _, d in pairs[split]) + "\n")
    run(["fairseq_cli.preprocess", "--source-lang", "en", "--target-lang", "de",
         "--trainpref", str(text / "train"), "--validpref", str(text / "valid"),
         "--destdir", str(mt_bin), "--workers", "1"])
    for lang in ("en", "de"):
        (s2t / f"dict.{lang}.txt").write_text((mt_bin / f"dict.{lang}.txt").read_text())
    rows = write_features(s2t, pairs)
    for split in pairs:
        write_manifest(s2t / f"{split}.tsv", rows[split])
        write_manifest(s2t / f"{split}_asr.tsv", rows[split], target="src")
    (s2t / "config_asr.yaml").write_text("input_channels: 1\ninput_feat_per_channel: 80\n"
                                         "vocab_filename: dict.en.txt\n")
    (s2t / "config_st.yaml").write_text("input_channels: 1\ninput_feat_per_channel: 80\n"
                                        "vocab_filename: dict.de.txt\nsrc_vocab_filename: dict.en.txt\n")
    common = ["--optimizer", "adam", "--lr", "0.003", "--lr-scheduler", "inverse_sqrt",
              "--warmup-updates", "10", "--no-epoch-checkpoints", "--no-progress-bar", "--log-format", "simple",
              "--seed", "1", "--num-workers", "0", "--save-interval-updates", "0"]
    mt_dir = root / "mt"
    run(["fairseq_cli.train", str(mt_bin), "--task", "translation", "--arch", "transformer",
         "--encoder-layers", "1", "--decoder-layers", "1", "--encoder-embed-dim", "32",
         "--decoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim", "64",
         "--encoder-attention-heads", "2", "--decoder-attention-heads", "2", "--dropout", "0.1",
         "--criterion", "label_smoothed_cross_entropy", "--max-tokens", "2000",
         "--max-update", str(mt_updates), "--save-dir", str(mt_dir), *common])
    asr_dir = root / "asr"
    run(["fairseq_cli.train", str(s2t), "--task", "speech_to_text", "--config-yaml", "config_asr.yaml",
         "--train-subset", "train_asr", "--valid-subset", "dev_asr", "--arch", "s2t_transformer",
         "--encoder-layers", "1", "--decoder-layers", "1", "--encoder-embed-dim", "32",
         "--decoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim", "64",
         "--encoder-attention-heads", "2", "--decoder-attention-heads", "2", "--conv-channels", "32",
         "--dropout", "0.1", "--criterion", "label_smoothed_cross_entropy_with_ctc", "--ctc-weight", "0.3",
         "--max-tokens", "4000",
         "--max-update", str(asr_updates), "--save-dir", str(asr_dir), *common])
    return {"root": root, "s2t": s2t, "mt_bin": mt_bin,
            "mt": mt_dir / "checkpoint_best.pt", "asr": asr_dir / "checkpoint_best.pt"}


if __name__ == "__main__":
    print(build(Path(sys.argv[1])))
