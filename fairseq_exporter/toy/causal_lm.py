"""The toy study's decoder-only text model: a small Llama-architecture LM trained here on the
general-domain parallel text as a prompted translator, saved as a local Hugging Face
directory, then used frozen behind the exporter (``--lm-checkpoint``).

Its tokenizer holds the pieces of both of the toy's sentencepiece models and the prompt
template's, so the ASR's target vocabulary (the English pieces) consists of LM pieces. The
``{src}`` slot of each training prompt holds the English sentence in those pieces (what the
1-best cascade feeds the LM) as text, tokenized with the whole prompt; the German side is the
answer as the exporter task tokenizes translations, ending with the line break that ends it;
the loss is on the answer's tokens only.

    python -m fairseq_exporter.toy.causal_lm --data work/toy/data --out work/toy/lm --updates 800 --seed 1
"""

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch

from fairseq_exporter.models.lm_prompt import DEFAULT_PROMPT, PromptTemplate

SPECIALS = ("<unk>", "<s>", "</s>")
SCORED_OUT = -1e4  # a piece the first model does not have, inside its text


def detokenize(pieces: str) -> str:
    return "".join(pieces.split()).replace("\u2581", " ").strip()


def build_tokenizer(spm_models, template: str = DEFAULT_PROMPT, first_text=()):
    """A Unigram tokenizer over the pieces of the sentencepiece models and the template's
    words and characters; Llama-style <s> first. The first model's text (the English
    transcripts) is segmented as that model segments it, so the ASR's pieces are the pieces
    of the LM's text prompt: its pieces keep its scores, and every other piece found inside
    ``first_text`` (lines in the first model's pieces: the training text) is scored out."""
    import sentencepiece as spm
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    def pieces(path):
        model = spm.SentencePieceProcessor(model_file=str(path))
        return {model.id_to_piece(i): model.get_score(i) for i in range(model.get_piece_size())
                if not (model.is_control(i) or model.is_unknown(i))}

    scores = pieces(spm_models[0])
    inside = "\n".join("".join(line.split()) for line in first_text)

    def add(piece, score):
        if piece not in scores:
            scores[piece] = score + (SCORED_OUT if piece in inside else 0.0)

    for path in spm_models[1:]:
        for piece, score in pieces(path).items():
            add(piece, score)
    fixed = template.replace("{src}", " ")
    for word in fixed.split():
        add("\u2581" + word, 0.0)
        add(word, -1.0)
    for char in set(fixed.replace(" ", "")) | {"\u2581"}:
        add(char, -20.0)  # every template character has a piece: no <unk> in a prompt
    vocab = [(s, 0.0) for s in SPECIALS] + sorted(scores.items())
    tok = Tokenizer(models.Unigram(vocab, unk_id=0))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def examples(tokenizer, template: PromptTemplate, en_lines, de_lines):
    """(ids, first target position) per sentence pair: the text prompt of the English sentence
    (what the 1-best cascade feeds the LM) + the German answer as the LM writes it after the
    prompt, up to its line break."""
    vocab = tokenizer.get_vocab()
    out = []
    for en, de in zip(en_lines, de_lines):
        prompt = template.build(tuple(vocab[p] for p in en.split())).ids
        out.append((prompt + template.answer_ids(detokenize(de)), len(prompt)))
    return out


def batches(items, max_tokens: int, rng: random.Random):
    """Length-sorted batches of at most max_tokens (padding included), in random order."""
    order = sorted(range(len(items)), key=lambda i: (len(items[i][0]), i))
    out, current, longest = [], [], 0
    for i in order:
        n = len(items[i][0])
        if current and max(longest, n) * (len(current) + 1) > max_tokens:
            out.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, n)
    if current:
        out.append(current)
    rng.shuffle(out)
    return out


def collate(items, rows):
    width = max(len(items[i][0]) for i in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for r, i in enumerate(rows):
        seq, start = items[i]
        ids[r, :len(seq)] = torch.tensor(seq)
        mask[r, :len(seq)] = 1
        labels[r, start:len(seq)] = torch.tensor(seq[start:])
    return ids, mask, labels


def loss_of(model, ids, mask, labels, smoothing: float):
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), labels[:, 1:].reshape(-1),
                                             ignore_index=-100, label_smoothing=smoothing)


def fit(model, train, valid, args):
    """Train ``model`` on ``train`` ((ids, first target position) items) for ``args.updates``
    (Adam, warm-up then inverse square root, clipped, label smoothing 0.1), printing json lines;
    then its dev NLL per target token on ``valid``. Returns (updates, epochs, dev NLL, start time)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.98))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / args.warmup, math.sqrt(args.warmup / (step + 1))))
    rng = random.Random(args.seed)
    started, update, epoch = time.time(), 0, 0
    model.train()
    while update < args.updates:
        epoch += 1
        for rows in batches(train, args.max_tokens, rng):
            loss = loss_of(model, *collate(train, rows), smoothing=0.1)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            update += 1
            if update % 100 == 0 or update == args.updates:
                print(json.dumps({"epoch": epoch, "update": update, "train_loss": round(float(loss.detach()), 4),
                                  "seconds": round(time.time() - started)}), flush=True)
            if update >= args.updates:
                break
    model.eval()
    with torch.no_grad():
        total = n = 0
        for rows in batches(valid, args.max_tokens, random.Random(0)):
            ids, mask, labels = collate(valid, rows)
            count = int(labels[:, 1:].ne(-100).sum())
            total += float(loss_of(model, ids, mask, labels, smoothing=0.0)) * count
            n += count
    return update, epoch, round(total / n, 4), started


def fit_and_save(model, tokenizer, train, valid, args, out: Path, **facts):
    """fit(), then the LM and its tokenizer saved under ``out`` with training.json (the summary
    line it prints: updates, dev NLL, parameters, ``facts``, seconds, the options)."""
    update, epoch, valid_nll, started = fit(model, train, valid, args)
    summary = {"updates": update, "epochs": epoch, "valid_nll": valid_nll, "parameters": sum(
        p.numel() for p in model.parameters()), **facts, "seconds": round(time.time() - started), **vars(args)}
    print(json.dumps(summary), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "training.json").write_text(json.dumps(summary, indent=1) + "\n")


def training_parser(description: str) -> argparse.ArgumentParser:
    """The options of a toy LM's training (this module's and chat_lm.py's)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", required=True, help="the toy corpus dir (make_corpus --out)")
    parser.add_argument("--out", required=True, help="where the LM directory is saved")
    parser.add_argument("--updates", type=int, default=800)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-tokens", type=int, default=6000)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--dim", type=int, default=128)
    return parser


def main(argv=None):
    args = training_parser(__doc__.split("\n\n")[0]).parse_args(argv)
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the recipe's log shows the json lines
    data, out = Path(args.data), Path(args.out)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    english = [line for split in ("general", "task") for line in
               (data / "text" / f"{split}.train.en").read_text().splitlines()]
    tokenizer = build_tokenizer([data / "st" / "spm_en.model", data / "st" / "spm_de.model"], first_text=english)
    template = PromptTemplate(DEFAULT_PROMPT, tokenizer)

    def read(split):
        return examples(tokenizer, template, *((data / "text" / f"general.{split}.{lang}").read_text().splitlines()
                                               for lang in ("en", "de")))

    train, valid = read("train"), read("valid")
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=args.dim, intermediate_size=4 * args.dim,
                         num_hidden_layers=args.layers, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=256, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(config)
    fit_and_save(model, tokenizer, train, valid, args, out)


if __name__ == "__main__":
    main()
