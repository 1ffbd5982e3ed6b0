"""Greedy (best-path) CTC decoding: the python face of crnn_fast::ctc_greedy (fake impl, backend choice)."""

from __future__ import annotations

import torch

from .._checks import check_blank, check_frames_possible, check_lengths, check_log_probs, kernel_input_error
from .._ext import DECODING_BACKENDS, HAS_EXTENSION, kernel_missing, resolve, resolve_decoding_backend
from ..reference.ctc import GreedyOutput, ctc_greedy_ref

CTC_GREEDY_BACKENDS = DECODING_BACKENDS

if HAS_EXTENSION:

    @torch.library.register_fake("crnn_fast::ctc_greedy")
    def _ctc_greedy_fake(log_probs, lengths, blank):
        if lengths.device != log_probs.device:  # the compiled op's check: see ctc_beam_search.check_same_device
            raise RuntimeError(f"lengths must be on {log_probs.device}, got {lengths.device}")
        B, T, _ = log_probs.shape
        score_dtype = torch.float64 if log_probs.dtype == torch.float64 else torch.float32
        ids = log_probs.new_empty((B, T), dtype=torch.int64)
        return (ids, log_probs.new_empty((B,), dtype=torch.int64), torch.empty_like(ids),
                log_probs.new_empty((B, T), dtype=score_dtype), log_probs.new_empty((B,), dtype=score_dtype))


def ctc_greedy(log_probs: torch.Tensor, lengths=None, blank: int = 0, backend: str = "auto") -> GreedyOutput:
    """Best-path CTC decoding of a batch: argmax every frame, merge repeats, drop blanks.

    log_probs: (B, T, C) log-probabilities (logits give the same tokens but not the same scores);
        float16, bfloat16, float32 or float64, on the CPU or a GPU; NaN and +inf are rejected, and so is a valid
        frame that is -inf for every class.
    lengths: (B,) valid frames per sequence (default T).
    backend: "auto", "cpu", "cuda" or "ref" (eager reference); see crnn_fast._ext.resolve_decoding_backend.
    Returns a GreedyOutput (see crnn_fast.reference.ctc.GreedyOutput) on log_probs' device.
    """
    check_log_probs(log_probs)
    B, T, C = log_probs.shape
    lengths = check_lengths(lengths, B, T, device=log_probs.device)
    blank = check_blank(blank, C)
    out = run_ctc_greedy(log_probs, lengths, blank, resolve_greedy_backend(backend, log_probs.device))
    return GreedyOutput(*(t.to(log_probs.device) for t in out))


def resolve_greedy_backend(backend: str, device: torch.device) -> str:
    """The kernel that runs crnn_fast::ctc_greedy: "cpu", "cuda" or "ref" (resolve_decoding_backend's rule)."""
    return resolve_decoding_backend("ctc_greedy", backend, device)


def greedy_on_device(device: torch.device):
    """The greedy decoder that keeps log-probs on `device`: on CUDA the compiled kernel once it is validated on a
    GPU (crnn_fast._ext.GPU_VALIDATED), else ctc_greedy_torch (torch ops, no host synchronisation); elsewhere
    ctc_greedy."""
    if device.type != "cuda":
        return ctc_greedy
    chosen = resolve("ctc_greedy", "auto", device, backends=("auto", "cuda", "torch"),
                     check=lambda name: kernel_missing("ctc_greedy", name) if name == "cuda" else None,
                     fallback="torch")
    return ctc_greedy if chosen == "cuda" else ctc_greedy_torch


def run_ctc_greedy(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int, kernel: str) -> GreedyOutput:
    """Best-path decoding of checked arguments on `kernel` (resolve_greedy_backend's choice): the eager reference,
    or a compiled kernel, which rejects NaN, +inf and impossible frames in the valid frames as it reads them
    (ValueError). Returns the GreedyOutput on the device it was computed on (the host for the CPU kernel)."""
    if kernel == "ref":
        return ctc_greedy_ref(log_probs, lengths, blank)
    device = torch.device("cpu") if kernel != log_probs.device.type else log_probs.device  # CPU kernel: on the host
    try:
        return GreedyOutput(*torch.ops.crnn_fast.ctc_greedy(log_probs.to(device), lengths.to(device), blank))
    except RuntimeError as exc:
        error = kernel_input_error(exc)
        if error is not None:
            raise error from None
        raise


def ctc_greedy_torch(log_probs: torch.Tensor, lengths=None, blank: int = 0) -> GreedyOutput:
    """ctc_greedy in vectorised torch ops: the same GreedyOutput, computed on log_probs' device with no host
    synchronisation (the recognizer's GPU decoding while the CUDA kernel is not validated, see _ext.GPU_VALIDATED).

    Per frame the best class (ties: lowest id, as torch.max) and its log-prob; a token starts where the best
    class is not blank and differs from the previous frame's; its log-prob is the maximum over its run."""
    check_log_probs(log_probs)
    B, T, C = log_probs.shape
    lengths = check_lengths(lengths, B, T, device=log_probs.device)
    check_frames_possible(log_probs, lengths)
    blank = check_blank(blank, C)
    score_dtype = torch.float64 if log_probs.dtype == torch.float64 else torch.float32
    best_lp, best = log_probs.detach().to(score_dtype).max(dim=-1)  # (B, T)
    frame = torch.arange(T, device=log_probs.device)
    valid = frame[None, :] < lengths[:, None]
    previous = torch.cat([best.new_full((B, 1), -1), best[:, :-1]], dim=1)
    emitting = valid & (best != blank)  # frames inside a token's run
    starts = emitting & (best != previous)  # the first frame of each token
    token_index = starts.cumsum(dim=1) - 1  # which token a frame of a run belongs to
    counts = starts.sum(dim=1)
    slot = torch.where(starts, token_index, T)  # non-starting frames write into a spare column T
    tokens = best.new_full((B, T + 1), -1).scatter_(1, slot, best)[:, :T]
    frames = best.new_full((B, T + 1), -1).scatter_(1, slot, frame.expand(B, T).contiguous())[:, :T]
    run_slot = torch.where(emitting, token_index, T)
    token_lp = best_lp.new_full((B, T + 1), float("-inf")).scatter_reduce_(1, run_slot, best_lp, reduce="amax",
                                                                           include_self=True)[:, :T]
    token_lp = torch.where(frame[None, :] < counts[:, None], token_lp, torch.zeros_like(token_lp))
    path_lp = torch.where(valid, best_lp, torch.zeros_like(best_lp)).sum(dim=1)
    return GreedyOutput(tokens, counts, frames, token_lp, path_lp)
