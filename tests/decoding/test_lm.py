"""CharNgramLM: interpolated Kneser–Ney training, backoff scoring, ARPA files (ours and KenLM's)."""

from __future__ import annotations

import gzip
import math
import random

import numpy as np
import pytest
import torch

from crnn_fast.decoding import CharNgramLM
from crnn_fast.formats.lm import EOS, LN10, UNK, ngram_keys, spell, unspell

TEXT = [
    "the quick brown fox jumps over the lazy dog",
    "hello world",
    "the cat sat on the mat",
    "a man a plan a canal panama",
    "to be or not to be, that is the question",
]


@pytest.fixture(scope="module")
def lm5():
    return CharNgramLM.from_text(TEXT, 5)


def total_probability(lm, context):
    """Sum over every predictable token (characters, </s>, <unk>) of P(token | context)."""
    ctx = tuple(lm.word_id(c) for c in context)
    return sum(math.exp(lm.score_ids(ctx, w)) for w, tok in enumerate(lm.vocab) if tok != "<s>")


@pytest.mark.parametrize("order", [1, 2, 3, 5, 7])
def test_kneser_ney_is_a_distribution(order):
    lm = CharNgramLM.from_text(TEXT, order)
    for context in ["", "t", "th", "the qu", "zzz", "hello wor", "xq", "a man a pl", "€"]:
        assert total_probability(lm, context) == pytest.approx(1.0, abs=1e-9)


def test_kneser_ney_prefers_seen_text(lm5):
    assert lm5.score("the qu", "i") > lm5.score("the qu", "z")
    assert lm5.score("hel", "l") > math.log(0.2) > lm5.score("hel", "x")
    assert lm5.sentence_score("the cat") > lm5.sentence_score("tqe cxt")
    # Unknown characters score as <unk>; <unk> is possible but unlikely.
    assert lm5.score("the", "€") == lm5.score_ids(tuple(lm5.word_id(c) for c in "the"), lm5.unk)
    assert lm5.score("the", "€") < lm5.score("the", "z")
    assert lm5.sentence_score("hello world", eos=True) < lm5.sentence_score("hello world")


def test_kneser_ney_hand_computed_bigram():
    # Corpus "ab", "ab", "b": bigram interpolated KN by hand.
    lm = CharNgramLM.from_text(["ab", "ab", "b"], 2)
    # Adjusted unigram counts (continuation): a <- {<s>}: 1, b <- {a, <s>}: 2, </s> <- {b}: 1, <unk>: 0.
    # counts-of-counts: n1 = 2 (a, </s>), n2 = 1 (b): D1 = 2 / (2 + 2) = 0.5. Total 4, 3 types.
    # gamma() = 0.5 * 3 / 4; 4 predictable tokens (a, b, </s>, <unk>).
    g0 = 0.5 * 3 / 4
    p1 = {"a": 0.5 / 4 + g0 / 4, "b": 1.5 / 4 + g0 / 4, EOS: 0.5 / 4 + g0 / 4, UNK: g0 / 4}
    assert sum(p1.values()) == pytest.approx(1.0)
    # Bigrams (raw counts): <s>a 2, ab 2, b</s> 3, <s>b 1. n1 = 1, n2 = 2 (<s>a, ab): D2 = 1 / 5.
    d2 = 1 / 5
    # Context <s>: a 2, b 1 -> total 3, 2 types.
    g_s = d2 * 2 / 3
    assert math.exp(lm.score("", "a")) == pytest.approx((2 - d2) / 3 + g_s * p1["a"])
    assert math.exp(lm.score("", "b")) == pytest.approx((1 - d2) / 3 + g_s * p1["b"])
    assert math.exp(lm.score("", EOS)) == pytest.approx(g_s * p1[EOS])  # backed off
    # Context a: b 2 -> total 2, 1 type.
    assert math.exp(lm.score("a", "b")) == pytest.approx((2 - d2) / 2 + d2 / 2 * p1["b"])
    assert math.exp(lm.score("a", "a")) == pytest.approx(d2 / 2 * p1["a"])


def test_arpa_round_trip(tmp_path, lm5):
    for name in ("lm.arpa", "lm.arpa.gz"):
        path = tmp_path / name
        lm5.save(path)
        loaded = CharNgramLM.load(path)
        assert loaded.order == 5 and loaded.counts() == lm5.counts()
        for context in ["", "the", "a man a", "zz"]:
            for ch in "abcdefghijklmnopqrstuvwxyz ,€":
                assert loaded.score(context, ch) == lm5.score(context, ch)
    text = (tmp_path / "lm.arpa").read_text()
    assert "<space>" in text and "\\5-grams:" in text


def test_spelling_is_reversible():
    for ch in [" ", "\t", "\u3000", "a", "<", ">", "中", "\x01"]:
        assert unspell(spell(ch)) == ch
    assert spell(" ") == "<space>"
    with pytest.raises(ValueError, match="not a single character"):
        unspell("word")


KENLM_STYLE = """
\\data\\
ngram 1=6
ngram 2=4
ngram 3=1

\\1-grams:
-1.5\t<unk>\t0
0\t<s>\t-0.30103
-1.0\t</s>
-0.6\ta\t-0.2
-0.7\tb\t-0.25
-0.8\t<space>\t-0.1

\\2-grams:
-0.3\t<s> a\t-0.1
-0.2\ta b\t0.05
-0.4\tb </s>
-0.5\t<space> a

\\3-grams:
-0.1\t<s> a b

\\end\\
"""


def test_loads_kenlm_style_arpa_and_backs_off(tmp_path):
    path = tmp_path / "kenlm.arpa"
    path.write_text(KENLM_STYLE)
    lm = CharNgramLM.load(path)
    assert lm.order == 3 and lm.counts() == [6, 4, 1]
    # Found at order 3.
    assert lm.score("a", "b") == pytest.approx(-0.1 * LN10)
    # (<s> a) then back off: bow(<s> a) + p(a | a) -> p(a | a) missing: bow(a) + p(a).
    assert lm.score("a", "a") == pytest.approx((-0.1 - 0.2 - 0.6) * LN10)
    # Context "ab" (3-gram context a b): (a b) bow 0.05, then unigram b: -0.7.
    assert lm.score("ab", "b") == pytest.approx((0.05 - 0.25 - 0.7) * LN10)
    assert lm.score("ab", EOS) == pytest.approx((0.05 - 0.4) * LN10)
    # Space is spelled <space>; a character the model lacks scores as <unk>.
    assert lm.score("b ", "a") == pytest.approx(-0.5 * LN10)
    assert lm.score("", "z") == pytest.approx((-0.30103 - 1.5) * LN10)


def test_matches_kenlm_when_installed(tmp_path, lm5):
    kenlm = pytest.importorskip("kenlm")
    path = tmp_path / "lm.arpa"
    lm5.save(path)
    model = kenlm.Model(str(path))
    rng = random.Random(0)
    for _ in range(20):
        text = "".join(rng.choice("the quick brown fox,€") for _ in range(rng.randint(1, 12)))
        words = " ".join(spell(c) if c in lm5.vocab else "<unk>" for c in text)
        ours = lm5.sentence_score(text) / LN10
        assert model.score(words, bos=True, eos=False) == pytest.approx(ours, abs=1e-4)


def test_missing_context_ngrams_are_added(tmp_path):
    # The 3-gram (<s> a b) without its context (<s> a): loading adds (<s> a) with the probability its
    # backoff gives and no backoff weight, so no score changes.
    arpa = KENLM_STYLE.replace("ngram 2=4", "ngram 2=3").replace("-0.3\t<s> a\t-0.1\n", "")
    path = tmp_path / "open.arpa"
    path.write_text(arpa)
    lm = CharNgramLM.load(path)
    assert lm.counts() == [6, 4, 1]
    assert lm.score("", "a") == pytest.approx((-0.30103 - 0.6) * LN10)
    assert lm.score("a", "b") == pytest.approx(-0.1 * LN10)
    assert lm.score("a", "a") == pytest.approx((-0.2 - 0.6) * LN10)


@pytest.mark.parametrize("mutate,match", [
    (lambda s: s.replace("\\data\\", ""), "no .data. header"),
    (lambda s: s.replace("ngram 1=6", "ngram 1=7"), "announces 7 1-grams"),
    (lambda s: s.replace("ngram 2=4", "ngram two=4"), "bad count line"),
    (lambda s: s.replace("-0.6\ta\t-0.2", "-0.6\ta b c d"), "fields"),
    (lambda s: s.replace("-0.6\ta\t-0.2", "x\ta\t-0.2"), "must be numbers"),
    (lambda s: s.replace("-0.6\ta\t-0.2", "0.6\ta\t-0.2"), "must be <= 0"),
    (lambda s: s.replace("-0.6\ta\t-0.2", "-0.6\ta\tnan"), "backoff must be in"),
    (lambda s: s.replace("-0.5\t<space> a", "-0.5\t<space> q"), "not among the unigrams"),
    (lambda s: s.replace("-0.7\tb\t-0.25", "-0.7\ta\t-0.25"), "appears twice"),
    (lambda s: s.replace("\\end\\", ""), "expected .end."),
    (lambda s: s.replace("\\3-grams:", "\\4-grams:"), "3-grams: section"),
    (lambda s: s.replace("<space>", "ab"), "not a single character"),
])
def test_malformed_arpa(tmp_path, mutate, match):
    path = tmp_path / "bad.arpa"
    path.write_text(mutate(KENLM_STYLE))
    with pytest.raises(ValueError, match=match) as info:
        CharNgramLM.load(path)
    assert str(path) in str(info.value)


def test_unreadable_arpa(tmp_path):
    with pytest.raises(ValueError, match="cannot be read"):
        CharNgramLM.load(tmp_path / "missing.arpa")
    path = tmp_path / "binary.arpa.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="cannot be read"):
        CharNgramLM.load(path)
    gz = tmp_path / "latin.arpa.gz"
    with gzip.open(gz, "wb") as f:
        f.write(b"\xff\xfe\x00bad")
    with pytest.raises(ValueError, match="cannot be read"):
        CharNgramLM.load(gz)


def test_build_from_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(TEXT) + "\n\n")
    lm = CharNgramLM.build(path, order=4)
    assert lm.order == 4
    assert lm.score("the qu", "i") == CharNgramLM.from_text(TEXT, 4).score("the qu", "i")


@pytest.mark.parametrize("call,exc,match", [
    (lambda: CharNgramLM.from_text([], 3), ValueError, "^lines"),
    (lambda: CharNgramLM.from_text(["", ""], 3), ValueError, "^lines"),
    (lambda: CharNgramLM.from_text("abc", 3), TypeError, "^lines"),
    (lambda: CharNgramLM.from_text(["ab", 3], 3), TypeError, r"^lines\[1\]"),
    (lambda: CharNgramLM.from_text(["ab"], 0), ValueError, "^order"),
    (lambda: CharNgramLM.from_text(["ab"], 2).score("a", "bc"), ValueError, "^char"),
    (lambda: CharNgramLM.from_text(["ab"], 2).score(3, "b"), TypeError, "^context"),
])
def test_bad_arguments(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_tensors_layout(lm5):
    labels = [None] + list("abcdefghijklmnopqrstuvwxyz ") + ["€"]
    t = lm5.to_tensors(labels)
    keys = t.keys.numpy().view("uint64")
    assert (keys[1:] > keys[:-1]).all()  # sorted, no collisions
    assert t.values.shape == (len(lm5) + 1, 3) and t.values.dtype == torch.float64  # + the empty n-gram
    nb = t.buckets.numel() - 1
    assert nb & (nb - 1) == 0 and int(t.buckets[0]) == 0 and int(t.buckets[-1]) == len(keys)
    bits = nb.bit_length() - 1
    # Each key sits in its bucket.
    for i in range(0, len(keys), 37):
        b = int(keys[i] >> np.uint64(64 - bits))
        assert int(t.buckets[b]) <= i < int(t.buckets[b + 1])
    assert t.token_map[0] == -1 and t.token_map[-1] == lm5.unk and t.token_map[1] == lm5.word_id("a")
    # The key of one n-gram, by hand.
    gram = np.array([[lm5.bos, lm5.word_id("t"), lm5.word_id("h")]])
    key = ngram_keys(gram)[0]
    i = int(np.searchsorted(keys, key))
    assert keys[i] == key
    assert float(t.values[i, 0]) == lm5._ngrams[tuple(gram[0])][0]


def test_missing_suffix_ngrams_are_added_and_decoding_agrees(tmp_path):
    # The 3-gram (<s> a b) without its suffix (a b): loading adds (a b) with its backoff probability. The
    # compiled decoder looks n-grams up bottom-up, which needs every suffix stored: it must still agree
    # with the reference's top-down lookups.
    pytest.importorskip("crnn_fast._C")
    from crnn_fast.ops.ctc_beam_search import ctc_beam_search
    from crnn_fast.reference.ctc import ctc_beam_search_ref

    arpa = KENLM_STYLE.replace("ngram 2=4", "ngram 2=3").replace("-0.2\ta b\t0.05\n", "")
    path = tmp_path / "gappy.arpa"
    path.write_text(arpa)
    lm = CharNgramLM.load(path)
    assert lm.counts() == [6, 4, 1]
    assert lm.score("ba", "b") == pytest.approx((-0.2 - 0.7) * LN10)  # (a b) added: bow(a) + p(b)
    assert lm.score("a", "b") == pytest.approx(-0.1 * LN10)
    bound = lm.bind([None, "a", "b", " ", "z"])
    lp = (3 * torch.randn(3, 12, 5, generator=torch.Generator().manual_seed(0))).log_softmax(-1)
    out = ctc_beam_search(lp, beam_width=6, nbest=3, lm=bound, lm_weight=1.3, insertion_bonus=0.2, backend="cpu")
    ref = ctc_beam_search_ref(lp, beam_width=6, nbest=3, lm=bound, lm_weight=1.3, insertion_bonus=0.2)
    for b in range(3):
        for n, h in enumerate(ref[b]):
            L = int(out.token_lengths[b, n])
            assert tuple(out.tokens[b, n, :L].tolist()) == h.tokens
            assert float(out.scores[b, n]) == pytest.approx(h.score, rel=1e-12)


def test_order_and_backoff_bounds():
    # Before: order 50 and a backoff of 1e300 passed here and failed in the decoder (or made scores infinite).
    from crnn_fast.formats.lm import MAX_ABS_LOG10_BACKOFF, MAX_LM_ORDER

    with pytest.raises(ValueError, match=rf"^order must be an int in \[1, {MAX_LM_ORDER}\]"):
        CharNgramLM.from_text(["ab"], MAX_LM_ORDER + 1)
    with pytest.raises(ValueError, match="^order must be"):
        CharNgramLM(50, ["a"], {(0,): (-0.1, 0.0)})
    with pytest.raises(ValueError, match="^ngrams: the log10 backoff"):
        CharNgramLM(2, ["a"], {(0,): (-0.1, 1e300)})
    CharNgramLM(2, ["a"], {(0,): (-0.1, MAX_ABS_LOG10_BACKOFF)})


def test_arpa_backoff_and_order_bounds(tmp_path):
    path = tmp_path / "big.arpa"
    path.write_text(KENLM_STYLE.replace("-0.6\ta\t-0.2", "-0.6\ta\t1e300"))
    with pytest.raises(ValueError, match="backoff must be in"):
        CharNgramLM.load(path)
    counts = "".join(f"ngram {k}=0\n" for k in range(1, 51))
    path.write_text(f"\\data\\\n{counts}\n\\end\\\n")
    with pytest.raises(ValueError, match="order 33 is more than the decoders support"):
        CharNgramLM.load(path)


def test_tensors_file_round_trip(tmp_path):
    """save_tensors/load_tensors: the same n-grams (log10 values to float32 precision) and the same compiled
    table, without pickle; a file that is not one is a clear error."""
    lm = CharNgramLM.from_text(["the cat sat on the mat", "a dog ate the hat", "tic tac toe"], order=4)
    path = tmp_path / "m.charlm"
    lm.save_tensors(path)
    again = CharNgramLM.load_tensors(path)
    assert again.order == lm.order and again.vocab == lm.vocab and len(again) == len(lm)
    for context, char in (("the c", "a"), ("", "t"), ("zzz", "q"), ("a dog a", "t")):
        assert again.score(context, char) == pytest.approx(lm.score(context, char), abs=1e-5)
    labels = [None, *" acdeghilmnostz"]
    a, b = lm.to_tensors(labels), again.to_tensors(labels)
    for x, y in zip(a[:5], b[:5]):
        if x.is_floating_point():
            finite = x.isfinite()
            assert torch.equal(finite, y.isfinite()) and torch.allclose(x[finite], y[finite], atol=1e-6)
        else:
            assert torch.equal(x, y)
    assert a[5:] == b[5:]
    (tmp_path / "bad.charlm").write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="language model file"):
        CharNgramLM.load_tensors(tmp_path / "bad.charlm")
    from safetensors.torch import save_file

    save_file({"ids1": torch.zeros((2, 1), dtype=torch.uint8)}, str(tmp_path / "other.charlm"),
              metadata={"format": "something else", "version": "1"})
    with pytest.raises(ValueError, match="format"):
        CharNgramLM.load_tensors(tmp_path / "other.charlm")
