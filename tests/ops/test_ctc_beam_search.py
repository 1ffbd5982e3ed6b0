"""crnn_fast::ctc_beam_search (C++ CPU) against the eager reference ctc_beam_search_ref."""

from __future__ import annotations

import itertools
import math
import random

import pytest
import torch
from ctc_brute_force import best_alignment, cat_log_probs, dyadic_log_probs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crnn_fast
from crnn_fast import _ext
from crnn_fast._beam_checks import MAX_BEAM_WIDTH, MAX_INSERTION_BONUS, MAX_LM_WEIGHT
from crnn_fast.decoding import CharNgramLM, compile_trie
from crnn_fast.formats.lexicon import LexiconTrie
from crnn_fast.ops.ctc_beam_search import ctc_beam_search
from crnn_fast.reference.ctc import ctc_alignment_ref, ctc_beam_search_ref, ctc_score_ref

pytestmark = pytest.mark.skipif(not _ext.HAS_EXTENSION, reason=f"crnn_fast._C not built: {_ext.EXTENSION_ERROR}")

NEG_INF = float("-inf")


# ---------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------


def random_log_probs(B, T, C, seed, scale=2.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(B, T, C, generator=g, dtype=torch.float64)).log_softmax(-1).to(dtype)


def random_lengths(B, T, seed):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, T + 1, (B,), generator=g)
    lengths[0] = T
    return lengths


def random_words(C, n, seed, *, exclude=(), max_len=4):
    rng = random.Random(seed)
    tokens = [c for c in range(1, C) if c not in exclude]
    return sorted({tuple(rng.choice(tokens) for _ in range(rng.randint(1, max_len))) for _ in range(n)})


def random_lm(C, seed, order=3):
    """A CharNgramLM over made-up characters, bound to C classes (class 0 the blank)."""
    rng = random.Random(seed)
    chars = [chr(0x4E00 + i) for i in range(C - 1)]
    common = chars[: min(len(chars), 30)]
    lines = ["".join(rng.choice(common) for _ in range(rng.randint(3, 30))) for _ in range(60)]
    return CharNgramLM.from_text(lines, order).bind([None] + chars)


def assert_matches_reference(out, ref, log_probs, lengths, *, blank=0, rtol=1e-9):
    """Same n-best lists (tokens, frames), scores within rtol, confidences (from the reference's alignment) within
    float32 rounding."""
    B, nbest = out.token_lengths.shape
    for b in range(B):
        hyps = ref[b]
        got = int((out.token_lengths[b] >= 0).sum())
        assert got == len(hyps), (b, got, len(hyps))
        for n, h in enumerate(hyps):
            L = int(out.token_lengths[b, n])
            assert tuple(out.tokens[b, n, :L].tolist()) == h.tokens, (b, n)
            assert tuple(out.token_frames[b, n, :L].tolist()) == h.frames, (b, n)
            for name, value in (("scores", h.score), ("acoustic_scores", h.acoustic_score),
                                ("lm_scores", h.lm_score)):
                g = float(getattr(out, name)[b, n])
                assert g == value or abs(g - value) <= rtol * max(1.0, abs(value)), (b, n, name, g, value)
            alignment = ctc_alignment_ref(log_probs[b], h.tokens, int(lengths[b]), blank)
            conf = [math.exp(v) for v in alignment.token_logprobs]
            torch.testing.assert_close(out.token_confidences[b, n, :L], torch.tensor(conf, dtype=torch.float32),
                                       rtol=1e-6, atol=1e-7)
            assert (out.tokens[b, n, L:] == -1).all() and (out.token_frames[b, n, L:] == -1).all()
            assert (out.token_confidences[b, n, L:] == 0).all()
        for n in range(len(hyps), nbest):
            assert int(out.token_lengths[b, n]) == -1 and float(out.scores[b, n]) == NEG_INF


def run_both(log_probs, lengths, **kwargs):
    if lengths is None:
        lengths = torch.full((log_probs.shape[0],), log_probs.shape[1])
    out = ctc_beam_search(log_probs, lengths, backend="cpu", **kwargs)
    ref = ctc_beam_search_ref(log_probs, lengths, **kwargs)
    assert_matches_reference(out, ref, log_probs, lengths, blank=kwargs.get("blank", 0))
    return out, ref


# ---------------------------------------------------------------------------------------------------------
# agreement with the reference over vocab sizes, lengths, beam widths, lexicon and LM
# ---------------------------------------------------------------------------------------------------------

# The reference is plain Python: top_k keeps its work (beam x candidates x frames) small at the large shapes.
# (C, T, beam_width, top_k, B)
PLAIN_CASES = [
    (C, T, K, tk, B)
    for C in (37, 96)
    for T, B in ((1, 3), (26, 2), (400, 1))
    for K in (1, 4, 16, 64)
    for tk in [None if K * T * (C - 1) <= 60_000 else max(1, 40_000 // (K * T))]
] + [(6001, 1, 64, None, 2), (6001, 26, 4, None, 1), (6001, 26, 64, 8, 1), (6001, 26, 1, None, 2),
     (6001, 26, 16, 16, 1), (6001, 400, 16, 2, 1)]


@pytest.mark.parametrize("C,T,K,top_k,B", PLAIN_CASES,
                         ids=[f"C{c}-T{t}-K{k}-top{tk}" for c, t, k, tk, _ in PLAIN_CASES])
def test_matches_reference(C, T, K, top_k, B):
    lp = random_log_probs(B, T, C, seed=C + T + K)
    lengths = random_lengths(B, T, seed=K)
    run_both(lp, lengths, beam_width=K, top_k=top_k, nbest=min(K, 5))


LEX_LM_CASES = [
    (C, T, K, mode)
    for C in (37, 96)
    for T in (1, 26)
    for K in (1, 4, 16, 64)
    for mode in ("lexicon", "lm", "both")
] + [(96, 400, 4, "lexicon"), (96, 400, 4, "lm"), (96, 400, 16, "both"), (6001, 26, 16, "lexicon"),
     (6001, 26, 4, "lm"), (6001, 26, 16, "both")]

_LM_CACHE: dict = {}


def lexicon_lm_args(C, mode, seed):
    args = {}
    if mode in ("lexicon", "both"):
        sep = 1 if C == 96 else None  # class 1 is ' ' in printable ASCII
        args["lexicon"] = random_words(C, 200, seed, exclude=(sep,) if sep else ())
        args["word_separator"] = sep
    if mode in ("lm", "both"):
        if C not in _LM_CACHE:
            _LM_CACHE[C] = random_lm(C, C)
        args.update(lm=_LM_CACHE[C], lm_weight=0.7, insertion_bonus=0.4)
    return args


@pytest.mark.parametrize("C,T,K,mode", LEX_LM_CASES, ids=[f"C{c}-T{t}-K{k}-{m}" for c, t, k, m in LEX_LM_CASES])
def test_matches_reference_with_lexicon_and_lm(C, T, K, mode):
    B = 2
    # Peaked towards the lexicon's tokens, so that words get finished within the frames.
    lp = random_log_probs(B, T, C, seed=3 * C + T + K, scale=3.0)
    lengths = random_lengths(B, T, seed=T + K)
    top_k = None if K * T * (C - 1) <= 60_000 else max(2, 30_000 // (K * T))
    run_both(lp, lengths, beam_width=K, top_k=top_k, nbest=min(K, 4), **lexicon_lm_args(C, mode, seed=K))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_dtypes(dtype):
    lp = random_log_probs(3, 12, 11, seed=5, dtype=dtype)
    lengths = random_lengths(3, 12, seed=1)
    run_both(lp, lengths, beam_width=6, nbest=3)


@pytest.mark.parametrize("seed", range(3))
def test_pruning_options(seed):
    lp = random_log_probs(3, 20, 9, seed=seed)
    lengths = random_lengths(3, 20, seed=seed)
    for top_k, threshold, skip, floor in itertools.product([None, 1, 3], [None, 0.0, 2.5, math.inf], [None, 0.3, 1.0],
                                                           [None, -1.5, -math.inf, math.inf]):
        run_both(lp, lengths, beam_width=5, top_k=top_k, beam_threshold=threshold, blank_skip_threshold=skip,
                 token_min_logp=floor, nbest=5)


# token_min_logp (pyctcdecode's pruning) on wide rows: few classes per frame (each tried directly) or many (the
# candidate heap and bins), with and without top_k, lexicon and LM; C 6,001 as for Chinese. The whole beam is
# compared (nbest=K): in every case it differs from the search without the floor.
FLOOR_CASES = [
    # C, T, K, top_k, floor, mode
    (96, 4, 16, None, -2.0, "plain"),
    (96, 26, 16, None, -9.0, "lm"),
    (700, 4, 12, 3, -2.0, "plain"),
    (700, 2, 64, None, -4.5, "lm"),
    (700, 3, 48, 40, -5.5, "plain"),
    (700, 3, 48, 40, -4.5, "both"),
    (6001, 26, 16, None, -2.5, "lm"),
    (6001, 2, 64, None, -5.5, "plain"),
    (6001, 3, 64, None, -5.5, "lm"),
    (6001, 26, 64, 8, -2.5, "both"),
]


@pytest.mark.parametrize("C,T,K,top_k,floor,mode", FLOOR_CASES)
def test_token_min_logp_matches_reference(C, T, K, top_k, floor, mode):
    lp = random_log_probs(2, T, C, seed=C + T + K, scale=4.0)
    lengths = torch.tensor([T, max(1, T - 7)])
    kwargs = lexicon_lm_args(C, mode, seed=K) if mode != "plain" else {}
    run_both(lp, lengths, beam_width=K, top_k=top_k, token_min_logp=floor, beam_threshold=12.0, nbest=K,
             **kwargs)


def test_mostly_impossible_rows_match_reference():
    # A masked vocabulary: each frame allows 3 of 3,000 classes, the rest are -inf. -inf classes never
    # extend a prefix (every candidate they make is -inf), so top_k and the floor may leave them out.
    C, T = 3000, 12
    g = torch.Generator().manual_seed(0)
    logits = torch.full((2, T, C), NEG_INF)
    for b in range(2):
        for t in range(T):
            allowed = torch.randperm(C - 1, generator=g)[:2] + 1
            logits[b, t, allowed] = torch.randn(2, generator=g)
            logits[b, t, 0] = torch.randn((), generator=g)
    lp = logits.log_softmax(-1)
    for top_k, floor in ((8, None), (None, -5.0), (4, -1.0), (None, None)):
        run_both(lp, None, beam_width=6, top_k=top_k, token_min_logp=floor, nbest=3)


def unk_heavy_lm(C, seed, known=40, order=3):
    """A CharNgramLM that knows only `known` of the C - 1 characters, with many stored bigrams and trigrams that
    end in <unk>: every other class maps to <unk>, so those classes share one LM word (the decoder tries them as
    a group)."""
    rng = random.Random(seed)
    chars = [chr(0x4E00 + i) for i in range(C - 1)]
    vocab = ["<s>", "</s>", "<unk>"] + chars[:known]
    V = len(vocab)
    ngrams = {(w,): (rng.uniform(-3.0, -0.5), rng.uniform(-1.0, 0.0)) for w in range(V)}
    for _ in range(6 * V):
        v, w = rng.randrange(V), rng.choice([2, 2, rng.randrange(3, V)])  # <unk> (id 2) half of the time
        ngrams[(v, w)] = (rng.uniform(-2.0, -0.05), rng.uniform(-0.5, 0.3))
    for _ in range(3 * V):
        u, v, w = rng.randrange(V), rng.randrange(V), rng.choice([2, rng.randrange(3, V)])
        ngrams[(u, v, w)] = (rng.uniform(-1.5, -0.01), 0.0)
    return CharNgramLM(order, vocab, ngrams).bind([None] + chars)


# Exercises the paths that only large class counts take (SIMD row scans, the top_k heap, candidate bins) and the
# shared-LM-word groups, against the reference; weights and bonuses of both signs.
UNK_CASES = [
    # C, T, K, top_k, threshold, lm_weight, bonus, lexicon, dtype
    (300, 20, 8, None, None, 0.8, 1.0, False, torch.float32),
    (300, 20, 8, None, None, 1.5, -1.0, True, torch.float32),
    (300, 16, 16, None, 6.0, 0.3, 0.0, False, torch.float64),
    (1200, 12, 6, None, None, 0.5, 0.5, True, torch.float32),
    (1200, 30, 12, 20, None, 0.7, -0.5, False, torch.float32),
    (1200, 30, 12, 3, 8.0, 0.7, 2.0, True, torch.float32),
]


@pytest.mark.parametrize("C,T,K,top_k,threshold,lm_weight,bonus,lexicon,dtype", UNK_CASES)
def test_shared_lm_words_and_wide_rows_match_reference(C, T, K, top_k, threshold, lm_weight, bonus, lexicon, dtype):
    lp = random_log_probs(2, T, C, seed=C + T + K, scale=3.0, dtype=dtype)
    lengths = torch.tensor([T, max(1, T - 5)])
    extra = {}
    if lexicon:
        extra = dict(lexicon=random_words(C, 300, seed=K, max_len=3))
    run_both(lp, lengths, beam_width=K, top_k=top_k, beam_threshold=threshold, nbest=min(K, 4),
             lm=unk_heavy_lm(C, seed=K), lm_weight=lm_weight, insertion_bonus=bonus, **extra)


# Rows are scanned in chunks of 64 classes whose maxima leave the blank out; top_k and the candidate walks then
# read only the chunks that can hold what they look for. The blank at a chunk's edge, inside one, or alone in
# the last (partial) chunk; a blank that is often the frame's best; many equal log-probs (ties go by class id).
CHUNK_CASES = [
    # C, blank, top_k
    (700, 0, 5), (700, 63, 1), (700, 64, 64), (700, 350, None), (700, 699, 7),
    (257, 256, 3), (257, 256, None), (320, 100, 2),
]


@pytest.mark.parametrize("C,blank,top_k", CHUNK_CASES)
def test_chunked_row_scans_match_reference(C, blank, top_k):
    g = torch.Generator().manual_seed(C + blank)
    logits = (2.0 * torch.randn(2, 14, C, generator=g, dtype=torch.float64)).round()  # coarse: many ties
    logits[:, ::2, blank] += 7.0  # the best class of every other frame
    lp = logits.log_softmax(-1).float()
    run_both(lp, torch.tensor([14, 9]), blank=blank, beam_width=6, top_k=top_k, nbest=3)
    run_both(lp, torch.tensor([14, 9]), blank=blank, beam_width=6, top_k=top_k, beam_threshold=3.0, nbest=3)
    # A beam wide enough to keep every extension for a few frames: a class top_k missed shows in the n-best.
    run_both(lp[:, :3], None, blank=blank, beam_width=64, top_k=top_k, nbest=64)


def test_chunked_top_k_with_lm_matches_reference():
    lp = random_log_probs(2, 20, 700, seed=5, scale=3.0)
    for top_k in (1, 8, 40):
        run_both(lp, None, beam_width=10, top_k=top_k, nbest=3, lm=random_lm(700, seed=top_k, order=4),
                 lm_weight=0.8, insertion_bonus=0.5)


def test_simd_row_scan_rejects_nan_and_inf_anywhere():
    # The vectorised scan works 16 classes at a time, then a scalar tail: a bad value in either is caught.
    C = 301
    for pos in (0, 7, 16, 290, 299, 300):
        for bad in (float("nan"), float("inf")):
            lp = random_log_probs(1, 3, C, seed=pos)
            lp[0, 1, pos] = bad
            with pytest.raises(ValueError, match="NaN or \\+inf"):
                ctc_beam_search(lp, None, beam_width=4, backend="cpu")


def test_blank_not_zero_and_ties():
    lp = random_log_probs(2, 9, 6, seed=3)
    run_both(lp, None, blank=5, beam_width=8, nbest=8)
    run_both(lp, None, blank=2, beam_width=3, nbest=3, lexicon=[[0, 3], [4], [0, 0]], word_separator=1)
    # Every class equally likely: scores tie everywhere, the order falls back to the tokens.
    flat = torch.zeros(2, 5, 4) - math.log(4)
    run_both(flat, None, beam_width=7, nbest=7)
    # Quantised log-probs with impossible classes (-inf).
    g = torch.Generator().manual_seed(0)
    q = torch.randint(0, 4, (3, 10, 5), generator=g).float().neg()
    q[q == -3] = NEG_INF
    q[:, :, 0] = torch.where(q[:, :, 0] == NEG_INF, -1.0, q[:, :, 0])
    run_both(q, None, beam_width=6, nbest=6)


def test_non_contiguous_input():
    lp = random_log_probs(4, 11, 9, seed=1)
    strided = lp.transpose(0, 1).contiguous().transpose(0, 1)
    assert not strided.is_contiguous()
    run_both(strided, None, beam_width=4, nbest=2)


# ---------------------------------------------------------------------------------------------------------
# exactness: brute force, exact CTC scores, lexicon constraint
# ---------------------------------------------------------------------------------------------------------


def brute_force(lp, blank):
    """{labeling: log P(labeling)} over all C^T paths of lp: (T, C)."""
    T, C = lp.shape
    rows = lp.double().tolist()
    acc: dict[tuple[int, ...], list[float]] = {}
    for path in itertools.product(range(C), repeat=T):
        out, prev = [], None
        for k in path:
            if k != blank and k != prev:
                out.append(k)
            prev = k
        acc.setdefault(tuple(out), []).append(sum(rows[t][k] for t, k in enumerate(path)))
    return {k: torch.logsumexp(torch.tensor(v, dtype=torch.float64), 0).item() for k, v in acc.items()}


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("T,C", [(1, 3), (3, 2), (4, 3), (5, 4), (6, 3)])
def test_exhaustive_search_matches_brute_force(seed, T, C):
    lp = random_log_probs(1, T, C, seed=seed * 10 + T)
    exact = brute_force(lp[0], blank=0)
    ranked = sorted(exact.items(), key=lambda kv: (-kv[1], kv[0]))[:6]
    out = ctc_beam_search(lp, beam_width=MAX_BEAM_WIDTH, nbest=6, backend="cpu")  # > the labels of T <= 6
    for n, (label, score) in enumerate(ranked):
        L = int(out.token_lengths[0, n])
        assert tuple(out.tokens[0, n, :L].tolist()) == label
        assert abs(float(out.scores[0, n]) - score) < 1e-9


@pytest.mark.parametrize("seed", range(4))
def test_scores_equal_ctc_score_when_nothing_is_pruned(seed):
    B, T, C = 3, 7, 4
    lp = random_log_probs(B, T, C, seed=seed)
    lengths = random_lengths(B, T, seed=seed)
    out = ctc_beam_search(lp, lengths, beam_width=MAX_BEAM_WIDTH, nbest=20, backend="cpu")  # > 3^7 labels
    for b in range(B):
        labels = [out.tokens[b, n, : int(out.token_lengths[b, n])].tolist()
                  for n in range(20) if int(out.token_lengths[b, n]) >= 0]
        want = ctc_score_ref(lp[b: b + 1].expand(len(labels), -1, -1), labels,
                             lengths[b: b + 1].expand(len(labels)))
        torch.testing.assert_close(out.acoustic_scores[b, : len(labels)], want, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(out.scores[b, : len(labels)], want, rtol=1e-9, atol=1e-9)


def valid_words(label, words, sep):
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
    return all(p in words for p in parts)


@st.composite
def lexicon_cases(draw):
    C = draw(st.integers(3, 8))
    sep = C - 1 if draw(st.booleans()) else None
    word_tokens = list(range(1, C - 1)) if sep is not None else list(range(1, C))
    words = draw(st.lists(st.lists(st.sampled_from(word_tokens), min_size=1, max_size=4), min_size=1,
                          max_size=8))
    T = draw(st.integers(1, 24))
    return (C, sep, words, T, draw(st.integers(0, 2**31 - 1)), draw(st.integers(1, 12)),
            draw(st.one_of(st.none(), st.integers(1, C - 1))), draw(st.one_of(st.none(), st.floats(0.0, 6.0))),
            draw(st.integers(1, 8)), draw(st.floats(0.5, 4.0)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lexicon_cases())
def test_lexicon_never_violated(case):
    C, sep, words, T, seed, beam_width, top_k, threshold, nbest, scale = case
    lp = random_log_probs(3, T, C, seed=seed % 10_000, scale=scale)
    lengths = torch.tensor([T, T // 2, 1])
    out = ctc_beam_search(lp, lengths, beam_width=beam_width, top_k=top_k, beam_threshold=threshold,
                          lexicon=words, word_separator=sep, nbest=nbest, backend="cpu")
    allowed = {tuple(w) for w in words}
    for b in range(3):
        for n in range(nbest):
            L = int(out.token_lengths[b, n])
            if L >= 0:
                assert valid_words(tuple(out.tokens[b, n, :L].tolist()), allowed, sep)


# ---------------------------------------------------------------------------------------------------------
# fuzz: random shapes and values through the bare op; no crash, no hang, and the reference's answer
# ---------------------------------------------------------------------------------------------------------

VALUES = st.sampled_from([0.0, -0.5, -1.0, -2.0, -3.0, -30.0, NEG_INF, -1e-30, -1e30])


@st.composite
def fuzz_cases(draw):
    B = draw(st.integers(1, 3))
    T = draw(st.integers(0, 9))
    C = draw(st.integers(1, 7))
    quantised = draw(st.booleans())
    if quantised:  # ties and -inf everywhere
        values = draw(st.lists(VALUES, min_size=B * T * C, max_size=B * T * C))
        lp = torch.tensor(values, dtype=torch.float32).reshape(B, T, C)
    else:
        lp = random_log_probs(B, T, C, seed=draw(st.integers(0, 10_000)), scale=draw(st.floats(0.1, 8.0)))
    lengths = torch.tensor(draw(st.lists(st.integers(0, T), min_size=B, max_size=B)))
    blank = draw(st.integers(0, C - 1))
    kwargs = dict(blank=blank, beam_width=draw(st.integers(1, 9)), nbest=draw(st.integers(1, 5)),
                  top_k=draw(st.one_of(st.none(), st.integers(1, 8))),
                  beam_threshold=draw(st.one_of(st.none(), st.floats(0.0, 10.0))),
                  blank_skip_threshold=draw(st.one_of(st.none(), st.floats(0.01, 1.0))),
                  token_min_logp=draw(st.one_of(st.none(), st.sampled_from([NEG_INF, math.inf]),
                                                st.floats(-40.0, 1.0))))
    others = [c for c in range(C) if c != blank]
    if others and draw(st.booleans()):
        sep = draw(st.one_of(st.none(), st.sampled_from(others))) if len(others) > 1 else None
        word_tokens = [c for c in others if c != sep]
        kwargs["lexicon"] = draw(st.lists(st.lists(st.sampled_from(word_tokens), min_size=1, max_size=4),
                                          min_size=1, max_size=6))
        kwargs["word_separator"] = sep
    if others and draw(st.booleans()):
        kwargs.update(lm=random_lm(C, 0, order=draw(st.integers(1, 4))) if blank == 0 else None,
                      lm_weight=draw(st.floats(0.0, 3.0)), insertion_bonus=draw(st.floats(-2.0, 2.0)))
        if kwargs["lm"] is None:
            del kwargs["lm"]
    return lp, lengths, kwargs


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fuzz_cases())
def test_fuzz_against_reference(case):
    lp, lengths, kwargs = case
    valid = torch.arange(lp.shape[1]) < lengths.unsqueeze(1)
    if (valid & (lp.amax(-1) == NEG_INF)).any():  # a frame where no class is possible: both reject it
        for backend in ("cpu", "ref"):
            with pytest.raises(ValueError, match="^log_probs must give some class a non-zero probability"):
                ctc_beam_search(lp, lengths, backend=backend, **kwargs)
        return
    run_both(lp, lengths, **kwargs)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(B=st.integers(1, 4), T=st.integers(0, 60), C=st.integers(1, 300), K=st.integers(1, 200),
       seed=st.integers(0, 1000), scale=st.floats(0.0, 20.0))
def test_fuzz_shapes_no_crash(B, T, C, K, seed, scale):
    lp = random_log_probs(B, T, C, seed=seed, scale=scale)
    out = ctc_beam_search(lp, random_lengths(B, T, seed), beam_width=K, nbest=3, backend="cpu")
    assert out.tokens.shape == (B, 3, T)
    assert (out.token_lengths[:, 0] >= 0).all()  # without a lexicon there is always a hypothesis


# ---------------------------------------------------------------------------------------------------------
# the op itself: opcheck, torch.compile, argument checks of the bare op
# ---------------------------------------------------------------------------------------------------------


def op_args(lp, lengths, *, beam_width=4, nbest=2, trie=None, sep=None, lm=None, lm_weight=0.0):
    trie_args = tuple(trie) if trie is not None else (None,) * 4
    lm_args = (lm.keys, lm.values, lm.buckets, lm.filter, lm.token_map, lm.order, lm.bos) if lm is not None \
        else (None, None, None, None, None, 1, -1)
    return (lp, lengths, 0, beam_width, nbest, None, None, None, None, *trie_args, sep, *lm_args, lm_weight, 0.0)


def test_opcheck():
    lp = random_log_probs(3, 6, 5, seed=0)
    lengths = torch.tensor([6, 2, 0])
    lm = random_lm(5, 1).tensors
    trie = compile_trie(LexiconTrie([[1, 2], [3]]))
    for args in (op_args(lp, lengths), op_args(lp.half(), lengths, trie=trie, sep=4),
                 op_args(lp.double(), lengths, lm=lm, lm_weight=0.5)):
        torch.library.opcheck(torch.ops.crnn_fast.ctc_beam_search.default, args)


def test_torch_compile_fullgraph():
    op = torch.ops.crnn_fast.ctc_beam_search

    @torch.compile(fullgraph=True, backend="aot_eager")
    def decode(logits, lengths):
        return op(*op_args(logits.log_softmax(-1), lengths))

    logits = torch.randn(3, 8, 6)
    lengths = torch.tensor([8, 5, 1])
    for g, e in zip(decode(logits, lengths), op(*op_args(logits.log_softmax(-1), lengths))):
        torch.testing.assert_close(g, e)


def test_bare_op_checks_its_arguments():
    op = torch.ops.crnn_fast.ctc_beam_search
    lp = random_log_probs(2, 5, 4, seed=0)
    lengths = torch.tensor([5, 2])
    trie = compile_trie(LexiconTrie([[1, 2], [3]]))
    lm = random_lm(4, 0).tensors

    def with_(args, i, value):
        args = list(args)
        args[i] = value
        return tuple(args)

    base = op_args(lp, lengths)
    bad_trie = (trie.offsets, trie.labels.clone().fill_(9), trie.children, trie.is_word)
    cases = [
        (with_(base, 0, lp[0]), "log_probs"),
        (with_(base, 0, lp.clone().fill_(math.nan)), "log_probs"),
        (with_(base, 0, lp.long()), "log_probs"),
        (with_(base, 1, lengths.int()), "lengths"),
        (with_(base, 1, torch.tensor([6, 2])), "lengths"),
        (with_(base, 2, 4), "blank"),
        (with_(base, 3, 0), "beam_width"),
        (with_(base, 4, 0), "nbest"),
        (with_(base, 5, 0), "top_k"),
        (with_(base, 6, -1.0), "beam_threshold"),
        (with_(base, 7, 0.0), "blank_skip_threshold"),
        (with_(base, 8, math.nan), "token_min_logp"),
        (op_args(lp, lengths, trie=bad_trie), "trie_labels"),
        (op_args(lp, lengths, trie=(trie.offsets[:-1],) + tuple(trie)[1:]), "trie_offsets"),
        (op_args(lp, lengths, sep=3), "word_separator"),
        (op_args(lp, lengths, trie=trie, sep=3), "word_separator"),
        (with_(op_args(lp, lengths, lm=lm, lm_weight=1.0), 18, lm.token_map[:2]), "lm_token_map"),
        (with_(op_args(lp, lengths, lm=lm, lm_weight=1.0), 16, lm.buckets[:-1]), "lm_buckets"),
        (with_(op_args(lp, lengths, lm=lm, lm_weight=1.0), 17, lm.filter[:3]), "lm_filter"),
        (with_(op_args(lp, lengths, lm=lm, lm_weight=1.0), 19, 0), "lm_order"),
        (with_(op_args(lp, lengths, lm=lm, lm_weight=1.0), 15, lm.values.abs()), "lm_values"),
        (op_args(lp, lengths, lm=lm, lm_weight=-1.0), "lm_weight"),
    ]
    for args, name in cases:
        with pytest.raises(RuntimeError, match=name):
            op(*args)


def test_python_wrapper_errors_name_the_argument():
    lp = random_log_probs(2, 5, 4, seed=0)
    nan = lp.clone()
    nan[1, 2, 3] = math.nan
    cases = [
        (dict(log_probs=nan), ValueError, "log_probs"),
        (dict(log_probs=lp[0]), ValueError, "log_probs"),
        (dict(lengths=[6, 1]), ValueError, "lengths"),
        (dict(beam_width=0), ValueError, "beam_width"),
        (dict(nbest=0), ValueError, "nbest"),
        (dict(top_k=0), ValueError, "top_k"),
        (dict(blank_skip_threshold=2.0), ValueError, "blank_skip_threshold"),
        (dict(token_min_logp=math.nan), ValueError, "token_min_logp"),
        (dict(token_min_logp="-5"), TypeError, "token_min_logp"),
        (dict(lexicon=[]), ValueError, "lexicon"),
        (dict(lexicon=[[1, 4]]), ValueError, "lexicon"),
        (dict(lexicon=[[1]], word_separator=0), ValueError, "word_separator"),
        (dict(lm=object(), lm_weight=1.0), TypeError, "lm"),
        (dict(lm=random_lm(5, 0), lm_weight=1.0), ValueError, "lm"),
        (dict(backend="tpu"), ValueError, "backend"),
        (dict(backend="cuda"), ValueError, "backend"),
    ]
    for kwargs, exc, name in cases:
        args = dict(log_probs=lp, backend="cpu") | kwargs
        with pytest.raises(exc, match=rf"^{name}\b"):
            ctc_beam_search(**args)


def test_threads_agree():
    lp = random_log_probs(16, 30, 20, seed=0)
    lengths = random_lengths(16, 30, seed=0)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ctc_beam_search(lp, lengths, beam_width=8, nbest=3, backend="cpu")
        torch.set_num_threads(2)
        two = ctc_beam_search(lp, lengths, beam_width=8, nbest=3, backend="cpu")
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one, two):
        assert torch.equal(a, b)


# ---------------------------------------------------------------------------------------------------------
# frames and confidences: the most probable alignment of the returned text (issue 16, item 1)
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["cpu", "ref"])
@pytest.mark.parametrize("beam_width", [1, 10, 1000])
def test_issue_example_frames_and_confidences(backend, beam_width):
    # Before: beam 10 reported frames (0, 3, 8); beam 1000 (0, 1, 6); with the lexicon (0, 1, 2).
    lp = cat_log_probs()
    peak = math.exp(8) / (math.exp(8) + 4)
    for kwargs in ({}, {"lexicon": [[2, 1, 4], [2, 1, 3], [1, 2, 4]]}):
        out = ctc_beam_search(lp, beam_width=beam_width, backend=backend, **kwargs)
        assert out.tokens[0, 0, :3].tolist() == [2, 1, 4]
        assert out.token_frames[0, 0, :3].tolist() == [2, 5, 8]
        torch.testing.assert_close(out.token_confidences[0, 0, :3], torch.full((3,), peak), rtol=1e-6, atol=0)


def assert_frames_are_best_alignments(out, log_probs, lengths, blank=0):
    for b in range(out.tokens.shape[0]):
        for n in range(out.tokens.shape[1]):
            L = int(out.token_lengths[b, n])
            if L < 0:
                continue
            tokens = out.tokens[b, n, :L].tolist()
            frames, token_lp = best_alignment(log_probs[b], tokens, int(lengths[b]), blank)
            assert tuple(out.token_frames[b, n, :L].tolist()) == frames, (b, n, tokens)
            want = torch.tensor([math.exp(v) for v in token_lp], dtype=torch.float32)
            torch.testing.assert_close(out.token_confidences[b, n, :L], want, rtol=1e-6, atol=0)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("kind", ["random", "dyadic"])
def test_frames_equal_the_forced_alignment(seed, kind):
    # dyadic: exact ties between alignments, which go to the earliest.
    B, T, C = 3, 7, 4
    lp = random_log_probs(B, T, C, seed) if kind == "random" else dyadic_log_probs(B, T, C, seed)
    lengths = random_lengths(B, T, seed)
    for kwargs in ({}, {"lexicon": [[1, 2], [2, 2], [3], [1, 3, 1]]}, {"blank": 2}):
        out = ctc_beam_search(lp, lengths, beam_width=8, nbest=5, backend="cpu", **kwargs)
        assert_frames_are_best_alignments(out, lp, lengths, kwargs.get("blank", 0))


@pytest.mark.parametrize("seed", range(4))
def test_confidences_equal_greedys_for_the_same_text(seed):
    B, T, C = 4, 12, 6
    lp = random_log_probs(B, T, C, seed, scale=4.0)
    greedy = crnn_fast.ctc_greedy(lp, backend="cpu")
    for b in range(B):
        n = int(greedy.token_lengths[b])
        text = greedy.tokens[b, :n].tolist()
        want_frames = greedy.token_frames[b, :n].tolist()
        want_conf = greedy.token_logprobs[b, :n].double().exp().float()
        runs = [dict(beam_width=K, nbest=min(K, 200)) for K in (1, 10, 1000)]
        if text:
            runs.append(dict(beam_width=10, nbest=10, lexicon=[text, [1], [2, 3]]))
        found = 0
        for kwargs in runs:
            out = ctc_beam_search(lp[b:b + 1], beam_width=kwargs.pop("beam_width"), backend="cpu", **kwargs)
            for k in range(out.tokens.shape[1]):
                if int(out.token_lengths[0, k]) == n and out.tokens[0, k, :n].tolist() == text:
                    found += 1
                    assert out.token_frames[0, k, :n].tolist() == want_frames
                    torch.testing.assert_close(out.token_confidences[0, k, :n], want_conf, rtol=1e-6, atol=0)
        assert found >= 3  # the wide searches and the lexicon hold the greedy text


def test_impossible_frame_is_an_error_in_every_decoder():
    # A valid frame that is -inf for every class: before, beam search returned nothing, greedy a text.
    lp = random_log_probs(2, 6, 5, seed=0)
    lp[1, 3] = NEG_INF
    match = "^log_probs must give some class a non-zero probability at every frame: frame 3 of sequence 1"
    for backend in ("cpu", "ref"):
        with pytest.raises(ValueError, match=match):
            ctc_beam_search(lp, beam_width=4, backend=backend)
        with pytest.raises(ValueError, match="^log_probs must give some class a non-zero probability"):
            crnn_fast.ctc_greedy(lp, backend=backend)
    with pytest.raises(RuntimeError, match="frame 3 of sequence 1 is -inf for every class"):
        torch.ops.crnn_fast.ctc_beam_search(*op_args(lp, torch.tensor([6, 6])))
    # Past lengths[b] a frame may hold anything.
    lengths = torch.tensor([6, 3])
    run_both(lp, lengths, beam_width=4, nbest=2)
    assert crnn_fast.ctc_greedy(lp, lengths, backend="cpu").token_lengths.shape == (2,)


# ---------------------------------------------------------------------------------------------------------
# bounded options (issue 16, items 4 and 11) and tensor devices (item 15)
# ---------------------------------------------------------------------------------------------------------


def test_option_bounds_are_value_errors_up_front():
    lp = random_log_probs(1, 4, 4, seed=0)
    for kwargs, name in [(dict(beam_width=MAX_BEAM_WIDTH + 1), "beam_width"), (dict(beam_width=10**9), "beam_width"),
                         (dict(nbest=10**7), "nbest"), (dict(insertion_bonus=1e308), "insertion_bonus"),
                         (dict(insertion_bonus=-1e5), "insertion_bonus"), (dict(lm_weight=1e5), "lm_weight")]:
        for backend in ("cpu", "ref"):
            with pytest.raises(ValueError, match=rf"^{name} must be"):
                ctc_beam_search(lp, backend=backend, **kwargs)
    # The bare op holds the same bounds.
    op = torch.ops.crnn_fast.ctc_beam_search
    lengths = torch.tensor([4])
    base = op_args(lp, lengths)
    for index, value, name in [(3, MAX_BEAM_WIDTH + 1, "beam_width"), (3, 10**9, "beam_width"), (4, 10**7, "nbest"),
                               (22, 1e308, "insertion_bonus"), (21, 1e5, "lm_weight")]:
        args = list(base)
        args[index] = value
        with pytest.raises(RuntimeError, match=rf"^{name} must be in"):
            op(*args)
    for index, value, name in [(0, lp[0], "log_probs"), (0, lp.int(), "log_probs"), (1, lengths.int(), "lengths"),
                               (1, torch.tensor([4, 4]), "lengths"), (2, 99, "blank")]:
        args = list(base)
        args[index] = value
        with pytest.raises(RuntimeError, match=rf"^{name}\b"):  # the argument's name, not the C++ variable's
            op(*args)
    lm = random_lm(4, 0).tensors
    args = list(op_args(lp, lengths, lm=lm, lm_weight=1.0))
    args[15] = lm.values.clone()
    args[15][0, 1] = 1e300  # an ARPA backoff
    with pytest.raises(RuntimeError, match="lm_values: log10 backoffs must be in"):
        op(*args)


def test_scores_at_the_bounds_stay_finite_and_agree():
    lp = random_log_probs(2, 9, 5, seed=1)
    lm = random_lm(5, 0, order=3)
    for bonus in (MAX_INSERTION_BONUS, -MAX_INSERTION_BONUS):
        out, _ = run_both(lp, None, beam_width=6, nbest=3, lm=lm, lm_weight=MAX_LM_WEIGHT, insertion_bonus=bonus)
        assert not torch.isnan(out.scores).any() and not torch.isposinf(out.scores).any()


def test_mixed_devices_are_rejected_not_garbage():
    # A meta tensor among CPU ones dispatches to the fake impl: it used to return uninitialised CPU tensors.
    lp = random_log_probs(2, 5, 4, seed=0)
    meta_lengths = torch.full((2,), 5, device="meta")
    with pytest.raises(RuntimeError, match="^lengths must be on cpu, got meta"):
        torch.ops.crnn_fast.ctc_greedy(lp, meta_lengths, 0)
    with pytest.raises(RuntimeError, match="^lengths must be on cpu, got meta"):
        torch.ops.crnn_fast.ctc_beam_search(*op_args(lp, meta_lengths))
    trie = [t.to("meta") for t in compile_trie(LexiconTrie([[1, 2]]))]
    with pytest.raises(RuntimeError, match="^trie_offsets must be on cpu, got meta"):
        torch.ops.crnn_fast.ctc_beam_search(*op_args(lp, torch.tensor([5, 5]), trie=trie))
    with pytest.raises(RuntimeError, match="^lengths must be on meta, got cpu"):
        torch.ops.crnn_fast.ctc_greedy(lp.to("meta"), torch.tensor([5, 5]), 0)
    # All on meta: shapes only, as before.
    out = torch.ops.crnn_fast.ctc_greedy(lp.to("meta"), meta_lengths, 0)
    assert all(t.device.type == "meta" for t in out)
