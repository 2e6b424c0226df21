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
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
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

def candidate_labels(lprobs: Tensor, k: int) -> Tensor:
    """Each frame's ``k`` most likely labels (``lprobs`` ... x V -> ... x k), most likely
    first, equal log-probs in label order: ``topk`` alone leaves the order of ties to the
    implementation, and a stable sort of the whole vocabulary costs ~10x a topk."""
    V = lprobs.size(-1)
    if k < V:
        values, labels = lprobs.topk(k + 1, dim=-1)
        ambiguous = values[..., k - 1] == values[..., k]  # a tie across the cut: which labels?
        labels = labels[..., :k]
    if k == V or bool(ambiguous.any()):  # rare with real log-probs: the labels by a pass over V
        kth = lprobs.topk(k, dim=-1).values[..., -1:]
        above, tied = lprobs > kth, lprobs == kth
        chosen = above | (tied & (tied.cumsum(-1) <= k - above.sum(-1, keepdim=True)))
        labels = (chosen * torch.arange(V, 0, -1, device=lprobs.device)).topk(k, dim=-1).indices
    labels = labels.sort(dim=-1).values  # label order, then stably by log-prob
    return labels.gather(-1, lprobs.gather(-1, labels).sort(dim=-1, descending=True, stable=True).indices)


def prefix_beam_search(lprobs: Tensor, lengths: Tensor, blank: int, beam: int) -> Tuple[Tensor, Tensor]:
    """CTC prefix beam search of a batch (``lprobs`` T x B x V, ``lengths`` real frames):
    per utterance, the label sequence whose summed path probability is (approximately)
    highest, not just the best single path; each frame extends only its ``beam`` most
    likely labels. Returns labels B x N (-1 past each end) and their counts (B).

    Batch x beam in tensor ops, one step per frame (a loop over utterances and prefixes
    in Python took 30-120 ms an utterance). Scores are summed in float64. Ties are broken
    by order, as the per-utterance definition in tests/ctc_reference.py breaks them: a
    frame's candidate labels are its ``beam`` most likely (equal log-probs: lower label
    first) then the blank; equal prefix scores keep the order in which the prefixes were
    first produced (beam rank, then candidate label, the prefix itself before the
    prefix + label); the 1-best is the first prefix of the last beam."""
    T, B, V = lprobs.shape
    dev = lprobs.device
    K, Kt = beam, min(beam, V)
    lengths = lengths.to(dev)
    neg_inf = torch.tensor(float("-inf"), dtype=torch.float64, device=dev)
    prefix = torch.full((B, K, T + 1), -1, dtype=torch.long, device=dev)  # labels, -1 past the end
    n_labels = torch.zeros(B, K, dtype=torch.long, device=dev)
    last = torch.full((B, K), -1, dtype=torch.long, device=dev)  # -1: the empty prefix
    p_b = torch.full((B, K), float("-inf"), dtype=torch.float64, device=dev)
    p_b[:, 0] = 0.0
    p_nb = torch.full_like(p_b, float("-inf"))
    alive = torch.zeros(B, K, dtype=torch.bool, device=dev)
    alive[:, 0] = True
    slots = torch.arange(K, device=dev)
    width = Kt + 1  # candidate positions per prefix: the top labels, then the blank if not among them
    never = 2 * K * width + 2  # order of what does not exist
    chunk = max(1, (1 << 22) // max(B * V, 1))  # frames whose candidates are found at once
    for t in range(T):
        if t % chunk == 0:
            tops = candidate_labels(lprobs[t: t + chunk], Kt)
        frame = lprobs[t]  # B x V
        top = tops[t % chunk]  # B x Kt
        top_lp = frame.gather(1, top).double()
        blank_at = torch.where(top.eq(blank).any(1), top.eq(blank).int().argmax(1), Kt)  # B
        total = torch.logaddexp(p_b, p_nb)  # B x K
        is_last = top.unsqueeze(1).eq(last.unsqueeze(2))  # B x K x Kt: the candidate repeats the prefix's label
        last_on_top = is_last.any(-1)
        last_at = is_last.int().argmax(-1)
        # the prefix itself: after a blank, or its last label continuing
        stay_b = total + frame[:, blank].double().unsqueeze(1)
        stay_nb = torch.where(last_on_top, p_nb + frame.gather(1, last.clamp(min=0)).double(), neg_inf)
        stay_order = 2 * (slots * width + blank_at.unsqueeze(1))
        stay_order = torch.where(last_on_top, torch.minimum(stay_order, 2 * (slots * width + last_at)), stay_order)
        # the prefix + a label (after a blank if it repeats the last label)
        grow = alive.unsqueeze(2) & top.ne(blank).unsqueeze(1)  # B x K x Kt
        grow_nb = torch.where(is_last, p_b.unsqueeze(2), total.unsqueeze(2)) + top_lp.unsqueeze(1)
        grow_order = (2 * (slots.unsqueeze(1) * width + torch.arange(Kt, device=dev)) + 1).expand(B, K, Kt)
        # prefix j + label i may be prefix k of the beam: one prefix, its scores summed
        n = int(n_labels.max()) + 1  # positions that hold a label, and one -1
        head = prefix[:, :, :n].scatter(2, (n_labels - 1).clamp(min=0).unsqueeze(2), -1)  # without its last label
        parent = (n_labels.unsqueeze(2) == n_labels.unsqueeze(1) + 1) & \
            head.unsqueeze(2).eq(prefix[:, :, :n].unsqueeze(1)).all(-1) & alive.unsqueeze(2) & alive.unsqueeze(1)
        same = parent.unsqueeze(3) & is_last.unsqueeze(2) & grow.unsqueeze(1)  # B x K(k) x K(j) x Kt(i)
        # (at most one (j, i) per k: the max picks it, or -inf)
        stay_nb = torch.logaddexp(stay_nb, torch.where(same, grow_nb.unsqueeze(1), neg_inf).flatten(2).amax(-1))
        stay_order = torch.minimum(stay_order, torch.where(same, grow_order.unsqueeze(1), never).flatten(2).amin(-1))
        grow = grow & ~same.any(1)
        # the next beam: best scores first, equal scores in the order produced
        score = torch.cat([torch.where(alive, torch.logaddexp(stay_b, stay_nb), neg_inf),
                           torch.where(grow, grow_nb, neg_inf).flatten(1)], 1)
        order = torch.cat([torch.where(alive, stay_order, never), torch.where(grow, grow_order, never).flatten(1)], 1)
        exists = torch.cat([alive, grow.flatten(1)], 1)
        by_order = order.argsort(dim=1, stable=True)
        pick = by_order.gather(1, score.gather(1, by_order).sort(dim=1, descending=True, stable=True).indices)[:, :K]
        from_slot = torch.cat([slots.expand(B, K), slots.view(1, K, 1).expand(B, K, Kt).flatten(1)], 1).gather(1, pick)
        label = torch.cat([torch.full((B, K), -1, device=dev, dtype=torch.long),
                           top.unsqueeze(1).expand(B, K, Kt).flatten(1)], 1).gather(1, pick)
        new_b = torch.cat([stay_b, torch.full((B, K * Kt), float("-inf"), dtype=torch.float64, device=dev)], 1)
        new_nb = torch.cat([stay_nb, grow_nb.flatten(1)], 1)
        new_prefix = prefix[:, :, :n].gather(1, from_slot.unsqueeze(2).expand(B, K, n))
        new_n = n_labels.gather(1, from_slot)
        grows = label.ge(0)
        new_prefix.scatter_(2, new_n.unsqueeze(2), torch.where(grows, label, -1).unsqueeze(2))
        on = (t < lengths).view(B, 1)  # utterances that have ended keep their beam
        prefix[:, :, :n] = torch.where(on.unsqueeze(2), new_prefix, prefix[:, :, :n])
        n_labels = torch.where(on, new_n + grows.long(), n_labels)
        last = torch.where(on, torch.where(grows, label, last.gather(1, from_slot)), last)
        p_b = torch.where(on, new_b.gather(1, pick), p_b)
        p_nb = torch.where(on, new_nb.gather(1, pick), p_nb)
        alive = torch.where(on, exists.gather(1, pick), alive)
    best_n = n_labels[:, 0]
    return prefix[:, 0, : int(best_n.max()) if B else 0], best_n


def forced_segments(lprobs: Tensor, lengths: Tensor, labels: Tensor, n_labels: Tensor, blank: int) -> Tensor:
    """Viterbi alignment of each utterance's ``labels`` (B x N, ``n_labels`` real) to its
    frames (``lprobs`` T x B x V, ``lengths`` real): the run of frames [start, end) the
    best path spends on each label, B x N x 2. Equal scores: stay, then step, then skip.
    A label the path could not place (fewer frames than labels need) gets the last frame."""
    T, B, _ = lprobs.shape
    dev = lprobs.device
    N = labels.size(1)
    S = 2 * N + 1
    real = torch.arange(N, device=dev) < n_labels.unsqueeze(1)
    ext = torch.full((B, S), blank, dtype=torch.long, device=dev)
    ext[:, 1::2] = torch.where(real, labels, blank)
    emit = lprobs.float().gather(2, ext.unsqueeze(0).expand(T, B, S))  # T x B x S
    skip = torch.zeros(B, S, dtype=torch.bool, device=dev)  # s may come from s-2: a label unlike the one before
    skip[:, 2:] = ext[:, 2:].ne(blank) & ext[:, 2:].ne(ext[:, :-2])
    lengths = lengths.to(dev)
    score = torch.full((B, S), float("-inf"), device=dev)
    if T:
        score[:, :2] = emit[0, :, :2]
    neg = score.new_full((B, 2), float("-inf"))
    moves = torch.zeros(T, B, S, dtype=torch.uint8, device=dev)  # 0 stay, 1 step, 2 skip
    for t in range(1, T):
        step = torch.cat([neg[:, :1], score[:, :-1]], 1)
        jump = torch.where(skip, torch.cat([neg, score[:, :-2]], 1), neg[:, :1])
        move = step.gt(score).to(torch.uint8)
        best = torch.maximum(score, step)
        move = torch.where(jump.gt(best), 2, move)
        best = torch.maximum(best, jump)
        on = (t < lengths).unsqueeze(1)
        moves[t] = move
        score = torch.where(on, best + emit[t], score)
    last_label = (2 * n_labels - 1).clamp(min=0)
    final_blank = last_label + 1
    s = torch.where(score.gather(1, final_blank.unsqueeze(1)) >= score.gather(1, last_label.unsqueeze(1)),
                    final_blank.unsqueeze(1), last_label.unsqueeze(1)).squeeze(1)
    start = lengths.view(B, 1).expand(B, N).clone()
    end = torch.zeros(B, N, dtype=torch.long, device=dev)
    for t in range(T - 1, -1, -1):
        on = t < lengths
        label_here = on & s.remainder(2).eq(1)
        at = torch.where(label_here, s // 2, 0).unsqueeze(1)
        start.scatter_reduce_(1, at, torch.where(label_here, t, T + 1).view(B, 1), "amin")
        end.scatter_reduce_(1, at, torch.where(label_here, t + 1, 0).view(B, 1), "amax")
        if t > 0:
            s = torch.where(on, s - moves[t].gather(1, s.unsqueeze(1)).squeeze(1).long(), s)
    placed = start < end
    last_frame = (lengths - 1).view(B, 1).expand(B, N)
    segments = torch.stack([torch.where(placed, start, last_frame), torch.where(placed, end, last_frame + 1)], -1)
    return segments.masked_fill(~real.unsqueeze(2), 0)


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
        """The prefix beam search and each label's frames for the whole batch in tensor
        ops; only the MT source format (a few list operations per row) is per utterance.
        The same result as tests/ctc_reference.py's per-utterance definition (tested)."""
        labels, n_labels = prefix_beam_search(lprobs, lengths, self.blank, self.beam)
        frames = forced_segments(lprobs, lengths, labels, n_labels, self.blank).tolist()
        rows, segs, truncated = [], [], []
        limit = min(self.max_len, self.max_source_positions - 1)  # tokens before </s>
        for b, (row, n, n_frames) in enumerate(zip(labels.tolist(), n_labels.tolist(), lengths.tolist())):
            tokens, segments = to_mt_source(row[:n], [tuple(s) for s in frames[b][:n]], n_frames, self.eos, self.drop)
            truncated.append(len(tokens) > self.max_source_positions)
            if len(tokens) - 1 > limit:
                tokens = tokens[:limit] + tokens[-1:]
                segments = segments[:limit] + segments[-1:]
            rows.append(tokens)
            segs.append(segments)
        width = max(len(r) for r in rows)
        tokens = torch.tensor([r + [self.pad] * (width - len(r)) for r in rows], dtype=torch.long)
        segments = torch.tensor([s + [(0, 0)] * (width - len(s)) for s in segs], dtype=torch.long).view(-1, width, 2)
        device = lprobs.device
        return CTCOneBest(tokens.to(device), segments.to(device), torch.tensor(truncated, device=device))


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
