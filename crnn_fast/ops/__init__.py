"""Python face of every crnn_fast op: fake impls, autograd registration, backend choice."""

from . import lstm_cuda  # noqa: F401  (registers the fake impl of crnn_fast::lstm_recurrence)
from .ctc_beam_search import CTC_BEAM_SEARCH_BACKENDS, BeamSearchOutput, ctc_beam_search
from .ctc_greedy import CTC_GREEDY_BACKENDS, ctc_greedy

# crnn_fast.ops.lstm stays the module (its functional LSTM is crnn_fast.ops.lstm.lstm): re-exporting a function
# of the same name here would shadow it, and `import crnn_fast.ops.lstm as m` would then yield the function.
from .lstm import LSTM_BACKENDS, lstm_triton_layer

__all__ = ["CTC_BEAM_SEARCH_BACKENDS", "BeamSearchOutput", "ctc_beam_search", "CTC_GREEDY_BACKENDS", "ctc_greedy",
           "LSTM_BACKENDS", "lstm_triton_layer"]
