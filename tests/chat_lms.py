"""Tokenizers of three instruct-LM chat families, for tiny random LMs (nothing downloaded):

    llama31  the real Llama 3 tokenizer (tests/real_tokenizers.py) with Llama 3.1 Instruct's chat
             template, eos <|eot_id|>; generation_config eos_token_id [128001, 128008, 128009]
    chatml   a byte-level BPE trained here (Llama 3's split regex) with Qwen 2.5 Instruct's chat
             template (its tool-call branches left out), eos <|im_end|>, pad <|endoftext|>, no BOS;
             generation_config eos_token_id [<|im_end|>, <|endoftext|>]
    gemma    GemmaTokenizer (sentencepiece-style BPE with byte fallback, <bos> first) around a
             sentencepiece model trained here, <start_of_turn> / <end_of_turn>, Gemma 2's chat
             template (no system role); generation_config eos_token_id [<eos>, <end_of_turn>]

``tokenizer_dir(name, root)`` writes the family's tokenizer directory; ``stop_ids(name,
tokenizer)`` are the ids its generation_config lists (set on the LM by ``set_stops``).
"""

import json
from pathlib import Path

import real_tokenizers
import tiny_cascade

FAMILIES = ("llama31", "chatml", "gemma")

# meta-llama/Llama-3.1-8B-Instruct's tokenizer_config.json chat_template
LLAMA31_TEMPLATE = """{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\\n\\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\\n\\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\\n\\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}
            {%- for arg_name, arg_val in tool_call.arguments | items %}
                {{- arg_name + '="' + arg_val + '"' }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- endif %}
                {%- endfor %}
            {{- ")" }}
        {%- else  %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
            {{- '{"name": "' + tool_call.name + '", ' }}
            {{- '"parameters": ' }}
            {{- tool_call.arguments | tojson }}
            {{- "}" }}
        {%- endif %}
        {%- if builtin_tools is defined %}
            {#- This means we're in ipython mode #}
            {{- "<|eom_id|>" }}
        {%- else %}
            {{- "<|eot_id|>" }}
        {%- endif %}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

# Qwen/Qwen2.5-7B-Instruct's chat template without its tool-call branches (unused without tools)
CHATML_TEMPLATE = """{%- if messages[0]['role'] == 'system' %}
    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
{%- else %}
    {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant") %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

# Qwen 3's chat template, its thinking part (the last assistant turn after the last user message
# holds a think block; the generation prompt closes an empty one when enable_thinking is false),
# its tool-call branches and multi-step query bookkeeping left out
QWEN3_TEMPLATE = """{%- if messages[0].role == 'system' %}
    {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if message.role == "user" or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {%- set content = message.content %}
        {%- set reasoning_content = '' %}
        {%- if '</think>' in content %}
            {%- set reasoning_content = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
            {%- set content = content.split('</think>')[-1].lstrip('\n') %}
        {%- endif %}
        {%- if loop.last or reasoning_content %}
            {{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\n' + content }}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\n\n</think>\n\n' }}
    {%- endif %}
{%- endif %}
"""

# google/gemma-2-2b-it's chat template
GEMMA_TEMPLATE = ("{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
                  "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
                  "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
                  "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
                  "{% endif %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}"
                  "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}")

# Llama 3's pre-tokenizer split (tokenizer.json of Meta-Llama-3)
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def _text():
    """Cased, punctuated sentences of both sides, some with a line break inside (what the
    byte-level merges and the sentencepiece model are trained on)."""
    pairs = tiny_cascade.sentences(300, 11)
    lines = []
    for i, (en, de) in enumerate(pairs):
        en, de = en[0].upper() + en[1:] + ".", de[0].upper() + de[1:] + "."
        lines += [en, de] if i % 5 else [en + "\n" + de]
    return lines


def _llama31(out: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(real_tokenizers.build()["llama3"], local_files_only=True)
    tokenizer.chat_template = LLAMA31_TEMPLATE
    tokenizer.eos_token = "<|eot_id|>"
    tokenizer.save_pretrained(out)


def _chatml(out: Path):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_text() + ["Translate to German: ", "You are Qwen, created by Alibaba Cloud. "
                                       "You are a helpful assistant.", "system user assistant"], trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        additional_special_tokens=specials[1:], chat_template=CHATML_TEMPLATE)
    tokenizer.save_pretrained(out)


def _gemma(out: Path):
    import io

    import sentencepiece as spm
    from transformers import GemmaTokenizer
    from transformers.tokenization_utils_base import generate_merges

    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(l.replace("\n", " ") for l in _text()), model_writer=proto,
                                   vocab_size=300, model_type="bpe", character_coverage=1.0, hard_vocab_limit=False,
                                   byte_fallback=True, normalization_rule_name="identity", minloglevel=2, num_threads=1)
    sp = spm.SentencePieceProcessor(model_proto=proto.getvalue())
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())
              if not (sp.is_control(i) or sp.is_unknown(i))]
    vocab = {t: i for i, t in enumerate(["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>",
                                         "<end_of_turn>", "\n", *pieces])}
    tokenizer = GemmaTokenizer(vocab=vocab, merges=generate_merges(vocab),
                               additional_special_tokens=["<start_of_turn>", "<end_of_turn>"])
    tokenizer.chat_template = GEMMA_TEMPLATE
    tokenizer.save_pretrained(out)


def tokenizer_dir(name: str, root: Path) -> Path:
    out = root / f"{name}-tokenizer"
    if not (out / "tokenizer_config.json").exists():
        out.mkdir(parents=True, exist_ok=True)
        {"llama31": _llama31, "chatml": _chatml, "gemma": _gemma}[name](out)
    return out


def stop_ids(name: str, tokenizer):
    """The family's generation_config eos_token_id."""
    tokens = {"llama31": ["<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"], "chatml": ["<|im_end|>", "<|endoftext|>"],
              "gemma": ["<eos>", "<end_of_turn>"]}[name]
    return [tokenizer.convert_tokens_to_ids(t) for t in tokens]


def set_stops(lm_dir: Path, ids):
    """The LM's generation_config.json lists ``ids`` as eos_token_id, as an instruct model's does."""
    path = Path(lm_dir) / "generation_config.json"
    config = json.loads(path.read_text()) if path.exists() else {}
    config["eos_token_id"] = list(ids)
    path.write_text(json.dumps(config, indent=2))


END_OF_TURN = {"llama31": "<|eot_id|>", "chatml": "<|im_end|>", "gemma": "<end_of_turn>"}


def make_chatty(lm_dir: Path, name: str, message: str, seed: int = 0):
    """A random LM whose greedy answers depend on the prompt, hold line breaks, and end at the
    family's end of turn after a few tokens in some rows: its layers drawn wider (std 0.3), the
    line-break tokens' output rows scaled up, and the end of turn's row set just above the row
    of the token (not a line break, where it can) that such an LM writes most often past its first steps (so that it ends
    where that token would have come)."""
    from collections import Counter

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(lm_dir, local_files_only=True)
    lm = AutoModelForCausalLM.from_pretrained(lm_dir, local_files_only=True).eval()
    stops = stop_ids(name, tokenizer)
    breaks = [i for i in sorted(tokenizer.get_vocab().values())
              if "\n" in tokenizer.decode([i]) and i not in stops][:64]
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in lm.model.layers.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3)
        lm.lm_head.weight[breaks] *= 3.0
        seen = Counter()
        for en, _ in tiny_cascade.sentences(8, 5):
            messages = [{"role": "user", "content": message.format(src=en[0].upper() + en[1:] + ".")}]
            encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
            ids = torch.tensor([list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)])
            out = lm.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=10,
                              eos_token_id=stops, pad_token_id=stops[0])
            seen.update(t for t in out[0, ids.size(1) + 3:].tolist() if t not in stops)
        common = next((t for t, _ in seen.most_common() if t not in breaks), seen.most_common(1)[0][0])
        lm.lm_head.weight[tokenizer.convert_tokens_to_ids(END_OF_TURN[name])] = 1.05 * lm.lm_head.weight[common]
    lm.save_pretrained(lm_dir)
