"""The cascade a user runs with a causal LM, built from text alone (the reference the LM
back-end is tested against): the transcript pasted into the prompt template, the prompt
tokenized by the LM's tokenizer, transformers' generate() with the line-break tokens as
stop tokens, the answer read up to its line break."""

import torch


def stop_ids(tokenizer):
    """The LM's end-of-text and every token whose text holds a line break."""
    found = {tokenizer.eos_token_id}
    for i in sorted(tokenizer.get_vocab().values()):
        if "\n" in tokenizer.decode([i]):
            found.add(i)
    return sorted(found)


def translate(lm, tokenizer, prompt, transcript, beam=1, max_new=8, min_new=1, lenpen=1.0, stops=None):
    """(answer token ids up to and with the stop token, answer text) for one transcript."""
    ids = tokenizer(prompt.format(src=transcript), return_tensors="pt").input_ids
    stops = stops if stops is not None else stop_ids(tokenizer)
    with torch.no_grad():
        out = lm.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, num_beams=beam,
                          early_stopping=True, length_penalty=lenpen, max_new_tokens=max_new,
                          min_new_tokens=min_new, eos_token_id=stops, pad_token_id=tokenizer.eos_token_id)
    answer = out[0, ids.size(1):].tolist()
    for i, t in enumerate(answer):
        if t in stops:
            answer = answer[:i + 1]
            break
    text = tokenizer.decode(answer, skip_special_tokens=True).split("\n")[0].strip()
    return answer, text


def lm_scores(lm, tokenizer, prompt, transcript, answer):
    """The LM's log-probability of each answer token after the text prompt (no cache)."""
    ids = tokenizer(prompt.format(src=transcript), return_tensors="pt").input_ids
    full = torch.cat([ids, torch.tensor([answer])], 1)
    with torch.no_grad():
        lprobs = torch.log_softmax(lm(full).logits[0, ids.size(1) - 1:-1].float(), -1)
    return lprobs.gather(-1, torch.tensor(answer).unsqueeze(-1)).squeeze(-1)
