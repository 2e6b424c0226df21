"""A tiny speech corpus with punctuated, cased transcripts and translations, an ASR trained
with fairseq-train on a real LLM tokenizer's pieces (the hf_tokenizer bpe), and a tiny random
Llama of that tokenizer's full vocabulary: the LM back-end as a user meets it with Llama 3 or
Llama 2, in seconds."""

import random
from pathlib import Path

import tiny_cascade
import tiny_lm
from tiny_cascade import run

PROMPT = "Translate to German: {src}\nGerman:"  # the default template
ENDINGS = (".", "?", "!", ".", ",")


def punctuated(pairs, seed):
    """Cased sentences ending in punctuation (a comma inside some), the same on both sides."""
    rng = random.Random(seed)
    out = []
    for en, de in pairs:
        end = rng.choice(ENDINGS)
        if end == ",":  # a comma inside, a full stop at the end
            words = en.split()
            cut = max(1, len(words) // 2)
            en = " ".join(words[:cut]) + ", " + " ".join(words[cut:])
            end = "."
        out.append((en[0].upper() + en[1:] + end, de[0].upper() + de[1:] + end))
    return out


def split_pieces(tokenizer, pieces):
    """A split of each piece into two pieces of the vocabulary, where one exists (what an ASR
    may write where the tokenizer would write one piece)."""
    vocab = tokenizer.get_vocab()
    out = {}
    for p in pieces:
        for k in range(1, len(p)):
            if p[:k] in vocab and p[k:] in vocab:
                out[p] = [p[:k], p[k:]]
                break
    return out


def build_lm(path: Path, tokenizer_dir: Path, seed=0):
    from transformers import AutoTokenizer

    return tiny_lm.build(path, "llama", seed, tokenizer=AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True))


def build(root: Path, tokenizer_dir: Path, asr_updates=20, full_vocab=False):
    """``full_vocab``: the ASR writes any of the LM's pieces (fairseq-exporter-lm-vocab's
    dictionary), not only those of this corpus."""
    from transformers import AutoTokenizer

    from fairseq_exporter.models.lm_prompt import transcript_ids

    root.mkdir(parents=True, exist_ok=True)
    lm = build_lm(root / "lm", tokenizer_dir)
    tokenizer = AutoTokenizer.from_pretrained(lm, local_files_only=True)
    plain = {"train": tiny_cascade.sentences(200, 1), "dev": tiny_cascade.sentences(20, 2),
             "test": tiny_cascade.sentences(12, 3)}
    s2t = root / "s2t"
    rows = tiny_cascade.write_features(s2t, plain)
    pieces = set()
    for split, split_rows in rows.items():
        text = punctuated(plain[split], seed=len(split))
        rows[split] = [(uid, audio, n, en, de) for (uid, audio, n, _, _), (en, de) in zip(split_rows, text)]
        for _, _, _, en, _ in rows[split]:
            ids = transcript_ids(tokenizer, en)
            pieces.update(tokenizer.convert_ids_to_tokens(ids))
            pieces.update(tokenizer.convert_ids_to_tokens(tokenizer(en, add_special_tokens=False)["input_ids"]))
        tiny_cascade.write_manifest(s2t / f"{split}.tsv", rows[split])
        tiny_cascade.write_manifest(s2t / f"{split}_asr.tsv", rows[split], target="src")
    for halves in split_pieces(tokenizer, sorted(pieces)).values():
        pieces.update(halves)
    (s2t / "dict.pieces.txt").write_text("".join(f"{p} 1\n" for p in sorted(pieces)))
    if full_vocab:
        from fairseq_exporter.data.lm_pieces import write_vocabulary

        write_vocabulary(str(lm), s2t / "dict.pieces.txt")
    bpe = f"{{bpe: hf_tokenizer, hf_tokenizer: {lm}}}"
    (s2t / "config_asr.yaml").write_text("input_channels: 1\ninput_feat_per_channel: 80\n"
                                         f"vocab_filename: dict.pieces.txt\nbpe_tokenizer: {bpe}\n")
    (s2t / "config_st.yaml").write_text("input_channels: 1\ninput_feat_per_channel: 80\n"
                                        f"src_vocab_filename: dict.pieces.txt\nsrc_bpe_tokenizer: {bpe}\n")
    asr_dir = root / "asr"
    run(["fairseq_cli.train", str(s2t), "--user-dir", tiny_cascade_user_dir(), "--task", "speech_to_text",
         "--config-yaml", "config_asr.yaml", "--train-subset", "train_asr", "--valid-subset", "dev_asr",
         "--arch", "s2t_transformer", "--encoder-layers", "1", "--decoder-layers", "1",
         "--encoder-embed-dim", "32", "--decoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64",
         "--decoder-ffn-embed-dim", "64", "--encoder-attention-heads", "2", "--decoder-attention-heads", "2",
         "--conv-channels", "32", "--dropout", "0.1", "--criterion", "label_smoothed_cross_entropy_with_ctc",
         "--ctc-weight", "0.3", "--max-tokens", "4000", "--max-update", str(asr_updates),
         "--optimizer", "adam", "--lr", "0.003", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "10",
         "--no-epoch-checkpoints", "--no-progress-bar", "--seed", "1", "--num-workers", "0",
         "--save-dir", str(asr_dir)])
    return {"root": root, "s2t": s2t, "asr": asr_dir / "checkpoint_best.pt", "lm": lm}


def tiny_cascade_user_dir():
    return str(Path(__file__).resolve().parents[1] / "fairseq_exporter")
