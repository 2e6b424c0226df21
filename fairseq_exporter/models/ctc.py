"""The CTC 1-best (``--exporter-source ctc``, as in the paper): the transcript read off
the ASR encoder's CTC head, with the frame segment of each token, and the pooling that
turns a segment's encoder frames into one vector per token.

fairseq's ``label_smoothed_cross_entropy_with_ctc`` trains the head (``encoder.ctc_proj``
of ``s2t_transformer``, built only when ``--ctc-weight > 0``) with ``F.ctc_loss``'s
default blank 0, which is the dictionary's ``<s>``, on targets that end in ``</s>``: the
head emits ``</s>`` as an ordinary label at the end of an utterance. The 1-best here is
the MT source format instead: the emitted tokens without any ``</s>``, then exactly one
``</s>``, whose segment is the last ``</s>`` the head emitted, else the frames after the
last emission, else the last frame.

A token's segment is the run of frames on which it was emitted (greedy: the frames whose
argmax is the token; beam: the frames the best path spends on it). Blank frames belong
to no token. Pooling the CTC log-probs over a run keeps the token as argmax, since it
wins on every frame of the run.
"""

import logging
import math
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from fairseq.data import data_utils
from torch import Tensor, nn

logger = logging.getLogger(__name__)

NO_CTC_HEAD_ADVICE = (
    "Train the ASR with a CTC head: fairseq-train --task speech_to_text --arch s2t_transformer "
    "--criterion label_smoothed_cross_entropy_with_ctc --ctc-weight 0.3 (s2t_transformer builds "
    "encoder.ctc_proj only when --ctc-weight > 0; fairseq's s2t_conformer has no CTC head), "
    "or use --exporter-source decoder.")

Segment = Tuple[int, int]  # frames [start, end) of the encoder output


def ctc_head(asr_model, checkpoint: str, arch: str, vocab_size: int) -> nn.Linear:
    """The ASR encoder's CTC projection, or an error saying how to get one."""
    head = getattr(asr_model.encoder, "ctc_proj", None)
    if head is None:
        raise ValueError(f"--exporter-source ctc needs an ASR model with a CTC head, but the ASR "
                         f"checkpoint {checkpoint or '(stored in this model)'} (arch {arch}) has none. "
                         + NO_CTC_HEAD_ADVICE)
    if head.out_features != vocab_size:
        raise ValueError(f"the CTC head of the ASR checkpoint {checkpoint} scores {head.out_features} "
                         f"labels, but its target dictionary has {vocab_size} symbols")
    return head


def frame_lengths(asr_encoder_out) -> Tensor:
    """Number of real encoder frames of each utterance (B)."""
    x = asr_encoder_out["encoder_out"][0]  # T x B x C
    mask = asr_encoder_out["encoder_padding_mask"]
    if mask:
        return (~mask[0]).sum(1)
    return torch.full((x.size(1),), x.size(0), dtype=torch.long, device=x.device)


def ctc_log_probs(head: nn.Linear, asr_encoder_out) -> Tensor:
    """CTC log-probabilities, T x B x V (as fairseq's ``get_ctc_output``)."""
    return F.log_softmax(head(asr_encoder_out["encoder_out"][0]).float(), dim=-1)


# ---- search ----------------------------------------------------------------------

def _logaddexp(a: float, b: float) -> float:
    if a == float("-inf"):
        return b
    if b == float("-inf"):
        return a
    return max(a, b) + math.log1p(math.exp(-abs(a - b)))


def prefix_beam_search(lprobs: Tensor, blank: int, beam: int) -> List[int]:
    """CTC prefix beam search of one utterance (T x V): the label sequence whose summed
    path probability is (approximately) highest, not just the best single path. Each
    frame extends only its ``beam`` most likely labels."""
    neg_inf = float("-inf")
    # prefix -> (log p ending in blank, log p ending in its last label)
    beams = {(): (0.0, neg_inf)}
    lp = lprobs.float().cpu()
    for t in range(lp.size(0)):
        frame = lp[t]
        top = frame.topk(min(beam, frame.numel())).indices.tolist()
        if blank not in top:
            top.append(blank)
        nxt = {}

        def add(prefix, p_b, p_nb):
            old_b, old_nb = nxt.get(prefix, (neg_inf, neg_inf))
            nxt[prefix] = (_logaddexp(old_b, p_b), _logaddexp(old_nb, p_nb))

        for prefix, (p_b, p_nb) in beams.items():
            total = _logaddexp(p_b, p_nb)
            for c in top:
                p = frame[c].item()
                if c == blank:
                    add(prefix, total + p, neg_inf)
                elif prefix and prefix[-1] == c:
                    add(prefix, neg_inf, p_nb + p)  # the same label continues
                    add(prefix + (c,), neg_inf, p_b + p)  # a new occurrence after a blank
                else:
                    add(prefix + (c,), neg_inf, total + p)
        beams = dict(sorted(nxt.items(), key=lambda kv: -_logaddexp(*kv[1]))[:beam])
    best = max(beams.items(), key=lambda kv: _logaddexp(*kv[1]))[0]
    return list(best)


def forced_segments(lprobs: Tensor, tokens: Sequence[int], blank: int) -> List[Segment]:
    """Viterbi alignment of ``tokens`` to one utterance's frames (T x V): the run of
    frames the best path spends on each token."""
    T, n = lprobs.size(0), len(tokens)
    if n == 0:
        return []
    ext = [blank]
    for tok in tokens:
        ext += [tok, blank]
    S = len(ext)
    emit = lprobs.float().cpu()[:, ext]  # T x S
    ext_t = torch.tensor(ext)
    # state s may also come from s-2 when it is a label differing from the label before it
    skip = torch.zeros(S, dtype=torch.bool)
    skip[2:] = ext_t[2:].ne(blank) & ext_t[2:].ne(ext_t[:-2])
    neg_inf = torch.tensor(float("-inf"))
    score = torch.full((S,), float("-inf"))
    score[0] = emit[0, 0]
    score[1] = emit[0, 1]
    back = torch.zeros(T, S, dtype=torch.long)
    for t in range(1, T):
        stay = score
        step = torch.cat([neg_inf.view(1), score[:-1]])
        jump = torch.where(skip, torch.cat([neg_inf.repeat(2), score[:-2]]), neg_inf)
        cand = torch.stack([stay, step, jump])  # 3 x S
        best, arg = cand.max(0)
        back[t] = torch.arange(S) - arg
        score = best + emit[t]
    s = S - 1 if S == 1 or score[S - 1] >= score[S - 2] else S - 2
    states = [0] * T
    for t in range(T - 1, -1, -1):
        states[t] = s
        s = int(back[t, s]) if t > 0 else s
    segments = [(T, 0)] * n
    for t, s in enumerate(states):
        if s % 2 == 1:
            start, end = segments[s // 2]
            segments[s // 2] = (min(start, t), max(end, t + 1))
    # a token the path could not place (fewer frames than the labels need) still gets a frame
    return [(s, e) if s < e else (T - 1, T) for s, e in segments]


def to_mt_source(tokens: Sequence[int], segments: Sequence[Segment], n_frames: int, eos: int,
                 drop: Sequence[int]) -> Tuple[List[int], List[Segment]]:
    """Emitted labels -> MT source ids ending in exactly one </s>, with segments
    (the </s> rule is in the module docstring). ``drop``: labels that are no token."""
    n_frames = max(n_frames, 1)
    out, out_segments, eos_segment = [], [], None
    for tok, seg in zip(tokens, segments):
        if tok == eos:
            eos_segment = seg
        elif tok not in drop:
            out.append(tok)
            out_segments.append(seg)
    if eos_segment is None:
        start = out_segments[-1][1] if out_segments else 0
        eos_segment = (start, n_frames) if start < n_frames else (n_frames - 1, n_frames)
    return out + [eos], out_segments + [eos_segment]


@dataclass
class CTCOneBest:
    tokens: Tensor  # B x L, right-padded, each row ending in </s>
    segments: Tensor  # B x L x 2: frames [start, end) of each token; (0, 0) on padding
    truncated: Tensor  # B, bool: more tokens (</s> included) than the MT's source positions

    @property
    def n_truncated(self) -> int:
        return int(self.truncated.sum())


class CTCSearch:
    """Greedy (beam 1) or prefix-beam search of the CTC head; returns MT source ids
    and segments. No autoregressive decoding: this is what makes training with the ASR
    unfrozen cheap."""

    def __init__(self, dictionary, beam: int, max_len: int, max_source_positions: int):
        self.blank = dictionary.bos()  # F.ctc_loss's default blank=0, as fairseq trains it
        self.eos, self.pad = dictionary.eos(), dictionary.pad()
        self.drop = (self.blank, self.pad)
        self.beam = beam
        self.max_len = max_len
        self.max_source_positions = max_source_positions

    @torch.no_grad()
    def __call__(self, lprobs: Tensor, lengths: Tensor) -> CTCOneBest:
        """``lprobs``: T x B x V CTC log-probs; ``lengths``: real frames per utterance."""
        if self.beam == 1:
            found = self.greedy(lprobs, lengths)
        else:
            found = self._prefix_beam(lprobs, lengths)
        if found.n_truncated:
            logger.warning(f"{found.n_truncated} CTC 1-best(s) longer than the MT's "
                           f"{self.max_source_positions} source positions were cut to fit")
        return found

    def greedy(self, lprobs: Tensor, lengths: Tensor) -> CTCOneBest:
        """Best path of the whole batch with tensor ops, on the device (no loop over
        utterances or tokens: on a GPU a Python loop would cost more than the encoder).
        The same result as the best path + ``to_mt_source`` per utterance (tested)."""
        best = lprobs.argmax(-1).t()  # B x T
        bsz, n_frames = best.shape
        lengths = lengths.to(best.device)
        t = torch.arange(n_frames, device=best.device)
        valid = t < lengths.unsqueeze(1)
        starts = torch.ones_like(valid)  # first frame of each run of equal labels
        starts[:, 1:] = best[:, 1:].ne(best[:, :-1])
        starts &= valid
        # a run ends where the next one starts, or at the utterance's last frame
        next_start = torch.where(starts, t, n_frames).flip(1).cummin(1).values.flip(1)
        ends = torch.cat([next_start[:, 1:], next_start.new_full((bsz, 1), n_frames)], 1)
        ends = torch.minimum(ends, lengths.unsqueeze(1))
        emitted = starts & best.ne(self.blank) & best.ne(self.pad)
        is_eos = emitted & best.eq(self.eos)
        keep = emitted & ~is_eos
        n_tokens = keep.sum(1)
        # </s>: the last </s> run the head emitted, else the frames after the last token
        n_real = lengths.clamp(min=1)
        last_eos = torch.where(is_eos, t, -1).max(1).values
        after = torch.where(keep, ends, 0).max(1).values
        after = torch.where(after < n_real, after, n_real - 1)
        eos_start = torch.where(last_eos >= 0, last_eos, after)
        eos_end = torch.where(last_eos >= 0, ends.gather(1, last_eos.clamp(min=0).unsqueeze(1)).squeeze(1), n_real)

        limit = min(self.max_len, self.max_source_positions - 1)  # tokens before </s>
        truncated = n_tokens.ge(self.max_source_positions)  # with </s>: more than max_source_positions
        n_kept = n_tokens.clamp(max=limit)
        width = int(n_kept.max()) + 1 if bsz else 1
        position = keep.cumsum(1) - 1
        put = keep & position.lt(limit)
        rows = torch.arange(bsz, device=best.device).unsqueeze(1).expand_as(best)
        tokens = best.new_full((bsz, width), self.pad)
        segments = best.new_zeros(bsz, width, 2)
        tokens[rows[put], position[put]] = best[put]
        segments[rows[put], position[put]] = torch.stack([t.expand_as(best)[put], ends[put]], -1)
        at_eos = torch.arange(bsz, device=best.device)
        tokens[at_eos, n_kept] = self.eos
        segments[at_eos, n_kept] = torch.stack([eos_start, eos_end], -1)
        return CTCOneBest(tokens, segments, truncated)

    def _prefix_beam(self, lprobs: Tensor, lengths: Tensor) -> CTCOneBest:
        rows, segs, truncated = [], [], []
        limit = min(self.max_len, self.max_source_positions - 1)  # tokens before </s>
        for b, n in enumerate(lengths.tolist()):
            frames = lprobs[:n, b]
            labels = prefix_beam_search(frames, self.blank, self.beam)
            segments = forced_segments(frames, labels, self.blank)
            tokens, segments = to_mt_source(labels, segments, n, self.eos, self.drop)
            truncated.append(len(tokens) > self.max_source_positions)
            if len(tokens) - 1 > limit:
                tokens = tokens[:limit] + tokens[-1:]
                segments = segments[:limit] + segments[-1:]
            rows.append(torch.tensor(tokens, dtype=torch.long))
            segs.append(torch.tensor(segments, dtype=torch.long).view(-1, 2))
        tokens = data_utils.collate_tokens(rows, self.pad, left_pad=False).to(lprobs.device)
        segments = lprobs.new_zeros(tokens.size(0), tokens.size(1), 2, dtype=torch.long)
        for b, seg in enumerate(segs):
            segments[b, : len(seg)] = seg.to(lprobs.device)
        return CTCOneBest(tokens, segments, torch.tensor(truncated, device=tokens.device))


# ---- pooling ---------------------------------------------------------------------

def segment_weights(segments: Tensor, n_frames: int, dtype=torch.float) -> Tensor:
    """B x L x T averaging weights: 1/len over each token's frames, 0 elsewhere
    (and everywhere for padding, whose segment is empty)."""
    t = torch.arange(n_frames, device=segments.device)
    start, end = segments[..., :1], segments[..., 1:]
    inside = (t >= start) & (t < end)
    return inside.to(dtype) / (end - start).clamp(min=1).to(dtype)


def pool_segments(frames: Tensor, segments: Tensor) -> Tensor:
    """Mean of ``frames`` (B x T x C) over each token's segment: B x L x C."""
    return segment_weights(segments, frames.size(1), frames.dtype) @ frames
