"""Python face of every crnn_fast op: fake impls, autograd registration, backend choice."""

from .ctc_greedy import CTC_GREEDY_BACKENDS, ctc_greedy

__all__ = ["CTC_GREEDY_BACKENDS", "ctc_greedy"]
