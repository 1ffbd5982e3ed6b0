"""CTCDecoder: greedy, beam search, lexicon (trie or nearest word) and character-LM decoding of CTC output."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .._beam_checks import check_beam_search_options
from .._checks import IMPOSSIBLE_FRAME_MESSAGE, NON_FINITE_MESSAGE, check_lengths, check_log_probs
from ..formats.lexicon import LexiconTrie, encode_lexicon
from ..formats.lm import BoundLM, CharNgramLM
from ..ops.ctc_beam_search import CTC_BEAM_SEARCH_BACKENDS, MAX_CUDA_BEAM_WIDTH, check_log_probs_shape, ctc_beam_search
from ..ops.ctc_greedy import resolve_greedy_backend, run_ctc_greedy

LEXICON_MODES = ("trie", "nearest")


class CTCHypothesis(NamedTuple):
    """One decoded hypothesis.

    text: the decoded string. tokens: its class ids.
    score: acoustic_score + lm_score, what the decoder ranks by.
    acoustic_score: log P(text | log_probs) over the alignments the search kept (greedy: the best path's
        log-probability; lexicon_mode="nearest": the exact CTC log-probability of the word).
    lm_score: the sum over the characters of lm_weight * ln P_lm(char | <s> + text before it) +
        insertion_bonus (0 when neither is used).
    frames: per character, the frame it is emitted at on the most probable alignment of `text` to the frames
        (the Viterbi path of the text's CTC lattice; between equally probable alignments the earliest, see
        crnn_fast.reference.ctc.ctc_alignment_ref). Every decoding mode reports the same frames for the same text.
    confidences: per character, its highest probability (a frame's softmax output for that character) over the
        frames that alignment spends on it: the same for the same text in every mode and at any beam width
        (greedy decoding's best path is the best alignment of its own text).
    """

    text: str
    tokens: tuple[int, ...]
    score: float
    acoustic_score: float
    lm_score: float
    confidences: tuple[float, ...]
    frames: tuple[int, ...]


class CTCDecoder:
    """Decodes CTC log-probabilities into text: greedy, prefix beam search, lexicon, character n-gram LM.

    charset: a crnn_fast.data.Charset (or a str of its characters): the model's C classes are the blank
        plus these characters in order, the blank at class `blank` (0, the Charset layout, or any other
        position: the characters then fill the remaining classes in order).
    beam_width: the beam; 1 without lexicon, LM, insertion bonus and blank_skip_threshold is best-path (greedy)
        decoding (top_k and token_min_logp never prune a frame's best class, so greedy honours them as is).
    top_k: extend prefixes only by the top_k classes of each frame (None: all).
    beam_threshold: drop prefixes scoring more than this below the best (None: no threshold).
    blank_skip_threshold: frames whose blank probability is at least this (in (0, 1]) extend no prefix.
    token_min_logp: extend prefixes only by classes whose log-prob is at least this, or the frame's best
        (pyctcdecode's option of that name, whose default there is -5.0; None: no floor).
    lexicon: words (an iterable of str, or a pathlib.Path to a file with one word per line).
        lexicon_mode="trie" (default): a hard constraint on the beam search: every output word is in the
        lexicon; when the charset has a space, an output is lexicon words joined by single spaces (words
        must not contain a space), otherwise exactly one word.
        lexicon_mode="nearest" (the CRNN paper's mode for small lexicons): every entry (spaces allowed) is
        scored by its exact CTC log-probability (plus the LM terms) and the best ones are returned.
    lm: a CharNgramLM, or the path of an ARPA file (CharNgramLM.load), applied by shallow fusion:
        score = acoustic + lm_weight * ln P_lm + insertion_bonus per character. lm_weight=0 ignores it.
        End of sentence is not scored.
    nbest: hypotheses returned per item (at most beam_width; fewer when a lexicon leaves fewer).
    backend: "auto" | "cpu" | "cuda" | "ref" (see crnn_fast.ops.ctc_beam_search.resolve_backend).
    Bounds, checked here (ValueError naming the option): beam_width in [1, 4096] (at most 256 with
    backend="cuda"), nbest in [1, 4096], lm_weight in [0, 1e4], insertion_bonus in [-1e4, 1e4]
    (crnn_fast._beam_checks MAX_BEAM_WIDTH, MAX_NBEST, MAX_LM_WEIGHT, MAX_INSERTION_BONUS); an LM's order at most
    32 and its log10 backoffs within [-1e4, 1e4] (crnn_fast.formats.lm).

    decode(log_probs, lengths) expects log-probabilities (log_softmax output), not logits: every valid frame must
    sum to probability 1 (a frame that is -inf for every class is an error in every mode).
    """

    def __init__(self, charset, blank: int = 0, beam_width: int = 10, top_k: int | None = None,
                 beam_threshold: float | None = None, lexicon=None, lm=None, lm_weight: float = 0.0,
                 insertion_bonus: float = 0.0, nbest: int = 1, blank_skip_threshold: float | None = None,
                 backend: str = "auto", lexicon_mode: str = "trie", token_min_logp: float | None = None) -> None:
        from ..data.charset import Charset

        if isinstance(charset, str):
            charset = Charset(charset)
        if not isinstance(charset, Charset):
            raise TypeError(f"charset must be a crnn_fast.data.Charset or a str of characters, "
                            f"got {type(charset).__name__}")
        self.charset = charset
        num_classes = charset.num_classes
        if isinstance(blank, bool) or not isinstance(blank, int):
            raise TypeError(f"blank must be an int, got {type(blank).__name__}")
        if not 0 <= blank < num_classes:
            raise ValueError(f"blank must be in [0, {num_classes}) for a charset of {num_classes - 1} characters, "
                             f"got {blank}")
        self.blank = blank
        chars = list(charset.characters)
        self.labels: list[str | None] = chars[:blank] + [None] + chars[blank:]
        self._ids = {c: i for i, c in enumerate(self.labels) if c is not None}
        self.num_classes = num_classes

        (self.beam_width, self.nbest, self.top_k, self.beam_threshold, self.blank_skip_threshold, self.token_min_logp,
         self.lm_weight, self.insertion_bonus) = check_beam_search_options(
            beam_width, nbest, top_k, beam_threshold, blank_skip_threshold, token_min_logp, lm_weight, insertion_bonus)
        if backend not in CTC_BEAM_SEARCH_BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(map(repr, CTC_BEAM_SEARCH_BACKENDS))}, "
                             f"got {backend!r}")
        if backend == "cuda" and self.beam_width > MAX_CUDA_BEAM_WIDTH:
            raise ValueError(f"beam_width must be <= {MAX_CUDA_BEAM_WIDTH} with backend='cuda', "
                             f"got {self.beam_width}")
        self.backend = backend
        if lexicon_mode not in LEXICON_MODES:
            raise ValueError(f"lexicon_mode must be one of {', '.join(map(repr, LEXICON_MODES))}, "
                             f"got {lexicon_mode!r}")
        self.lexicon_mode = lexicon_mode

        self.lm: CharNgramLM | None = None
        self._bound_lm: BoundLM | None = None
        if lm is not None:
            if isinstance(lm, (str, os.PathLike)):
                lm = CharNgramLM.load(lm)
            if not isinstance(lm, CharNgramLM):
                raise TypeError(f"lm must be a CharNgramLM or the path of an ARPA file, got {type(lm).__name__}")
            self.lm = lm
            self._bound_lm = lm.bind(self.labels)

        self.word_separator: int | None = None
        self._trie: LexiconTrie | None = None
        self._words: list[tuple[int, ...]] | None = None
        if lexicon is not None:
            if lexicon_mode == "trie":
                space = " " if " " in self._ids else None
                self._words = encode_lexicon(lexicon, self._ids, separator=space)
                self._trie = LexiconTrie(self._words)
                self.word_separator = self._ids[" "] if space else None
            else:
                self._words = encode_lexicon(lexicon, self._ids)
                self._nearest = _NearestLexicon(self._words, self.labels, self._bound_lm, self.lm_weight,
                                                self.insertion_bonus)

    # -- decoding ---------------------------------------------------------------------------------------

    @property
    def uses_lm(self) -> bool:
        return self._bound_lm is not None and self.lm_weight != 0.0

    @property
    def is_greedy(self) -> bool:
        """Whether decode() is best-path decoding: beam_width 1, no lexicon, no LM, no insertion bonus, no
        blank_skip_threshold (below 0.5 it skips frames whose best class is a character, which best path
        would emit)."""
        return (self.beam_width == 1 and self._words is None and not self.uses_lm
                and self.insertion_bonus == 0.0 and self.blank_skip_threshold is None)

    def decode(self, log_probs: torch.Tensor, lengths=None) -> list[list[CTCHypothesis]]:
        """Decode a batch.

        log_probs: (B, T, C) log-probabilities (log_softmax over the classes; logits are rejected), any float
            dtype, on any device; C must be the charset's number of classes.
        lengths: (B,) valid frames per item (default T).
        Returns B lists of at most nbest CTCHypothesis, best first (an empty list when a lexicon admits no
        hypothesis for that item).
        """
        check_log_probs_shape(log_probs)
        B, T, C = log_probs.shape
        if C != self.num_classes:
            raise ValueError(f"log_probs has C={C} classes but the charset has {self.num_classes - 1} characters "
                             f"+ blank = {self.num_classes}")
        lengths = check_lengths(lengths, B, T, device=torch.device("cpu"))
        _check_normalised(log_probs, lengths)
        if self._words is not None and self.lexicon_mode == "nearest":
            check_log_probs(log_probs)  # F.ctc_loss would carry a NaN through silently
            return self._nearest.decode(log_probs, lengths, self.blank, self.nbest, self._make)
        if self.is_greedy:
            return self._decode_greedy(log_probs, lengths)
        out = ctc_beam_search(
            log_probs, lengths, blank=self.blank, beam_width=self.beam_width, top_k=self.top_k,
            beam_threshold=self.beam_threshold, blank_skip_threshold=self.blank_skip_threshold,
            token_min_logp=self.token_min_logp, lexicon=self._trie, word_separator=self.word_separator,
            lm=self._bound_lm if self.uses_lm else None, lm_weight=self.lm_weight if self.uses_lm else 0.0,
            insertion_bonus=self.insertion_bonus, nbest=min(self.nbest, self.beam_width), backend=self.backend)
        return self._from_tensors(out.tokens, out.token_lengths, out.token_frames, out.token_confidences,
                                  out.scores, out.acoustic_scores, out.lm_scores)

    __call__ = decode

    def _make(self, tokens, score, acoustic, lm_score, confidences, frames) -> CTCHypothesis:
        labels = self.labels
        return CTCHypothesis("".join([labels[t] for t in tokens]), tuple(tokens), score, acoustic, lm_score,
                             tuple(confidences), tuple(frames))

    def _from_tensors(self, tokens, token_lengths, frames, confidences, scores, acoustic, lm_scores):
        tokens, frames, confidences = tokens.cpu().tolist(), frames.cpu().tolist(), confidences.cpu().tolist()
        token_lengths = token_lengths.cpu().tolist()
        scores, acoustic, lm_scores = scores.cpu().tolist(), acoustic.cpu().tolist(), lm_scores.cpu().tolist()
        results = []
        for b in range(len(tokens)):
            hyps = []
            for n, L in enumerate(token_lengths[b]):
                if L < 0:
                    break
                hyps.append(self._make(tokens[b][n][:L], scores[b][n], acoustic[b][n], lm_scores[b][n],
                                       confidences[b][n][:L], frames[b][n][:L]))
            results.append(hyps)
        return results

    def _decode_greedy(self, log_probs, lengths):
        kernel = resolve_greedy_backend(self.backend, log_probs.device)
        if kernel == "ref":
            check_log_probs(log_probs)
        # A kernel checks the values as it reads them: crnn_fast.ctc_greedy's separate scan is skipped.
        out = run_ctc_greedy(log_probs, lengths, self.blank, kernel)
        tokens, counts, frames = out.tokens.cpu(), out.token_lengths.cpu(), out.token_frames.cpu()
        # The best path is the best alignment of its text: its runs give the confidences (peak over each run).
        conf = torch.where(tokens >= 0, out.token_logprobs.cpu().double().exp(), 0.0).float()
        path = out.path_logprob.cpu().double()
        zeros = torch.zeros_like(path)
        return self._from_tensors(tokens.unsqueeze(1), counts.unsqueeze(1), frames.unsqueeze(1), conf.unsqueeze(1),
                                  path.unsqueeze(1), path.unsqueeze(1), zeros.unsqueeze(1))

    def __repr__(self) -> str:
        parts = [f"classes={self.num_classes}", f"blank={self.blank}", f"beam_width={self.beam_width}"]
        if self._words is not None:
            parts.append(f"lexicon={len(self._words)} words ({self.lexicon_mode})")
        if self.lm is not None:
            parts.append(f"lm={self.lm!r}, lm_weight={self.lm_weight}")
        return f"CTCDecoder({', '.join(parts)})"


# ---------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------


# Frames per chunk of the normalisation check: bounds its temporary (chunk x C floats).
_CHECK_CHUNK_ELEMENTS = 4_000_000


def _check_normalised(log_probs: torch.Tensor, lengths: torch.Tensor) -> None:
    """That log_probs holds log-probabilities: every valid frame's logsumexp is 0 (within the dtype's rounding),
    on log_probs' device, one pass over the values. Names NaN/+inf, a frame that is -inf for every class, and
    logits."""
    B, T, C = log_probs.shape
    if T == 0:
        return
    valid = torch.arange(T) < lengths.unsqueeze(1)  # (B, T)
    if not bool(valid.any()):
        return
    dtype = torch.float64 if log_probs.dtype == torch.float64 else torch.float32
    rows = log_probs.detach().reshape(B * T, C)
    lse = torch.empty(B * T, dtype=dtype, device=log_probs.device)
    step = max(1, _CHECK_CHUNK_ELEMENTS // max(1, C))
    for i in range(0, B * T, step):
        lse[i:i + step] = torch.logsumexp(rows[i:i + step].to(dtype), dim=-1)
    lse = torch.where(valid.flatten().to(log_probs.device), lse, torch.zeros((), dtype=dtype, device=lse.device))
    lse = lse.cpu().view(B, T)
    if bool(torch.isnan(lse).any() | torch.isposinf(lse).any()):
        raise ValueError(NON_FINITE_MESSAGE)
    empty = torch.nonzero(torch.isneginf(lse))
    if empty.numel():
        b, t = (int(v) for v in empty[0])
        raise ValueError(f"{IMPOSSIBLE_FRAME_MESSAGE}: frame {t} of sequence {b} is -inf for every class")
    tol = 1e-3 if log_probs.dtype in (torch.float32, torch.float64) else 3e-2
    bad = torch.nonzero(~(lse.abs() <= tol))
    if bad.numel():
        b, t = (int(v) for v in bad[0])
        raise ValueError(f"log_probs must be log-probabilities (log_softmax over the classes), but frame {t} of item "
                         f"{b} has logsumexp {float(lse[b, t]):.4g} instead of 0; pass logits.log_softmax(-1)")


class _NearestLexicon:
    """The CRNN paper's lexicon mode: score every entry by its exact CTC log-probability, keep the best."""

    # Bound on the (pairs x frames x columns) float64 working set of one F.ctc_loss call.
    _CHUNK_ELEMENTS = 8_000_000

    def __init__(self, words: list[tuple[int, ...]], labels, bound_lm: BoundLM | None, lm_weight: float,
                 bonus: float) -> None:
        self.words = words
        W = len(words)
        S = max(len(w) for w in words)
        # CTC only reads the blank's and the word's own columns: each word gets a compact class space, column
        # 0 the blank and 1..U its distinct characters (equal characters share a column, so repeats still
        # need a blank in between).
        uniq = [sorted(set(w)) for w in words]
        U = max(len(u) for u in uniq)
        self.columns = torch.zeros((W, U + 1), dtype=torch.int64)  # class id per compact column
        self.targets = torch.zeros((W, S), dtype=torch.int64)
        for i, (w, u) in enumerate(zip(words, uniq)):
            pos = {c: j + 1 for j, c in enumerate(u)}
            self.columns[i, 1:len(u) + 1] = torch.tensor(u)
            self.targets[i, :len(w)] = torch.tensor([pos[c] for c in w])
        self.target_lengths = torch.tensor([len(w) for w in words], dtype=torch.int64)
        use_lm = bound_lm is not None and lm_weight != 0.0
        self.lm_scores = torch.tensor(
            [sum((lm_weight * bound_lm(w[:i], c) if use_lm else 0.0) + bonus for i, c in enumerate(w))
             for w in words], dtype=torch.float64)
        # Ties go to the lower token sequence: rank the words once.
        order = sorted(range(W), key=lambda i: words[i])
        self.by_tokens = torch.tensor(order, dtype=torch.int64)

    def scores(self, log_probs: torch.Tensor, lengths: torch.Tensor, blank: int) -> torch.Tensor:
        """(B, W) float64 log P(word | log_probs[b]) by the CTC forward algorithm (F.ctc_loss)."""
        lp = log_probs.detach().to("cpu", torch.float64)
        B, T, _ = lp.shape
        W, U1 = self.columns.shape
        cols = self.columns.clone()
        cols[:, 0] = blank
        out = torch.full((B, W), -math.inf, dtype=torch.float64)
        items = torch.nonzero(lengths > 0).flatten().tolist()  # words are non-empty: no frames, no word
        if not items:
            return out
        pairs_per_call = max(1, self._CHUNK_ELEMENTS // (T * U1))
        wstep = min(W, pairs_per_call)
        bstep = max(1, pairs_per_call // W) if wstep == W else 1
        for i0 in range(0, len(items), bstep):
            idx = torch.tensor(items[i0:i0 + bstep])
            for w0 in range(0, W, wstep):
                w1 = min(W, w0 + wstep)
                nb, nw = len(idx), w1 - w0
                # (nb, T, nw, U1) -> (T, nb * nw, U1)
                small = lp[idx][:, :, cols[w0:w1]].permute(1, 0, 2, 3).reshape(T, nb * nw, U1)
                loss = F.ctc_loss(small, self.targets[w0:w1].repeat(nb, 1), lengths[idx].repeat_interleave(nw),
                                  self.target_lengths[w0:w1].repeat(nb), blank=0, reduction="none",
                                  zero_infinity=False)
                out[idx.unsqueeze(1), torch.arange(w0, w1).unsqueeze(0)] = -loss.view(nb, nw)
        return out

    def decode(self, log_probs, lengths, blank, nbest, make):
        acoustic = self.scores(log_probs, lengths, blank)
        total = acoustic + self.lm_scores
        # Stable sort of the token-ordered words by score: ties keep the token order.
        ranked = total[:, self.by_tokens]
        order = torch.sort(ranked, dim=1, descending=True, stable=True).indices[:, :nbest]
        chosen = self.by_tokens[order]  # (B, nbest) word indices
        B = total.shape[0]
        picks = []  # (item, word) pairs with a finite score
        for b in range(B):
            for w in chosen[b].tolist():
                if math.isfinite(float(total[b, w])):
                    picks.append((b, w))
        frames, token_lp = best_alignments(log_probs, lengths, blank, [self.words[w] for _, w in picks],
                                           [b for b, _ in picks])
        results: list[list] = [[] for _ in range(B)]
        if picks:
            conf = token_lp.exp().float().tolist()
            frames_l = frames.tolist()
            for i, (b, w) in enumerate(picks):
                L = len(self.words[w])
                results[b].append(make(self.words[w], float(total[b, w]), float(acoustic[b, w]),
                                       float(self.lm_scores[w]), conf[i][:L], frames_l[i][:L]))
        return results


def best_alignments(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int, labels: Sequence[tuple[int, ...]],
                    items: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The most probable alignment of each label, batched: crnn_fast.reference.ctc.ctc_alignment_ref's recursion,
    tie order and float64 arithmetic, vectorised over the labels.

    labels[i] (non-empty) is aligned to log_probs[items[i], :lengths[items[i]]] (it must have an alignment of
    non-zero probability). Returns (N, max label length) int64 frames padded with -1 and float64 token log-probs (each
    token's highest log-prob over its run) padded with -inf.
    """
    N = len(labels)
    S = max((len(x) for x in labels), default=0)
    if N == 0 or S == 0:
        return (torch.full((N, max(S, 1)), -1, dtype=torch.int64),
                torch.full((N, max(S, 1)), -math.inf, dtype=torch.float64))
    lp = log_probs.detach().to("cpu", torch.float64)[torch.tensor(items)]  # (N, T, C)
    T = lp.shape[1]
    lens = lengths[torch.tensor(items)]
    L = torch.tensor([len(x) for x in labels])
    ext = torch.full((N, 2 * S + 1), blank, dtype=torch.int64)
    for i, lab in enumerate(labels):
        ext[i, 1:2 * len(lab):2] = torch.tensor(lab)
    valid_state = torch.arange(2 * S + 1).unsqueeze(0) < (2 * L + 1).unsqueeze(1)
    can_skip = torch.zeros_like(ext, dtype=torch.bool)
    can_skip[:, 3::2] = ext[:, 3::2] != ext[:, 1:-2:2]
    emit = lp.gather(2, ext.unsqueeze(1).expand(N, T, 2 * S + 1))  # (N, T, states)
    neg = torch.tensor(-math.inf, dtype=torch.float64)
    alpha = torch.full((N, 2 * S + 1), -math.inf, dtype=torch.float64)
    alpha[:, 0] = emit[:, 0, 0]
    alpha[:, 1] = emit[:, 0, 1]
    steps = torch.zeros((T, N, 2 * S + 1), dtype=torch.int64)
    for t in range(1, T):
        # Predecessors s, s - 1, s - 2 in that order, strictly better to win: ties to the state furthest along.
        best, step = alpha, torch.zeros_like(ext)
        prev = torch.cat([alpha.new_full((N, 1), -math.inf), alpha[:, :-1]], dim=1)
        win = prev > best
        best, step = torch.where(win, prev, best), torch.where(win, 1, step)
        skip = torch.where(can_skip, torch.cat([alpha.new_full((N, 2), -math.inf), alpha[:, :-2]], dim=1), neg)
        win = skip > best
        best, step = torch.where(win, skip, best), torch.where(win, 2, step)
        active = (t < lens).unsqueeze(1)
        alpha = torch.where(active, torch.where(valid_state, best + emit[:, t], neg), alpha)
        steps[t] = torch.where(active, step, 0)
    # End on the final blank unless the last token is strictly better.
    end_blank = alpha.gather(1, (2 * L).unsqueeze(1)).squeeze(1)
    end_label = alpha.gather(1, (2 * L - 1).unsqueeze(1)).squeeze(1)
    state = torch.where(end_blank >= end_label, 2 * L, 2 * L - 1)
    frames = torch.full((N, S), -1, dtype=torch.int64)
    token_lp = torch.full((N, S), -math.inf, dtype=torch.float64)
    rows = torch.arange(N)
    for t in range(T - 1, -1, -1):
        on = t < lens
        is_label = on & (state % 2 == 1)
        r, k = rows[is_label], (state // 2)[is_label]
        frames[r, k] = t  # overwritten down to the first frame of the token's run
        token_lp[r, k] = torch.maximum(token_lp[r, k], emit[r, t, state[is_label]])
        state = torch.where(on & (t > 0), state - steps[t, rows, state], state)
    return frames, token_lp
