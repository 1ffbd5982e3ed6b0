"""Greedy (best-path) CTC decoding: the python face of crnn_fast::ctc_greedy (fake impl, backend choice)."""

from __future__ import annotations

import warnings

import torch

from .._checks import check_blank, check_lengths, check_log_probs
from .._ext import BUILD_HINT, HAS_EXTENSION, auto_kernel, has_kernel, require_extension
from ..reference.ctc import GreedyOutput, ctc_greedy_ref

CTC_GREEDY_BACKENDS = ("auto", "cpu", "cuda", "ref")

if HAS_EXTENSION:

    @torch.library.register_fake("crnn_fast::ctc_greedy")
    def _ctc_greedy_fake(log_probs, lengths, blank):
        B, T, _ = log_probs.shape
        score_dtype = torch.float64 if log_probs.dtype == torch.float64 else torch.float32
        ids = log_probs.new_empty((B, T), dtype=torch.int64)
        return (ids, log_probs.new_empty((B,), dtype=torch.int64), torch.empty_like(ids),
                log_probs.new_empty((B, T), dtype=score_dtype), log_probs.new_empty((B,), dtype=score_dtype))


_warned_missing_extension = False


def _resolve_backend(backend: str, device: torch.device) -> str:
    global _warned_missing_extension
    if backend not in CTC_GREEDY_BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, CTC_GREEDY_BACKENDS))}, got {backend!r}")
    if backend == "ref":
        return backend
    if backend == "auto":
        if auto_kernel("ctc_greedy", device.type):
            return device.type
        if device.type == "cuda" and has_kernel("ctc_greedy", "cpu"):
            return "cpu"  # the CUDA kernel is not validated on a GPU yet: decode on the host
        if not HAS_EXTENSION and not _warned_missing_extension:
            warnings.warn(f"crnn_fast._C is not built, so CTC decoding runs the slow eager reference; {BUILD_HINT}",
                          RuntimeWarning, stacklevel=3)
            _warned_missing_extension = True
        return "ref"
    if device.type != backend:
        raise ValueError(f"backend={backend!r} needs log_probs on a {backend} device, got {device}")
    require_extension("ctc_greedy")
    if not has_kernel("ctc_greedy", backend):
        raise RuntimeError(f"crnn_fast._C was built without {backend.upper()} kernels; rebuild it with a CUDA "
                           f"build of torch and nvcc on PATH (CRNN_FAST_BUILD_CUDA=1)")
    return backend


def ctc_greedy(log_probs: torch.Tensor, lengths=None, blank: int = 0, backend: str = "auto") -> GreedyOutput:
    """Best-path CTC decoding of a batch: argmax every frame, merge repeats, drop blanks.

    log_probs: (B, T, C) log-probabilities (logits give the same tokens but not the same scores);
        float16, bfloat16, float32 or float64, on the CPU or a GPU; NaN and +inf are rejected.
    lengths: (B,) valid frames per sequence (default T).
    backend: "auto" (the compiled kernel for the tensor's device), "cpu", "cuda" or "ref" (eager reference).
    Returns a GreedyOutput (see crnn_fast.reference.ctc.GreedyOutput) on log_probs' device.
    """
    check_log_probs(log_probs)
    B, T, C = log_probs.shape
    lengths = check_lengths(lengths, B, T, device=log_probs.device)
    blank = check_blank(blank, C)
    chosen = _resolve_backend(backend, log_probs.device)
    if chosen == "ref":
        return ctc_greedy_ref(log_probs, lengths, blank)
    if chosen != log_probs.device.type:  # auto on a CUDA tensor without a validated CUDA kernel
        out = torch.ops.crnn_fast.ctc_greedy(log_probs.cpu(), lengths.cpu(), blank)
        return GreedyOutput(*(t.to(log_probs.device) for t in out))
    return GreedyOutput(*torch.ops.crnn_fast.ctc_greedy(log_probs, lengths, blank))
