"""fairseq-exporter-lm-vocab: a causal LM's tokenizer pieces as a fairseq dictionary, the
target vocabulary of an ASR to couple to that LM (data/lm_pieces.py).

    fairseq-exporter-lm-vocab LM_DIR --out data/dict.lm.txt
"""

import argparse
from pathlib import Path

from fairseq_exporter.data.lm_pieces import write_vocabulary


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="fairseq-exporter-lm-vocab",
        description="Write a causal LM's tokenizer pieces as a fairseq dictionary: the target vocabulary "
                    "of an ASR to couple to that LM (with bpe_tokenizer {bpe: hf_tokenizer, hf_tokenizer: LM_DIR})")
    parser.add_argument("lm_dir", metavar="LM_DIR", help="local Hugging Face model directory")
    parser.add_argument("--out", required=True, type=Path, help="the dictionary file to write")
    args = parser.parse_args(argv)
    try:
        kept, skipped = write_vocabulary(args.lm_dir, args.out)
    except (ValueError, FileNotFoundError, ImportError) as err:
        raise SystemExit(f"fairseq-exporter-lm-vocab: {err}")
    print(f"wrote {kept} pieces of {args.lm_dir} to {args.out}"
          + (f"; left out {skipped} pieces that hold whitespace" if skipped else ""))


if __name__ == "__main__":
    main()
