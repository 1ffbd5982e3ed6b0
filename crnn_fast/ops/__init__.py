"""Python face of every crnn_fast op: fake impls, autograd registration, backend choice."""

from .ctc_greedy import CTC_GREEDY_BACKENDS, ctc_greedy

# crnn_fast.ops.lstm stays the module (its functional LSTM is crnn_fast.ops.lstm.lstm): re-exporting a function
# of the same name here would shadow it, and `import crnn_fast.ops.lstm as m` would then yield the function.
from . import lstm_cuda  # registers the fake impl of crnn_fast::lstm_recurrence
from .lstm import LSTM_BACKENDS, lstm_triton_layer

__all__ = ["CTC_GREEDY_BACKENDS", "ctc_greedy", "LSTM_BACKENDS", "lstm_triton_layer"]
