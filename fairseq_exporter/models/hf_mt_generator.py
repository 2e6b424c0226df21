"""fairseq-generate's search for the encoder-decoder back-end (--hf-mt-checkpoint):
``transformers``' own ``generate()`` on the MT's inputs, so that ``--coupling onebest`` is the
cascade a user runs with the MT:

    tokenizer.src_lang = SRC                     # NLLB, M2M100, mBART-50
    inputs = tokenizer(transcripts, return_tensors="pt", padding=True)
    mt.generate(**inputs, num_beams=BEAM, length_penalty=LENPEN, early_stopping=True,
                max_new_tokens=MAX_LEN_B, min_new_tokens=MIN_LEN (+1 for the language code),
                forced_bos_token_id=<TGT's code> (NLLB, M2M100, mBART-50), forced_eos_token_id=eos,
                bad_words_ids=[[pad]], do_sample=False)

fairseq's options map onto it as models/hf_search.py says. The settings above are the plugin's
own: the target language from --mt-tgt-lang; a translation cut at the length limit ends in
</s>, and pad is never generated, as fairseq's SequenceGenerator does (OPUS-MT's own
generation_config says the same). Nothing of the MT's own ``generation_config`` (its
``num_beams``, ``max_length``, ``no_repeat_ngram_size``, ``bad_words_ids``...) reaches the
search: ``generate()`` fills every setting left unset from it, so it is set aside while
``generate()`` runs. With ``--coupling exporter`` the exporter outputs go in as
``inputs_embeds`` with the same attention mask. The positional scores are the MT's
log-probabilities of the chosen tokens: its raw logits as greedy search goes; after a beam
search or sampling (whose processed scores are not the MT's), one teacher-forced pass of its
decoder on the encoder output the search read (the encoder runs once).
"""

from typing import List

import torch

from fairseq_exporter.models.hf_mt import OPTION, HFMTError
from fairseq_exporter.models.hf_search import SCORE_CHUNK, TransformersSearch, neutral_settings, own_settings_only


class HFMTGenerator(TransformersSearch):
    """A fairseq generator (``generate(models, sample)``) whose search is the MT's ``generate()``."""

    OPTION, ERROR = OPTION, HFMTError

    def __init__(self, model, tgt_dict, args):
        super().__init__(model, tgt_dict, args)
        self.forced_bos = tgt_dict.languages.forced_bos

    def generation_config(self, n_frames: int):
        from transformers import GenerationConfig

        decoder = self.model.decoder
        max_new = self.max_new_tokens(n_frames)
        first = 1 if self.forced_bos is not None else 0  # the language code is a generated token
        forced = {} if self.forced_bos is None else {"forced_bos_token_id": self.forced_bos}
        return GenerationConfig(**{**neutral_settings(), "top_k": 0, **self.search}, max_new_tokens=max_new,
                                min_new_tokens=min(self.min_len + first, max_new), eos_token_id=self.eos,
                                pad_token_id=self.pad, bos_token_id=None, decoder_start_token_id=decoder.decoder_start,
                                forced_eos_token_id=self.eos, bad_words_ids=[[self.pad]], **forced)

    @torch.no_grad()
    def generate(self, models, sample, prefix_tokens=None, constraints=None, bos_token=None, **unused):
        # transformers only here: fairseq imports every module of the plugin's models/ at start-up
        from transformers.modeling_outputs import BaseModelOutput

        self.refuse_prefix(prefix_tokens)
        model = models[0]
        model.eval()
        net_input = sample["net_input"]
        encoder_out = model.encoder(**net_input)
        decoder = model.decoder
        tokens = encoder_out["source_tokens"][0]
        embeddings = encoder_out["source_embeddings"][0] if encoder_out["source_embeddings"] else None
        mt = decoder.mt.module
        frames = int(net_input["src_lengths"].max()) if "src_lengths" in net_input else 0
        greedy = self.scores_while_searching
        inputs = decoder.source.inputs(tokens, embeddings)
        # the encoder once: generate() continues from its output as it would from the inputs,
        # and a beam search's hypotheses are scored on it
        states = mt.get_encoder()(**inputs).last_hidden_state
        with own_settings_only(mt):  # (generate() expands the output it is given to the beams, in place)
            out = mt.generate(encoder_outputs=BaseModelOutput(last_hidden_state=states),
                              attention_mask=inputs["attention_mask"],
                              generation_config=self.generation_config(frames), return_dict_in_generate=True,
                              output_logits=greedy)
        sequences = out.sequences
        hyps = [self.cut(row[1:]) for row in sequences.tolist()]  # after the decoder start token
        if greedy:
            chosen = sequences[:, 1:1 + len(out.logits)]
            lprobs = torch.stack([torch.log_softmax(step.float(), -1).gather(1, chosen[:, t:t + 1]).squeeze(1)
                                  for t, step in enumerate(out.logits)], 1).cpu()
            scores = [lprobs[row, :len(h)] for row, h in enumerate(hyps)]
        else:
            scores = self.scores_on(mt, states, inputs["attention_mask"], hyps,
                                    self.search["num_return_sequences"], decoder.decoder_start)
        return self.hypotheses(len(tokens), hyps, scores, tokens.device)

    def scores_on(self, mt, states, mask, hyps: List[List[int]], n: int, start: int) -> List[torch.Tensor]:
        """The MT's log-probability of each hypothesis token: its decoder, teacher forced, on the
        encoder output the search read (a beam search's processed scores are not the MT's)."""
        from transformers.modeling_outputs import BaseModelOutput

        scores = []
        for first in range(0, len(hyps), SCORE_CHUNK):
            rows = list(range(first, min(len(hyps), first + SCORE_CHUNK)))
            order = torch.tensor([r // n for r in rows], device=states.device)
            width = max(1, max(len(hyps[r]) for r in rows))
            target = torch.full((len(rows), width), self.pad, dtype=torch.long, device=states.device)
            for i, r in enumerate(rows):
                target[i, :len(hyps[r])] = torch.tensor(hyps[r], dtype=torch.long)
            prev = torch.cat([target.new_full((len(rows), 1), start), target[:, :-1]], 1)
            logits = mt(encoder_outputs=BaseModelOutput(last_hidden_state=states.index_select(0, order)),
                        attention_mask=mask.index_select(0, order), decoder_input_ids=prev, use_cache=False).logits
            lprobs = torch.log_softmax(logits.float(), -1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
            scores.extend(lprobs[i, :len(hyps[r])].cpu() for i, r in enumerate(rows))
        return scores
