"""Stage 2's memory per GPU with a frozen LLM, worked out term by term from the LLM's sizes
(a Hugging Face config.json, or a preset) and the batch a GPU takes. Not a measurement: the
counts behind the table in recipes/mustc/README.md ("Stage 2 with an 8B LLM on one 8-GPU
node"), which shows what this script writes with --out.

    python benchmarks/lm_memory.py --preset llama-3.1-8b --out benchmarks/results/lm_memory.md
    python benchmarks/lm_memory.py --lm-config /models/MyLLM/config.json --max-tokens 10000

The batch: --max-tokens speech frames per GPU step, in utterances of --frames-per-utterance
frames holding --transcript-pieces 1-best pieces and --answer-tokens translation tokens, after
a --template-tokens prompt (defaults: MuST-C En-De, ~6.3 s and ~20 words a segment, in Llama 3
pieces). The ASR is fairseq's s2t_transformer_s whose vocabulary is every LLM piece, with
--exporter-source ctc (a CTC head over that vocabulary) and the vocab exporter.
"""

import argparse
import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from toy_layout import table  # noqa: E402

PRESETS = {  # config.json fields of the LLMs the README works out
    "llama-3.1-8b": dict(vocab_size=128256, hidden_size=4096, num_hidden_layers=32, intermediate_size=14336,
                         num_attention_heads=32, num_key_value_heads=8, tie_word_embeddings=False),
}
FAIRSEQ_SPECIALS = 2  # the ASR dictionary: every LLM piece plus fairseq's <s>/<pad>/</s>/<unk> less the LLM's own
GB = 1e9


def llm_parameters(c: dict) -> int:
    """A Llama-architecture LLM's parameter count from its config."""
    d, f, layers, v = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
    kv = d * c.get("num_key_value_heads", c["num_attention_heads"]) // c["num_attention_heads"]
    per_layer = 2 * d * d + 2 * d * kv + 3 * d * f + 2 * d
    return v * d * (1 if c.get("tie_word_embeddings") else 2) + layers * per_layer + d


def layer_values_kept(c: dict) -> int:
    """Values a Llama layer keeps per position for its backward pass: the inputs of its two
    norms and of the attention and MLP projections, q, k, v, the attention output, and the
    MLP's gate, up, activation and product."""
    d, f = c["hidden_size"], c["intermediate_size"]
    kv = d * c.get("num_key_value_heads", c["num_attention_heads"]) // c["num_attention_heads"]
    return 6 * d + 2 * kv + 4 * f


def work_out(c: dict, args) -> list:
    d, layers, v = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"]
    v_asr = v + FAIRSEQ_SPECIALS
    b = args.lm_dtype_bytes
    utterances = args.max_tokens / args.frames_per_utterance
    positions = utterances * (args.template_tokens + args.transcript_pieces + args.answer_tokens)
    pieces, answers = utterances * args.transcript_pieces, utterances * args.answer_tokens
    ctc_frames = utterances * args.frames_per_utterance / 4 * args.padding
    asr = args.asr_body_params + 2 * v_asr * args.asr_dim  # + the decoder's output layer and the CTC head
    exporter = v_asr * (args.asr_dim + args.rank) + args.rank * d + args.asr_dim * args.exporter_hidden \
        + args.exporter_hidden * d + args.exporter_hidden + d
    kept = layer_values_kept(c) * b
    rows = [
        ("the LLM's weights (frozen: no gradient, no optimizer state)",
         f"{llm_parameters(c) / 1e9:.2f} B × {b} B", llm_parameters(c) * b),
        ("the LLM's rows of the ASR's symbols (L2 target, recovery; built once)", f"{v_asr:,} × {d:,} × {b} B",
         v_asr * d * b),
        ("ASR + vocab exporter (rank-{} correction), float32 with gradients and Adam".format(args.rank),
         f"({asr / 1e6:.0f} M + {exporter / 1e6:.0f} M) × 16 B", (asr + exporter) * 16),
        ("the LLM's activations kept for the backward pass", f"{positions:,.0f} × {layers} layers × "
         f"{kept / 1e3:.0f} KB", positions * layers * kept),
        ("  the same with --lm-gradient-checkpointing (layer inputs, one layer recomputed)",
         f"{positions:,.0f} × ({layers} × {d * b / 1e3:.1f} KB + {kept / 1e3:.0f} KB)",
         positions * (layers * d * b + kept)),
        ("answer logits, the float32 loss and its gradient", f"{answers:,.0f} × {v:,} × (2 + 4 + 4) B",
         answers * v * 10),
        ("the exporter's softmax over the ASR's symbols, and its gradient", f"{pieces:,.0f} × {v_asr:,} × 12 B",
         pieces * v_asr * 12),
        ("the ASR's CTC log-probabilities over its symbols, and their gradient", f"{ctc_frames:,.0f} frames × "
         f"{v_asr:,} × 12 B", ctc_frames * v_asr * 12),
    ]
    total = sum(r[2] for r in rows if not r[0].startswith("  ")) + args.asr_activations * GB
    with_checkpointing = total - rows[3][2] + rows[4][2]
    rows.append(("the ASR's other activations (as given)", "", args.asr_activations * GB))
    out = [(what, how, f"{n / GB:.1f}") for what, how, n in rows]
    out.append(("**total**, with / without --lm-gradient-checkpointing", "",
                f"**{with_checkpointing / GB:.0f} / {total / GB:.0f}**"))
    return out, dict(utterances=utterances, positions=positions, pieces=pieces, answers=answers)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--preset", choices=sorted(PRESETS))
    what.add_argument("--lm-config", type=Path, help="the LLM's config.json (Llama-architecture fields)")
    parser.add_argument("--lm-dtype-bytes", type=int, default=2, help="2: bfloat16 / float16")
    parser.add_argument("--max-tokens", type=float, default=20000, help="speech frames per GPU step")
    parser.add_argument("--frames-per-utterance", type=float, default=630)
    parser.add_argument("--padding", type=float, default=1.3, help="padded over real CTC frames in a batch")
    parser.add_argument("--template-tokens", type=float, default=12)
    parser.add_argument("--transcript-pieces", type=float, default=26)
    parser.add_argument("--answer-tokens", type=float, default=34)
    parser.add_argument("--asr-dim", type=int, default=256)
    parser.add_argument("--asr-body-params", type=float, default=26e6, help="the ASR less its two output layers")
    parser.add_argument("--asr-activations", type=float, default=1.0, help="GB")
    parser.add_argument("--rank", type=int, default=64, help="--exporter-table-rank")
    parser.add_argument("--exporter-hidden", type=int, default=512, help="--exporter-hidden-dim")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = parser.parse_args(argv)
    config = PRESETS[args.preset] if args.preset else json.loads(args.lm_config.read_text())
    missing = [k for k in ("vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size",
                           "num_attention_heads") if k not in config]
    if missing:
        parser.error(f"--lm-config {args.lm_config}: lacks {', '.join(missing)} (a Llama-architecture "
                     "config.json is what this works out)")
    rows, batch = work_out(config, args)
    text = (f"{batch['utterances']:.0f} utterances per GPU step: {batch['positions']:,.0f} LLM positions, "
            f"{batch['pieces']:,.0f} 1-best pieces, {batch['answers']:,.0f} answer tokens\n\n"
            + table([list(r) for r in rows], ["what", "how much", "GB"]))
    print(text)
    if args.out is not None:
        command = " ".join(["python benchmarks/lm_memory.py", *(argv if argv is not None else sys.argv[1:])])
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(f"`{command}`\n\n{text}\n")


if __name__ == "__main__":
    main()
