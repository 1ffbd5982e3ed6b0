"""Eager references of the CTC ops: plain PyTorch/Python, readable first, computed in float64.

Dimensions: B batch, T frames, C classes (blank included), L label length.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .._beam_checks import check_beam_search_options, check_lexicon
from .._checks import as_token_seq, check_blank, check_frames_possible, check_lengths, check_log_probs, is_real
from ..formats.lexicon import LexiconTrie


class GreedyOutput(NamedTuple):
    """Result of greedy CTC decoding; every field is a tensor on the input's device.

    tokens: (B, T) int64, the decoded class ids left-aligned, padded with -1.
    token_lengths: (B,) int64, how many entries of `tokens` are real.
    token_frames: (B, T) int64, the first frame of each token's run, padded with -1.
    token_logprobs: (B, T) the peak log-prob of each token over its run, padded with 0
        (float64 for float64 input, else float32).
    path_logprob: (B,) log-prob of the best path (sum over frames of the frame maximum).
    """

    tokens: torch.Tensor
    token_lengths: torch.Tensor
    token_frames: torch.Tensor
    token_logprobs: torch.Tensor
    path_logprob: torch.Tensor


def ctc_greedy_ref(log_probs: torch.Tensor, lengths: torch.Tensor | None = None, blank: int = 0) -> GreedyOutput:
    """Best-path CTC decoding: argmax every frame, merge repeated classes, drop blanks.

    log_probs: (B, T, C) log-probabilities (logits give the same tokens, not the same scores).
    lengths: (B,) number of valid frames per sequence, default T. A valid frame that is -inf for every class
        (no class possible) is a ValueError, as in ctc_beam_search_ref.
    Ties in the argmax go to the lowest class id, as torch.argmax.
    """
    check_log_probs(log_probs)
    B, T, C = log_probs.shape
    lengths = check_lengths(lengths, B, T, device=torch.device("cpu"))
    check_frames_possible(log_probs, lengths)
    blank = check_blank(blank, C)
    out_dtype = torch.float64 if log_probs.dtype == torch.float64 else torch.float32
    lp = log_probs.detach().to("cpu", torch.float64)
    tokens = torch.full((B, T), -1, dtype=torch.int64)
    frames = torch.full((B, T), -1, dtype=torch.int64)
    token_lp = torch.zeros((B, T), dtype=torch.float64)
    path_lp = torch.zeros(B, dtype=torch.float64)
    counts = torch.zeros(B, dtype=torch.int64)
    for b in range(B):
        best_lp, best = lp[b, : lengths[b]].max(dim=-1)
        path_lp[b] = best_lp.sum()
        n, prev = 0, -1
        for t, (k, v) in enumerate(zip(best.tolist(), best_lp.tolist())):
            if k != blank and k != prev:
                tokens[b, n], frames[b, n], token_lp[b, n] = k, t, v
                n += 1
            elif k != blank:  # same token continues: keep its most confident frame
                token_lp[b, n - 1] = max(token_lp[b, n - 1].item(), v)
            prev = k
        counts[b] = n
    device = log_probs.device
    return GreedyOutput(tokens.to(device), counts.to(device), frames.to(device),
                        token_lp.to(device, out_dtype), path_lp.to(device, out_dtype))


# ---------------------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------------------

_NEG_INF = float("-inf")


def _logaddexp(a: float, b: float) -> float:
    """log(exp(a) + exp(b)) as max + log1p(exp(-|a - b|)); the fast implementations use the same formula."""
    if a == _NEG_INF:
        return b
    if b == _NEG_INF:
        return a
    m = a if a > b else b
    return m + math.log1p(math.exp(-abs(a - b)))


def _check_token_ids(tokens: tuple[int, ...], name: str, num_classes: int, blank: int) -> None:
    for v in tokens:
        if not 0 <= v < num_classes:
            raise ValueError(f"{name} holds token id {v}, outside [0, {num_classes})")
        if v == blank:
            raise ValueError(f"{name} holds the blank id {blank}; labels must not contain blank")


# ---------------------------------------------------------------------------------------------------------
# CTC score (forward algorithm)
# ---------------------------------------------------------------------------------------------------------


def _parse_targets(targets, target_lengths, batch: int, num_classes: int,
                   blank: int) -> list[tuple[int, ...]]:
    if isinstance(targets, torch.Tensor):
        if targets.dim() != 2:
            raise ValueError(f"targets must have 2 dimensions (B, S), got shape {tuple(targets.shape)}")
        if targets.dtype.is_floating_point or targets.dtype.is_complex or targets.dtype == torch.bool:
            raise TypeError(f"targets must be integers, got dtype {str(targets.dtype).replace('torch.', '')}")
        if targets.shape[0] != batch:
            raise ValueError(f"targets must have {batch} rows (one per sequence), got {targets.shape[0]}")
        S = targets.shape[1]
        lens = check_lengths(target_lengths, batch, S, name="target_lengths", device=torch.device("cpu"))
        rows = targets.detach().cpu().tolist()
        # Only the first target_lengths[b] entries are labels: the padding may hold anything.
        labels = [tuple(rows[b][: int(lens[b])]) for b in range(batch)]
    else:
        if isinstance(targets, (str, bytes)) or not hasattr(targets, "__len__"):
            raise TypeError(f"targets must be a (B, S) integer tensor or a list of B sequences, "
                            f"got {type(targets).__name__}")
        if len(targets) != batch:
            raise ValueError(f"targets must hold {batch} sequences (one per batch item), got {len(targets)}")
        labels = [as_token_seq(seq, f"targets[{b}]") for b, seq in enumerate(targets)]
        if target_lengths is not None:
            lens = check_lengths(target_lengths, batch, max((len(x) for x in labels), default=0),
                                 name="target_lengths", device=torch.device("cpu"))
            if [len(x) for x in labels] != lens.tolist():
                raise ValueError(f"target_lengths {lens.tolist()} disagree with the lengths of the target "
                                 f"sequences {[len(x) for x in labels]}")
    for b, lab in enumerate(labels):
        _check_token_ids(lab, f"targets[{b}]", num_classes, blank)
    return labels


def _ctc_forward(lp: torch.Tensor, label: tuple[int, ...], blank: int) -> float:
    """log P(label | lp) for one sequence; lp: (T, C) float64."""
    T = lp.shape[0]
    L = len(label)
    if T == 0:
        return 0.0 if L == 0 else _NEG_INF
    # Extended label: blank, l1, blank, l2, ..., lL, blank (2L + 1 states).
    ext = torch.full((2 * L + 1,), blank, dtype=torch.int64)
    if L:
        ext[1::2] = torch.tensor(label, dtype=torch.int64)
    # A state may skip the blank before it only when it is a label that differs from the label two back.
    can_skip = torch.zeros(2 * L + 1, dtype=torch.bool)
    if L > 1:
        can_skip[3::2] = ext[3::2] != ext[1:-2:2]
    neg = torch.full((2 * L + 1,), _NEG_INF, dtype=torch.float64)
    alpha = neg.clone()
    alpha[0] = lp[0, blank]
    if L:
        alpha[1] = lp[0, ext[1]]
    for t in range(1, T):
        from_prev = torch.cat([neg[:1], alpha[:-1]])
        from_skip = torch.where(can_skip, torch.cat([neg[:2], alpha[:-2]]), neg)
        alpha = torch.logsumexp(torch.stack([alpha, from_prev, from_skip]), dim=0) + lp[t, ext]
    # A valid path ends on the last label or the blank after it.
    return float(torch.logsumexp(alpha[-2:], dim=0)) if L else float(alpha[-1])


def ctc_score_ref(log_probs: torch.Tensor, targets, lengths: torch.Tensor | None = None,
                  target_lengths: torch.Tensor | None = None, blank: int = 0) -> torch.Tensor:
    """log P(label | log_probs) of each sequence by the CTC forward (alpha) algorithm in log space.

    log_probs: (B, T, C) log-probabilities, batch first.
    targets: (B, S) integer tensor whose row b holds target_lengths[b] labels followed by arbitrary padding,
        or a list of B sequences of ints (then their lengths are the target lengths; a target_lengths passed
        alongside must agree with them).
    lengths: (B,) number of valid frames per sequence, default T.
    target_lengths: (B,) with the tensor form of targets, default S for every row.
    Labels must be in [0, C) and differ from blank.

    Returns (B,) float64 on log_probs' device. A label that cannot be aligned to its frames (more than
    lengths[b] frames needed once a blank is counted between equal neighbours) scores -inf; an empty label
    on zero frames scores 0. Equals -torch.nn.functional.ctc_loss(..., reduction='none',
    zero_infinity=False) on the time-first transpose of log_probs.
    """
    check_log_probs(log_probs)
    B, T, C = log_probs.shape
    lengths = check_lengths(lengths, B, T, device=torch.device("cpu"))
    blank = check_blank(blank, C)
    labels = _parse_targets(targets, target_lengths, B, C, blank)
    lp = log_probs.detach().to("cpu", torch.float64)
    out = torch.empty(B, dtype=torch.float64)
    for b in range(B):
        out[b] = _ctc_forward(lp[b, : int(lengths[b])], labels[b], blank)
    return out.to(log_probs.device)


# ---------------------------------------------------------------------------------------------------------
# CTC prefix beam search
# ---------------------------------------------------------------------------------------------------------


class Hypothesis(NamedTuple):
    """One beam-search result.

    tokens: the decoded label (no blanks, repeats already merged by CTC).
    score: acoustic_score + lm_score, the quantity the search ranks by.
    acoustic_score: log P(tokens | log_probs) summed over the alignments the search kept.
    lm_score: sum over the tokens of lm_weight * lm(context, token) + insertion_bonus.
    frames: the frame at which each token is emitted on the most probable alignment of `tokens`
        (ctc_alignment_ref; one per token).
    """

    tokens: tuple[int, ...]
    score: float
    acoustic_score: float
    lm_score: float
    frames: tuple[int, ...] = ()


class _LexiconRule:
    """The lexicon constraint on prefixes, with or without a word separator."""

    def __init__(self, trie: LexiconTrie, separator: int | None) -> None:
        self.trie = trie
        self.separator = separator

    def _last_word(self, prefix: tuple[int, ...]) -> tuple[int, ...]:
        if self.separator is None:
            return prefix
        for i in range(len(prefix) - 1, -1, -1):
            if prefix[i] == self.separator:
                return prefix[i + 1:]
        return prefix

    def can_extend(self, prefix: tuple[int, ...], token: int) -> bool:
        last = self._last_word(prefix)
        if token == self.separator:
            # Empty `last` covers a leading separator and a double separator.
            return len(last) > 0 and self.trie.is_word(last)
        return self.trie.is_prefix(last + (token,))

    def is_final(self, prefix: tuple[int, ...]) -> bool:
        if not prefix:
            return True
        last = self._last_word(prefix)
        return len(last) > 0 and self.trie.is_word(last)


def ctc_beam_search_ref(log_probs: torch.Tensor, lengths: torch.Tensor | None = None, blank: int = 0,
                        beam_width: int = 10, top_k: int | None = None, beam_threshold: float | None = None,
                        lexicon=None, word_separator: int | None = None, lm=None, lm_weight: float = 0.0,
                        insertion_bonus: float = 0.0, nbest: int = 1,
                        blank_skip_threshold: float | None = None,
                        token_min_logp: float | None = None) -> list[list[Hypothesis]]:
    """CTC prefix beam search with optional lexicon constraint and token-level LM.

    log_probs: (B, T, C) log-probabilities, batch first; computed in float64. A valid frame that is -inf for
        every class is a ValueError (every text would have probability zero; greedy decoding rejects it too).
    lengths: (B,) number of valid frames per sequence, default T; frames past lengths[b] are ignored.
    Returns B lists of at most `nbest` Hypothesis, best first. lengths[b] == 0 gives
    [Hypothesis((), 0.0, 0.0, 0.0)].

    State. Every prefix y (a tuple of non-blank tokens) holds log p_b(y) (alignments ending in blank),
    log p_nb(y) (ending in y's last token) and lm(y). The beam starts as {(): p_b=0, p_nb=-inf, lm=0}.
        acoustic(y) = logaddexp(p_b, p_nb);  score(y) = acoustic(y) + lm(y).

    Frame t (lp = log_probs[b, t]). The next beam's p_b and p_nb start at -inf; every contribution is
    merged into them by logaddexp (computed as max + log1p(exp(-|a - b|))), in this order: prefixes in
    beam order (below), and for each prefix y with last token e (none if y is empty):
        1. blank:   p_b(y)   <- total(y) + lp[blank], total(y) = logaddexp(p_b(y), p_nb(y))
        2. stay:    p_nb(y)  <- p_nb(y) + lp[e]               (only when y is not empty)
        3. extend:  for each allowed token c in ascending id order:
                    p_nb(y+c) <- p_b(y) + lp[c]   if c == e   (a repeat needs a blank in between)
                    p_nb(y+c) <- total(y) + lp[c] otherwise
    Blank and stay are scored for every prefix; an extension by c is allowed when
        - the frame is not skipped: with blank_skip_threshold p (0 < p <= 1), a frame whose blank
          log-prob lp[blank] >= log(p) extends no prefix (only blank and stay are scored there),
        - top_k is None, or c is among the top_k non-blank classes of frame t by lp (ties to the lower id);
        - token_min_logp is None, or lp[c] >= min(token_min_logp, max(lp)): classes below the floor are not
          tried, except the frame's best class (the largest lp, blank included, with all classes tied with
          it), as pyctcdecode's token_min_logp does;
          top_k and token_min_logp apply to c == e as well, and
        - the lexicon (if any) allows y + c (below).
    lm(y + c) = lm(y) + lm_weight * lm(y, c) + insertion_bonus, computed when y + c is first created and
    cached for the sequence, so `lm` is called at most once per distinct (context, token). When lm is None
    or lm_weight == 0 the LM is not called and the term is insertion_bonus alone. Separator tokens count as
    tokens for the LM and the bonus.

    Frames are not part of the search: each returned hypothesis gets the emission frames of the most probable
    alignment of its tokens, ctc_alignment_ref(log_probs[b], tokens, lengths[b], blank).frames (the pruning
    options do not change which alignment that is).

    Pruning, after each frame: prefixes with score -inf are dropped; then, if beam_threshold is not None,
    prefixes with score < best_score - beam_threshold; then all but the beam_width best. Beam order
    (also the output order) is score descending, ties by tokens ascending (lexicographic tuple order).

    Lexicon (hard constraint). `lexicon` is a LexiconTrie or an iterable of words (non-empty sequences of
    token ids in [0, C), none equal to blank or word_separator).
        - Without word_separator the whole output is one word: y + c is allowed iff it is a trie prefix.
        - With word_separator s the output is words joined by single separators. Let w be the part of y
          after its last s (all of y if none): c == s is allowed iff w is non-empty and a complete word (no
          leading or double separator); another c is allowed iff w + c is a trie prefix.
        - At the last frame only the empty prefix and prefixes whose last word w is a complete (non-empty)
          word are candidates (no trailing separator); this filter runs before the last frame's pruning, so a
          complete hypothesis is never crowded out by unfinished ones. If nothing remains the list is empty.
    word_separator requires a lexicon.

    lm: callable lm(context: tuple[int, ...], token: int) -> float, a log-probability (may be -inf; NaN
    and +inf are errors). lm_weight must be in [0, MAX_LM_WEIGHT]; insertion_bonus in
    [-MAX_INSERTION_BONUS, MAX_INSERTION_BONUS]. beam_width must be in [1, MAX_BEAM_WIDTH], nbest in
    [1, MAX_NBEST], top_k (when given) >= 1; beam_threshold (when given) >= 0; blank_skip_threshold (when given)
    in (0, 1]; token_min_logp (when given) a number, not NaN.
    """
    check_log_probs(log_probs)
    B, T, C = log_probs.shape
    lengths = check_lengths(lengths, B, T, device=torch.device("cpu"))
    check_frames_possible(log_probs, lengths)
    blank = check_blank(blank, C)
    beam_width, nbest, top_k, beam_threshold, blank_skip_threshold, token_min_logp, lm_weight, insertion_bonus = \
        check_beam_search_options(beam_width, nbest, top_k, beam_threshold, blank_skip_threshold, token_min_logp,
                                  lm_weight, insertion_bonus)
    skip_floor = None if blank_skip_threshold is None else math.log(blank_skip_threshold)
    if lm is not None and not callable(lm):
        raise TypeError(f"lm must be a callable lm(context, token) -> float, got {type(lm).__name__}")
    trie, word_separator = check_lexicon(lexicon, word_separator, C, blank)
    rule = None if trie is None else _LexiconRule(trie, word_separator)
    use_lm = lm is not None and lm_weight != 0.0

    def lm_term(context: tuple[int, ...], token: int) -> float:
        if not use_lm:
            return insertion_bonus
        value = lm(context, token)
        if not is_real(value):
            raise TypeError(f"lm must return a real number, got {type(value).__name__}")
        value = float(value)
        if math.isnan(value) or value == math.inf:
            raise ValueError(f"lm returned {value} for context {context}, token {token}; "
                             "expected a log-probability (finite or -inf)")
        return lm_weight * value + insertion_bonus

    lp_all = log_probs.detach().to("cpu", torch.float64)
    results = []
    for b in range(B):
        lm_cache: dict[tuple[int, ...], float] = {(): 0.0}
        # beam: list of (prefix, p_b, p_nb) in beam order.
        beam: list[tuple[tuple[int, ...], float, float]] = [((), 0.0, _NEG_INF)]
        n_frames = int(lengths[b])
        for t in range(n_frames):
            lp = lp_all[b, t].tolist()
            if skip_floor is not None and lp[blank] >= skip_floor:
                candidates = []
            elif top_k is None or top_k >= C - 1:
                candidates = [c for c in range(C) if c != blank]
            else:
                ranked = sorted((c for c in range(C) if c != blank), key=lambda c: (-lp[c], c))
                candidates = sorted(ranked[:top_k])
            if token_min_logp is not None and candidates:
                floor = min(token_min_logp, max(lp))
                candidates = [c for c in candidates if lp[c] >= floor]
            next_pb: dict[tuple[int, ...], float] = {}
            next_pnb: dict[tuple[int, ...], float] = {}
            for y, pb, pnb in beam:
                total = _logaddexp(pb, pnb)
                _add(next_pb, y, total + lp[blank])
                e = y[-1] if y else None
                if y:
                    _add(next_pnb, y, pnb + lp[e])
                for c in candidates:
                    if rule is not None and not rule.can_extend(y, c):
                        continue
                    yc = y + (c,)
                    if yc not in lm_cache:
                        lm_cache[yc] = lm_cache[y] + lm_term(y, c)
                    _add(next_pnb, yc, (pb if c == e else total) + lp[c])
            final_rule = rule.is_final if rule is not None and t == n_frames - 1 else None
            beam = _prune(next_pb, next_pnb, lm_cache, beam_width, beam_threshold, final_rule)
        hyps = []
        for y, pb, pnb in beam[:nbest]:
            acoustic = _logaddexp(pb, pnb)
            frames = ctc_alignment_ref(lp_all[b], y, n_frames, blank).frames
            hyps.append(Hypothesis(y, acoustic + lm_cache[y], acoustic, lm_cache[y], frames))
        results.append(hyps)
    return results


def _add(table: dict, key: tuple[int, ...], value: float) -> None:
    table[key] = _logaddexp(table.get(key, _NEG_INF), value)


def _prune(next_pb, next_pnb, lm_cache, beam_width, beam_threshold, is_final=None):
    """The next beam, in beam order: drop -inf, non-final (when is_final is given) and out-of-threshold
    prefixes, keep the beam_width best."""
    entries = []
    for y in set(next_pb) | set(next_pnb):
        if is_final is not None and not is_final(y):
            continue
        pb = next_pb.get(y, _NEG_INF)
        pnb = next_pnb.get(y, _NEG_INF)
        score = _logaddexp(pb, pnb) + lm_cache[y]
        if score != _NEG_INF:
            entries.append((y, pb, pnb, score))
    entries.sort(key=lambda e: (-e[3], e[0]))
    if beam_threshold is not None and entries:
        floor = entries[0][3] - beam_threshold
        entries = [e for e in entries if e[3] >= floor]
    return [(y, pb, pnb) for y, pb, pnb, _ in entries[:beam_width]]


# ---------------------------------------------------------------------------------------------------------
# Most probable alignment of a label (the frames and confidences of decoded text)
# ---------------------------------------------------------------------------------------------------------


class Alignment(NamedTuple):
    """The most probable CTC alignment of a label (ctc_alignment_ref).

    frames: per token, the frame the alignment emits it at (the first frame of its run).
    token_logprobs: per token, its highest log-prob over its run (the frames the alignment spends on it); the
        decoders' per-character confidence is exp of this.
    logprob: the alignment's log-probability (the sum over the frames of the log-prob of the aligned class).
    """

    frames: tuple[int, ...]
    token_logprobs: tuple[float, ...]
    logprob: float


def ctc_alignment_ref(log_probs: torch.Tensor, tokens, length: int | None = None, blank: int = 0) -> Alignment:
    """The most probable alignment (Viterbi path) of `tokens` in the CTC lattice of one sequence.

    log_probs: (T, C) log-probabilities of one sequence; tokens: the label (class ids other than blank);
    length: valid frames (default T). An alignment gives each frame t < length a state of the extended label
    blank, tokens[0], blank, tokens[1], ..., blank (states 0 .. 2L): it starts in state 0 or 1, moves on by 0 or
    1 state per frame, or by 2 onto a token that differs from the token before it, and ends in state 2L - 1 or
    2L. Its log-probability is the sum over t of log_probs[t, class of its state at t].

    Computed in float64: alpha_0 = (lp[0, blank], lp[0, tokens[0]], -inf, ...), then per frame t and state s
        alpha_t[s] = max(alpha_{t-1}[s], alpha_{t-1}[s - 1], alpha_{t-1}[s - 2] if s may skip) + lp[t, class(s)],
    remembering which predecessor won; the path is traced back from the better of the two final states.
    Ties go to the earliest alignment: to the predecessor furthest along (s, then s - 1, then s - 2) and to the
    final blank over the last token. The most probable alignments are closed under taking, frame by frame, the
    later state of two of them, so this is the one furthest along at every frame: each token's frame is the
    earliest at which any most probable alignment emits it.

    Raises ValueError when the label has no alignment of non-zero probability (for instance when it needs more
    than `length` frames). An empty label aligns to blanks only (no frames).
    """
    lp = log_probs.detach().to("cpu", torch.float64)
    end = lp.shape[0] if length is None else int(length)
    rows = lp[:end].tolist()
    tokens = list(tokens)
    L = len(tokens)
    if L == 0:
        return Alignment((), (), float(sum(row[blank] for row in rows)))
    if end == 0:
        raise ValueError(f"tokens {tuple(tokens)} cannot be aligned to 0 frames")
    ext = [blank if s % 2 == 0 else tokens[s // 2] for s in range(2 * L + 1)]
    S = len(ext)
    can_skip = [s % 2 == 1 and s >= 3 and ext[s] != ext[s - 2] for s in range(S)]
    alpha = [_NEG_INF] * S
    alpha[0], alpha[1] = rows[0][blank], rows[0][ext[1]]
    steps = [[0] * S]  # steps[t][s]: by how many states the best path into (t, s) moved at frame t
    for t in range(1, end):
        new, step_t = [_NEG_INF] * S, [0] * S
        for s in range(S):
            best, step = alpha[s], 0
            if s >= 1 and alpha[s - 1] > best:
                best, step = alpha[s - 1], 1
            if can_skip[s] and alpha[s - 2] > best:
                best, step = alpha[s - 2], 2
            new[s] = best + rows[t][ext[s]]
            step_t[s] = step
        alpha = new
        steps.append(step_t)
    s = S - 1 if alpha[S - 1] >= alpha[S - 2] else S - 2
    if alpha[s] == _NEG_INF:
        raise ValueError(f"tokens {tuple(tokens)} have no alignment of non-zero probability to {end} frames")
    logprob = alpha[s]
    frames, best_lp = [0] * L, [_NEG_INF] * L
    for t in range(end - 1, -1, -1):
        if s % 2 == 1:
            k = s // 2
            frames[k] = t  # overwritten down to the first frame of the token's run
            best_lp[k] = max(best_lp[k], rows[t][ext[s]])
        s -= steps[t][s]
    return Alignment(tuple(frames), tuple(best_lp), logprob)
