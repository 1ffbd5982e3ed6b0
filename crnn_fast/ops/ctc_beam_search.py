"""CTC prefix beam search: the python face of crnn_fast::ctc_beam_search (fake impl, inputs, backend choice).

The kernel (csrc/cpu/ctc_beam_search.cpp) reproduces crnn_fast.reference.ctc.ctc_beam_search_ref: same
n-best lists, scores equal in float64. The CUDA kernel (same schema, csrc/cuda/ctc_beam_search_*) registers under
the CUDA dispatch key; backend="auto" uses it only once it is in crnn_fast._ext.GPU_VALIDATED, and until then
decodes CUDA tensors with the CPU kernel (one device-to-host copy).
"""

from __future__ import annotations

import math
import weakref
from typing import NamedTuple

import torch

from .._beam_checks import check_beam_search_options, check_lexicon
from .._checks import FLOAT_DTYPES, check_blank, check_lengths, check_log_probs, check_tensor, kernel_input_error
from .._ext import DECODING_BACKENDS, HAS_EXTENSION, resolve_decoding_backend
from ..formats.lexicon import LexiconTrie, TrieTensors, compile_trie
from ..formats.lm import BoundLM
from ..reference.ctc import ctc_alignment_ref, ctc_beam_search_ref

CTC_BEAM_SEARCH_BACKENDS = DECODING_BACKENDS
# The CUDA kernel keeps a beam slot per thread (csrc/cuda/ctc_beam_search_kernels.h, kCtcBeamCudaMaxBeam).
MAX_CUDA_BEAM_WIDTH = 256


class BeamSearchOutput(NamedTuple):
    """N-best lists of a batch as padded tensors (N = nbest), on log_probs' device.

    tokens: (B, N, T) int64, the class ids of hypothesis n of item b left-aligned, padded with -1.
    token_lengths: (B, N) int64, how many entries of tokens[b, n] are real; -1 where item b has fewer
        than n + 1 hypotheses (a lexicon can leave none).
    token_frames: (B, N, T) int64, the frame at which each token is emitted on the most probable alignment of the
        hypothesis's tokens (crnn_fast.reference.ctc.ctc_alignment_ref: ties to the earliest), padded with -1.
    token_confidences: (B, N, T) float32, each token's highest probability over the frames that alignment spends
        on it (its run), padded with 0.
    scores, acoustic_scores, lm_scores: (B, N) float64, -inf where there is no hypothesis.
    """

    tokens: torch.Tensor
    token_lengths: torch.Tensor
    token_frames: torch.Tensor
    token_confidences: torch.Tensor
    scores: torch.Tensor
    acoustic_scores: torch.Tensor
    lm_scores: torch.Tensor


# ---------------------------------------------------------------------------------------------------------
# fake (meta) implementation
# ---------------------------------------------------------------------------------------------------------

if HAS_EXTENSION:

    @torch.library.register_fake("crnn_fast::ctc_beam_search")
    def _ctc_beam_search_fake(log_probs, lengths, blank, beam_width, nbest, top_k, beam_threshold,
                              blank_skip_threshold, token_min_logp, trie_offsets, trie_labels, trie_children,
                              trie_is_word, word_separator, lm_keys, lm_values, lm_buckets, lm_filter, lm_token_map,
                              lm_order, lm_bos, lm_weight, insertion_bonus):
        check_same_device(log_probs, lengths=lengths, trie_offsets=trie_offsets, trie_labels=trie_labels,
                          trie_children=trie_children, trie_is_word=trie_is_word, lm_keys=lm_keys, lm_values=lm_values,
                          lm_buckets=lm_buckets, lm_filter=lm_filter, lm_token_map=lm_token_map)
        B, T, _ = log_probs.shape
        ids = log_probs.new_empty((B, nbest, T), dtype=torch.int64)
        return (ids, log_probs.new_empty((B, nbest), dtype=torch.int64), torch.empty_like(ids),
                log_probs.new_empty((B, nbest, T), dtype=torch.float32),
                log_probs.new_empty((B, nbest), dtype=torch.float64),
                log_probs.new_empty((B, nbest), dtype=torch.float64),
                log_probs.new_empty((B, nbest), dtype=torch.float64))


def check_same_device(log_probs, **tensors) -> None:
    """The compiled ops' device check (csrc/checks.h CHECK_DEVICE), for the fake impls: a call that mixes a meta
    tensor with real ones dispatches to the fake impl, which must not return uninitialised tensors for it."""
    for name, t in tensors.items():
        if t is not None and t.device != log_probs.device:
            raise RuntimeError(f"{name} must be on {log_probs.device}, got {t.device}")


# ---------------------------------------------------------------------------------------------------------
# backend choice
# ---------------------------------------------------------------------------------------------------------

def resolve_backend(backend: str, device: torch.device) -> str:
    """The kernel that runs crnn_fast::ctc_beam_search: "cpu", "cuda" or "ref" (resolve_decoding_backend's rule)."""
    return resolve_decoding_backend("ctc_beam_search", backend, device)


# ---------------------------------------------------------------------------------------------------------
# public function
# ---------------------------------------------------------------------------------------------------------

_TRIE_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _trie_of(lexicon) -> LexiconTrie:
    return lexicon if isinstance(lexicon, LexiconTrie) else LexiconTrie(lexicon)


def _trie_tensors(trie: LexiconTrie) -> TrieTensors:
    tensors = _TRIE_CACHE.get(trie)
    if tensors is None:
        tensors = _TRIE_CACHE[trie] = compile_trie(trie)
    return tensors


def ctc_beam_search(log_probs: torch.Tensor, lengths=None, blank: int = 0, beam_width: int = 10,
                    top_k: int | None = None, beam_threshold: float | None = None,
                    blank_skip_threshold: float | None = None, lexicon=None, word_separator: int | None = None,
                    lm: BoundLM | None = None, lm_weight: float = 0.0, insertion_bonus: float = 0.0,
                    nbest: int = 1, token_min_logp: float | None = None, backend: str = "auto") -> BeamSearchOutput:
    """CTC prefix beam search over a batch, with optional lexicon constraint and character n-gram LM.

    log_probs: (B, T, C) log-probabilities (log_softmax output), float16/bfloat16/float32/float64; NaN and
        +inf are rejected, -inf is probability zero.
    lengths: (B,) valid frames per sequence (default T).
    lexicon: a LexiconTrie or an iterable of words (sequences of class ids); word_separator: a class id that
        joins lexicon words (see ctc_beam_search_ref).
    lm: a BoundLM (CharNgramLM.bind(labels)), used when lm_weight > 0.
    The other arguments, and the exact semantics, are those of crnn_fast.reference.ctc.ctc_beam_search_ref,
    plus blank_skip_threshold in (0, 1]: frames whose blank probability is at least that extend no prefix, and
    token_min_logp: classes whose log-prob is below it (and below the frame's best) extend no prefix.
    backend: "auto" (the compiled kernel of log_probs' device, else the CPU kernel), "cpu", "cuda", "ref".
    """
    check_log_probs_shape(log_probs)
    B, T, C = log_probs.shape
    lengths = check_lengths(lengths, B, T, device=torch.device("cpu"))
    blank = check_blank(blank, C)
    beam_width, nbest, top_k, beam_threshold, blank_skip_threshold, token_min_logp, lm_weight, insertion_bonus = \
        check_beam_search_options(beam_width, nbest, top_k, beam_threshold, blank_skip_threshold, token_min_logp,
                                  lm_weight, insertion_bonus)
    if lm is not None and not isinstance(lm, BoundLM):
        raise TypeError(f"lm must be a BoundLM (CharNgramLM.bind(labels)), got {type(lm).__name__}")
    if lm is not None and len(lm.labels) != C:
        raise ValueError(f"lm is bound to {len(lm.labels)} classes, log_probs has C={C}")
    chosen = resolve_backend(backend, log_probs.device)
    if chosen == "cuda" and beam_width > MAX_CUDA_BEAM_WIDTH:
        raise ValueError(f"beam_width must be <= {MAX_CUDA_BEAM_WIDTH} on CUDA, got {beam_width} "
                         "(use backend='cpu' for wider beams)")
    trie = _trie_of(lexicon) if lexicon is not None else None

    if chosen == "ref":
        check_log_probs(log_probs)
        # The reference validates lexicon and word_separator itself, with the same messages.
        hyps = ctc_beam_search_ref(log_probs, lengths, blank=blank, beam_width=beam_width, top_k=top_k,
                                   beam_threshold=beam_threshold, lexicon=trie, word_separator=word_separator,
                                   lm=lm, lm_weight=lm_weight, insertion_bonus=insertion_bonus, nbest=nbest,
                                   blank_skip_threshold=blank_skip_threshold, token_min_logp=token_min_logp)
        return _pack(hyps, log_probs, lengths, nbest, blank)

    trie, word_separator = check_lexicon(trie, word_separator, C, blank)
    trie_args = (None, None, None, None) if trie is None else tuple(_trie_tensors(trie))
    lm_args: tuple = (None, None, None, None, None, 1, -1)
    if lm is not None:
        t = lm.tensors
        lm_args = (t.keys, t.values, t.buckets, t.filter, t.token_map, t.order, t.bos)

    device = torch.device("cpu") if chosen == "cpu" else log_probs.device
    trie_args = tuple(x.to(device) if x is not None else None for x in trie_args)
    lm_args = tuple(x.to(device) if isinstance(x, torch.Tensor) else x for x in lm_args)
    try:
        out = torch.ops.crnn_fast.ctc_beam_search(
            log_probs.to(device), lengths.to(device), blank, beam_width, nbest, top_k,
            None if beam_threshold is None or math.isinf(beam_threshold) else beam_threshold, blank_skip_threshold,
            token_min_logp, *trie_args, word_separator, *lm_args, lm_weight, insertion_bonus)
    except RuntimeError as exc:
        # The kernel checks the values as it reads them (a separate scan would cost as much as a search):
        # report bad values as the ValueError every other entry point raises.
        error = kernel_input_error(exc)
        if error is not None:
            raise error from None
        raise
    return BeamSearchOutput(*(x.to(log_probs.device) for x in out))


def check_log_probs_shape(log_probs) -> None:
    """check_log_probs without the scan of the values (the compiled kernels check those as they read)."""
    check_tensor(log_probs, "log_probs", dim=3, dtypes=FLOAT_DTYPES)
    B, _, C = log_probs.shape
    if B == 0:
        raise ValueError("log_probs is an empty batch (B=0); pass at least one sequence")
    if C == 0:
        raise ValueError("log_probs has no classes (C=0)")


def _pack(hyps, log_probs: torch.Tensor, lengths: torch.Tensor, nbest: int, blank: int) -> BeamSearchOutput:
    """The reference's Hypothesis lists as BeamSearchOutput tensors."""
    B, T, _ = log_probs.shape
    lp = log_probs.detach().to("cpu", torch.float64)
    tokens = torch.full((B, nbest, T), -1, dtype=torch.int64)
    frames = torch.full((B, nbest, T), -1, dtype=torch.int64)
    conf = torch.zeros((B, nbest, T), dtype=torch.float32)
    token_lengths = torch.full((B, nbest), -1, dtype=torch.int64)
    scores = torch.full((B, nbest), -math.inf, dtype=torch.float64)
    acoustic = scores.clone()
    lm_scores = scores.clone()
    for b, items in enumerate(hyps):
        for n, h in enumerate(items):
            L = len(h.tokens)
            token_lengths[b, n] = L
            if L:
                tokens[b, n, :L] = torch.tensor(h.tokens)
                frames[b, n, :L] = torch.tensor(h.frames)
                alignment = ctc_alignment_ref(lp[b], h.tokens, int(lengths[b]), blank)
                conf[b, n, :L] = torch.tensor(alignment.token_logprobs, dtype=torch.float64).exp()
            scores[b, n], acoustic[b, n], lm_scores[b, n] = h.score, h.acoustic_score, h.lm_score
    dev = log_probs.device
    return BeamSearchOutput(tokens.to(dev), token_lengths.to(dev), frames.to(dev), conf.to(dev), scores.to(dev),
                            acoustic.to(dev), lm_scores.to(dev))
