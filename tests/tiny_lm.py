"""Tiny random causal LMs for tests, built from transformers' config classes and saved
like any local Hugging Face model directory (nothing downloaded): a Llama-architecture one
whose tokenizer puts <s> first, and a GPT-2-architecture one whose tokenizer adds nothing
and has no pad token. Their word-level tokenizer holds the tiny cascade's words, so the
tiny ASR's target vocabulary consists of LM pieces."""

from pathlib import Path

import tiny_cascade

TEMPLATE_WORDS = ["Translate", "to", "German:", "English:"]
PROMPT = "Translate to German: {src}\nGerman:"


def word_tokenizer(with_bos: bool, extra_words=()):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>"]
    words = list(dict.fromkeys(list(tiny_cascade.EN) + list(tiny_cascade.DE.values()) + TEMPLATE_WORDS
                               + list(extra_words)))
    vocab = {w: i for i, w in enumerate(specials + words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if with_bos:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def build(path: Path, arch: str = "llama", seed: int = 0, extra_words=(), tokenizer=None) -> Path:
    """A random tiny causal LM of ``arch`` (llama or gpt2) saved under ``path``, with the
    word-level tokenizer, or ``tokenizer`` (a real one: its full vocabulary)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    tokenizer = tokenizer or word_tokenizer(with_bos=arch == "llama", extra_words=extra_words)
    n = len(tokenizer)
    torch.manual_seed(seed)
    if arch == "llama":
        config = LlamaConfig(vocab_size=n, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                             bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                             tie_word_embeddings=False)
        model = LlamaForCausalLM(config)
    else:
        config = GPT2Config(vocab_size=n, n_embd=32, n_layer=2, n_head=4, n_positions=512,
                            bos_token_id=1, eos_token_id=2)
        model = GPT2LMHeadModel(config)
    with torch.no_grad():  # logits spread enough that greedy and beam search make real choices
        model.get_input_embeddings().weight.normal_(0, 1.0)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# an instruct LM's chat template in the word tokenizer's words (a system message, the user's
# message, "German:" as the assistant's header, the answer ending in </s>)
CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}{% if m.role == 'system' %}{{ m.content }} "
                 "{% elif m.role == 'user' %}{{ m.content }} German: {% else %}{{ m.content }}{{ eos_token }}"
                 "{% endif %}{% endfor %}")


def instruct(lm_dir: Path, path: Path) -> Path:
    """The LM of ``lm_dir`` as an instruct model: the same weights and pieces, its tokenizer
    with a chat template, its generation_config ending answers at </s>."""
    import json
    import shutil

    shutil.copytree(lm_dir, path)
    config = json.loads((path / "tokenizer_config.json").read_text())
    config["chat_template"] = CHAT_TEMPLATE
    (path / "tokenizer_config.json").write_text(json.dumps(config))
    generation = path / "generation_config.json"
    settings = json.loads(generation.read_text()) if generation.exists() else {}
    settings.update(eos_token_id=[2], do_sample=True, temperature=0.6)  # an instruct model's sampling defaults
    generation.write_text(json.dumps(settings))
    return path
