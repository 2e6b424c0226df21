"""The CTC 1-best on hand-made posteriors: best path, the frame segment of each token,
the MT source format (one closing </s>), and mean pooling over segments."""

import math

import torch

from ctc_reference import forced_segments, prefix_beam_one_by_one, prefix_beam_search
from fairseq_exporter.models.ctc import CTCSearch, pool_segments, to_mt_source

BLANK, PAD, EOS = 0, 1, 2  # fairseq's dictionary: <s> (the CTC blank), <pad>, </s>


def greedy_path(lprobs, blank):
    """The best path's definition, one utterance (T x V, real frames): frame argmax, repeats
    collapsed, blanks dropped; each label with its run of frames. What CTCSearch batches."""
    labels, counts = torch.unique_consecutive(lprobs.argmax(-1), return_counts=True)
    ends = counts.cumsum(0)
    tokens, segments = [], []
    for label, end, count in zip(labels.tolist(), ends.tolist(), counts.tolist()):
        if label != blank:
            tokens.append(label)
            segments.append((end - count, end))
    return tokens, segments


class _Dictionary:
    def bos(self):
        return BLANK

    def pad(self):
        return PAD

    def eos(self):
        return EOS


def posteriors(path, vocab=8, p=0.9):
    """T x V log-probs whose argmax follows ``path``."""
    out = torch.full((len(path), vocab), (1 - p) / (vocab - 1))
    out[torch.arange(len(path)), torch.tensor(path)] = p
    return out.log()


def test_greedy_collapses_repeats_drops_blanks_and_keeps_each_tokens_run():
    #        frame: 0  1  2  3  4  5  6  7  8
    lp = posteriors([0, 5, 5, 0, 5, 6, 6, 0, 0])
    tokens, segments = greedy_path(lp, BLANK)
    assert tokens == [5, 5, 6]  # a blank between two 5s keeps both
    assert segments == [(1, 3), (4, 5), (5, 7)]


def test_mt_source_ends_in_exactly_one_eos_with_a_segment():
    # the head emitted </s> at the end (as fairseq trains it): that run is its segment
    assert to_mt_source([5, 6, EOS], [(1, 3), (4, 5), (7, 9)], 10, EOS, (BLANK, PAD)) == \
        ([5, 6, EOS], [(1, 3), (4, 5), (7, 9)])
    # no </s>: the frames after the last token
    assert to_mt_source([5, 6], [(1, 3), (4, 5)], 10, EOS, (BLANK, PAD)) == \
        ([5, 6, EOS], [(1, 3), (4, 5), (5, 10)])
    # no </s> and the last token runs to the end: the last frame
    assert to_mt_source([5], [(1, 10)], 10, EOS, (BLANK, PAD)) == ([5, EOS], [(1, 10), (9, 10)])
    # a stray </s> in the middle is not a token; the last </s> run is the segment
    assert to_mt_source([5, EOS, 6, EOS], [(0, 1), (1, 2), (2, 3), (3, 4)], 4, EOS, (BLANK, PAD)) == \
        ([5, 6, EOS], [(0, 1), (2, 3), (3, 4)])
    # nothing emitted: still a valid MT input, </s> over the whole utterance
    assert to_mt_source([], [], 6, EOS, (BLANK, PAD)) == ([EOS], [(0, 6)])


def test_search_pads_the_batch_and_cuts_to_the_mt_positions():
    lp = torch.stack([posteriors([0, 5, 5, 0, 6, EOS, 0]), posteriors([0, 0, 0, 0, 0, 0, 0])], dim=1)
    found = CTCSearch(_Dictionary(), beam=1, max_len=200, max_source_positions=1024)(lp, torch.tensor([7, 4]))
    assert found.tokens.tolist() == [[5, 6, EOS], [EOS, PAD, PAD]]
    assert found.segments.tolist() == [[[1, 3], [4, 5], [5, 6]], [[0, 4], [0, 0], [0, 0]]]
    cut = CTCSearch(_Dictionary(), beam=1, max_len=200, max_source_positions=2)(lp, torch.tensor([7, 4]))
    assert cut.tokens.tolist() == [[5, EOS], [EOS, PAD]] and cut.n_truncated == 1
    assert cut.segments[0].tolist() == [[1, 3], [5, 6]]


def test_mean_pooling_over_segments_and_nothing_on_padding():
    frames = torch.arange(2 * 6 * 3, dtype=torch.float).view(2, 6, 3)
    segments = torch.tensor([[[0, 2], [2, 3], [3, 6]], [[1, 5], [0, 0], [0, 0]]])
    pooled = pool_segments(frames, segments)
    torch.testing.assert_close(pooled[0, 0], frames[0, 0:2].mean(0))
    torch.testing.assert_close(pooled[0, 1], frames[0, 2])
    torch.testing.assert_close(pooled[0, 2], frames[0, 3:6].mean(0))
    torch.testing.assert_close(pooled[1, 0], frames[1, 1:5].mean(0))
    assert pooled[1, 1:].abs().sum() == 0 and not pooled.isnan().any()
    # the gradient reaches exactly the frames of each segment
    frames.requires_grad_(True)
    pool_segments(frames, segments)[1, 0].sum().backward()
    assert frames.grad[1].abs().sum(-1).nonzero().flatten().tolist() == [1, 2, 3, 4]


def test_pooled_ctc_log_probs_keep_the_token_as_argmax():
    lp = posteriors([0, 5, 5, 5, 0, 6, 0], p=0.6)
    lp[2, 6] = math.log(0.39)  # a close runner-up on one frame of the 5-run
    tokens, segments = greedy_path(lp, BLANK)
    pooled = pool_segments(lp.unsqueeze(0), torch.tensor([segments]))[0]
    assert pooled.argmax(-1).tolist() == tokens == [5, 6]


def test_prefix_beam_finds_the_sequence_the_best_path_misses():
    """Best path: blank blank (p .36); but 'a' summed over its paths (a-, -a, aa) is .64."""
    p = torch.tensor([[0.6, 0.0, 0.0, 0.4], [0.6, 0.0, 0.0, 0.4]]).clamp(min=1e-12).log()
    assert greedy_path(p, BLANK)[0] == []
    assert prefix_beam_search(p, BLANK, beam=3) == [3]


def test_forced_alignment_gives_each_token_its_frames():
    lp = posteriors([0, 5, 5, 0, 5, 6, 6, 0])
    assert forced_segments(lp, [5, 5, 6], BLANK) == [(1, 3), (4, 5), (5, 7)]
    # beam search over a clear utterance: same 1-best and segments as greedy
    found = CTCSearch(_Dictionary(), beam=4, max_len=200, max_source_positions=1024)(
        lp.unsqueeze(1), torch.tensor([8]))
    assert found.tokens.tolist() == [[5, 5, 6, EOS]]
    assert found.segments.tolist() == [[[1, 3], [4, 5], [5, 7], [7, 8]]]


def _greedy_one_by_one(lp, lengths, max_len, max_source_positions):
    """The per-utterance definition: best path, then the MT source format, then the cut."""
    limit = min(max_len, max_source_positions - 1)
    rows = []
    for b, n in enumerate(lengths.tolist()):
        labels, segments = greedy_path(lp[:n, b], BLANK)
        tokens, segments = to_mt_source(labels, segments, n, EOS, (BLANK, PAD))
        if len(tokens) - 1 > limit:
            tokens, segments = tokens[:limit] + tokens[-1:], segments[:limit] + segments[-1:]
        rows.append((tokens, [list(s) for s in segments]))
    return rows


def test_batched_greedy_search_equals_the_per_utterance_best_path():
    """Random batches over a 6-label vocabulary (blank, pad and </s> frequent; runs,
    repeated </s>, empty and one-frame utterances, rows cut to the MT positions)."""
    gen = torch.Generator().manual_seed(0)
    for trial in range(300):
        bsz, n_frames = int(torch.randint(1, 6, (1,), generator=gen)), int(torch.randint(1, 15, (1,), generator=gen))
        path = torch.randint(0, 6, (n_frames, bsz), generator=gen)
        path = torch.where(torch.rand(n_frames, bsz, generator=gen) < 0.3, path.roll(1, 0), path)  # runs
        lp = torch.stack([posteriors(path[:, b].tolist(), vocab=6) for b in range(bsz)], dim=1)
        lengths = torch.randint(0, n_frames + 1, (bsz,), generator=gen)
        lengths[0] = n_frames
        max_len, positions = [(200, 1024), (3, 1024), (200, 3)][trial % 3]
        found = CTCSearch(_Dictionary(), beam=1, max_len=max_len, max_source_positions=positions)(lp, lengths)
        expected = _greedy_one_by_one(lp, lengths, max_len, positions)
        assert found.tokens.size(1) == max(len(tokens) for tokens, _ in expected)
        for b, (tokens, segments) in enumerate(expected):
            assert found.tokens[b].tolist() == tokens + [PAD] * (found.tokens.size(1) - len(tokens)), (trial, b)
            assert found.segments[b, : len(tokens)].tolist() == segments, (trial, b)
            assert found.segments[b, len(tokens):].abs().sum() == 0


def _random_ctc_batch(gen, bsz, n_frames, vocab, peaky):
    """T x B x V log-probs without ties: Gaussian logits, scaled up to make some frames
    confident (runs, repeats across a blank) as a trained CTC head is."""
    scale = torch.where(torch.rand(n_frames, bsz, 1, generator=gen) < peaky, 6.0, 1.5)
    logits = torch.randn(n_frames, bsz, vocab, generator=gen) * scale
    logits[..., BLANK] += 2.0 * torch.rand(n_frames, bsz, generator=gen)  # blanks frequent, as trained
    return logits.log_softmax(-1)


def test_batched_prefix_beam_search_equals_the_per_utterance_definition():
    """Random batches (beams 2-6, vocabularies 3-8 with blank, pad and </s>; empty and
    one-frame utterances; rows cut to the MT positions): the batched search gives each
    utterance the tokens, segments and cut flag of tests/ctc_reference.py."""
    gen = torch.Generator().manual_seed(0)
    for trial in range(150):
        beam, vocab = int(torch.randint(2, 7, (1,), generator=gen)), int(torch.randint(3, 9, (1,), generator=gen))
        bsz, n_frames = int(torch.randint(1, 6, (1,), generator=gen)), int(torch.randint(1, 16, (1,), generator=gen))
        lp = _random_ctc_batch(gen, bsz, n_frames, vocab, peaky=float(torch.rand(1, generator=gen)))
        lengths = torch.randint(0, n_frames + 1, (bsz,), generator=gen)
        lengths[0] = n_frames
        max_len, positions = [(200, 1024), (3, 1024), (200, 3)][trial % 3]
        found = CTCSearch(_Dictionary(), beam=beam, max_len=max_len, max_source_positions=positions)(lp, lengths)
        expected = prefix_beam_one_by_one(lp, lengths, BLANK, PAD, EOS, beam, max_len, positions)
        assert found.tokens.size(1) == max(len(tokens) for tokens, _, _ in expected)
        for b, (tokens, segments, truncated) in enumerate(expected):
            where = (trial, b, beam, vocab)
            assert found.tokens[b].tolist() == tokens + [PAD] * (found.tokens.size(1) - len(tokens)), where
            assert found.segments[b, : len(tokens)].tolist() == segments, where
            assert found.segments[b, len(tokens):].abs().sum() == 0, where
            assert bool(found.truncated[b]) == truncated, where


def test_prefix_beam_ties_go_to_the_lower_label_in_both_searches():
    """Two labels with equal posteriors on every frame: a tie the order rule settles
    (the lower label), the same way in the batched search and the definition."""
    p = torch.tensor([[0.2, 0.0, 0.0, 0.4, 0.4]] * 2).clamp(min=1e-12).log()  # [3] and [4]: .32 each
    assert prefix_beam_search(p, BLANK, beam=3) == [3]
    found = CTCSearch(_Dictionary(), beam=3, max_len=200, max_source_positions=1024)(p.unsqueeze(1), torch.tensor([2]))
    assert found.tokens.tolist() == [[3, EOS]]
