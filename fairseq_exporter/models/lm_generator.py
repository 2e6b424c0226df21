"""fairseq-generate's search for the LM back-end: ``transformers``' own ``generate()`` on the
prompt embeddings, so that ``--coupling onebest`` is the cascade a user runs with the LM:

    ids = tokenizer(prompt.format(src=transcript)).input_ids
    lm.generate(ids, do_sample=False, num_beams=BEAM, length_penalty=LENPEN, early_stopping=True,
                min_new_tokens=MIN_LEN, max_new_tokens=MAX_LEN_B, eos_token_id=[eos] + stop_ids)

and the answer is the text before its first line break; with ``--lm-chat``, ``ids =
tokenizer.apply_chat_template(messages, add_generation_prompt=True)`` and the LM's own
``generation_config.eos_token_id`` as the stop ids, the answer the text before the end of turn.
fairseq's options map onto it:

    --beam -> num_beams             --lenpen -> length_penalty (score / length ** lenpen, length
    --nbest -> num_return_sequences            counting the token that ends the answer)
    --min-len -> min_new_tokens     --max-len-a/-b -> max_new_tokens = a * source frames + b
    --no-repeat-ngram-size -> no_repeat_ngram_size (over prompt and answer, as generate() does)
    --sampling, --sampling-topk/-topp, --temperature -> do_sample, top_k, top_p, temperature

A beam stops once it holds ``--beam`` finished hypotheses (``early_stopping=True``, as fairseq's
beam search stops). The stop tokens are the LM's end-of-text and, when the template asks for the
rest of the line, every token holding a line break (models/lm_prompt.py), or an instruct LM's
end-of-turn ids; the LM's own
``generation_config`` (an instruct model's sampling defaults, its suppressed tokens) is set
aside while generate() runs. Other search options
are refused by name. The positional scores are the LM's log-probabilities of the chosen tokens:
read off the logits as greedy search goes, and from one more pass over prompt + answer after a
beam search or sampling (whose processed scores are not the LM's).

A beam search reads (prefills) each prompt once, not once per beam: all but the prompt's last
position go through the LM at the batch's size, and the cache is copied to the beams before
``generate()`` continues from it.
"""

from typing import List

import torch

from fairseq_exporter.models.causal_lm import LMError
from fairseq_exporter.models.hf_search import TransformersSearch, neutral_settings, own_settings_only

class ChosenLogProbs:
    """A logits processor that changes nothing: it keeps the LM's log-probabilities of the
    last step and, one step later, the one of the token that step chose (B x V held at once)."""

    def __init__(self, prompt_len: int):
        self.prompt_len = prompt_len
        self.last = None
        self.chosen: List[torch.Tensor] = []

    def __call__(self, input_ids, scores):
        if self.last is not None:
            self.chosen.append(self.last.gather(1, input_ids[:, -1:]))
        self.last = torch.log_softmax(scores.float(), -1)
        return scores

    def finish(self, sequences) -> torch.Tensor:
        """B x T: the log-probability of each generated token of ``sequences``."""
        if self.last is not None and sequences.size(1) > self.prompt_len + len(self.chosen):
            self.chosen.append(self.last.gather(1, sequences[:, -1:]))
            self.last = None
        return torch.cat(self.chosen, 1) if self.chosen else sequences.new_zeros(len(sequences), 0).float()


class LMGenerator(TransformersSearch):
    """A fairseq generator (``generate(models, sample)``) whose search is the LM's ``generate()``."""

    OPTION, ERROR = "--lm-checkpoint", LMError

    def __init__(self, model, tgt_dict, args):
        super().__init__(model, tgt_dict, args)
        self.stop_ids = model.decoder.template.search_stop_ids(self.eos)

    def generation_config(self, n_frames: int):
        from transformers import GenerationConfig

        max_new = self.max_new_tokens(n_frames)
        # every setting explicit: generate() fills what is left unset from the LM's own
        # generation_config (an instruct model's repetition penalty, say)
        neutral = neutral_settings()
        search, min_new = dict(self.search), min(self.min_len, max_new)
        if self.scores_while_searching:  # these two run after the recorder (logits_processors)
            search.pop("no_repeat_ngram_size", None)
            min_new = 0
        return GenerationConfig(**{**neutral, "top_k": 0, **search}, max_new_tokens=max_new,
                                min_new_tokens=min_new, eos_token_id=self.stop_ids,
                                pad_token_id=self.eos, bos_token_id=None)

    def logits_processors(self, prompt_len: int, n_frames: int, device):
        """Greedy search: the recorder of the LM's log-probabilities, which must see the raw
        logits, then what generate() would have put before it (its own processors run first)."""
        from transformers import LogitsProcessorList, MinNewTokensLengthLogitsProcessor, NoRepeatNGramLogitsProcessor

        recorder = ChosenLogProbs(prompt_len)
        processors = [recorder]
        min_new = min(self.min_len, self.max_new_tokens(n_frames))
        if min_new > 0:
            processors.append(MinNewTokensLengthLogitsProcessor(prompt_len, min_new, self.stop_ids, device=device))
        if self.search.get("no_repeat_ngram_size"):
            processors.append(NoRepeatNGramLogitsProcessor(self.search["no_repeat_ngram_size"]))
        return recorder, LogitsProcessorList(processors)

    @torch.no_grad()
    def generate(self, models, sample, prefix_tokens=None, constraints=None, bos_token=None, **unused):
        self.refuse_prefix(prefix_tokens)
        model = models[0]
        model.eval()
        net_input = sample["net_input"]
        encoder_out = model.encoder(**net_input)
        decoder = model.decoder
        tokens = encoder_out["source_tokens"][0]
        embeddings = encoder_out["source_embeddings"][0] if encoder_out["source_embeddings"] else None
        batch = decoder.prompts(tokens)
        lm = decoder.lm.module
        inputs = dict(input_ids=batch.ids, attention_mask=batch.mask)
        if embeddings is not None:  # the coupled prompt; the onebest prompt is read as ids, as a user's is
            inputs["inputs_embeds"] = decoder.embed_prompts(batch, tokens, embeddings)
        frames = int(net_input["src_lengths"].max()) if "src_lengths" in net_input else 0
        prompt_len = batch.ids.size(1)
        extra = {}
        if self.scores_while_searching:
            recorder, extra["logits_processor"] = self.logits_processors(prompt_len, frames, batch.ids.device)
        elif self.search["num_beams"] > 1 and prompt_len > 1:
            extra = decoder.prefill(inputs["attention_mask"], self.search["num_beams"], batch.ids,
                                    inputs.get("inputs_embeds"))
        with own_settings_only(lm):
            out = lm.generate(**inputs, **extra, generation_config=self.generation_config(frames))
        answers = out[:, prompt_len:].tolist()
        n = self.search["num_return_sequences"]
        hyps = [self.cut(a) for a in answers]
        if self.scores_while_searching:
            chosen = recorder.finish(out).cpu()
            scores = [chosen[row, :len(h)] for row, h in enumerate(hyps)]
        else:
            scores = self.rescore(decoder, encoder_out, hyps, n)
        return self.hypotheses(len(tokens), hyps, scores, tokens.device)
