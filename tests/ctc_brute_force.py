"""Independent check of the "most probable alignment" the CTC decoders report frames and confidences from:
every alignment of a label enumerated, no dynamic programming (tiny inputs only)."""

from __future__ import annotations

import math


def alignments(tokens, length):
    """Every lattice state sequence (states 0 .. 2L of blank, t0, blank, t1, ..., blank) of `length` frames."""
    L = len(tokens)
    S = 2 * L + 1

    def can_skip(s):
        return s % 2 == 1 and s >= 3 and tokens[s // 2] != tokens[s // 2 - 1]

    def walk(path):
        if len(path) == length:
            if path[-1] >= S - 2:
                yield tuple(path)
            return
        s = path[-1]
        for nxt in (s, s + 1, s + 2):
            if nxt < S and (nxt != s + 2 or can_skip(nxt)):
                # Prune paths that can no longer reach the end (each frame advances at most 2 states).
                if nxt + 2 * (length - len(path) - 1) >= S - 2:
                    yield from walk(path + [nxt])

    if length == 0:
        return
    for start in (0, 1) if L else (0,):
        yield from walk([start])


def best_alignment(log_probs, tokens, length=None, blank=0):
    """(frames, token_logprobs) of the most probable alignment of `tokens` to log_probs[:length] ((T, C)), ties to
    the earliest, by enumeration. Checks on the way what the decoders' documentation claims: the alignment that is
    furthest along at every frame among the most probable ones is itself one of them, and it emits every token at
    the earliest frame any most probable alignment does."""
    rows = log_probs.double().tolist()
    length = len(rows) if length is None else int(length)
    tokens = tuple(tokens)
    if not tokens:
        return (), ()

    def cls(s):
        return blank if s % 2 == 0 else tokens[s // 2]

    scored = []
    for path in alignments(tokens, length):
        total = 0.0
        for t, s in enumerate(path):  # left to right in float64, as the recursions add
            total = total + rows[t][cls(s)]
        scored.append((total, path))
    best = max(total for total, _ in scored)
    assert best > -math.inf, "no alignment of non-zero probability"
    optimal = [path for total, path in scored if total == best]
    furthest = tuple(max(states) for states in zip(*optimal))
    assert furthest in optimal

    def frames_of(path):
        return tuple(path.index(2 * k + 1) for k in range(len(tokens)))

    frames = frames_of(furthest)
    assert frames == tuple(min(f) for f in zip(*map(frames_of, optimal)))
    token_lp = tuple(max(rows[t][tokens[k]] for t, s in enumerate(furthest) if s == 2 * k + 1)
                     for k in range(len(tokens)))
    return frames, token_lp


def dyadic_log_probs(B, T, C, seed, values=(0.0, -0.5, -1.0, -1.5, -2.0, -3.0, float("-inf"))):
    """(B, T, C) float32 'log-probs' from a few dyadic values: every sum is exact, so ties between alignments
    are exact ties. Not normalised (the ops do not need it); no frame is -inf for every class."""
    import torch

    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(values), (B, T, C), generator=g)
    lp = torch.tensor(values, dtype=torch.float32)[idx]
    lp[:, :, 0] = torch.where(torch.isinf(lp[:, :, 0]), -1.0, lp[:, :, 0])
    return lp


def cat_log_probs():
    """Issue 16's example: 'cat' with c peaking on frames 2-3, a on 5, t on 8, blank elsewhere (1, 10, 5) float32
    log-probs; classes: blank, a, c, r, t (Charset("acrt"))."""
    import torch

    logits = torch.zeros(1, 10, 5, dtype=torch.float64)
    for t in range(10):
        logits[0, t, {2: 2, 3: 2, 5: 1, 8: 4}.get(t, 0)] = 8.0
    return logits.log_softmax(-1).float()
