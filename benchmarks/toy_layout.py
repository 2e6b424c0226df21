"""Where the toy study's models and data are, for the benchmark scripts.

``--work DIR`` is the toy recipe's work dir (``work/toy`` after ``make demo``:
``data/st``, ``mt-bin``, ``asr``, ``mt``, ``stage1``, ``stage2``, ``stage1-decoder``, ``stage2-decoder``); a copy with the S2T
data root at ``DIR/st`` instead of ``DIR/data/st`` works too. The recipe's config yamls
name absolute paths (``audio_root``, the sentencepiece models) that break when the work
dir moves, so each script runs on a scratch data root: links to the manifests and
dictionaries, and config yamls pointing back at the real data root.
"""

import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
USER_DIR = str(REPO / "fairseq_exporter")


class ToyWork:
    def __init__(self, work):
        self.work = Path(work).resolve()
        st = self.work / "data" / "st"
        self.st = st if st.is_dir() else self.work / "st"
        if not (self.st / "config_st.yaml").is_file():
            raise FileNotFoundError(f"no S2T data root under {self.work} (looked for data/st/config_st.yaml "
                                    "and st/config_st.yaml): pass --work, the toy recipe's work dir "
                                    "(run `make demo` first)")
        self.mt_bin = self.work / "mt-bin"

    def checkpoint(self, name: str) -> Path:
        path = self.work / name / "checkpoint_best.pt"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: run the toy recipe up to the stage that trains {name}")
        return path

    def data_root(self, scratch: Path, subsets=None) -> Path:
        """A data root under ``scratch`` for the real one. ``subsets``:
        {new_split: (split, n)}: a manifest of the first n utterances of split."""
        root = Path(scratch) / "data"
        root.mkdir(parents=True, exist_ok=True)
        for f in self.st.iterdir():
            if f.suffix in (".tsv", ".txt", ".model", ".vocab"):
                link = root / f.name
                if link.is_symlink() or link.exists():  # a scratch dir left by another --work
                    link.unlink()
                link.symlink_to(f)
        for name in ("config_st.yaml", "config_asr.yaml"):
            if (self.st / name).is_file():
                cfg = yaml.safe_load((self.st / name).read_text())
                cfg["audio_root"] = self.st.as_posix()
                for key in ("bpe_tokenizer", "src_bpe_tokenizer"):
                    if cfg.get(key, {}).get("sentencepiece_model"):
                        cfg[key]["sentencepiece_model"] = (self.st / Path(cfg[key]["sentencepiece_model"]).name).as_posix()
                (root / name).write_text(yaml.safe_dump(cfg, sort_keys=False))
        for new, (split, n) in (subsets or {}).items():
            lines = (self.st / f"{split}.tsv").read_text().splitlines(keepends=True)
            (root / f"{new}.tsv").write_text("".join(lines[: n + 1]))
        return root


def run_cli(args, log: Path, env=None):
    """One fairseq (or other) module in its own process; its wall time in seconds."""
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.run([sys.executable, "-m", *map(str, args)], stdout=out, stderr=subprocess.STDOUT,
                              env=env, cwd=REPO)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(Path(log).read_text()[-4000:])
        raise SystemExit(f"{args[0]} failed (log: {log})")
    return took


def table(rows, header):
    """A small markdown table."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "| " + " | ".join(f"{{:{w}}}" for w in widths) + " |"
    lines = [fmt.format(*header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += [fmt.format(*map(str, r)) for r in rows]
    return "\n".join(lines)


def fresh_dir(path) -> Path:
    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path
