"""CTCDecoder: greedy, beam, lexicon (trie and nearest word) and LM decoding against the references."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import torch
from ctc_brute_force import best_alignment, cat_log_probs, dyadic_log_probs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crnn_fast import _ext
from crnn_fast.data import Charset
from crnn_fast.decoding import CharNgramLM, CTCDecoder, CTCHypothesis
from crnn_fast.reference.ctc import ctc_alignment_ref, ctc_beam_search_ref, ctc_greedy_ref, ctc_score_ref

needs_extension = pytest.mark.skipif(not _ext.HAS_EXTENSION, reason=f"crnn_fast._C not built: {_ext.EXTENSION_ERROR}")
BACKENDS = ["ref"] + (["cpu"] if _ext.HAS_EXTENSION else [])

ALNUM = Charset.alphanumeric_lower()  # 37 classes, no space
ASCII = Charset.printable_ascii()  # 96 classes, ' ' is class 1


def log_probs_for(B, T, C, seed, scale=3.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(B, T, C, generator=g)).log_softmax(-1).to(dtype)


def peaked_for(texts, charset, T, seed, noise=1.0, peak=6.0):
    """Log-probs whose best path spells each text (one or two frames per character, blanks between)."""
    g = torch.Generator().manual_seed(seed)
    out = noise * torch.randn(len(texts), T, charset.num_classes, generator=g)
    for b, text in enumerate(texts):
        t = 0
        for c in charset.encode(text):
            out[b, t, c] += peak
            out[b, t + 1, 0] += peak
            t += 2
        out[b, t:, 0] += peak
    return out.log_softmax(-1)


def assert_hyps_close(a: list[CTCHypothesis], b: list[CTCHypothesis]):
    assert [h.text for h in a] == [h.text for h in b]
    for x, y in zip(a, b):
        assert x.tokens == y.tokens and x.frames == y.frames
        for name in ("score", "acoustic_score", "lm_score"):
            assert getattr(x, name) == pytest.approx(getattr(y, name), rel=1e-9, abs=1e-9)
        assert x.confidences == pytest.approx(y.confidences, rel=1e-6)


# ---------------------------------------------------------------------------------------------------------
# greedy and beam search
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_greedy_is_best_path(backend):
    lp = log_probs_for(5, 26, 37, seed=0)
    lengths = torch.tensor([26, 20, 1, 0, 13])
    dec = CTCDecoder(ALNUM, beam_width=1, backend=backend)
    assert dec.is_greedy
    out = dec.decode(lp, lengths)
    ref = ctc_greedy_ref(lp, lengths)
    for b in range(5):
        (h,) = out[b]
        n = int(ref.token_lengths[b])
        assert h.tokens == tuple(ref.tokens[b, :n].tolist())
        assert h.text == ALNUM.decode(h.tokens)
        assert h.frames == tuple(ref.token_frames[b, :n].tolist())
        assert h.score == pytest.approx(float(ref.path_logprob[b]), abs=1e-5)
        assert h.lm_score == 0.0 and h.acoustic_score == h.score
        # The best path is the best alignment of its own text: confidences are the peaks over its runs.
        assert h.confidences == pytest.approx(tuple(ref.token_logprobs[b, :n].double().exp().tolist()), rel=1e-6)
        alignment = ctc_alignment_ref(lp[b], h.tokens, int(lengths[b]))
        assert h.frames == alignment.frames
        assert h.confidences == pytest.approx(tuple(math.exp(v) for v in alignment.token_logprobs), rel=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_beam_width_1_with_blank_skip_is_not_greedy(backend):
    # Frame 1's best class is 'a' (0.45) but its blank (0.40) is over the skip threshold: best path emits 'a',
    # the search that honours the threshold must not.
    probs = torch.full((1, 4, 37), 0.15 / 35)
    probs[0, :, 0] = 0.85
    probs[0, 1, 0], probs[0, 1, 11] = 0.40, 0.45
    probs[0, 2, 0], probs[0, 2, 12] = 0.10, 0.75
    lp = (probs / probs.sum(-1, keepdim=True)).log()
    assert ctc_greedy_ref(lp, None).tokens[0, :2].tolist() == [11, 12]
    dec = CTCDecoder(ALNUM, beam_width=1, blank_skip_threshold=0.3, backend=backend)
    assert not dec.is_greedy
    (h,) = dec.decode(lp)[0]
    (r,) = ctc_beam_search_ref(lp, None, beam_width=1, blank_skip_threshold=0.3)[0]
    assert h.tokens == r.tokens == (12,)
    assert h.score == pytest.approx(r.score, abs=1e-6)


@needs_extension
@pytest.mark.parametrize("charset,blank,floor", [(ALNUM, 0, None), (ASCII, 0, None), (ALNUM, 36, None),
                                                 (ALNUM, 5, None), (ASCII, 0, -5.0), (ALNUM, 36, -3.0)])
def test_beam_matches_reference(charset, blank, floor):
    C = charset.num_classes
    lp = log_probs_for(4, 26, C, seed=C + blank, scale=2.0)
    lengths = torch.tensor([26, 25, 3, 0])
    kwargs = dict(beam_width=8, nbest=3, top_k=None if C < 50 else 12, beam_threshold=20.0,
                  blank_skip_threshold=0.97, token_min_logp=floor)
    fast = CTCDecoder(charset, blank=blank, backend="cpu", **kwargs).decode(lp, lengths)
    slow = CTCDecoder(charset, blank=blank, backend="ref", **kwargs).decode(lp, lengths)
    labels = list(charset.characters)
    labels.insert(blank, None)
    ref = ctc_beam_search_ref(lp, lengths, blank=blank, **kwargs)
    for b in range(4):
        assert_hyps_close(fast[b], slow[b])
        assert [h.tokens for h in fast[b]] == [h.tokens for h in ref[b]]
        assert [h.text for h in fast[b]] == ["".join(labels[t] for t in h.tokens) for h in ref[b]]
        assert [h.frames for h in fast[b]] == [h.frames for h in ref[b]]
    assert fast[3] == [CTCHypothesis("", (), 0.0, 0.0, 0.0, (), ())]


@needs_extension
def test_nbest_and_dtypes():
    lp = log_probs_for(2, 12, 37, seed=1, scale=1.0)
    dec = CTCDecoder(ALNUM, beam_width=4, nbest=10)
    out = dec.decode(lp)
    assert all(len(h) == 4 for h in out)
    assert all([x.score for x in h] == sorted((x.score for x in h), reverse=True) for h in out)
    for dtype in (torch.float64, torch.float16, torch.bfloat16):
        low = lp.to(dtype)
        got = dec.decode(low)
        ref = ctc_beam_search_ref(low, beam_width=4, nbest=10)
        assert [[h.tokens for h in x] for x in got] == [[h.tokens for h in x] for x in ref]
    # lengths as a list; a charset given as a str
    assert CTCDecoder(ALNUM.characters, beam_width=4).decode(lp, [12, 5])[0][0].text == out[0][0].text


# ---------------------------------------------------------------------------------------------------------
# frames and confidences: the most probable alignment of the text, in every mode (issue 16, item 1)
# ---------------------------------------------------------------------------------------------------------

CAT = Charset("acrt")  # classes: blank, a, c, r, t


@pytest.mark.parametrize("backend", BACKENDS)
def test_issue_example_frames_and_confidences_in_every_mode(backend):
    # Before: beam 10 gave frames (0, 3, 8), beam 1000 (0, 1, 6) with confidences [0.002, 0.95, 0.95], the
    # lexicon (0, 1, 2) and [0.002, 0.002, 0.95].
    lp = cat_log_probs()
    peak = math.exp(8) / (math.exp(8) + 4)
    words = ["cat", "car", "act"]
    modes = [dict(beam_width=K) for K in (1, 10, 1000)] + [
        dict(beam_width=10, lexicon=words), dict(beam_width=1000, lexicon=words),
        dict(lexicon=words, lexicon_mode="nearest"), dict(beam_width=10, insertion_bonus=0.5)]
    for kwargs in modes:
        (h, *_) = CTCDecoder(CAT, backend=backend, **kwargs).decode(lp)[0]
        assert h.text == "cat" and h.frames == (2, 5, 8), kwargs
        assert h.confidences == pytest.approx((peak,) * 3, rel=1e-6), kwargs


def test_confidences_equal_greedys_for_the_same_text():
    texts = ["hello", "abc", "mississippi", "a1b2"]
    lp = torch.cat([peaked_for(texts, ALNUM, 26, seed=3, noise=1.5, peak=4.0),
                    log_probs_for(2, 26, ALNUM.num_classes, seed=4, scale=1.0)])
    greedy = CTCDecoder(ALNUM, beam_width=1, backend="ref").decode(lp)
    others = ["zzz", "qq", "x"]
    found = 0
    for kwargs in [dict(beam_width=10, nbest=10), dict(beam_width=1000, nbest=100)]:
        for b, hyps in enumerate(CTCDecoder(ALNUM, **kwargs).decode(lp)):
            for h in hyps:
                if h.text == greedy[b][0].text:
                    found += 1
                    assert h.frames == greedy[b][0].frames
                    assert h.confidences == pytest.approx(greedy[b][0].confidences, rel=1e-6)
    for b, (g,) in enumerate(greedy):
        if not g.text:
            continue
        for kwargs in [dict(beam_width=10, lexicon=[g.text] + others, nbest=4),
                       dict(lexicon=[g.text] + others, lexicon_mode="nearest", nbest=4)]:
            (h,) = [h for h in CTCDecoder(ALNUM, **kwargs).decode(lp[b:b + 1])[0] if h.text == g.text]
            found += 1
            assert h.frames == g.frames
            assert h.confidences == pytest.approx(g.confidences, rel=1e-6)
    assert found >= 3 * len(texts)


@pytest.mark.parametrize("seed", range(3))
def test_nearest_word_alignments_on_exact_ties(seed):
    # Dyadic log-probs normalised only approximately would be rejected: compare the helper directly.
    from crnn_fast.decoding.decoder import best_alignments

    lp = dyadic_log_probs(3, 7, 4, seed)
    labels = [(1, 2), (3, 3), (1,), (2, 1, 3)]
    items = [0, 1, 2, 0]
    lengths = torch.tensor([7, 6, 5])
    frames, token_lp = best_alignments(lp, lengths, 0, labels, items)
    for i, (label, b) in enumerate(zip(labels, items)):
        want_frames, want_lp = best_alignment(lp[b], label, int(lengths[b]))
        assert tuple(frames[i, :len(label)].tolist()) == want_frames
        assert tuple(token_lp[i, :len(label)].tolist()) == want_lp


def test_every_frame_must_be_a_distribution():
    # Before, only frame 0 was checked: logits (or an impossible frame) later on decoded silently.
    good = log_probs_for(2, 6, 37, seed=0)
    logits = good.clone()
    logits[1, 4] *= 3
    impossible = good.clone()
    impossible[0, 5] = -math.inf
    for kwargs in (dict(beam_width=1), dict(beam_width=4), dict(lexicon=["ab"], lexicon_mode="nearest")):
        dec = CTCDecoder(ALNUM, **kwargs)
        with pytest.raises(ValueError, match="^log_probs must be log-probabilities .* frame 4 of item 1"):
            dec.decode(logits)
        with pytest.raises(ValueError, match="^log_probs must give some class a non-zero probability at every "
                                             "frame: frame 5 of sequence 0"):
            dec.decode(impossible)
        dec.decode(logits, [6, 4])  # past lengths[b] a frame is not looked at
        dec.decode(impossible, [5, 6])


# ---------------------------------------------------------------------------------------------------------
# lexicon (trie): the hard constraint
# ---------------------------------------------------------------------------------------------------------


def is_lexicon_line(text, words):
    return text == "" or all(w in words for w in text.split(" "))


@needs_extension
def test_lexicon_recovers_words():
    words = ["hello", "world", "help", "word", "hold"]
    texts = ["helo wrld", "hello world", "word"]
    lp = peaked_for(texts, ASCII, 26, seed=0)
    out = CTCDecoder(ASCII, beam_width=16, lexicon=words).decode(lp)
    for hyps in out:
        assert hyps and is_lexicon_line(hyps[0].text, set(words))
    assert out[1][0].text == "hello world" and out[2][0].text == "word"
    # Without a space in the charset the output is a single word.
    lp = peaked_for(["helo"], ALNUM, 12, seed=1)
    (h,) = CTCDecoder(ALNUM, beam_width=16, lexicon=words).decode(lp)[0]
    assert h.text in words


@st.composite
def lexicon_decodes(draw):
    letters = "abcde"
    words = draw(st.lists(st.text(letters, min_size=1, max_size=4), min_size=1, max_size=10))
    charset = draw(st.sampled_from([Charset(letters + " "), Charset(letters)]))
    return (charset, words, draw(st.integers(1, 30)), draw(st.integers(0, 10_000)), draw(st.integers(1, 12)),
            draw(st.integers(1, 5)), draw(st.floats(0.3, 5.0)), draw(st.one_of(st.none(), st.integers(1, 6))))


@needs_extension
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lexicon_decodes())
def test_lexicon_constraint_never_violated(case):
    charset, words, T, seed, beam_width, nbest, scale, top_k = case
    lp = log_probs_for(3, T, charset.num_classes, seed, scale=scale)
    dec = CTCDecoder(charset, beam_width=beam_width, nbest=nbest, top_k=top_k, lexicon=words)
    for hyps in dec.decode(lp, [T, T // 2, 1]):
        assert len(hyps) <= min(nbest, beam_width)
        for h in hyps:
            if " " in charset:
                assert is_lexicon_line(h.text, set(words)), (h.text, words)
            else:
                assert h.text == "" or h.text in words


# ---------------------------------------------------------------------------------------------------------
# language model
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def english_lm(tmp_path_factory):
    rng = random.Random(0)
    vocab = ["hello", "world", "help", "word", "hold", "the", "cat", "sat", "on", "mat"]
    lines = [" ".join(rng.choice(vocab) for _ in range(rng.randint(2, 8))) for _ in range(300)]
    lm = CharNgramLM.from_text(lines, 4)
    path = tmp_path_factory.mktemp("lm") / "lm.arpa"
    lm.save(path)
    return lm, path


@needs_extension
def test_lm_matches_reference_and_helps(english_lm):
    lm, path = english_lm
    texts = ["the cat sat", "hello world"]
    lp = peaked_for(texts, ASCII, 26, seed=3, noise=2.5, peak=3.0)
    kwargs = dict(beam_width=16, nbest=3, lm_weight=0.8, insertion_bonus=1.0, top_k=10)
    fast = CTCDecoder(ASCII, lm=lm, **kwargs).decode(lp)
    from_file = CTCDecoder(ASCII, lm=path, backend="cpu", **kwargs).decode(lp)
    slow = CTCDecoder(ASCII, lm=lm, backend="ref", **kwargs).decode(lp)
    for a, b, c in zip(fast, from_file, slow):
        assert_hyps_close(a, b)
        assert_hyps_close(a, c)
    for hyps in fast:
        for h in hyps:
            lm_part = 0.8 * lm.sentence_score(h.text) + 1.0 * len(h.text)
            assert h.lm_score == pytest.approx(lm_part, rel=1e-9)
            assert h.score == pytest.approx(h.acoustic_score + h.lm_score, rel=1e-12)
    # The LM pulls the noisy decode towards its language.
    plain = CTCDecoder(ASCII, beam_width=16).decode(lp)
    dist = sum(_edit(h[0].text, t) for h, t in zip(fast, texts))
    assert dist <= sum(_edit(h[0].text, t) for h, t in zip(plain, texts))
    # lm_weight 0 ignores the model.
    zero = CTCDecoder(ASCII, beam_width=16, lm=lm, lm_weight=0.0).decode(lp)
    assert [h[0].text for h in zero] == [h[0].text for h in plain]


def _edit(a, b):
    from rapidfuzz.distance import Levenshtein

    return Levenshtein.distance(a, b)


@needs_extension
def test_lexicon_and_lm_together(english_lm):
    lm, _ = english_lm
    words = ["hello", "world", "help", "word", "hold", "the", "cat", "sat", "on", "mat"]
    lp = peaked_for(["the cat sat", "hello world"], ASCII, 26, seed=4, noise=2.0, peak=3.5)
    kwargs = dict(beam_width=8, nbest=2, lexicon=words, lm=lm, lm_weight=0.5, top_k=8)
    fast = CTCDecoder(ASCII, **kwargs).decode(lp)
    slow = CTCDecoder(ASCII, backend="ref", **kwargs).decode(lp)
    for a, b in zip(fast, slow):
        assert_hyps_close(a, b)
        assert all(is_lexicon_line(h.text, set(words)) for h in a)


# ---------------------------------------------------------------------------------------------------------
# nearest lexicon word (the CRNN paper's small-lexicon mode)
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("blank", [0, 36])
def test_nearest_word_scores_are_exact(blank):
    words = ["hello", "help", "hell", "world", "wood", "a", "ll", "lol", "hello world"]
    charset = Charset("abcdefghijklmnopqrstuvwxyz0123456789 ")
    C = charset.num_classes
    lp = log_probs_for(4, 14, C, seed=blank, scale=2.0)
    lengths = torch.tensor([14, 9, 2, 0])
    dec = CTCDecoder(charset, blank=blank, lexicon=words, lexicon_mode="nearest", nbest=len(words))
    out = dec.decode(lp, lengths)
    labels = list(charset.characters)
    labels.insert(blank, None)
    ids = {c: i for i, c in enumerate(labels) if c is not None}
    for b in range(4):
        want = {}
        for w in words:
            s = float(ctc_score_ref(lp[b: b + 1], [[ids[c] for c in w]], lengths[b: b + 1], blank=blank)[0])
            if math.isfinite(s):
                want[w] = s
        ranked = sorted(want.items(), key=lambda kv: (-kv[1], [ids[c] for c in kv[0]]))
        assert [h.text for h in out[b]] == [w for w, _ in ranked]
        for h, (_, s) in zip(out[b], ranked):
            assert h.acoustic_score == pytest.approx(s, rel=1e-9, abs=1e-9)
            assert h.score == h.acoustic_score and h.lm_score == 0.0
            assert len(h.frames) == len(h.text) and list(h.frames) == sorted(set(h.frames))
            assert all(0 <= f < int(lengths[b]) for f in h.frames)
    assert out[3] == []  # no frames: no word fits


@pytest.mark.parametrize("seed", range(4))
def test_nearest_word_frames_follow_the_best_alignment(seed):
    charset = Charset("ab")
    lp = log_probs_for(1, 6, 3, seed=seed, scale=2.0).double()
    words = ["ab", "ba", "aab", "b", "aba"]
    out = CTCDecoder(charset, lexicon=words, lexicon_mode="nearest", nbest=5).decode(lp)[0]
    assert len(out) == 5
    for h in out:
        frames, token_lp = best_alignment(lp[0], h.tokens)
        assert h.frames == frames
        assert h.confidences == pytest.approx(tuple(math.exp(v) for v in token_lp), rel=1e-6)


def test_nearest_word_with_lm(english_lm):
    lm, _ = english_lm
    words = ["hello", "help", "world"]
    lp = peaked_for(["helo"], ASCII, 12, seed=0)
    out = CTCDecoder(ASCII, lexicon=words, lexicon_mode="nearest", lm=lm, lm_weight=0.5, insertion_bonus=0.25,
                     nbest=3).decode(lp)[0]
    for h in out:
        assert h.lm_score == pytest.approx(0.5 * lm.sentence_score(h.text) + 0.25 * len(h.text), rel=1e-9)
        assert h.score == pytest.approx(h.acoustic_score + h.lm_score)
    assert out[0].text in ("hello", "help")


# ---------------------------------------------------------------------------------------------------------
# bad input: clear errors naming the argument
# ---------------------------------------------------------------------------------------------------------

GOOD = log_probs_for(2, 6, 37, seed=0)


def bad(kind):
    t = GOOD.clone()
    if kind == "nan":
        t[1, 3, 5] = math.nan
    elif kind == "inf":
        t[0, 0, 2] = math.inf
    return t


CONSTRUCTOR_BAD = [
    (dict(charset=3), TypeError, "charset"),
    (dict(blank=37), ValueError, "blank"),
    (dict(blank=1.0), TypeError, "blank"),
    (dict(beam_width=0), ValueError, "beam_width"),
    (dict(beam_width=2.5), TypeError, "beam_width"),
    (dict(nbest=0), ValueError, "nbest"),
    (dict(top_k=0), ValueError, "top_k"),
    (dict(beam_threshold=-1.0), ValueError, "beam_threshold"),
    (dict(blank_skip_threshold=0.0), ValueError, "blank_skip_threshold"),
    (dict(token_min_logp=math.nan), ValueError, "token_min_logp"),
    (dict(token_min_logp="-5"), TypeError, "token_min_logp"),
    (dict(lm_weight=-0.5), ValueError, "lm_weight"),
    (dict(insertion_bonus=math.inf), ValueError, "insertion_bonus"),
    (dict(insertion_bonus=1e308), ValueError, "insertion_bonus"),
    (dict(beam_width=4097), ValueError, "beam_width"),
    (dict(beam_width=16777216), ValueError, "beam_width"),
    (dict(beam_width=300, backend="cuda"), ValueError, "beam_width"),
    (dict(nbest=10**7), ValueError, "nbest"),
    (dict(lm_weight=1e5), ValueError, "lm_weight"),
    (dict(backend="gpu"), ValueError, "backend"),
    (dict(lexicon_mode="fuzzy", lexicon=["a"]), ValueError, "lexicon_mode"),
    (dict(lexicon=[]), ValueError, "lexicon"),
    (dict(lexicon=["abc", ""]), ValueError, "lexicon"),
    (dict(lexicon=["abc", "ABC"]), ValueError, "lexicon"),
    (dict(lexicon="abc"), TypeError, "lexicon"),
    (dict(lexicon=["ab", 3]), TypeError, "lexicon"),
    (dict(lexicon=5), TypeError, "lexicon"),
    (dict(lm=5, lm_weight=1.0), TypeError, "lm"),
]


@pytest.mark.parametrize("kwargs,exc,name", CONSTRUCTOR_BAD,
                         ids=[n + str(i) for i, (_, _, n) in enumerate(CONSTRUCTOR_BAD)])
def test_constructor_rejects(kwargs, exc, name):
    args = dict(charset=ALNUM) | kwargs
    with pytest.raises(exc, match=rf"^{name}\b"):
        CTCDecoder(**args)


def test_lexicon_word_with_separator_and_outside_charset():
    with pytest.raises(ValueError, match=r"^lexicon word 1 \('new york'\) contains the word separator"):
        CTCDecoder(ASCII, lexicon=["ok", "new york"])
    with pytest.raises(ValueError, match=r"^lexicon word 0 \('café'\) has characters outside the charset: 'é'"):
        CTCDecoder(ASCII, lexicon=["café"])
    # Whole lines are fine in nearest mode.
    CTCDecoder(ASCII, lexicon=["new york"], lexicon_mode="nearest")


def test_lexicon_from_file(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("hello\n\n  world \n")
    dec = CTCDecoder(ASCII, lexicon=Path(path), beam_width=4)
    assert len(dec._words) == 2


def test_malformed_arpa_is_reported(tmp_path):
    path = tmp_path / "broken.arpa"
    path.write_text("\\data\\\nngram 1=2\n\n\\1-grams:\n-1.0\ta\n\n\\end\\\n")
    with pytest.raises(ValueError, match="ARPA file .*broken.arpa line .*announces 2 1-grams"):
        CTCDecoder(ASCII, lm=path, lm_weight=1.0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["greedy", "beam", "nearest"])
def test_decode_rejects(backend, mode):
    kwargs = {"greedy": dict(beam_width=1), "beam": dict(beam_width=4),
              "nearest": dict(lexicon=["ab", "c"], lexicon_mode="nearest")}[mode]
    dec = CTCDecoder(ALNUM, backend=backend, **kwargs)
    cases = [
        ((bad("nan"),), ValueError, "log_probs"),
        ((bad("inf"),), ValueError, "log_probs"),
        ((GOOD[0],), ValueError, "log_probs"),
        ((GOOD.long(),), TypeError, "log_probs"),
        ((GOOD[:0],), ValueError, "log_probs"),
        ((GOOD[:, :, :30].log_softmax(-1),), ValueError, "log_probs has C=30 classes"),
        ((GOOD * 3,), ValueError, "log_probs must be log-probabilities"),  # logits
        ((GOOD, [7, 1]), ValueError, "lengths"),
        ((GOOD, [-1, 1]), ValueError, "lengths"),
        ((GOOD, [1]), ValueError, "lengths"),
    ]
    for args, exc, match in cases:
        with pytest.raises(exc, match=rf"^{match}"):
            dec.decode(*args)


def test_backend_cuda_without_cuda_tensor():
    with pytest.raises(ValueError, match="^backend"):
        CTCDecoder(ALNUM, beam_width=4, backend="cuda").decode(GOOD)


@pytest.mark.cuda
def test_cuda_tensors_decode_like_cpu():
    lp = log_probs_for(8, 26, 37, seed=2)
    dec = CTCDecoder(ALNUM, beam_width=8, nbest=2)
    on_gpu = dec.decode(lp.cuda(), torch.full((8,), 26, device="cuda"))
    on_cpu = dec.decode(lp)
    for a, b in zip(on_gpu, on_cpu):
        assert_hyps_close(a, b)
