"""Training the toy's Hugging Face text models (chat_lm.py's instruct LM): length-sorted batches
of (ids, first target position) items, the loss on the target tokens only, Adam with warm-up then
inverse square root, the dev NLL, and the model saved with its tokenizer and training.json.
"""

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch


def detokenize(pieces: str) -> str:
    """A line of the corpus's text files (sentencepiece pieces) as text."""
    return "".join(pieces.split()).replace("\u2581", " ").strip()


def batches(items, max_tokens: int, rng: random.Random, sort_key=lambda item: (len(item[0]),)):
    """Length-sorted batches of at most max_tokens (padding included), in random order;
    ``sort_key(item)``: the item's size first, then any tie-breakers (before its index)."""
    order = sorted(range(len(items)), key=lambda i: (*sort_key(items[i]), i))
    out, current, longest = [], [], 0
    for i in order:
        n = sort_key(items[i])[0]
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
    """The options of a toy LM's training."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", help="the toy corpus dir (make_corpus --out)")
    parser.add_argument("--out", required=True, help="where the LM directory is saved")
    parser.add_argument("--updates", type=int, default=800)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-tokens", type=int, default=6000)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--dim", type=int, default=128)
    return parser
