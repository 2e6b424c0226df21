"""Per-utterance definitions of the CTC prefix beam search and of the forced alignment
that gives each 1-best token its frames: what ``CTCSearch`` batches (tested against these
on random batches) and the per-utterance baseline ``benchmarks/scaling.py`` times.

Ties are broken by order, never by chance: a frame's candidate labels are its ``beam``
most likely, equal log-probs in label order (a stable sort), then the blank if not
among them; the prefixes of the next beam are ranked by score, and equal scores keep the
order in which the prefixes were first produced (the beam's prefixes in rank order, each
extended by the candidate labels in order: the prefix itself before the prefix + label).
The 1-best is the first prefix of the last beam."""

import math
from typing import List, Sequence, Tuple

import torch
from torch import Tensor

from fairseq_exporter.models.ctc import to_mt_source


def _logaddexp(a: float, b: float) -> float:
    if a == float("-inf"):
        return b
    if b == float("-inf"):
        return a
    return max(a, b) + math.log1p(math.exp(-abs(a - b)))


def prefix_beam_search(lprobs: Tensor, blank: int, beam: int) -> List[int]:
    """CTC prefix beam search of one utterance (T x V, real frames)."""
    neg_inf = float("-inf")
    beams = {(): (0.0, neg_inf)}  # prefix -> (log p ending in blank, log p ending in its last label)
    lp = lprobs.double().cpu()
    for t in range(lp.size(0)):
        frame = lp[t]
        top = frame.sort(descending=True, stable=True).indices[: min(beam, frame.numel())].tolist()
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
        beams = dict(sorted(nxt.items(), key=lambda kv: -_logaddexp(*kv[1]))[:beam])  # stable
    return list(next(iter(beams)))


def forced_segments(lprobs: Tensor, tokens: Sequence[int], blank: int) -> List[Tuple[int, int]]:
    """Viterbi alignment of ``tokens`` to one utterance's frames (T x V): the run of
    frames the best path spends on each token (equal scores: stay, then step, then skip)."""
    T, n = lprobs.size(0), len(tokens)
    if n == 0:
        return []
    ext = [blank]
    for tok in tokens:
        ext += [tok, blank]
    S = len(ext)
    emit = lprobs.float().cpu()[:, ext]  # T x S
    ext_t = torch.tensor(ext)
    skip = torch.zeros(S, dtype=torch.bool)  # s may come from s-2: a label unlike the label before it
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
        best, arg = torch.stack([stay, step, jump]).max(0)  # the first of equal maxima
        back[t] = torch.arange(S) - arg
        score = best + emit[t]
    s = S - 1 if score[S - 1] >= score[S - 2] else S - 2
    states = [0] * T
    for t in range(T - 1, -1, -1):
        states[t] = s
        s = int(back[t, s]) if t > 0 else s
    segments = [(T, 0)] * n
    for t, s in enumerate(states):
        if s % 2 == 1:
            start, end = segments[s // 2]
            segments[s // 2] = (min(start, t), max(end, t + 1))
    return [(s, e) if s < e else (T - 1, T) for s, e in segments]


def prefix_beam_one_by_one(lprobs: Tensor, lengths: Tensor, blank: int, pad: int, eos: int, beam: int,
                           max_len: int, max_source_positions: int):
    """What ``CTCSearch`` with beam > 1 returns, one utterance at a time: the search, the
    forced alignment, the MT source format, the cut. (tokens, segments, truncated) per row."""
    limit = min(max_len, max_source_positions - 1)
    rows = []
    for b, n in enumerate(lengths.tolist()):
        frames = lprobs[:n, b]
        labels = prefix_beam_search(frames, blank, beam)
        tokens, segments = to_mt_source(labels, forced_segments(frames, labels, blank), n, eos, (blank, pad))
        truncated = len(tokens) > max_source_positions
        if len(tokens) - 1 > limit:
            tokens, segments = tokens[:limit] + tokens[-1:], segments[:limit] + segments[-1:]
        rows.append((tokens, [list(s) for s in segments], truncated))
    return rows
