"""fairseq-generate's search for the LM back-end: ``transformers``' own ``generate()`` on the
prompt embeddings, so that ``--coupling onebest`` is the cascade a user runs with the LM:

    ids = tokenizer(prompt.format(src=transcript)).input_ids
    lm.generate(ids, do_sample=False, num_beams=BEAM, length_penalty=LENPEN, early_stopping=True,
                min_new_tokens=MIN_LEN, max_new_tokens=MAX_LEN_B, eos_token_id=[eos] + stop_ids)

and the answer is the text before its first line break. fairseq's options map onto it:

    --beam -> num_beams             --lenpen -> length_penalty (score / length ** lenpen, length
    --nbest -> num_return_sequences            counting the token that ends the answer)
    --min-len -> min_new_tokens     --max-len-a/-b -> max_new_tokens = a * source frames + b
    --no-repeat-ngram-size -> no_repeat_ngram_size (over prompt and answer, as generate() does)
    --sampling, --sampling-topk/-topp, --temperature -> do_sample, top_k, top_p, temperature

A beam stops once it holds ``--beam`` finished hypotheses (``early_stopping=True``, as fairseq's
beam search stops). The stop tokens are the LM's end-of-text and, when the template asks for the
rest of the line, every token holding a line break (models/lm_prompt.py); the LM's own
``generation_config`` (an instruct model's sampling defaults) is not used. Other search options
are refused by name. The positional scores are the LM's log-probabilities of the chosen tokens:
read off the logits as greedy search goes, and from one more pass over prompt + answer after a
beam search or sampling (whose processed scores are not the LM's).

A beam search reads (prefills) each prompt once, not once per beam: all but the prompt's last
position go through the LM at the batch's size, and the cache is copied to the beams before
``generate()`` continues from it.
"""

from typing import Dict, List

import torch

from fairseq_exporter.models.causal_lm import LMError

SCORE_CHUNK = 16  # hypotheses scored per forward pass (bounds the B x T x V logits)

# fairseq options with no generate() counterpart here, and the value that means "unused"
UNSUPPORTED = {"prefix_size": 0, "unkpen": 0, "match_source_len": False, "diverse_beam_groups": -1,
               "diversity_rate": -1.0, "constraints": None, "lm_path": None, "print_alignment": None,
               "retain_dropout": False}


def _given(args, name, default=None):
    return getattr(args, name, default)


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


class LMGenerator:
    """A fairseq generator (``generate(models, sample)``) whose search is the LM's ``generate()``."""

    def __init__(self, model, tgt_dict, args):
        for name, unused in UNSUPPORTED.items():
            value = _given(args, name, unused)
            if value not in (unused, None, False) and not (name == "diverse_beam_groups" and value in (0, 1)):
                raise LMError(f"--{name.replace('_', '-')} {value}: not supported with --lm-checkpoint "
                              "(its search is transformers' generate(): models/lm_generator.py)")
        self.model = model
        self.tgt_dict = tgt_dict
        self.pad, self.eos = tgt_dict.pad(), tgt_dict.eos()
        self.symbols_to_strip_from_output = {self.eos}
        decoder = model.decoder
        self.stop_ids = sorted({self.eos, *decoder.template.stop_ids()})
        self.beam = int(_given(args, "beam", 5) or 1)
        self.nbest = int(_given(args, "nbest", 1) or 1)
        if self.nbest > self.beam:
            raise LMError(f"--nbest {self.nbest} > --beam {self.beam}")
        self.lenpen = float(_given(args, "lenpen", 1.0))
        self.max_len_a = float(_given(args, "max_len_a", 0) or 0)
        self.max_len_b = int(_given(args, "max_len_b", 200))
        self.min_len = int(_given(args, "min_len", 1))
        self.search = dict(num_beams=self.beam, num_return_sequences=self.nbest, do_sample=False)
        if self.beam > 1:
            self.search.update(length_penalty=self.lenpen, early_stopping=True)
        ngram = int(_given(args, "no_repeat_ngram_size", 0) or 0)
        if ngram > 0:
            self.search["no_repeat_ngram_size"] = ngram
        if _given(args, "sampling", False):
            topk, topp = int(_given(args, "sampling_topk", -1)), float(_given(args, "sampling_topp", -1.0))
            self.search.update(do_sample=True, num_beams=1, temperature=float(_given(args, "temperature", 1.0)),
                               top_k=max(topk, 0), top_p=topp if topp > 0 else 1.0)
            if self.nbest > 1:
                self.search["num_return_sequences"] = self.nbest

    @property
    def scores_while_searching(self) -> bool:
        """Greedy search: the chosen tokens' log-probabilities are read as it goes."""
        return self.search["num_beams"] == 1 and not self.search["do_sample"]

    def generation_config(self, n_frames: int):
        from transformers import GenerationConfig

        max_new = self.max_new_tokens(n_frames)
        # every setting explicit: generate() fills what is left unset from the LM's own
        # generation_config (an instruct model's repetition penalty, say)
        neutral = getattr(GenerationConfig(), "_get_default_generation_params", dict)()
        neutral = {k: v for k, v in neutral.items() if v is not None and k not in ("max_length", "min_length")}
        search, min_new = dict(self.search), min(self.min_len, max_new)
        if self.scores_while_searching:  # these two run after the recorder (logits_processors)
            search.pop("no_repeat_ngram_size", None)
            min_new = 0
        return GenerationConfig(**{**neutral, "top_k": 0, **search}, max_new_tokens=max_new,
                                min_new_tokens=min_new, eos_token_id=self.stop_ids,
                                pad_token_id=self.eos, bos_token_id=None)

    def max_new_tokens(self, n_frames: int) -> int:
        return max(1, min(int(self.max_len_a * n_frames + self.max_len_b), self.model.decoder.max_positions()))

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
        if prefix_tokens is not None:
            raise LMError("--prefix-size: not supported with --lm-checkpoint")
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
        out = lm.generate(**inputs, **extra, generation_config=self.generation_config(frames))
        answers = out[:, prompt_len:].tolist()
        n = self.search["num_return_sequences"]
        hyps = [self._cut(a) for a in answers]
        if self.scores_while_searching:
            chosen = recorder.finish(out).cpu()
            scores = [chosen[row, :len(h)] for row, h in enumerate(hyps)]
        else:
            scores = self._score(decoder, encoder_out, hyps, n)
        results: List[List[Dict]] = []
        for row in range(len(tokens)):
            found = []
            for k in range(n):
                ids = hyps[row * n + k]
                positional = scores[row * n + k]
                score = float(positional.sum()) / max(len(ids), 1) ** self.lenpen
                found.append({"tokens": torch.tensor(ids, dtype=torch.long, device=tokens.device),
                              "score": torch.tensor(score), "positional_scores": positional,
                              "alignment": torch.empty(0), "attention": None})
            found.sort(key=lambda h: -float(h["score"]))
            results.append(found)
        return results

    def _cut(self, answer: List[int]) -> List[int]:
        """The answer up to and with its first stop token (generate() pads finished rows)."""
        stops = set(self.stop_ids)
        for i, t in enumerate(answer):
            if t in stops:
                return answer[:i + 1]
        return answer

    def _score(self, decoder, encoder_out, hyps: List[List[int]], n: int) -> List[torch.Tensor]:
        """The LM's log-probability of each hypothesis token after its prompt."""
        scores = []
        encoder = self.model.encoder
        for start in range(0, len(hyps), SCORE_CHUNK):
            rows = list(range(start, min(len(hyps), start + SCORE_CHUNK)))
            order = torch.tensor([r // n for r in rows], device=encoder_out["source_tokens"][0].device)
            part = encoder.reorder_encoder_out(encoder_out, order)
            width = max(1, max(len(hyps[r]) for r in rows))
            target = torch.full((len(rows), width), self.pad, dtype=torch.long, device=order.device)
            for i, r in enumerate(rows):
                target[i, :len(hyps[r])] = torch.tensor(hyps[r], dtype=torch.long)
            prev = torch.cat([target.new_full((len(rows), 1), self.eos), target[:, :-1]], 1)
            logits, _ = decoder(prev, encoder_out=part)
            logits = logits[..., :decoder.n_rows].float()  # not fairseq's extra pad column
            lprobs = torch.log_softmax(logits, -1).gather(-1, target.clamp(max=decoder.n_rows - 1).unsqueeze(-1)).squeeze(-1)
            scores.extend(lprobs[i, :len(hyps[r])].cpu() for i, r in enumerate(rows))
        return scores

