"""fairseq-exporter-asr-encoder: a trained ASR's speech encoder as the starting point of an ASR on
another dictionary (an LLM's pieces, fairseq-exporter-lm-vocab), for fairseq's
``--load-pretrained-encoder-from`` (as fairseq's MuST-C ST recipe starts from its ASR's encoder).

    fairseq-exporter-asr-encoder ASR_CKPT --dict dict.llm.txt --out asr-encoder.pt [--seed 1]

The encoder's weights are kept as they are; its CTC projection has one row per piece of the old
dictionary, so it is initialised afresh for DICT (as s2t_transformer builds it) and trains with
the new ASR. fairseq loads the component strictly, so the file holds every encoder weight the
new model has; it only warns and starts from scratch when the file is missing.
"""

import argparse
from pathlib import Path

import torch

CTC_PROJECTION = "encoder.ctc_proj."


def dictionary_size(path: Path) -> int:
    """len() of the fairseq Dictionary the speech_to_text task builds from ``path``."""
    from fairseq.data import Dictionary

    if not path.is_file():
        raise FileNotFoundError(f"--dict {path}: no such file")
    return len(Dictionary.load(str(path)))


def encoder_checkpoint(asr_checkpoint: Path, dictionary: Path, seed: int) -> tuple[dict, int, int]:
    """The checkpoint ``--load-pretrained-encoder-from`` reads (its config and the encoder's weights,
    with a fresh CTC projection for ``dictionary``), the number of weights kept as they were, and
    the dictionary's size."""
    if not asr_checkpoint.is_file():
        raise FileNotFoundError(f"{asr_checkpoint}: no such ASR checkpoint")
    size = dictionary_size(dictionary)
    # torch's safe loading, with the plugin's allowlist of what fairseq checkpoints hold (compat.py)
    state = torch.load(asr_checkpoint, map_location="cpu")
    model = state.get("model") if isinstance(state, dict) else None
    if not model or not any(k.startswith("encoder.") for k in model):
        raise ValueError(f"{asr_checkpoint}: not a fairseq checkpoint of an encoder-decoder ASR "
                         "(no encoder.* weights in its 'model')")
    if "encoder.embed_tokens.weight" in model:
        raise ValueError(f"{asr_checkpoint}: its encoder reads tokens (encoder.embed_tokens), not speech: "
                         "give the ASR's checkpoint")
    encoder = {k: v for k, v in model.items() if k.startswith("encoder.") and not k.startswith(CTC_PROJECTION)}
    if CTC_PROJECTION + "weight" in model:  # nn.Linear(encoder dim, len(dictionary)), as the model builds it
        generator = torch.Generator().manual_seed(seed)
        width = model[CTC_PROJECTION + "weight"].shape[1]
        bound = width ** -0.5  # torch.nn.Linear's default: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias
        encoder[CTC_PROJECTION + "weight"] = (torch.rand(size, width, generator=generator) * 2 - 1) * bound
        encoder[CTC_PROJECTION + "bias"] = (torch.rand(size, generator=generator) * 2 - 1) * bound
    kept = len([k for k in encoder if not k.startswith(CTC_PROJECTION)])
    out = {k: v for k, v in state.items() if k not in ("model", "last_optimizer_state")}
    out["model"] = encoder
    return out, kept, size


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="fairseq-exporter-asr-encoder",
        description="Write a trained ASR's speech encoder, with a fresh CTC projection for another "
                    "dictionary, for fairseq-train --load-pretrained-encoder-from")
    parser.add_argument("asr_checkpoint", type=Path, metavar="ASR_CKPT", help="a trained s2t_transformer checkpoint")
    parser.add_argument("--dict", type=Path, required=True, dest="dictionary",
                        help="the new ASR's target dictionary (its vocab_filename)")
    parser.add_argument("--out", type=Path, required=True, help="the file to write")
    parser.add_argument("--seed", type=int, default=1, help="seed of the fresh CTC projection")
    args = parser.parse_args(argv)
    try:
        state, kept, size = encoder_checkpoint(args.asr_checkpoint, args.dictionary, args.seed)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"fairseq-exporter-asr-encoder: {err}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, args.out)
    fresh = " and a fresh CTC projection" if CTC_PROJECTION + "weight" in state["model"] else ""
    print(f"wrote {kept} encoder weights of {args.asr_checkpoint}{fresh} "
          f"({size} symbols of {args.dictionary}) to {args.out}")


if __name__ == "__main__":
    main()
