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
log-probabilities of the chosen tokens: its raw logits as greedy search goes, one teacher-forced
pass after a beam search or sampling (whose processed scores are not the MT's).
"""

import contextlib

import torch

from fairseq_exporter.models.hf_mt import OPTION, HFMTError
from fairseq_exporter.models.hf_search import TransformersSearch, neutral_settings


@contextlib.contextmanager
def own_settings_only(model):
    """generate() with only the settings it is given (the model's generation_config set aside)."""
    from transformers import GenerationConfig

    kept = model.generation_config
    model.generation_config = GenerationConfig()
    try:
        yield
    finally:
        model.generation_config = kept


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
        with own_settings_only(mt):
            out = mt.generate(**decoder.source.inputs(tokens, embeddings), generation_config=self.generation_config(frames),
                              return_dict_in_generate=True, output_logits=greedy)
        sequences = out.sequences
        hyps = [self.cut(row[1:]) for row in sequences.tolist()]  # after the decoder start token
        n = self.search["num_return_sequences"]
        if greedy:
            chosen = sequences[:, 1:1 + len(out.logits)]
            lprobs = torch.stack([torch.log_softmax(step.float(), -1).gather(1, chosen[:, t:t + 1]).squeeze(1)
                                  for t, step in enumerate(out.logits)], 1).cpu()
            scores = [lprobs[row, :len(h)] for row, h in enumerate(hyps)]
        else:
            scores = self.rescore(decoder, encoder_out, hyps, n)
        return self.hypotheses(len(tokens), hyps, scores, tokens.device)
