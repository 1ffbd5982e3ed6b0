"""nn.Module wrappers of the crnn_fast kernels."""

from .lstm import LSTM, convert_lstm

__all__ = ["LSTM", "convert_lstm"]
