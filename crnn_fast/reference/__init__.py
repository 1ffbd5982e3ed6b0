"""Eager reference implementations: plain PyTorch/Python, readable first (the CTC ones compute in float64).

The fast CPU, CUDA and Triton kernels are tested for agreement with these.
"""

from .ctc import (
                  GreedyOutput,
                  Hypothesis,
                  LexiconTrie,
                  ctc_beam_search_ref,
                  ctc_greedy_ref,
                  ctc_score_ref,
                  token_confidences_ref,
)
from .lstm import lstm_ref

__all__ = [
    "GreedyOutput",
    "Hypothesis",
    "LexiconTrie",
    "ctc_beam_search_ref",
    "ctc_greedy_ref",
    "ctc_score_ref",
    "lstm_ref",
    "token_confidences_ref",
]
