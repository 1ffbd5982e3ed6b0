"""crnn_fast.nn.LSTM: a drop-in torch.nn.LSTM whose recurrence runs on a selectable backend.

Dimensions: B batch, T time steps, I input features, H hidden size, D directions, L layers.
"""

from __future__ import annotations

import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..reference.lstm import lstm_ref

# "torch" is torch.nn.LSTM's own implementation (cuDNN on CUDA); "ref" the eager reference.
LSTM_BACKENDS = ("auto", "torch", "ref")


def check_lstm_backend(backend: str) -> str:
    if backend not in LSTM_BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, LSTM_BACKENDS))}, got {backend!r}")
    return backend


def resolve_lstm_backend(backend: str, input: torch.Tensor) -> str:
    """The concrete backend that `backend` means for this input."""
    check_lstm_backend(backend)
    return "torch" if backend == "auto" else backend


class LSTM(torch.nn.LSTM):
    """torch.nn.LSTM with the same constructor, parameters, state_dict and forward contract, plus:

    backend: "auto" | "torch" | "ref" — where the recurrence runs (see crnn_fast.backends()).
    forward(input, hx=None, lengths=None): `lengths` (B,) marks the valid steps of a padded batch, with the
        semantics of a PackedSequence; the output is zero past each sequence's length.
    proj_size is not supported.
    """

    def __init__(self, *args, backend: str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        if self.proj_size:
            raise NotImplementedError("crnn_fast.nn.LSTM does not support proj_size > 0")
        self.backend = check_lstm_backend(backend)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, backend={self.backend!r}"

    def forward(self, input, hx=None, lengths=None):
        if isinstance(input, PackedSequence):
            if lengths is not None:
                raise ValueError("lengths must be None when input is a PackedSequence (it has its own lengths)")
            padded, packed_lengths = pad_packed_sequence(input, batch_first=self.batch_first)
            output, state = self._forward_padded(padded, hx, packed_lengths)
            output = pack_padded_sequence(output, packed_lengths, batch_first=self.batch_first,
                                          enforce_sorted=False)
            return output, state
        return self._forward_padded(input, hx, lengths)

    def _forward_padded(self, input, hx, lengths):
        if not isinstance(input, torch.Tensor):
            raise TypeError(f"input must be a torch.Tensor or PackedSequence, got {type(input).__name__}")
        if input.dim() not in (2, 3):
            raise ValueError(f"input must have 2 (unbatched) or 3 dimensions, got shape {tuple(input.shape)}")
        unbatched = input.dim() == 2
        if unbatched:
            input = input.unsqueeze(0 if self.batch_first else 1)
            if hx is not None:
                hx = (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
        if lengths is not None:
            lengths = torch.as_tensor(lengths)
        backend = resolve_lstm_backend(self.backend, input)
        if backend == "torch":
            output, (h_n, c_n) = self._forward_torch(input, hx, lengths)
        else:
            output, (h_n, c_n) = self._forward_ref(input, hx, lengths)
        if unbatched:
            output = output.squeeze(0 if self.batch_first else 1)
            h_n, c_n = h_n.squeeze(1), c_n.squeeze(1)
        return output, (h_n, c_n)

    def _check_input(self, input: torch.Tensor, hx) -> None:
        # torch.nn.LSTM's own checks, so errors read exactly as a torch user expects.
        batch = input.size(0 if self.batch_first else 1)
        self.check_input(input, None)
        if hx is not None:
            D = 2 if self.bidirectional else 1
            expected = (self.num_layers * D, batch, self.hidden_size)
            for name, state in (("hx[0] (h_0)", hx[0]), ("hx[1] (c_0)", hx[1])):
                if tuple(state.shape) != expected:
                    raise RuntimeError(f"Expected {name} size {expected}, got {tuple(state.shape)}")

    def _forward_torch(self, input, hx, lengths):
        if lengths is None:
            return super().forward(input, hx)
        total = input.size(1 if self.batch_first else 0)
        packed = pack_padded_sequence(input, lengths.cpu(), batch_first=self.batch_first, enforce_sorted=False)
        output, state = super().forward(packed, hx)
        output, _ = pad_packed_sequence(output, batch_first=self.batch_first, total_length=total)
        return output, state

    def _forward_ref(self, input, hx, lengths):
        self._check_input(input, hx)
        layer_dropout = self.dropout if self.training else 0.0
        if layer_dropout and self.num_layers > 1:
            return self._forward_layers_with_dropout(input, hx, lengths, layer_dropout)
        return lstm_ref(input, self._flat_weights, hx, num_layers=self.num_layers,
                        bidirectional=self.bidirectional, batch_first=self.batch_first, lengths=lengths)

    def _forward_layers_with_dropout(self, input, hx, lengths, p):
        """Layer by layer, with dropout on the outputs of every layer but the last, as torch.nn.LSTM."""
        D = 2 if self.bidirectional else 1
        per_layer = len(self._flat_weights) // self.num_layers
        h_n, c_n = [], []
        x = input
        for layer in range(self.num_layers):
            layer_hx = None if hx is None else (hx[0][layer * D : (layer + 1) * D], hx[1][layer * D : (layer + 1) * D])
            weights = self._flat_weights[layer * per_layer : (layer + 1) * per_layer]
            x, (h, c) = lstm_ref(x, weights, layer_hx, num_layers=1, bidirectional=self.bidirectional,
                                 batch_first=self.batch_first, lengths=lengths)
            if layer + 1 < self.num_layers:
                x = torch.nn.functional.dropout(x, p, training=True)
            h_n.append(h)
            c_n.append(c)
        return x, (torch.cat(h_n), torch.cat(c_n))


def convert_lstm(model: torch.nn.Module, backend: str = "auto") -> torch.nn.Module:
    """Replace every torch.nn.LSTM inside `model` (in place) by crnn_fast.nn.LSTM with the same weights.

    Returns `model`. A model that is itself an nn.LSTM cannot be changed in place: its replacement is returned.
    """
    check_lstm_backend(backend)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(model, torch.nn.LSTM):
        return _converted(model, backend)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.LSTM):
                setattr(parent, name, _converted(child, backend))
    return model


def _converted(lstm: torch.nn.LSTM, backend: str) -> LSTM:
    if isinstance(lstm, LSTM):
        lstm.backend = backend
        return lstm
    if lstm.proj_size:
        raise NotImplementedError("convert_lstm: an nn.LSTM with proj_size > 0 cannot be converted")
    new = LSTM(lstm.input_size, lstm.hidden_size, num_layers=lstm.num_layers, bias=lstm.bias,
               batch_first=lstm.batch_first, dropout=lstm.dropout, bidirectional=lstm.bidirectional,
               backend=backend)
    first = next(lstm.parameters())
    new = new.to(device=first.device, dtype=first.dtype)
    new.load_state_dict(lstm.state_dict())
    new.train(lstm.training)
    return new
