"""fairseq-exporter-mt-vocab: a Hugging Face encoder-decoder MT's source pieces as a fairseq
dictionary (the target vocabulary of an ASR to couple to that MT with --hf-mt-checkpoint), and
the two data configs that split transcripts as the MT's tokenizer does (data/lm_pieces.py).

    fairseq-exporter-mt-vocab MT_DIR --out DATA/dict.mt.txt [--features-from DATA/config_asr.yaml]

With --features-from, beside the dictionary: ``config_asr_mt.yaml`` (the ASR's: the pieces as
its target vocabulary) and ``config_mt.yaml`` (the exporter task's: the pieces as the
transcripts' vocabulary), each with the feature settings of the given config (CMVN,
SpecAugment, audio root) and none of its vocabularies.
"""

import argparse
from pathlib import Path

from fairseq_exporter.data.lm_pieces import write_vocabulary

VOCABULARY_KEYS = ("vocab_filename", "bpe_tokenizer", "pre_tokenizer", "src_vocab_filename",
                   "src_bpe_tokenizer", "src_pre_tokenizer")


def write_configs(mt_dir: str, dictionary: Path, features_from: Path):
    import yaml

    if not features_from.is_file():
        raise FileNotFoundError(f"--features-from {features_from}: no such file")
    try:
        base = yaml.safe_load(features_from.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"--features-from {features_from}: not YAML ({err})") from err
    if not isinstance(base, dict):
        raise ValueError(f"--features-from {features_from}: not a fairseq data config (a YAML mapping)")
    features = {k: v for k, v in base.items() if k not in VOCABULARY_KEYS}
    split = {"bpe": "hf_tokenizer", "hf_tokenizer": str(Path(mt_dir).resolve())}
    written = []
    for name, config in (("config_asr_mt.yaml", {"vocab_filename": dictionary.name, "bpe_tokenizer": split}),
                         ("config_mt.yaml", {"src_vocab_filename": dictionary.name, "src_bpe_tokenizer": split})):
        path = dictionary.parent / name
        path.write_text(yaml.safe_dump({**features, **config}, sort_keys=False), encoding="utf-8")
        written.append(path)
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="fairseq-exporter-mt-vocab",
        description="Write a Hugging Face encoder-decoder MT's source pieces as a fairseq dictionary: the target "
                    "vocabulary of an ASR to couple to that MT (--hf-mt-checkpoint)")
    parser.add_argument("mt_dir", metavar="MT_DIR", help="local Hugging Face MT directory (OPUS-MT, NLLB, ...)")
    parser.add_argument("--out", type=Path, required=True, help="the dictionary file to write")
    parser.add_argument("--features-from", type=Path, metavar="YAML",
                        help="a data config whose feature settings the two written configs copy")
    args = parser.parse_args(argv)
    try:
        kept, skipped = write_vocabulary(args.mt_dir, args.out, "MT_DIR")
        configs = write_configs(args.mt_dir, args.out, args.features_from) if args.features_from else []
    except (ValueError, FileNotFoundError, ImportError) as err:
        raise SystemExit(f"fairseq-exporter-mt-vocab: {err}")
    print(f"wrote {kept} source pieces of {args.mt_dir} to {args.out}"
          + (f"; left out {skipped} pieces that hold whitespace" if skipped else ""))
    for path in configs:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
