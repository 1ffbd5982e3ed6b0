"""Tests of the eager CTC references: scoring against torch's ctc_loss, beam search against brute force."""

from __future__ import annotations

import itertools
import math
import random
import re

import pytest
import torch
import torch.nn.functional as F
from ctc_brute_force import best_alignment, cat_log_probs, dyadic_log_probs
from hypothesis import given, settings
from hypothesis import strategies as st

from crnn_fast._beam_checks import MAX_BEAM_WIDTH, MAX_INSERTION_BONUS, MAX_LM_WEIGHT, MAX_NBEST
from crnn_fast.formats.lexicon import LexiconTrie
from crnn_fast.reference.ctc import (
    Hypothesis,
    ctc_alignment_ref,
    ctc_beam_search_ref,
    ctc_greedy_ref,
    ctc_score_ref,
)

NEG_INF = float("-inf")
WIDE = MAX_BEAM_WIDTH  # wider than the number of distinct prefixes of any input below: the search is exact


# ---------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------


def random_log_probs(B, T, C, seed, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(B, T, C, generator=g, dtype=torch.float64)).log_softmax(-1)


def logsumexp(values):
    values = [v for v in values if v != NEG_INF]
    if not values:
        return NEG_INF
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


def collapse(path, blank):
    out, prev = [], None
    for k in path:
        if k != blank and k != prev:
            out.append(k)
        prev = k
    return tuple(out)


def brute_force(lp, blank):
    """{labeling: log P(labeling)} over all C^T paths of lp: (T, C), zero-probability labelings left out."""
    T, C = lp.shape
    rows = lp.tolist()
    per_label: dict[tuple[int, ...], list[float]] = {}
    for path in itertools.product(range(C), repeat=T):
        per_label.setdefault(collapse(path, blank), []).append(sum(rows[t][k] for t, k in enumerate(path)))
    scores = {label: logsumexp(v) for label, v in per_label.items()}
    return {label: s for label, s in scores.items() if s != NEG_INF}


def lm_total(label, lm, lm_weight, bonus):
    return sum((lm_weight * lm(label[:i], tok) if lm is not None else 0.0) + bonus
               for i, tok in enumerate(label))


def ranked(scores):
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def valid_words(label, words, sep):
    """Independent statement of the lexicon rule: empty, or lexicon words joined by single separators."""
    if not label:
        return True
    if sep is None:
        return label in words
    parts, cur = [], []
    for tok in label:
        if tok == sep:
            parts.append(tuple(cur))
            cur = []
        else:
            cur.append(tok)
    parts.append(tuple(cur))
    return all(p in words for p in parts)  # empty parts (leading/double/trailing separator) are no words


def bigram_lm(C, seed):
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(C + 1, C, generator=g, dtype=torch.float64).log_softmax(-1).tolist()

    def lm(context, token):
        return table[context[-1] if context else C][token]

    return lm


def assert_close(a, b, tol=1e-9):
    assert a == b or abs(a - b) <= tol * max(1.0, abs(b)), (a, b)


def check_against_brute_force(lp, lengths, blank, nbest, lexicon=None, sep=None, lm=None, lm_weight=0.0,
                              bonus=0.0):
    out = ctc_beam_search_ref(lp, lengths, blank=blank, beam_width=WIDE, lexicon=lexicon, word_separator=sep,
                              lm=lm, lm_weight=lm_weight, insertion_bonus=bonus, nbest=nbest)
    assert len(out) == lp.shape[0]
    words = {tuple(w) for w in lexicon} if lexicon is not None else None
    for b, hyps in enumerate(out):
        acoustic = brute_force(lp[b, : int(lengths[b])], blank)
        if words is not None:
            acoustic = {k: v for k, v in acoustic.items() if valid_words(k, words, sep)}
        total = {k: v + lm_total(k, lm if lm_weight else None, lm_weight, bonus) for k, v in acoustic.items()}
        expected = ranked(total)[:nbest]
        assert [h.tokens for h in hyps] == [k for k, _ in expected]
        for h, (label, score) in zip(hyps, expected, strict=True):
            assert isinstance(h, Hypothesis)
            assert_close(h.score, score)
            assert_close(h.acoustic_score, acoustic[label])
            assert_close(h.lm_score, lm_total(label, lm if lm_weight else None, lm_weight, bonus))
            assert h.score == h.acoustic_score + h.lm_score
            ref = ctc_score_ref(lp[b: b + 1], [label], lengths[b: b + 1], blank=blank)
            assert_close(h.acoustic_score, float(ref[0]))
    return out


# ---------------------------------------------------------------------------------------------------------
# ctc_score_ref
# ---------------------------------------------------------------------------------------------------------


def torch_ctc_score(log_probs, targets, lengths, target_lengths, blank):
    return -F.ctc_loss(log_probs.transpose(0, 1), targets, lengths, target_lengths, blank=blank,
                       reduction="none", zero_infinity=False)


def assert_scores_equal(got, want):
    assert got.dtype == torch.float64 and got.shape == want.shape
    assert torch.equal(torch.isneginf(got), torch.isneginf(want)), (got, want)
    finite = torch.isfinite(want)
    assert torch.isfinite(got[finite]).all()
    torch.testing.assert_close(got[finite], want[finite], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("B,T,S,C", [(1, 1, 1, 2), (3, 4, 4, 3), (4, 7, 5, 3), (5, 12, 8, 5), (2, 20, 3, 2)])
@pytest.mark.parametrize("blank", [0, -1])
def test_score_matches_ctc_loss(seed, B, T, S, C, blank):
    blank = blank % C
    g = torch.Generator().manual_seed(1000 + seed)
    lp = random_log_probs(B, T, C, seed)
    # A small alphabet makes repeated neighbours (which need a blank in between) common.
    labels = torch.randint(1, C, (B, S), generator=g)
    labels[labels == blank] = 0  # labels avoid blank (blank is 0 or C - 1 here)
    lengths = torch.randint(0, T + 1, (B,), generator=g)
    lengths[0] = T
    target_lengths = torch.randint(0, S + 1, (B,), generator=g)
    target_lengths[-1] = min(S, int(lengths[-1]))  # L == T for the last item when S allows
    if B > 1:
        target_lengths[0] = 0
    padded = labels.clone()
    for b in range(B):
        padded[b, target_lengths[b]:] = -7  # the reference must ignore padding
    got = ctc_score_ref(lp, padded, lengths, target_lengths, blank=blank)
    assert_scores_equal(got, torch_ctc_score(lp, labels, lengths, target_lengths, blank))
    as_lists = [labels[b, : target_lengths[b]].tolist() for b in range(B)]
    assert_scores_equal(ctc_score_ref(lp, as_lists, lengths, blank=blank), got)


def test_score_special_cases():
    lp = random_log_probs(1, 4, 3, 5)
    blank_path = float(lp[0, :, 0].sum())
    assert_close(float(ctc_score_ref(lp, [[]])[0]), blank_path)
    # L == T with distinct neighbours is a single path; with a repeat it is impossible.
    assert_close(float(ctc_score_ref(lp, [[1, 2, 1, 2]])[0]), float(lp[0, [0, 1, 2, 3], [1, 2, 1, 2]].sum()))
    assert ctc_score_ref(lp, [[1, 1, 2, 2]])[0] == NEG_INF
    # Three labels with two repeats need 5 frames.
    assert ctc_score_ref(lp, [[1, 1, 1]])[0] == NEG_INF
    assert ctc_score_ref(lp, [[1, 2, 1, 2, 1]])[0] == NEG_INF  # L > T
    # Zero frames: only the empty label is possible.
    assert ctc_score_ref(lp, [[]], lengths=[0])[0] == 0.0
    assert ctc_score_ref(lp, [[1]], lengths=[0])[0] == NEG_INF
    # target_lengths defaults to S for a tensor of targets.
    assert_scores_equal(ctc_score_ref(lp, torch.tensor([[2, 1]])), ctc_score_ref(lp, [[2, 1]]))


def test_score_input_dtype_and_device_preserved():
    lp = random_log_probs(2, 5, 3, 1).float()
    out = ctc_score_ref(lp, [[1], [2, 2]])
    assert out.dtype == torch.float64 and out.device == lp.device
    assert_scores_equal(out, ctc_score_ref(lp.double(), [[1], [2, 2]]))


# ---------------------------------------------------------------------------------------------------------
# ctc_beam_search_ref against brute force
# ---------------------------------------------------------------------------------------------------------

SEEDS = [0, 1, 2]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("T", [1, 2, 5, 6])
@pytest.mark.parametrize("C", [2, 3, 4])
def test_beam_matches_brute_force(seed, T, C):
    blank = seed % C  # blank is not always 0
    lp = random_log_probs(2, T, C, 100 * seed + 10 * T + C)
    lengths = torch.tensor([T, torch.randint(0, T + 1, (1,), generator=torch.Generator().manual_seed(seed))])
    out = check_against_brute_force(lp, lengths, blank, nbest=5)
    assert len(out[0]) == min(5, len(brute_force(lp[0], blank)))
    # The best labeling also wins with the default nbest=1.
    best = ctc_beam_search_ref(lp, lengths, blank=blank, beam_width=WIDE)
    assert [h[0] for h in best] == [h[0] for h in out]


@pytest.mark.parametrize("seed", SEEDS)
def test_beam_brute_force_with_impossible_classes(seed):
    lp = random_log_probs(1, 5, 4, seed)
    lp[0, ::2, 3] = NEG_INF  # class 3 is impossible on even frames
    lp[0, 1, 0] = NEG_INF  # and blank on frame 1
    out = check_against_brute_force(lp, torch.tensor([5]), 0, nbest=WIDE)
    assert len(out[0]) == len(brute_force(lp[0], 0))
    assert all(math.isfinite(h.score) for h in out[0])


LEXICONS = [
    [[1], [2, 1], [1, 2, 2]],
    [[2], [1, 1], [2, 1, 2], [1]],
    [[1, 2], [2, 2]],
]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("T", [1, 2, 5, 6])
@pytest.mark.parametrize("lexicon", LEXICONS)
@pytest.mark.parametrize("sep", [None, 3])
def test_beam_lexicon_matches_brute_force(seed, T, lexicon, sep):
    lp = random_log_probs(2, T, 4, 7 * seed + T)
    lengths = torch.tensor([T, max(T - 2, 0)])
    out = check_against_brute_force(lp, lengths, 0, nbest=6, lexicon=lexicon, sep=sep)
    for hyps in out:
        for h in hyps:
            assert valid_words(h.tokens, {tuple(w) for w in lexicon}, sep)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("T", [1, 2, 5, 6])
@pytest.mark.parametrize("C", [2, 3, 4])
@pytest.mark.parametrize("lm_weight,bonus", [(0.7, 0.3), (1.5, -0.5), (0.0, 1.0)])
def test_beam_lm_matches_brute_force(seed, T, C, lm_weight, bonus):
    lp = random_log_probs(2, T, C, 31 * seed + T + C)
    lengths = torch.tensor([T, max(T - 1, 0)])
    lm = bigram_lm(C, seed)
    check_against_brute_force(lp, lengths, 0, nbest=4, lm=lm, lm_weight=lm_weight, bonus=bonus)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("sep", [None, 3])
def test_beam_lexicon_and_lm_match_brute_force(seed, sep):
    lp = random_log_probs(2, 6, 4, seed + 50)
    check_against_brute_force(lp, torch.tensor([6, 4]), 0, nbest=4, lexicon=LEXICONS[seed], sep=sep,
                              lm=bigram_lm(4, seed), lm_weight=0.8, bonus=0.2)


def test_insertion_bonus_without_lm():
    lp = random_log_probs(1, 5, 3, 3)
    check_against_brute_force(lp, torch.tensor([5]), 0, nbest=3, bonus=2.0)


def test_lm_called_once_per_prefix():
    calls = []

    def lm(context, token):
        calls.append(context + (token,))
        return -1.0

    ctc_beam_search_ref(random_log_probs(1, 6, 4, 0), beam_width=WIDE, lm=lm, lm_weight=1.0)
    assert len(calls) == len(set(calls)) > 0


# ---------------------------------------------------------------------------------------------------------
# exact pruning and ordering rules on hand-computed cases
# ---------------------------------------------------------------------------------------------------------


def probs_to_lp(rows):
    return torch.tensor([rows], dtype=torch.float64).log()


def as_table(hyps):
    return [(h.tokens, round(math.exp(h.score), 12)) for h in hyps]


def test_top_k_keeps_blank_and_stay_transitions():
    lp = probs_to_lp([[0.1, 0.8, 0.1], [0.3, 0.1, 0.6]])
    # Frame 1's top-1 class is 2: (1) still stays on class 1, but nothing extends by 1 there.
    hyps = ctc_beam_search_ref(lp, top_k=1, nbest=10)[0]
    assert as_table(hyps) == [((1, 2), 0.48), ((1,), 0.32), ((2,), 0.06), ((), 0.03)]
    full = ctc_beam_search_ref(lp, nbest=10)[0]
    assert ((2, 1), round(0.1 * 0.1, 12)) in as_table(full)


def test_top_k_ties_go_to_lower_class():
    lp = probs_to_lp([[0.2, 0.4, 0.4]])
    assert [h.tokens for h in ctc_beam_search_ref(lp, top_k=1, nbest=5)[0]] == [(1,), ()]


def test_score_ties_ordered_by_tokens():
    lp = probs_to_lp([[0.2, 0.4, 0.4]])
    assert [h.tokens for h in ctc_beam_search_ref(lp, nbest=5)[0]] == [(1,), (2,), ()]
    assert [h.tokens for h in ctc_beam_search_ref(lp, beam_width=1, nbest=5)[0]] == [(1,)]


def test_beam_threshold_is_relative_to_best():
    lp = probs_to_lp([[0.5, 0.3, 0.2]])
    margin = math.log(0.5 / 0.3)
    keep = [h.tokens for h in ctc_beam_search_ref(lp, beam_threshold=margin + 1e-9, nbest=5)[0]]
    assert keep == [(), (1,)]
    assert [h.tokens for h in ctc_beam_search_ref(lp, beam_threshold=0.0, nbest=5)[0]] == [()]
    assert len(ctc_beam_search_ref(lp, beam_threshold=math.inf, nbest=5)[0]) == 3


def test_zero_length_and_empty_result():
    lp = random_log_probs(2, 3, 3, 0)
    out = ctc_beam_search_ref(lp, lengths=[0, 3], lexicon=[[1, 2]], nbest=3)
    assert out[0] == [Hypothesis((), 0.0, 0.0, 0.0)]
    # The likeliest prefix (1,) is an unfinished word: the final filter runs before the last pruning, so
    # even a beam of 1 returns the complete (empty) hypothesis instead of nothing.
    lp = probs_to_lp([[0.01, 0.98, 0.01]])
    assert ctc_beam_search_ref(lp, beam_width=1, lexicon=[[1, 2]])[0][0].tokens == ()
    # No complete hypothesis at all: an empty list.
    lp = probs_to_lp([[0.01, 0.98, 0.01], [0.01, 0.98, 0.01]])
    assert ctc_beam_search_ref(lp, beam_width=1, lexicon=[[1, 1, 1]])[0] == []


def test_no_trailing_or_double_separator():
    # Separator 3 is by far the likeliest class, yet it may only follow a complete word.
    lp = probs_to_lp([[0.05, 0.05, 0.05, 0.85]] * 3)
    for hyps in ctc_beam_search_ref(lp, beam_width=WIDE, lexicon=[[1], [2]], word_separator=3, nbest=WIDE):
        for h in hyps:
            assert valid_words(h.tokens, {(1,), (2,)}, 3)
    best = ctc_beam_search_ref(lp, beam_width=WIDE, lexicon=[[1], [2]], word_separator=3, nbest=WIDE)[0]
    assert (1, 3, 2) in [h.tokens for h in best]


# ---------------------------------------------------------------------------------------------------------
# pruning sanity
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_beam_width_one_matches_greedy_on_peaky_input(seed):
    g = torch.Generator().manual_seed(seed)
    B, T, C = 3, 12, 5
    dominant = torch.randint(0, C, (B, T), generator=g)
    logits = torch.randn(B, T, C, generator=g, dtype=torch.float64)
    logits += 8.0 * F.one_hot(dominant, C).double()
    lp = logits.log_softmax(-1)
    lengths = torch.tensor([T, T - 3, 1])
    greedy = ctc_greedy_ref(lp, lengths)
    beam = ctc_beam_search_ref(lp, lengths, beam_width=1)
    for b in range(B):
        want = tuple(greedy.tokens[b, : greedy.token_lengths[b]].tolist())
        assert beam[b][0].tokens == want


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("use_lm", [False, True])
def test_pruning_never_beats_exact_search(seed, use_lm):
    B, T, C = 2, 6, 4
    lp = random_log_probs(B, T, C, 200 + seed, scale=1.0)
    lm_args = dict(lm=bigram_lm(C, seed), lm_weight=0.5, insertion_bonus=0.1) if use_lm else {}
    exact = ctc_beam_search_ref(lp, beam_width=WIDE, **lm_args)
    for beam_width, top_k, threshold in itertools.product([1, 2, 4], [None, 1, 2], [None, 0.0, 1.0]):
        out = ctc_beam_search_ref(lp, beam_width=beam_width, top_k=top_k, beam_threshold=threshold, nbest=3,
                                  **lm_args)
        for b in range(B):
            assert 1 <= len(out[b]) <= min(3, beam_width)
            for h in out[b]:
                assert h.score <= exact[b][0].score + 1e-12
                # Pruning only loses alignments: never more than the labeling's full probability.
                full = float(ctc_score_ref(lp[b: b + 1], [h.tokens])[0])
                assert h.acoustic_score <= full + 1e-12
    unpruned = ctc_beam_search_ref(lp, beam_width=WIDE, top_k=C - 1, beam_threshold=math.inf, **lm_args)
    assert unpruned == exact


# ---------------------------------------------------------------------------------------------------------
# property: the lexicon constraint is never violated
# ---------------------------------------------------------------------------------------------------------


@st.composite
def lexicon_cases(draw):
    C = draw(st.integers(3, 5))
    use_sep = draw(st.booleans())
    sep = C - 1 if use_sep else None
    word_tokens = list(range(1, C - 1)) if use_sep else list(range(1, C))
    words = draw(st.lists(st.lists(st.sampled_from(word_tokens), min_size=1, max_size=3), min_size=1,
                          max_size=4))
    T = draw(st.integers(1, 7))
    seed = draw(st.integers(0, 2**31 - 1))
    beam_width = draw(st.integers(1, 5))
    top_k = draw(st.one_of(st.none(), st.integers(1, C - 1)))
    threshold = draw(st.one_of(st.none(), st.floats(0.0, 4.0)))
    nbest = draw(st.integers(1, 6))
    return C, sep, words, T, seed, beam_width, top_k, threshold, nbest


@settings(max_examples=50, deadline=None)
@given(lexicon_cases())
def test_lexicon_never_violated(case):
    C, sep, words, T, seed, beam_width, top_k, threshold, nbest = case
    lp = random_log_probs(2, T, C, seed)
    out = ctc_beam_search_ref(lp, [T, T // 2], beam_width=beam_width, top_k=top_k, beam_threshold=threshold,
                              lexicon=words, word_separator=sep, nbest=nbest)
    allowed = {tuple(w) for w in words}
    for hyps in out:
        assert len(hyps) <= min(nbest, beam_width)
        assert [(-h.score, h.tokens) for h in hyps] == sorted((-h.score, h.tokens) for h in hyps)
        for h in hyps:
            assert valid_words(h.tokens, allowed, sep), (h.tokens, words, sep)


# ---------------------------------------------------------------------------------------------------------
# LexiconTrie
# ---------------------------------------------------------------------------------------------------------


def test_lexicon_trie():
    trie = LexiconTrie([[3, 1], [3, 1, 2], (4,), torch.tensor([3, 1])])
    assert len(trie) == 3 and trie.words == [(3, 1), (3, 1, 2), (4,)]
    assert trie.is_prefix(()) and trie.is_prefix((3,)) and trie.is_prefix((3, 1, 2))
    assert not trie.is_prefix((1,)) and not trie.is_prefix((3, 1, 2, 2))
    assert trie.is_word((3, 1)) and trie.is_word((4,)) and not trie.is_word((3,)) and not trie.is_word(())
    assert (3, 1, 2) in trie and (3,) not in trie
    # A prebuilt trie is accepted as the lexicon.
    lp = random_log_probs(1, 4, 5, 0)
    from_trie = ctc_beam_search_ref(lp, lexicon=trie, nbest=3)
    assert from_trie == ctc_beam_search_ref(lp, lexicon=trie.words, nbest=3)


@pytest.mark.parametrize("words,exc", [
    ([], ValueError), ([[1], []], ValueError), ([[1, -1]], ValueError), ([[1.5]], TypeError),
    ("ab", TypeError), (5, TypeError),
])
def test_lexicon_trie_rejects_bad_words(words, exc):
    with pytest.raises(exc, match=r"^lexicon\b"):
        LexiconTrie(words)


# ---------------------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------------------

LP = random_log_probs(2, 4, 4, 0)


def with_value(t, index, value):
    t = t.clone()
    t[index] = value
    return t


SCORE_BAD = [
    ("log_probs", ValueError, lambda: ctc_score_ref(LP[0], [[1], [2]])),
    ("log_probs", TypeError, lambda: ctc_score_ref(LP.long(), [[1], [2]])),
    ("log_probs", TypeError, lambda: ctc_score_ref(LP.tolist(), [[1], [2]])),
    ("log_probs", ValueError, lambda: ctc_score_ref(with_value(LP, (0, 1, 2), math.nan), [[1], [2]])),
    ("log_probs", ValueError, lambda: ctc_score_ref(with_value(LP, (1, 0, 0), math.inf), [[1], [2]])),
    ("log_probs", ValueError, lambda: ctc_score_ref(LP[:0], [])),
    ("lengths", ValueError, lambda: ctc_score_ref(LP, [[1], [2]], lengths=[5, 4])),
    ("lengths", ValueError, lambda: ctc_score_ref(LP, [[1], [2]], lengths=[-1, 4])),
    ("lengths", ValueError, lambda: ctc_score_ref(LP, [[1], [2]], lengths=[4])),
    ("lengths", TypeError, lambda: ctc_score_ref(LP, [[1], [2]], lengths=[4.0, 4.0])),
    ("blank", ValueError, lambda: ctc_score_ref(LP, [[1], [2]], blank=4)),
    ("blank", TypeError, lambda: ctc_score_ref(LP, [[1], [2]], blank=1.0)),
    ("targets", ValueError, lambda: ctc_score_ref(LP, [[1], [4]])),
    ("targets", ValueError, lambda: ctc_score_ref(LP, [[1], [-1]])),
    ("targets", ValueError, lambda: ctc_score_ref(LP, [[1], [0]])),
    ("targets", ValueError, lambda: ctc_score_ref(LP, [[1, 2], [2]], blank=2)),
    ("targets", ValueError, lambda: ctc_score_ref(LP, [[1]])),
    ("targets", TypeError, lambda: ctc_score_ref(LP, [[1], [1.5]])),
    ("targets", TypeError, lambda: ctc_score_ref(LP, 3)),
    ("targets", ValueError, lambda: ctc_score_ref(LP, torch.tensor([1, 2]), target_lengths=[1, 1])),
    ("targets", TypeError, lambda: ctc_score_ref(LP, torch.ones(2, 2), target_lengths=[1, 1])),
    ("targets", ValueError, lambda: ctc_score_ref(LP, torch.ones(3, 2, dtype=torch.long))),
    ("targets", ValueError, lambda: ctc_score_ref(LP, torch.tensor([[1, 5], [2, 2]]), target_lengths=[2, 1])),
    ("target_lengths", ValueError, lambda: ctc_score_ref(LP, torch.ones(2, 2, dtype=torch.long),
                                                         target_lengths=[3, 1])),
    ("target_lengths", ValueError, lambda: ctc_score_ref(LP, torch.ones(2, 2, dtype=torch.long),
                                                         target_lengths=[-1, 1])),
    ("target_lengths", ValueError, lambda: ctc_score_ref(LP, [[1], [2, 3]], target_lengths=[1, 1])),
]


def lm_nan(context, token):
    return math.nan


BEAM_BAD = [
    ("log_probs", ValueError, lambda: ctc_beam_search_ref(LP[0])),
    ("log_probs", TypeError, lambda: ctc_beam_search_ref(LP.int())),
    ("log_probs", ValueError, lambda: ctc_beam_search_ref(with_value(LP, (0, 0, 0), math.nan))),
    ("log_probs", ValueError, lambda: ctc_beam_search_ref(with_value(LP, (0, 0, 0), math.inf))),
    ("log_probs", ValueError, lambda: ctc_beam_search_ref(LP[:0])),
    ("lengths", ValueError, lambda: ctc_beam_search_ref(LP, lengths=[5, 1])),
    ("lengths", ValueError, lambda: ctc_beam_search_ref(LP, lengths=[1, -2])),
    ("lengths", TypeError, lambda: ctc_beam_search_ref(LP, lengths=torch.tensor([1.0, 2.0]))),
    ("blank", ValueError, lambda: ctc_beam_search_ref(LP, blank=-1)),
    ("beam_width", ValueError, lambda: ctc_beam_search_ref(LP, beam_width=0)),
    ("beam_width", TypeError, lambda: ctc_beam_search_ref(LP, beam_width=2.5)),
    ("beam_width", TypeError, lambda: ctc_beam_search_ref(LP, beam_width=True)),
    ("top_k", ValueError, lambda: ctc_beam_search_ref(LP, top_k=0)),
    ("top_k", TypeError, lambda: ctc_beam_search_ref(LP, top_k="3")),
    ("beam_threshold", ValueError, lambda: ctc_beam_search_ref(LP, beam_threshold=-0.5)),
    ("beam_threshold", ValueError, lambda: ctc_beam_search_ref(LP, beam_threshold=math.nan)),
    ("beam_threshold", TypeError, lambda: ctc_beam_search_ref(LP, beam_threshold="1")),
    ("nbest", ValueError, lambda: ctc_beam_search_ref(LP, nbest=0)),
    ("lexicon", ValueError, lambda: ctc_beam_search_ref(LP, lexicon=[])),
    ("lexicon", ValueError, lambda: ctc_beam_search_ref(LP, lexicon=[[1], []])),
    ("lexicon", ValueError, lambda: ctc_beam_search_ref(LP, lexicon=[[1], [0, 2]])),
    ("lexicon", ValueError, lambda: ctc_beam_search_ref(LP, lexicon=[[1], [2, 4]])),
    ("lexicon", ValueError, lambda: ctc_beam_search_ref(LP, lexicon=[[1], [2, -1]])),
    ("lexicon", ValueError, lambda: ctc_beam_search_ref(LP, lexicon=[[1], [2, 3]], word_separator=3)),
    ("lexicon", TypeError, lambda: ctc_beam_search_ref(LP, lexicon=[[1], ["a"]])),
    ("word_separator", ValueError, lambda: ctc_beam_search_ref(LP, lexicon=[[1]], word_separator=0)),
    ("word_separator", ValueError, lambda: ctc_beam_search_ref(LP, lexicon=[[1]], word_separator=4)),
    ("word_separator", ValueError, lambda: ctc_beam_search_ref(LP, word_separator=3)),
    ("word_separator", TypeError, lambda: ctc_beam_search_ref(LP, lexicon=[[1]], word_separator=3.0)),
    ("lm", TypeError, lambda: ctc_beam_search_ref(LP, lm=3, lm_weight=1.0)),
    ("lm", ValueError, lambda: ctc_beam_search_ref(LP, lm=lm_nan, lm_weight=1.0)),
    ("lm", ValueError, lambda: ctc_beam_search_ref(LP, lm=lambda c, t: math.inf, lm_weight=1.0)),
    ("lm", TypeError, lambda: ctc_beam_search_ref(LP, lm=lambda c, t: "x", lm_weight=1.0)),
    ("lm_weight", ValueError, lambda: ctc_beam_search_ref(LP, lm_weight=-1.0)),
    ("lm_weight", ValueError, lambda: ctc_beam_search_ref(LP, lm_weight=math.nan)),
    ("insertion_bonus", ValueError, lambda: ctc_beam_search_ref(LP, insertion_bonus=math.inf)),
    ("insertion_bonus", TypeError, lambda: ctc_beam_search_ref(LP, insertion_bonus=None)),
]


@pytest.mark.parametrize("name,exc,call", SCORE_BAD + BEAM_BAD,
                         ids=[f"{i}-{n}" for i, (n, _, _) in enumerate(SCORE_BAD + BEAM_BAD)])
def test_bad_input(name, exc, call):
    with pytest.raises(exc, match=rf"^{re.escape(name)}\b"):
        call()


# ---------------------------------------------------------------------------------------------------------
# emission frames, blank-frame skipping, confidences
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("T,C", [(1, 3), (4, 3), (6, 2), (6, 4)])
def test_frames_are_those_of_the_most_probable_alignment(seed, T, C):
    lp = random_log_probs(2, T, C, 40 * seed + T)
    lengths = [T, T // 2]
    for b, hyps in enumerate(ctc_beam_search_ref(lp, lengths, beam_width=WIDE, nbest=WIDE)):
        for h in hyps:
            assert h.frames == best_alignment(lp[b], h.tokens, lengths[b])[0]


@pytest.mark.parametrize("seed", range(6))
def test_frames_on_exact_ties_are_the_earliest(seed):
    # Dyadic values: sums are exact, alignments tie exactly, and the earliest one is reported.
    lp = dyadic_log_probs(2, 7, 3, seed)
    for b, hyps in enumerate(ctc_beam_search_ref(lp, beam_width=6, nbest=6)):
        for h in hyps:
            assert h.frames == best_alignment(lp[b], h.tokens)[0]


@pytest.mark.parametrize("beam_width", [1, 10, 1000])
def test_frames_and_confidences_of_the_issue_example(beam_width):
    lp = cat_log_probs()
    for kwargs in ({}, {"lexicon": [[2, 1, 4], [2, 1, 3], [1, 2, 4]]}):
        (h,) = ctc_beam_search_ref(lp, beam_width=beam_width, **kwargs)[0]
        assert h.tokens == (2, 1, 4) and h.frames == (2, 5, 8)
        alignment = ctc_alignment_ref(lp[0], h.tokens)
        assert alignment.frames == h.frames
        peak = math.exp(8) / (math.exp(8) + 4)  # each character's probability on its peak frames
        assert [math.exp(v) for v in alignment.token_logprobs] == pytest.approx([peak] * 3, rel=1e-6)


def test_alignment_ref():
    # Frames 0-1 'a' (a run: the peak 0.9 counts), 2 blank, 3 'b'.
    lp = probs_to_lp([[0.3, 0.6, 0.1], [0.05, 0.9, 0.05], [0.8, 0.1, 0.1], [0.2, 0.1, 0.7]])[0]
    a = ctc_alignment_ref(lp, (1, 2))
    assert a.frames == (0, 3)
    assert [math.exp(v) for v in a.token_logprobs] == pytest.approx([0.9, 0.7])
    assert math.exp(a.logprob) == pytest.approx(0.6 * 0.9 * 0.8 * 0.7)
    assert ctc_alignment_ref(lp, (1, 2), length=2).frames == (0, 1)
    # A repeat needs a blank between its two runs.
    assert ctc_alignment_ref(lp, (1, 1)).frames == best_alignment(lp, (1, 1))[0] == (0, 3)
    assert ctc_alignment_ref(lp, ()) == ((), (), pytest.approx(math.log(0.3 * 0.05 * 0.8 * 0.2)))
    with pytest.raises(ValueError, match="no alignment"):
        ctc_alignment_ref(lp, (1, 1, 1))  # needs 5 frames
    with pytest.raises(ValueError, match="0 frames"):
        ctc_alignment_ref(lp, (1,), length=0)


@pytest.mark.parametrize("seed", range(8))
def test_alignment_ref_matches_enumeration(seed):
    rng = random.Random(seed)
    lp = random_log_probs(1, 7, 4, seed)[0] if seed % 2 else dyadic_log_probs(1, 7, 4, seed)[0]
    for _ in range(5):
        tokens = tuple(rng.randint(1, 3) for _ in range(rng.randint(1, 3)))
        frames, token_lp = best_alignment(lp, tokens)
        a = ctc_alignment_ref(lp, tokens)
        assert a.frames == frames and a.token_logprobs == token_lp


def test_blank_skip_threshold():
    # Frame 1 is blank with probability 0.9: at threshold 0.9 nothing is extended there.
    lp = probs_to_lp([[0.5, 0.3, 0.2], [0.9, 0.02, 0.08], [0.6, 0.3, 0.1]])
    skipped = ctc_beam_search_ref(lp, beam_width=WIDE, nbest=WIDE, blank_skip_threshold=0.9)[0]
    # (2,) can still be reached on frames 0 and 2, never emitted at frame 1.
    table = {h.tokens: math.exp(h.score) for h in skipped}
    p = [[0.5, 0.3, 0.2], [0.9, 0.02, 0.08], [0.6, 0.3, 0.1]]
    # blank-stay alignments of (2,): 2 b b, 2 2' (stay on frame 1 is allowed), b b 2
    want = p[0][2] * p[1][0] * p[2][0] + p[0][2] * p[1][2] * p[2][0] + p[0][0] * p[1][0] * p[2][2] \
        + p[0][2] * p[1][2] * p[2][2]
    assert abs(table[(2,)] - want) < 1e-12
    # A threshold no frame reaches changes nothing.
    plain = ctc_beam_search_ref(lp, beam_width=WIDE, nbest=WIDE)
    assert ctc_beam_search_ref(lp, beam_width=WIDE, nbest=WIDE, blank_skip_threshold=0.95) == plain
    # Threshold 1.0 skips only frames whose blank is certain.
    assert ctc_beam_search_ref(lp, beam_width=WIDE, nbest=WIDE, blank_skip_threshold=1.0) == plain


@pytest.mark.parametrize("value,exc", [(0.0, ValueError), (1.5, ValueError), (-0.1, ValueError),
                                       (math.nan, ValueError), ("0.5", TypeError)])
def test_blank_skip_threshold_rejected(value, exc):
    with pytest.raises(exc, match=r"^blank_skip_threshold\b"):
        ctc_beam_search_ref(LP, blank_skip_threshold=value)


def test_token_min_logp():
    p = [[0.6, 0.2, 0.2], [0.05, 0.3, 0.65], [0.6, 0.1, 0.3]]
    lp = probs_to_lp(p)
    # log(0.25): classes 1 and 2 are below the floor on frame 0, class 1 on frame 2; frame 1's classes pass.
    floored = ctc_beam_search_ref(lp, beam_width=WIDE, nbest=WIDE, token_min_logp=math.log(0.25))[0]
    table = {h.tokens: (math.exp(h.score), h.frames) for h in floored}
    # (1,) is emitted on frame 1 only; its stay on frame 2 (class 1 below the floor there) still counts: the floor
    # limits extensions, not the blank and stay of a prefix.
    want = p[0][0] * p[1][1] * p[2][0] + p[0][0] * p[1][1] * p[2][1]
    assert abs(table[(1,)][0] - want) < 1e-12 and table[(1,)][1] == (1,)
    # The frame's best class always extends, even above a floor nothing reaches: here that is class 2 on
    # frame 1 (frames 0 and 2 are blank-dominated: nothing extends there).
    best_only = ctc_beam_search_ref(lp, beam_width=WIDE, nbest=WIDE, token_min_logp=math.inf)[0]
    assert {h.tokens for h in best_only} == {(), (2,)}
    assert {h.frames for h in best_only} == {(), (1,)}
    # -inf is no floor; a floor below every log-prob changes nothing.
    plain = ctc_beam_search_ref(lp, beam_width=WIDE, nbest=WIDE)
    assert ctc_beam_search_ref(lp, beam_width=WIDE, nbest=WIDE, token_min_logp=-math.inf) == plain
    assert ctc_beam_search_ref(lp, beam_width=WIDE, nbest=WIDE, token_min_logp=-10.0) == plain


@pytest.mark.parametrize("value,exc", [(math.nan, ValueError), ("-5", TypeError), (True, TypeError), (None, None)])
def test_token_min_logp_rejected(value, exc):
    if exc is None:
        ctc_beam_search_ref(LP, token_min_logp=value)
        return
    with pytest.raises(exc, match=r"^token_min_logp\b"):
        ctc_beam_search_ref(LP, token_min_logp=value)




# ---------------------------------------------------------------------------------------------------------
# bounded options, impossible frames (issue 16, items 4 and 11)
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs,name", [
    (dict(beam_width=MAX_BEAM_WIDTH + 1), "beam_width"), (dict(beam_width=10**9), "beam_width"),
    (dict(nbest=MAX_NBEST + 1), "nbest"), (dict(nbest=10**7), "nbest"),
    (dict(lm_weight=MAX_LM_WEIGHT * 2), "lm_weight"),
    (dict(insertion_bonus=1e308), "insertion_bonus"),
    (dict(insertion_bonus=-MAX_INSERTION_BONUS * 2), "insertion_bonus"),
])
def test_option_bounds(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        ctc_beam_search_ref(LP, **kwargs)


def test_frame_impossible_for_every_class_is_rejected():
    lp = LP.clone()
    lp[0, 1] = NEG_INF
    for decode in (ctc_beam_search_ref, ctc_greedy_ref):
        with pytest.raises(ValueError, match="^log_probs must give some class a non-zero probability at every "
                                             "frame: frame 1 of sequence 0"):
            decode(lp)
        decode(lp, torch.tensor([1] + [LP.shape[1]] * (LP.shape[0] - 1)))  # past lengths: not looked at
