"""What fairseq-generate's two ``transformers`` searches share (the causal LM's:
models/lm_generator.py; the encoder-decoder MT's: models/hf_mt_generator.py): fairseq's search
options mapped onto ``generate()``, the options it refuses by name, and the hypotheses handed
back to fairseq with the text model's own log-probabilities as positional scores.

    --beam -> num_beams             --lenpen -> length_penalty (score / length ** lenpen)
    --nbest -> num_return_sequences --min-len -> min_new_tokens
    --max-len-a/-b -> max_new_tokens = a * source frames + b
    --no-repeat-ngram-size -> no_repeat_ngram_size
    --sampling, --sampling-topk/-topp, --temperature -> do_sample, top_k, top_p, temperature

A beam stops once it holds ``--beam`` finished hypotheses (``early_stopping=True``, as
fairseq's beam search stops).
"""

import contextlib
from typing import Dict, List

import torch

SCORE_CHUNK = 16  # hypotheses scored per forward pass (bounds the B x T x V logits)

# fairseq options with no generate() counterpart here, and the value that means "unused"
UNSUPPORTED = {"prefix_size": 0, "unkpen": 0, "match_source_len": False, "diverse_beam_groups": -1,
               "diversity_rate": -1.0, "constraints": None, "lm_path": None, "print_alignment": None,
               "retain_dropout": False}


def _given(args, name, default=None):
    return getattr(args, name, default)


def neutral_settings() -> dict:
    """transformers' own default of every generation setting that has one: a GenerationConfig
    built on them reads nothing from the model's ``generation_config`` (generate() fills the
    settings left unset from it: an instruct model's repetition penalty, say)."""
    from transformers import GenerationConfig

    neutral = getattr(GenerationConfig(), "_get_default_generation_params", dict)()
    return {k: v for k, v in neutral.items() if v is not None and k not in ("max_length", "min_length")}


@contextlib.contextmanager
def own_settings_only(model):
    """generate() with only the settings it is given: the model's ``generation_config`` set
    aside (generate() would otherwise fill from it what the search leaves unset, such as
    ``suppress_tokens``, ``bad_words_ids``, ``sequence_bias``, ``forced_eos_token_id`` or
    ``stop_strings``, whose defaults are None)."""
    from transformers import GenerationConfig

    kept = model.generation_config
    model.generation_config = GenerationConfig()
    try:
        yield
    finally:
        model.generation_config = kept


class TransformersSearch:
    """A fairseq generator (``generate(models, sample)``) whose search is ``transformers``'
    ``generate()``; subclasses say how the text model is called."""

    OPTION: str  # the option that names the text model, for messages
    ERROR = ValueError

    def __init__(self, model, tgt_dict, args):
        for name, unused in UNSUPPORTED.items():
            value = _given(args, name, unused)
            if value not in (unused, None, False) and not (name == "diverse_beam_groups" and value in (0, 1)):
                raise self.ERROR(f"--{name.replace('_', '-')} {value}: not supported with {self.OPTION} "
                                 "(its search is transformers' generate(): models/hf_search.py)")
        self.model = model
        self.tgt_dict = tgt_dict
        self.pad, self.eos = tgt_dict.pad(), tgt_dict.eos()
        self.symbols_to_strip_from_output = {self.eos}
        self.stop_ids = [self.eos]
        self.beam = int(_given(args, "beam", 5) or 1)
        self.nbest = int(_given(args, "nbest", 1) or 1)
        if self.nbest > self.beam:
            raise self.ERROR(f"--nbest {self.nbest} > --beam {self.beam}")
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

    def max_new_tokens(self, n_frames: int) -> int:
        return max(1, min(int(self.max_len_a * n_frames + self.max_len_b), self.model.decoder.max_positions()))

    def refuse_prefix(self, prefix_tokens):
        if prefix_tokens is not None:
            raise self.ERROR(f"--prefix-size: not supported with {self.OPTION}")

    def hypotheses(self, n_rows: int, hyps: List[List[int]], scores: List[torch.Tensor], device) -> List[List[Dict]]:
        """fairseq's hypotheses: ``num_return_sequences`` per row, best first."""
        n = self.search["num_return_sequences"]
        results: List[List[Dict]] = []
        for row in range(n_rows):
            found = []
            for k in range(n):
                ids = hyps[row * n + k]
                positional = scores[row * n + k]
                score = float(positional.sum()) / max(len(ids), 1) ** self.lenpen
                found.append({"tokens": torch.tensor(ids, dtype=torch.long, device=device),
                              "score": torch.tensor(score), "positional_scores": positional,
                              "alignment": torch.empty(0), "attention": None})
            found.sort(key=lambda h: -float(h["score"]))
            results.append(found)
        return results

    def cut(self, answer: List[int]) -> List[int]:
        """The answer up to and with its first stop token (generate() pads finished rows)."""
        stops = set(self.stop_ids)
        for i, t in enumerate(answer):
            if t in stops:
                return answer[:i + 1]
        return answer

    def rescore(self, decoder, encoder_out, hyps: List[List[int]], n: int) -> List[torch.Tensor]:
        """The text model's log-probability of each hypothesis token (the teacher-forced
        decoder over the hypotheses: a beam search's or a sample's processed scores are not
        the model's)."""
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
