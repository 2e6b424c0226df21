"""The toy study's instruct LM: a small Llama-architecture LM with a byte-level BPE tokenizer (Llama
3's split regex) and Llama 3 Instruct's chat template, trained on the general-domain parallel text
as chat turns (the user's message holds the English sentence, the assistant's turn is the German
one through its end of turn), saved as a local Hugging Face directory whose generation_config.json
lists the end-of-turn ids; then used frozen with ``--lm-chat``.

Its tokenizer merges as real LLM tokenizers do (``Ġdog``, ``.Ċ``), not as the ASR's sentencepiece
model segments English: the ASR that feeds it writes its pieces (``fairseq-exporter-lm-vocab``, the
``hf_tokenizer`` bpe; toy stage 9 trains one). The prompt and the targets
are built by the plugin's own prompt code (models/lm_prompt.py) from the chat template, so the LM
is trained on exactly what ``--lm-chat`` feeds it: ``apply_chat_template([user], add_generation_prompt=True)``
then the answer and ``<|eot_id|>``; the loss is on the answer's tokens only.

    python -m fairseq_exporter.toy.chat_lm --data work/toy/data --out work/toy/chat-lm --updates 800 --seed 1
"""

import random
from pathlib import Path

import torch

from fairseq_exporter.data.lm_pieces import transcript_ids
from fairseq_exporter.models.lm_prompt import Chat, PromptTemplate
from fairseq_exporter.toy.lm_training import detokenize, fit_and_save, training_parser

BOS, EOS, END_OF_TURN = "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"
SPECIALS = (BOS, EOS, "<|start_header_id|>", "<|end_header_id|>", END_OF_TURN)
# the user's message of the study's prompts ({src}: the transcript)
MESSAGE = "Translate this English sentence into German: {src}"
# Meta-Llama-3-8B-Instruct's chat template
CHAT_TEMPLATE = ("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
                 "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + "
                 "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
                 "{{ content }}{% endfor %}{% if add_generation_prompt %}"
                 "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")
# Meta-Llama-3's pre-tokenizer split
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def build_tokenizer(lines, vocab_size: int):
    """A byte-level BPE of ``vocab_size`` pieces trained on ``lines``, Llama 3's split and special
    tokens, <|begin_of_text|> first, <|eot_id|> its eos (as Llama 3 Instruct's), its chat template."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(lines) + [MESSAGE.replace("{src}", ""), "system user assistant"], trainer)
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, tok.token_to_id(BOS))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=END_OF_TURN,
                                   additional_special_tokens=list(SPECIALS[2:4]), chat_template=CHAT_TEMPLATE)


def stop_ids(tokenizer):
    """What the LM's generation_config lists as eos_token_id (Llama 3 Instruct's: end of text, end of turn)."""
    return [tokenizer.convert_tokens_to_ids(EOS), tokenizer.convert_tokens_to_ids(END_OF_TURN)]


def examples(tokenizer, template: PromptTemplate, en_lines, de_lines):
    """(ids, first target position) per sentence pair: the chat prompt of the English sentence
    (as the ASR writes it in the LM's pieces) + the German answer through its end of turn."""
    out = []
    for en, de in zip(en_lines, de_lines):
        prompt = template.build(tuple(transcript_ids(tokenizer, detokenize(en)))).ids
        out.append((prompt + template.answer_ids(detokenize(de)), len(prompt)))
    return out


def read_pairs(tokenizer, template: PromptTemplate, prefix: Path):
    """examples() of PREFIX.en / PREFIX.de (the corpus's text files: sentencepiece pieces)."""
    return examples(tokenizer, template, *(Path(f"{prefix}.{lang}").read_text().splitlines() for lang in ("en", "de")))


def adapt_input_table(args):
    """The text-only ablation of toy stage 10 on the LM: a copy of the LM whose input embedding
    table alone is trained (untied from its output layer, which stays as it was) on the task's
    sentence pairs as chat turns; the rest frozen, as the MT's source table alone is trained."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = Path(args.adapt_input_table)
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(source, local_files_only=True)
    template = PromptTemplate(MESSAGE, tokenizer, Chat(list(model.generation_config.eos_token_id), source=str(source)))
    table = model.get_input_embeddings()
    model.lm_head.weight = torch.nn.Parameter(table.weight.detach().clone())  # the output layer kept apart
    model.config.tie_word_embeddings = False
    for parameter in model.parameters():
        parameter.requires_grad = False
    table.weight.requires_grad = True
    train, valid = read_pairs(tokenizer, template, args.train_pairs), read_pairs(tokenizer, template, args.valid_pairs)
    fit_and_save(model, tokenizer, train, valid, args, Path(args.out), message=MESSAGE, adapted="input table")


def main(argv=None):
    parser = training_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--vocab-size", type=int, default=1000, help="the byte-level BPE's pieces (specials included)")
    parser.add_argument("--adapt-input-table", metavar="LM_DIR",
                        help="instead: train only this LM's input embedding table on --train-pairs (toy stage 10)")
    parser.add_argument("--train-pairs", metavar="PREFIX", help="with --adapt-input-table: PREFIX.en, PREFIX.de")
    parser.add_argument("--valid-pairs", metavar="PREFIX", help="with --adapt-input-table: PREFIX.en, PREFIX.de")
    args = parser.parse_args(argv)
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the recipe's log shows the json lines
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    if args.adapt_input_table:
        if not (args.train_pairs and args.valid_pairs):
            parser.error("--adapt-input-table needs --train-pairs and --valid-pairs")
        return adapt_input_table(args)
    if not args.data:
        parser.error("--data is required (or --adapt-input-table)")
    data, out = Path(args.data), Path(args.out)
    text = [detokenize(line) for split in ("general", "task") for lang in ("en", "de")
            for line in (data / "text" / f"{split}.train.{lang}").read_text().splitlines()]
    tokenizer = build_tokenizer(text, args.vocab_size)
    stops = stop_ids(tokenizer)
    template = PromptTemplate(MESSAGE, tokenizer, Chat(stops, source=str(out)))
    train, valid = (read_pairs(tokenizer, template, data / "text" / f"general.{split}") for split in ("train", "valid"))
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=args.dim, intermediate_size=4 * args.dim,
                         num_hidden_layers=args.layers, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=256, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=stops)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=stops)
    fit_and_save(model, tokenizer, train, valid, args, out, vocabulary=len(tokenizer), message=MESSAGE)


if __name__ == "__main__":
    main()
