"""Eager reference implementations: plain PyTorch/Python, readable first (the CTC ones compute in float64).

The fast CPU, CUDA and Triton kernels are tested for agreement with these.
"""

from .ctc import (
    Alignment,
    GreedyOutput,
    Hypothesis,
    ctc_alignment_ref,
    ctc_beam_search_ref,
    ctc_greedy_ref,
    ctc_score_ref,
)
from .lstm import lstm_ref

__all__ = [
    "Alignment",
    "GreedyOutput",
    "Hypothesis",
    "ctc_alignment_ref",
    "ctc_beam_search_ref",
    "ctc_greedy_ref",
    "ctc_score_ref",
    "lstm_ref",
]
