"""Character n-gram language model: interpolated Kneser–Ney training, ARPA save/load, flat tensors for C++.

Tokens are single characters (the space included) plus the specials <s> (sentence start, context only),
</s> (sentence end) and <unk> (any character the model has not seen). Probabilities are stored as in ARPA
files: log10 probabilities and log10 backoff weights; `score` returns natural logs.

Scoring (the backoff rule every ARPA reader uses, KenLM's included), for a token w after a context h of at
most order-1 tokens (h starts with <s> when the text so far is shorter than that):
    acc = 0
    for k = len(h) .. 1:  if the n-gram (h[-k:], w) is stored: return (acc + log10 p(h[-k:], w)) * ln 10
                          else acc += log10 bow(h[-k:])  (0 when h[-k:] is not stored)
    return (acc + log10 p(w)) * ln 10
The compiled decoder computes exactly this, in the same order of float64 additions.

ARPA spelling of characters: a character is written as itself, except whitespace and other characters
that an ARPA word cannot hold, written as <space> for ' ' and <U+XXXX> otherwise; so KenLM models trained
on text written one character per word with '<space>' for spaces load as they are.
"""

from __future__ import annotations

import gc
import gzip
import json
import math
import os
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
import torch

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
SPACE_SPELLING = "<space>"
# math.log(10) printed by repr: the decoder's C++ uses the same literal, so both sides scale identically.
LN10 = 2.302585092994046
# log10 probability given to <unk> when an ARPA file has none, as KenLM does.
_MISSING_UNK_LOG10 = -100.0
_BOS_LOG10 = -99.0  # <s> is never predicted; ARPA writers give it this placeholder
# Bounds checked when a model is made or read, and again by the compiled decoders (csrc/ctc_beam_search_checks.h):
# the decoders keep order - 1 context words per prefix (csrc/cpu/ctc_beam_search.cpp kMaxLMOrder), and a bounded
# backoff keeps every score finite (see crnn_fast._beam_checks MAX_LM_WEIGHT).
MAX_LM_ORDER = 32
MAX_ABS_LOG10_BACKOFF = 1e4
_TENSORS_FORMAT = "crnn_fast.charlm"


def _check_order(order) -> int:
    if isinstance(order, bool) or not isinstance(order, int) or not 1 <= order <= MAX_LM_ORDER:
        raise ValueError(f"order must be an int in [1, {MAX_LM_ORDER}], got {order!r}")
    return order

# 64-bit n-gram keys: fold the words from the last to the first through a splitmix64 step. The C++ side
# (csrc/cpu/ctc_lm.h) computes the same keys.
_SEED = np.uint64(0x2545F4914F6CDD1D)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


def _mix(h: np.ndarray, w: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = h + (w.astype(np.uint64) + np.uint64(1)) * _GOLDEN
        z = (z ^ (z >> _S30)) * _M1
        z = (z ^ (z >> _S27)) * _M2
        return z ^ (z >> _S31)


def ngram_keys(ngrams: np.ndarray) -> np.ndarray:
    """(M, k) int LM word ids -> (M,) uint64 keys, folding from the last word to the first."""
    h = np.full(ngrams.shape[0], _SEED, dtype=np.uint64)
    for j in range(ngrams.shape[1] - 1, -1, -1):
        h = _mix(h, ngrams[:, j])
    return h


class LMTensors(NamedTuple):
    """A CharNgramLM laid out for the compiled decoder (every tensor on the CPU).

    keys: (M,) int64, the n-gram keys (uint64 bit patterns) sorted as unsigned integers.
    values: (M, 3) float64 per key: log10 probability, log10 backoff weight (0 when none), and the largest
        log10 probability of the n-grams that extend it by one word (-inf when none): the decoder's upper
        bound on what may follow a context. One extra row, the empty n-gram (key = the fold of no word),
        carries the largest unigram log10 probability there; its probability is 0 and it is never looked up.
    buckets: (2**bits + 1,) int64, buckets[i] = first index whose key's top `bits` bits are >= i.
    filter: (W,) int64, W a power of two: a Bloom filter of the keys (bits key mod 64W and (key >> 32) mod
        64W set), so that most lookups of n-grams the model lacks never touch the table.
    token_map: (C,) int64, the LM word id of each class (-1 for the blank, <unk> for unknown characters).
    order: the n-gram order; bos: the LM word id of <s>.
    """

    keys: torch.Tensor
    values: torch.Tensor
    buckets: torch.Tensor
    filter: torch.Tensor
    token_map: torch.Tensor
    order: int
    bos: int


def spell(token: str) -> str:
    """The ARPA spelling of an LM token (a character or a special)."""
    if token in (BOS, EOS, UNK):
        return token
    if token == " ":
        return SPACE_SPELLING
    if len(token) == 1 and (token.isspace() or not token.isprintable()):
        return f"<U+{ord(token):04X}>"
    return token


def unspell(word: str, space_token: str = SPACE_SPELLING) -> str:
    """The token of an ARPA word; raises ValueError for a word that is not one character or a special."""
    if word in (BOS, EOS, UNK):
        return word
    if word == space_token:
        return " "
    if word.startswith("<U+") and word.endswith(">"):
        try:
            return chr(int(word[3:-1], 16))
        except ValueError:
            pass
    if len(word) != 1:
        raise ValueError(f"word {word!r} is not a single character, {space_token}, <U+XXXX> or <s>/</s>/<unk>: "
                         "this is not a character language model")
    return word


class CharNgramLM:
    """A character n-gram language model with backoff (the ARPA model), applied by the CTC decoder.

    Make one with CharNgramLM.build(path, order) from a text file (one sentence per line; interpolated
    Kneser–Ney smoothing), CharNgramLM.from_text(lines, order), or CharNgramLM.load(path) from an ARPA file
    (as KenLM's lmplz writes it; .gz allowed). save(path) writes ARPA.

    lm.score(context, char) -> natural-log probability of `char` after the text `context` (the model sees
    <s> + context). Characters the model has never seen score as <unk>.
    """

    def __init__(self, order: int, vocab: list[str], ngrams: dict[tuple[int, ...], tuple[float, float]]):
        """Low level: vocab[i] is the token of LM word id i; ngrams maps id tuples to (log10 p, log10 bow).

        Adds <s> and <unk> when missing, and the context and the suffix of any n-gram whose context or
        suffix is not stored (with the probability its backoff gives and no backoff weight: scores do not
        change but for float rounding), so that every stored n-gram's context and suffix are stored too,
        which the compiled decoder's lookups rely on. Kneser–Ney models (ours, KenLM's) have them all.
        """
        self.order = _check_order(order)
        self.vocab = list(vocab)
        self._ids = {tok: i for i, tok in enumerate(self.vocab)}
        if len(self._ids) != len(self.vocab):
            raise ValueError("vocab holds a token twice")
        self._ngrams = dict(ngrams)
        for gram, (_, bow) in self._ngrams.items():
            if not abs(bow) <= MAX_ABS_LOG10_BACKOFF:
                raise ValueError(f"ngrams: the log10 backoff of {gram} must be in [-{MAX_ABS_LOG10_BACKOFF:g}, "
                                 f"{MAX_ABS_LOG10_BACKOFF:g}], got {bow}")
        for special, log10p in ((BOS, _BOS_LOG10), (UNK, _MISSING_UNK_LOG10)):
            if special not in self._ids:
                self._ids[special] = len(self.vocab)
                self.vocab.append(special)
            self._ngrams.setdefault((self._ids[special],), (log10p, 0.0))
        self.bos, self.unk = self._ids[BOS], self._ids[UNK]
        self.eos = self._ids.get(EOS)
        for k in range(order, 1, -1):  # top down: what is added at order k - 1 is completed next
            for gram in [g for g in self._ngrams if len(g) == k]:
                for part in (gram[:-1], gram[1:]):
                    if part not in self._ngrams:
                        self._ngrams[part] = (self._score10(part[:-1], part[-1]), 0.0)
        self._tensor_cache: dict = {}

    # -- construction -----------------------------------------------------------------------------------

    @classmethod
    def build(cls, path, order: int = 5, *, encoding: str = "utf-8") -> CharNgramLM:
        """Train on a text file, one sentence per line (empty lines skipped), with interpolated Kneser–Ney."""
        path = os.fspath(path)
        with _open_text(path, encoding) as f:
            return cls.from_text(f, order)

    @classmethod
    def from_text(cls, lines: Iterable[str], order: int = 5) -> CharNgramLM:
        """Train on sentences (strings; trailing newlines stripped, empty ones skipped), interpolated KN."""
        if isinstance(lines, str):
            raise TypeError("lines must be an iterable of sentences (str), got a single str; use [text]")
        _check_order(order)
        sentences = []
        for i, line in enumerate(lines):
            if not isinstance(line, str):
                raise TypeError(f"lines[{i}] must be a str, got {type(line).__name__}")
            line = line.rstrip("\r\n")
            if line:
                sentences.append(list(line))
        if not sentences:
            raise ValueError("lines holds no text: the language model needs at least one non-empty sentence")
        vocab, ngrams = kneser_ney(sentences, order)
        return cls(order, vocab, ngrams)

    # -- safetensors: the shipped form, fast to load ----------------------------------------------------

    def save_tensors(self, path) -> None:
        """Write the model as a safetensors file (no pickle): per order k the n-grams' word ids (M_k, k) and
        their (log10 p, log10 bow) (M_k, 2) in float32, as precise as ARPA's decimals. It loads in seconds where
        ARPA takes minutes for ~1M n-grams."""
        from safetensors.torch import save_file

        id_dtype = torch.uint8 if len(self.vocab) <= 256 else torch.int32
        tensors = {}
        for k, (ids, values) in self._arrays().items():
            tensors[f"ids{k}"] = torch.from_numpy(ids).to(id_dtype)
            tensors[f"values{k}"] = torch.from_numpy(values).float()
        meta = {"format": _TENSORS_FORMAT, "version": "1", "order": str(self.order), "vocab": json.dumps(self.vocab)}
        save_file(tensors, os.fspath(path), metadata=meta)

    @classmethod
    def load_tensors(cls, path) -> CharNgramLM:
        """Read a file of save_tensors; raises ValueError naming the file when it is not one."""
        from safetensors import SafetensorError, safe_open

        path = os.fspath(path)
        try:
            with safe_open(path, framework="pt") as f:
                meta = f.metadata() or {}
                if meta.get("format") != _TENSORS_FORMAT or meta.get("version") != "1":
                    raise ValueError(f"format {meta.get('format')!r} version {meta.get('version')!r}, expected "
                                     f"{_TENSORS_FORMAT!r} version '1'")
                order = _check_order(int(meta["order"]))
                vocab = json.loads(meta["vocab"])
                tensors = {name: f.get_tensor(name) for name in f.keys()}
        except (OSError, KeyError, json.JSONDecodeError, ValueError, TypeError, SafetensorError) as exc:
            raise ValueError(f"language model file {path}: {exc}") from None
        if not (isinstance(vocab, list) and all(isinstance(t, str) for t in vocab)):
            raise ValueError(f"language model file {path}: vocab must be a list of str")
        arrays, ngrams = {}, {}
        # Millions of small tuples: the cyclic garbage collector would rescan them all many times over.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            return cls._from_arrays(path, order, vocab, tensors, arrays, ngrams)
        finally:
            if gc_was_enabled:
                gc.enable()

    @classmethod
    def _from_arrays(cls, path, order, vocab, tensors, arrays, ngrams) -> CharNgramLM:
        for k in range(1, order + 1):
            ids, values = tensors.get(f"ids{k}"), tensors.get(f"values{k}")
            if ids is None and values is None:
                continue
            if ids is None or values is None or ids.dim() != 2 or ids.shape[1] != k or \
                    values.shape != (ids.shape[0], 2) or not values.isfinite().all() or \
                    (ids.numel() and int(ids.max()) >= len(vocab)) or ids.dtype not in (torch.uint8, torch.int32) or \
                    (ids.numel() and int(ids.min()) < 0):
                raise ValueError(f"language model file {path}: bad n-grams of order {k}")
            arrays[k] = (ids.numpy().astype(np.int64), values.numpy().astype(np.float64))
            ngrams.update(zip(map(tuple, arrays[k][0].tolist()), map(tuple, arrays[k][1].tolist())))
        lm = cls(order, vocab, ngrams)
        if len(lm._ngrams) == len(ngrams):  # nothing was completed: the file's arrays are the model's
            lm._tensor_cache["arrays"] = arrays
        return lm

    # -- ARPA -------------------------------------------------------------------------------------------

    @classmethod
    def load(cls, path, *, space_token: str = SPACE_SPELLING, encoding: str = "utf-8") -> CharNgramLM:
        """Read an ARPA file (plain or .gz) of a character model; raises ValueError naming the file and line
        for a malformed one."""
        path = os.fspath(path)
        order, vocab, grams = read_arpa(path, encoding=encoding)
        tokens = []
        for word in vocab:
            try:
                tokens.append(unspell(word, space_token))
            except ValueError as exc:
                raise ValueError(f"ARPA file {path}: {exc}") from None
        if len(set(tokens)) != len(tokens):
            raise ValueError(f"ARPA file {path}: two words spell the same character")
        return cls(order, tokens, grams)

    def save(self, path) -> None:
        """Write the model as an ARPA file (gzip-compressed when the name ends in .gz)."""
        write_arpa(os.fspath(path), self.order, [spell(t) for t in self.vocab], self._ngrams)

    # -- scoring ----------------------------------------------------------------------------------------

    def _score10(self, ctx: tuple[int, ...], w: int) -> float:
        """log10 P(w | ctx) by backoff; ctx: LM word ids, oldest first, at most order - 1 of them."""
        acc = 0.0
        for k in range(len(ctx), 0, -1):
            h = ctx[len(ctx) - k:]
            entry = self._ngrams.get(h + (w,))
            if entry is not None:
                return acc + entry[0]
            ctx_entry = self._ngrams.get(h)
            if ctx_entry is not None:
                acc += ctx_entry[1]
        return acc + self._ngrams[(w,)][0]

    def score_ids(self, context: tuple[int, ...], word: int) -> float:
        """ln P(word | <s> + context) for LM word ids (the context is the whole text so far, without <s>)."""
        n = self.order - 1
        ctx = ((self.bos,) + tuple(context))[-n:] if n > 0 else ()
        return self._score10(ctx, word) * LN10

    def word_id(self, token: str) -> int:
        """The LM word id of a character (or special); <unk>'s id for one the model does not know."""
        return self._ids.get(token, self.unk)

    def score(self, context: str, char: str) -> float:
        """Natural-log probability of the character `char` (or '</s>') after the text `context`."""
        if not isinstance(context, str):
            raise TypeError(f"context must be a str, got {type(context).__name__}")
        if not isinstance(char, str) or (len(char) != 1 and char != EOS):
            raise ValueError(f"char must be one character or '{EOS}', got {char!r}")
        return self.score_ids(tuple(self.word_id(c) for c in context), self.word_id(char))

    def sentence_score(self, text: str, *, eos: bool = False) -> float:
        """ln P(text) as the decoder scores it: the sum of score(text[:i], text[i]), plus </s> if eos."""
        ids = [self.word_id(c) for c in text]
        total = sum(self.score_ids(tuple(ids[:i]), w) for i, w in enumerate(ids))
        if eos:
            if self.eos is None:
                raise ValueError("this language model has no </s>")
            total += self.score_ids(tuple(ids), self.eos)
        return total

    def bind(self, labels) -> BoundLM:
        """This model bound to a CTC model's classes: labels[class id] is its character, None for the blank."""
        return BoundLM(self, labels)

    def token_map(self, labels: list[str | None]) -> list[int]:
        """LM word id of each class given its label (None for the blank -> -1)."""
        return [-1 if lab is None else self.word_id(lab) for lab in labels]

    def token_scorer(self, labels: list[str | None]):
        """The callback lm(context_ids, token_id) -> ln prob that crnn_fast.reference.ctc_beam_search_ref
        takes, for class labels `labels` (labels[class id], None for the blank)."""
        table = self.token_map(labels)

        def lm(context: tuple[int, ...], token: int) -> float:
            return self.score_ids(tuple(table[c] for c in context), table[token])

        return lm

    # -- tensors for the compiled decoder -----------------------------------------------------------------

    def to_tensors(self, labels: list[str | None]) -> LMTensors:
        """The model as flat tensors for crnn_fast::ctc_beam_search, for class labels `labels`."""
        keys, vals, buckets, words = self._table()
        token_map = torch.tensor(self.token_map(labels), dtype=torch.int64)
        return LMTensors(keys, vals, buckets, words, token_map, self.order, self.bos)

    def _arrays(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Per order k: the stored n-grams' word ids (M_k, k) int64 and (log10 p, log10 bow) (M_k, 2) float64."""
        if "arrays" not in self._tensor_cache:
            by_order: dict[int, list[tuple[int, ...]]] = defaultdict(list)
            for gram in self._ngrams:
                by_order[len(gram)].append(gram)
            self._tensor_cache["arrays"] = {
                k: (np.array(grams, dtype=np.int64).reshape(len(grams), k),
                    np.array([self._ngrams[g] for g in grams], dtype=np.float64).reshape(len(grams), 2))
                for k, grams in sorted(by_order.items())}
        return self._tensor_cache["arrays"]

    def _table(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(keys, values, buckets, filter) of LMTensors, built once."""
        if "table" not in self._tensor_cache:
            empty = np.zeros((1, 0), dtype=np.int64)  # the empty n-gram: its row carries the unigrams' bound
            keys_parts, ctx_parts, value_parts = [ngram_keys(empty)], [ngram_keys(empty)], [np.zeros((1, 2))]
            for ids, values in self._arrays().values():
                keys_parts.append(ngram_keys(ids))
                ctx_parts.append(ngram_keys(ids[:, :-1]))  # the key of each n-gram's context
                value_parts.append(values)
            keys, ctx_keys = np.concatenate(keys_parts), np.concatenate(ctx_parts)
            has_ctx = np.ones(len(keys), dtype=bool)
            has_ctx[0] = False
            order = np.argsort(keys, kind="stable")
            keys, ctx_keys, has_ctx = keys[order], ctx_keys[order], has_ctx[order]
            if len(keys) > 1 and (keys[1:] == keys[:-1]).any():
                raise RuntimeError("two n-grams share a 64-bit key; please report this language model")
            vals = np.empty((len(keys), 3), dtype=np.float64)
            vals[:, :2] = np.concatenate(value_parts)[order]
            vals[:, 2] = -np.inf
            ctx_rows = np.searchsorted(keys, ctx_keys[has_ctx])  # every context is stored (see __init__)
            np.maximum.at(vals[:, 2], ctx_rows, vals[has_ctx, 0])
            bits = max(1, int(math.ceil(math.log2(max(len(keys), 2)))) - 1)
            bounds = np.arange(2**bits, dtype=np.uint64) << np.uint64(64 - bits)
            buckets = np.append(np.searchsorted(keys, bounds, side="left"), len(keys)).astype(np.int64)
            n_bits = 64
            while n_bits < 12 * len(keys):  # 12 bits a key, 2 bits set: ~2.5% false positives
                n_bits *= 2
            words = np.zeros(n_bits // 64, dtype=np.uint64)
            mask = np.uint64(n_bits - 1)
            for bit in (keys & mask, (keys >> np.uint64(32)) & mask):
                np.bitwise_or.at(words, bit >> np.uint64(6), np.uint64(1) << (bit & np.uint64(63)))
            self._tensor_cache["table"] = (torch.from_numpy(keys.view(np.int64).copy()), torch.from_numpy(vals),
                                           torch.from_numpy(buckets), torch.from_numpy(words.view(np.int64)))
        return self._tensor_cache["table"]

    def __len__(self) -> int:
        return len(self._ngrams)

    def counts(self) -> list[int]:
        """How many n-grams of each order (1..order) the model stores."""
        c = Counter(len(g) for g in self._ngrams)
        return [c.get(k, 0) for k in range(1, self.order + 1)]

    def __repr__(self) -> str:
        return f"CharNgramLM(order={self.order}, vocab={len(self.vocab)}, ngrams={self.counts()})"


class BoundLM:
    """A CharNgramLM bound to the class labels of a CTC model (labels[class id] is a character, None for the
    blank): callable as lm(context_ids, token_id) -> ln prob, the reference beam search's LM callback, and
    holding the same model as LMTensors (`tensors`) for the compiled decoder."""

    def __init__(self, lm: CharNgramLM, labels) -> None:
        if not isinstance(lm, CharNgramLM):
            raise TypeError(f"lm must be a CharNgramLM, got {type(lm).__name__}")
        self.lm = lm
        self.labels = tuple(labels)
        for i, lab in enumerate(self.labels):
            if lab is not None and not isinstance(lab, str):
                raise TypeError(f"labels[{i}] must be a str or None, got {type(lab).__name__}")
        self._scorer = lm.token_scorer(list(self.labels))
        self.tensors = lm.to_tensors(list(self.labels))

    def __call__(self, context: tuple[int, ...], token: int) -> float:
        return self._scorer(context, token)

    def __repr__(self) -> str:
        return f"BoundLM({self.lm!r}, {len(self.labels)} classes)"


# ---------------------------------------------------------------------------------------------------------
# Interpolated Kneser–Ney
# ---------------------------------------------------------------------------------------------------------


def kneser_ney(sentences: list[list[str]], order: int) -> tuple[list[str], dict[tuple[int, ...], tuple[float, float]]]:
    """Interpolated Kneser–Ney over token sentences, in ARPA (backoff) form.

    One absolute discount per order, D_k = n1 / (n1 + 2 n2) from the counts-of-counts of that order
    (0.5 when undefined). The highest order and n-grams starting with <s> use raw counts, the others
    continuation counts (how many distinct tokens precede them). The unigram level interpolates with the
    uniform distribution over every token but <s> (<unk> included, which so gets only that share):
        p_k(w | h) = max(a(hw) - D_k, 0) / a(h.) + gamma(h) p_{k-1}(w | h[1:]),
        gamma(h) = D_k N1+(h.) / a(h.),
    stored as log10 p_k for every seen n-gram and log10 gamma(h) as the backoff weight of each context h.
    Returns (vocab, {id tuple: (log10 p, log10 bow)}); vocab[0..2] = <s>, </s>, <unk>.
    """
    vocab = [BOS, EOS, UNK]
    ids = {t: i for i, t in enumerate(vocab)}
    seqs = []
    for s in sentences:
        seq = [0]
        for tok in s:
            if tok not in ids:
                ids[tok] = len(vocab)
                vocab.append(tok)
            seq.append(ids[tok])
        seq.append(1)
        seqs.append(seq)
    bos = 0
    raw: list[Counter] = [Counter() for _ in range(order + 1)]
    for seq in seqs:
        for k in range(1, order + 1):
            if len(seq) >= k:
                raw[k].update(zip(*(seq[i:] for i in range(k))))
    del raw[1][(bos,)]  # <s> is never predicted
    # Adjusted counts: raw for the top order and for n-grams that start with <s>, continuation otherwise.
    adj: list[dict] = [dict() for _ in range(order + 1)]
    adj[order] = dict(raw[order])
    for k in range(order - 1, 0, -1):
        cont: Counter = Counter()
        for g in raw[k + 1]:
            cont[g[1:]] += 1
        adj[k] = {g: (c if g[0] == bos else cont[g]) for g, c in raw[k].items()}
    discounts = [0.0] * (order + 1)
    for k in range(1, order + 1):
        coc = Counter(adj[k].values())
        n1, n2 = coc.get(1, 0), coc.get(2, 0)
        d = n1 / (n1 + 2 * n2) if n1 > 0 and n2 > 0 else 0.5
        discounts[k] = d if 0.0 < d < 1.0 else 0.5
    # Per context: total adjusted count and number of distinct followers, per order.
    totals: list[dict] = [dict() for _ in range(order + 1)]
    followers: list[dict] = [dict() for _ in range(order + 1)]
    for k in range(1, order + 1):
        tot: dict = defaultdict(float)
        fol: dict = defaultdict(int)
        for g, a in adj[k].items():
            tot[g[:-1]] += a
            fol[g[:-1]] += 1
        totals[k], followers[k] = dict(tot), dict(fol)
    n_predicted = len(vocab) - 1  # every token but <s>
    prob: list[dict] = [dict() for _ in range(order + 1)]
    gamma: list[dict] = [dict() for _ in range(order + 1)]
    for k in range(1, order + 1):
        d = discounts[k]
        for h, tot in totals[k].items():
            gamma[k][h] = d * followers[k][h] / tot
        for g, a in adj[k].items():
            h = g[:-1]
            lower = prob[k - 1].get(g[1:]) if k > 1 else 1.0 / n_predicted
            if lower is None:  # the lower-order n-gram was not seen: back off further
                lower = _kn_backoff(prob, gamma, g[1:], n_predicted)
            prob[k][g] = max(a - d, 0.0) / totals[k][h] + gamma[k][h] * lower
    # Unseen unigrams (<unk>, tokens only seen after <s>... none but <unk> in practice): the uniform share.
    for w in range(1, len(vocab)):
        prob[1].setdefault((w,), gamma[1][()] / n_predicted)
    ngrams: dict[tuple[int, ...], tuple[float, float]] = {}
    for k in range(1, order + 1):
        for g, p in prob[k].items():
            bow = gamma[k + 1].get(g) if k < order else None
            ngrams[g] = (math.log10(p), math.log10(bow) if bow else 0.0)
    ngrams[(bos,)] = (_BOS_LOG10, math.log10(gamma[2][(bos,)]) if order > 1 and (bos,) in gamma[2] else 0.0)
    return vocab, ngrams


def _kn_backoff(prob, gamma, g, n_predicted):
    if not g:
        return 1.0 / n_predicted
    k = len(g)
    p = prob[k].get(g)
    if p is not None:
        return p
    return gamma[k].get(g[:-1], 1.0) * _kn_backoff(prob, gamma, g[1:], n_predicted)


# ---------------------------------------------------------------------------------------------------------
# ARPA files
# ---------------------------------------------------------------------------------------------------------


def _open_text(path: str, encoding: str, mode: str = "rt"):
    if path.endswith(".gz"):
        return gzip.open(path, mode, encoding=encoding)
    return open(path, mode, encoding=encoding)


def write_arpa(path: str, order: int, spellings: list[str], ngrams: dict[tuple[int, ...], tuple[float, float]]):
    """Write {id tuple: (log10 p, log10 bow)} as ARPA; spellings[i] is the ARPA word of id i."""
    by_order: list[list[tuple[int, ...]]] = [[] for _ in range(order + 1)]
    for g in ngrams:
        by_order[len(g)].append(g)
    with _open_text(path, "utf-8", "wt") as f:
        f.write("\n\\data\\\n")
        for k in range(1, order + 1):
            f.write(f"ngram {k}={len(by_order[k])}\n")
        for k in range(1, order + 1):
            f.write(f"\n\\{k}-grams:\n")
            for g in sorted(by_order[k]):
                p, bow = ngrams[g]
                words = " ".join(spellings[i] for i in g)
                f.write(f"{p!r}\t{words}\t{bow!r}\n" if k < order and bow != 0.0 else f"{p!r}\t{words}\n")
        f.write("\n\\end\\\n")


def read_arpa(path: str, encoding: str = "utf-8"):
    """Parse an ARPA file into (order, vocab words, {id tuple: (log10 p, log10 bow)}).

    Raises ValueError "ARPA file <path> line <n>: ..." for anything malformed: a missing or bad header, a
    section that disagrees with its count, a wrong number of fields, a probability that is not a number
    <= 0, a backoff that is not finite, a word repeated, an n-gram over a word missing from the unigrams.
    """
    def fail(lineno, msg):
        raise ValueError(f"ARPA file {path} line {lineno}: {msg}")

    try:
        f = _open_text(path, encoding)
    except OSError as exc:
        raise ValueError(f"ARPA file {path} cannot be read: {exc}") from None
    with f:
        try:
            lines = f.read().splitlines()
        except (UnicodeDecodeError, OSError, EOFError) as exc:
            raise ValueError(f"ARPA file {path} cannot be read as {encoding} text: {exc}") from None
    i = 0
    n = len(lines)
    while i < n and lines[i].strip() != "\\data\\":
        i += 1
    if i == n:
        raise ValueError(f"ARPA file {path}: no \\data\\ header; is this an ARPA file?")
    i += 1
    counts: dict[int, int] = {}
    while i < n and lines[i].strip().startswith("ngram "):
        body = lines[i].strip()[len("ngram "):]
        try:
            k, c = (int(x) for x in body.split("="))
        except ValueError:
            fail(i + 1, f"bad count line {lines[i]!r}, expected 'ngram K=COUNT'")
        if k != len(counts) + 1 or c < 0:
            fail(i + 1, f"bad count line {lines[i]!r}: orders must be 1, 2, ... with counts >= 0")
        if k > MAX_LM_ORDER:
            fail(i + 1, f"order {k} is more than the decoders support ({MAX_LM_ORDER})")
        counts[k] = c
        i += 1
    if not counts:
        fail(i + 1, "no 'ngram K=COUNT' lines after \\data\\")
    order = len(counts)
    vocab: list[str] = []
    ids: dict[str, int] = {}
    grams: dict[tuple[int, ...], tuple[float, float]] = {}
    for k in range(1, order + 1):
        while i < n and not lines[i].strip():
            i += 1
        if i == n or lines[i].strip() != f"\\{k}-grams:":
            fail(min(i + 1, n), f"expected the \\{k}-grams: section")
        i += 1
        seen = 0
        while i < n and lines[i].strip() and not lines[i].strip().startswith("\\"):
            fields = lines[i].split()
            if len(fields) not in (k + 1, k + 2):
                fail(i + 1, f"a {k}-gram line needs a probability, {k} words and an optional backoff, "
                            f"got {len(fields)} fields")
            try:
                p = float(fields[0])
                bow = float(fields[k + 1]) if len(fields) == k + 2 else 0.0
            except ValueError:
                fail(i + 1, "probability and backoff must be numbers")
            if math.isnan(p) or p > 0:
                fail(i + 1, f"log10 probability must be <= 0, got {fields[0]}")
            if not abs(bow) <= MAX_ABS_LOG10_BACKOFF:
                fail(i + 1, f"log10 backoff must be in [-{MAX_ABS_LOG10_BACKOFF:g}, {MAX_ABS_LOG10_BACKOFF:g}], "
                            f"got {fields[k + 1]}")
            words = fields[1:k + 1]
            if k == 1:
                if words[0] in ids:
                    fail(i + 1, f"unigram {words[0]!r} appears twice")
                ids[words[0]] = len(vocab)
                vocab.append(words[0])
            try:
                key = tuple(ids[w] for w in words)
            except KeyError as exc:
                fail(i + 1, f"word {exc.args[0]!r} is not among the unigrams")
            if key in grams:
                fail(i + 1, f"{k}-gram {' '.join(words)!r} appears twice")
            grams[key] = (p, bow)
            seen += 1
            i += 1
        if seen != counts[k]:
            fail(i + 1, f"the header announces {counts[k]} {k}-grams, the section holds {seen}")
    while i < n and not lines[i].strip():
        i += 1
    if i == n or lines[i].strip() != "\\end\\":
        fail(min(i + 1, n), "expected \\end\\")
    return order, vocab, grams
