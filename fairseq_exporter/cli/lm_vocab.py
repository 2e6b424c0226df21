"""fairseq-exporter-lm-vocab: a causal LM's tokenizer pieces as a fairseq dictionary, the
target vocabulary of an ASR to couple to that LM (data/lm_pieces.py); and, with
``--prompt-fit``, how often transcripts written in such pieces are the pieces the LM's text
prompt holds (models/lm_prompt.py).

    fairseq-exporter-lm-vocab LM_DIR --out data/dict.lm.txt
    fairseq-exporter-lm-vocab LM_DIR --prompt-fit test.pieces [--lm-prompt TEMPLATE]
    fairseq-exporter-lm-vocab LM_DIR --prompt-fit test.pieces --lm-chat --lm-prompt MESSAGE [--lm-system-prompt TEXT]
"""

import argparse
from pathlib import Path

from fairseq_exporter.data.lm_pieces import write_vocabulary
from fairseq_exporter.models.lm_prompt import DEFAULT_PROMPT


def prompt_fit(lm_dir: str, pieces_file: Path, template_text: str, chat: bool = False, system=None) -> dict:
    """Counts over the transcripts of ``pieces_file`` (one a line, space-separated LM pieces,
    as the ASR writes them): in how many the prompt holds a piece merged with the template's
    text (Llama 3's ``.Ċ``), or a piece the tokenizer splits otherwise than the transcript."""
    from fairseq_exporter.data.lm_vocabulary import load_tokenizer
    from fairseq_exporter.models.lm_prompt import Chat, PromptTemplate, generation_stop_ids

    tokenizer = load_tokenizer(lm_dir, "LM_DIR")
    if chat:  # the ids the LM's generate() stops at, from its generation_config (no weights loaded)
        from transformers import AutoConfig, GenerationConfig

        try:
            generation = GenerationConfig.from_pretrained(lm_dir, local_files_only=True)
        except OSError:  # no generation_config.json: the model config's eos
            generation = GenerationConfig.from_model_config(AutoConfig.from_pretrained(lm_dir, local_files_only=True))
        chat = Chat(generation_stop_ids(generation), system, lm_dir)
    elif system is not None:
        raise ValueError("--lm-system-prompt is the system message of the LM's chat template: give it with --lm-chat")
    template = PromptTemplate(template_text, tokenizer, chat or None)
    vocab = tokenizer.get_vocab()
    counts = dict(transcripts=0, pieces=0, exact_pieces=0, edge_merges=0, inner_mismatches=0)
    for number, line in enumerate(pieces_file.read_text(encoding="utf-8").splitlines(), 1):
        pieces = line.split()
        missing = [p for p in pieces if p not in vocab]
        if missing:
            raise ValueError(f"{pieces_file} line {number}: {missing[0]!r} is not a piece of {lm_dir}")
        prompt = template.build(tuple(vocab[p] for p in pieces))
        counts["transcripts"] += 1
        counts["pieces"] += len(pieces)
        counts["exact_pieces"] += sum(1 for a in prompt.exact if a >= 0)
        counts["edge_merges"] += prompt.edge_merges > 0
        counts["inner_mismatches"] += prompt.inner_mismatches > 0
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="fairseq-exporter-lm-vocab",
        description="Write a causal LM's tokenizer pieces as a fairseq dictionary: the target vocabulary "
                    "of an ASR to couple to that LM (with bpe_tokenizer {bpe: hf_tokenizer, hf_tokenizer: LM_DIR})")
    parser.add_argument("lm_dir", metavar="LM_DIR", help="local Hugging Face model directory")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--out", type=Path, help="the dictionary file to write")
    what.add_argument("--prompt-fit", type=Path, metavar="PIECES",
                      help="a file of transcripts in LM pieces (one a line, space-separated): count those "
                           "whose pieces are not all the pieces of the LM's text prompt")
    parser.add_argument("--lm-prompt", default=DEFAULT_PROMPT,
                        help="with --prompt-fit: the template (with --lm-chat: the user's message)")
    parser.add_argument("--lm-chat", action="store_true",
                        help="with --prompt-fit: the prompt is the LM's chat template around --lm-prompt")
    parser.add_argument("--lm-system-prompt", default=None, help="with --lm-chat: a system message")
    args = parser.parse_args(argv)
    try:
        if args.prompt_fit is not None:
            c = prompt_fit(args.lm_dir, args.prompt_fit, args.lm_prompt, args.lm_chat, args.lm_system_prompt)
            n = max(c["transcripts"], 1)
            print(f"{c['transcripts']} transcripts, {c['pieces']} pieces: the text prompt holds "
                  f"{c['exact_pieces'] / max(c['pieces'], 1):.1%} of the pieces as themselves; "
                  f"a piece merged with the template's text in {c['edge_merges']} ({c['edge_merges'] / n:.1%}); "
                  f"a piece the tokenizer splits otherwise in {c['inner_mismatches']} "
                  f"({c['inner_mismatches'] / n:.1%})")
            return
        kept, skipped = write_vocabulary(args.lm_dir, args.out)
    except (ValueError, FileNotFoundError, ImportError) as err:
        raise SystemExit(f"fairseq-exporter-lm-vocab: {err}")
    print(f"wrote {kept} pieces of {args.lm_dir} to {args.out}"
          + (f"; left out {skipped} pieces that hold whitespace" if skipped else ""))


if __name__ == "__main__":
    main()
