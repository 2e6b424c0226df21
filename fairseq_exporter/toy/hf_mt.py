"""The toy study's Hugging Face encoder-decoder MT: a small Marian-architecture model
(``MarianMTModel``) trained here from scratch on the general-domain parallel text, saved as a
local Hugging Face directory with a real ``MarianTokenizer`` laid out like OPUS-MT's, then used
frozen behind the exporter (``--hf-mt-checkpoint``).

The tokenizer's ``source.spm`` is the toy's English sentencepiece model (the one the ASR's
transcripts are split with), so every ASR symbol is an MT piece and ``tokenizer(transcript)``
splits a transcript as the ASR writes it; ``target.spm`` is the German model; ``vocab.json``
is joint: ``</s>`` 0, ``<unk>`` 1, the pieces of both models (deduplicated), ``<pad>`` last
(Marian's decoder start). The training pairs are the fairseq MT's (``text/general.*``, stored
in sentencepiece pieces), detokenized and read as a user's text is read: the source as
``tokenizer(en)``, the target as ``tokenizer(text_target=de)`` (the same pieces again, ``</s>``
last). Teacher-forced cross-entropy with label smoothing 0.1, Adam with an inverse-sqrt
schedule, batches of ``--max-tokens`` as fairseq counts them; validated every ``--valid-every``
updates (a JSON line each, its ``valid_nll`` in nats per target token, ``</s>`` included), and
the weights of the best valid loss are saved (``save_pretrained``: safetensors, with the
tokenizer's files and ``training.json``, the last JSON line printed). The same seed and thread
count give the same model, bit for bit.

    python -m fairseq_exporter.toy.hf_mt --data work/toy/data --out work/toy/hf-mt --updates 600 --seed 1
"""

import argparse
import copy
import json
import math
import random
import tempfile
import time
import warnings
from pathlib import Path

import torch

from fairseq_exporter.toy.lm_training import batches as lm_batches, detokenize

MAX_POSITIONS = 256


def spm_pieces(path):
    """The pieces of a sentencepiece model in id order, without its control symbols (<s>,
    </s>, <pad>) and <unk>; user-defined pieces (whole words) are kept."""
    import sentencepiece as spm

    model = spm.SentencePieceProcessor(model_file=str(path))
    return [model.id_to_piece(i) for i in range(model.get_piece_size())
            if not (model.is_control(i) or model.is_unknown(i))]


def write_vocab(source_spm, target_spm, path: Path) -> dict:
    """OPUS-MT's joint vocabulary: </s> 0, <unk> 1, the pieces of both models, <pad> last."""
    pieces = list(dict.fromkeys(spm_pieces(source_spm) + spm_pieces(target_spm)))
    vocab = {token: i for i, token in enumerate(["</s>", "<unk>", *pieces, "<pad>"])}
    path.write_text(json.dumps(vocab, indent=2, ensure_ascii=False) + "\n")
    return vocab


def build_tokenizer(source_spm, target_spm, stage: Path):
    """A MarianTokenizer over the two sentencepiece models (copied as source.spm and
    target.spm when it is saved) and a joint vocab.json written under ``stage``."""
    from transformers import MarianTokenizer

    write_vocab(source_spm, target_spm, stage / "vocab.json")
    with warnings.catch_warnings():  # its Moses punctuation normalizer is never called when it tokenizes
        warnings.filterwarnings("ignore", message="Recommended: pip install sacremoses")
        return MarianTokenizer(str(source_spm), str(target_spm), str(stage / "vocab.json"), source_lang="en",
                               target_lang="de", model_max_length=MAX_POSITIONS)


def build_model(tokenizer, layers: int, dim: int, dropout: float = 0.1):
    """A Marian model as OPUS-MT's are configured (scaled, shared and tied embeddings, swish,
    post-norm, sinusoidal positions; decoder start = pad), of the given size. Its weights are
    drawn with std dim**-0.5, as fairseq draws a transformer's embeddings, not Marian's
    default 0.02: scaled by sqrt(dim), 0.02 makes the token embeddings a fifth of the
    sinusoidal positions' size, and the model learned to translate slowly (after 300 updates
    on the full-scale toy text it wrote one sentence, whatever the source)."""
    from transformers import GenerationConfig, MarianConfig, MarianMTModel

    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    config = MarianConfig(vocab_size=len(tokenizer), decoder_vocab_size=len(tokenizer), d_model=dim,
                          encoder_layers=layers, decoder_layers=layers, encoder_attention_heads=4,
                          decoder_attention_heads=4, encoder_ffn_dim=4 * dim, decoder_ffn_dim=4 * dim,
                          max_position_embeddings=MAX_POSITIONS, activation_function="swish", dropout=dropout,
                          attention_dropout=0.0, activation_dropout=0.0, decoder_start_token_id=pad,
                          pad_token_id=pad, eos_token_id=eos, forced_eos_token_id=eos, bos_token_id=None,
                          scale_embedding=True, share_encoder_decoder_embeddings=True, tie_word_embeddings=True,
                          init_std=dim ** -0.5)
    model = MarianMTModel(config)
    # as Helsinki-NLP/opus-mt-*'s generation_config.json (max_length: the positions there are)
    model.generation_config = GenerationConfig(bad_words_ids=[[pad]], num_beams=4, max_length=MAX_POSITIONS,
                                               decoder_start_token_id=pad, pad_token_id=pad, eos_token_id=eos,
                                               forced_eos_token_id=eos)
    return model


def read_pairs(tokenizer, en_lines, de_lines):
    """(source ids, target ids) per sentence pair of the text files (sentencepiece pieces),
    detokenized and tokenized as a user's text: ``tokenizer(en)``, ``tokenizer(text_target=de)``.
    Also the number of pairs whose tokens differ from the file's pieces, and of pairs left out
    for being longer than the model's positions."""
    en_text = [detokenize(line) for line in en_lines]
    de_text = [detokenize(line) for line in de_lines]
    src = tokenizer(en_text, add_special_tokens=True)["input_ids"]
    tgt = tokenizer(text_target=de_text, add_special_tokens=True)["input_ids"]
    vocab = tokenizer.get_vocab()  # joint: the source's and the target's pieces
    resegmented = sum(s[:-1] != [vocab.get(p) for p in line.split()] or
                      t[:-1] != [vocab.get(p) for p in de.split()]
                      for s, t, line, de in zip(src, tgt, en_lines, de_lines))
    pairs = [(s, t) for s, t in zip(src, tgt) if len(s) <= MAX_POSITIONS and len(t) <= MAX_POSITIONS]
    return pairs, resegmented, len(src) - len(pairs)


def batches(pairs, max_tokens: int, rng: random.Random):
    """Length-sorted batches of at most max_tokens (the longer side, padding included), as
    fairseq's --max-tokens counts them, in random order."""
    return lm_batches(pairs, max_tokens, rng, sort_key=lambda pair: (max(len(pair[0]), len(pair[1])), len(pair[0])))


def collate(pairs, rows, pad: int, start: int):
    """input_ids, attention_mask, decoder_input_ids (the target after the decoder start
    token), labels (-100 at padding)."""
    n_src = max(len(pairs[i][0]) for i in rows)
    n_tgt = max(len(pairs[i][1]) for i in rows)
    ids = torch.full((len(rows), n_src), pad, dtype=torch.long)
    mask = torch.zeros(len(rows), n_src, dtype=torch.long)
    dec = torch.full((len(rows), n_tgt), pad, dtype=torch.long)
    labels = torch.full((len(rows), n_tgt), -100, dtype=torch.long)
    for r, i in enumerate(rows):
        src, tgt = pairs[i]
        ids[r, :len(src)] = torch.tensor(src)
        mask[r, :len(src)] = 1
        dec[r, 0] = start
        dec[r, 1:len(tgt)] = torch.tensor(tgt[:-1])
        labels[r, :len(tgt)] = torch.tensor(tgt)
    return ids, mask, dec, labels


def loss_of(model, ids, mask, dec, labels, smoothing: float):
    """Mean token cross-entropy (label-smoothed when smoothing > 0) and the token count."""
    logits = model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1),
                                             ignore_index=-100, label_smoothing=smoothing)
    return loss, int(labels.ne(-100).sum())


def valid_nll(model, pairs, max_tokens: int, pad: int, start: int) -> float:
    """Per-token negative log-likelihood (nats) of the valid pairs, teacher forced, no dropout."""
    model.eval()
    total = n = 0
    with torch.no_grad():
        for rows in batches(pairs, max_tokens, random.Random(0)):
            loss, count = loss_of(model, *collate(pairs, rows, pad, start), smoothing=0.0)
            total += float(loss) * count
            n += count
    model.train()
    return total / n


def check_saved(out: Path, model, tokenizer, en_lines) -> None:
    """The saved directory loads back by the Auto classes (local files only) as the same
    tokenizer and the same model."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Recommended: pip install sacremoses")
        loaded_tok = AutoTokenizer.from_pretrained(str(out), local_files_only=True)
    loaded = AutoModelForSeq2SeqLM.from_pretrained(str(out), local_files_only=True).eval()
    if type(loaded_tok).__name__ != "MarianTokenizer" or type(loaded).__name__ != "MarianMTModel":
        raise SystemExit(f"{out}: loads as {type(loaded_tok).__name__} / {type(loaded).__name__}")
    texts = [detokenize(line) for line in en_lines[:8]]
    if loaded_tok(texts)["input_ids"] != tokenizer(texts)["input_ids"]:
        raise SystemExit(f"{out}: the saved tokenizer splits text otherwise")
    inputs = tokenizer(texts, return_tensors="pt", padding=True)
    model.eval()
    with torch.no_grad():
        if not torch.equal(model.generate(**inputs, num_beams=1, max_length=24),
                           loaded.generate(**inputs, num_beams=1, max_length=24)):
            raise SystemExit(f"{out}: the saved model translates otherwise")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="the toy corpus dir (make_corpus --out)")
    parser.add_argument("--out", required=True, help="where the MT directory is saved")
    parser.add_argument("--updates", type=int, default=600)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--valid-every", type=int, default=100)
    parser.add_argument("--layers", type=int, default=3, help="encoder layers and decoder layers")
    parser.add_argument("--dim", type=int, default=128)
    args = parser.parse_args(argv)
    if args.dim % 8:
        parser.error(f"--dim {args.dim}: a multiple of 8 (4 attention heads of an even size)")
    if args.valid_every < 1 or args.updates < 1:
        parser.error("--updates and --valid-every are positive")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the recipe's log shows the json lines
    data, out = Path(args.data), Path(args.out)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    started = time.time()
    with tempfile.TemporaryDirectory() as stage:
        tokenizer = build_tokenizer(data / "st" / "spm_en.model", data / "st" / "spm_de.model", Path(stage))
        pad, start = tokenizer.pad_token_id, tokenizer.pad_token_id

        def read(split):
            return read_pairs(tokenizer, *((data / "text" / f"general.{split}.{lang}").read_text().splitlines()
                                           for lang in ("en", "de")))

        (train, train_reseg, train_long), (valid, valid_reseg, valid_long) = read("train"), read("valid")
        model = build_model(tokenizer, args.layers, args.dim)
        optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.98))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min((step + 1) / args.warmup, math.sqrt(args.warmup / (step + 1))))
        rng = random.Random(args.seed)
        update = epoch = 0
        best = (math.inf, 0, None)  # valid nll, update, weights
        seen = [0.0, 0]  # train loss x tokens, tokens since the last JSON line
        model.train()
        while update < args.updates:
            epoch += 1
            for rows in batches(train, args.max_tokens, rng):
                loss, count = loss_of(model, *collate(train, rows, pad, start), smoothing=0.1)
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                update += 1
                seen = [seen[0] + float(loss.detach()) * count, seen[1] + count]
                if update % args.valid_every == 0 or update == args.updates:
                    nll = valid_nll(model, valid, args.max_tokens, pad, start)
                    if nll < best[0]:
                        best = (nll, update, copy.deepcopy(model.state_dict()))
                    print(json.dumps({"epoch": epoch, "update": update, "train_loss": round(seen[0] / seen[1], 4),
                                      "valid_nll": round(nll, 4), "seconds": round(time.time() - started)}),
                          flush=True)
                    seen = [0.0, 0]
                if update >= args.updates:
                    break
        model.load_state_dict(best[2])
        model.eval()
        summary = {"updates": update, "epochs": epoch, "valid_nll": round(best[0], 4), "best_update": best[1],
                   "parameters": sum(p.numel() for p in model.parameters()), "vocab": len(tokenizer),
                   "train_pairs": len(train), "valid_pairs": len(valid), "too_long": train_long + valid_long,
                   "resegmented": train_reseg + valid_reseg, "seconds": round(time.time() - started), **vars(args)}
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    check_saved(out, model, tokenizer, (data / "text" / "general.valid.en").read_text().splitlines())
    print(json.dumps(summary), flush=True)
    (out / "training.json").write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
