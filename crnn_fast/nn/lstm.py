"""crnn_fast.nn.LSTM: a drop-in torch.nn.LSTM whose recurrence runs on a selectable backend.

Dimensions: B batch, T time steps, I input features, H hidden size, D directions, L layers.
"""

from __future__ import annotations

import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .._checks import check_lengths
from ..ops.lstm import LSTM_BACKENDS, check_lstm_backend, resolve_lstm_backend
from ..ops.lstm import lstm as _lstm_functional
from ..ops.lstm_cuda import lstm_cuda_forward

__all__ = ["LSTM", "LSTM_BACKENDS", "check_lstm_backend", "convert_lstm", "resolve_lstm_backend"]


class LSTM(torch.nn.RNNBase):
    """torch.nn.LSTM with the same constructor, parameters, state_dict and forward contract, plus:

    backend: "auto" | "torch" | "triton" | "cuda" | "ref" — where the recurrence runs
        (crnn_fast.ops.lstm.LSTM_BACKENDS). "triton" is the fused Triton forward and backward; "cuda" the
        persistent CUDA C++ kernel, inference only (no grad), float16/bfloat16, H <= 256. "auto" is
        torch.nn.LSTM's own implementation until the fused kernels have been validated on a GPU.
    forward(input, hx=None, lengths=None): `lengths` (B,) marks the valid steps of a padded batch, with the
        semantics of a PackedSequence; the output is zero past each sequence's length.
    proj_size is not supported.

    Like torch.nn.LSTM it derives from torch.nn.RNNBase (mode "LSTM"), but not from torch.nn.LSTM itself:
    torch.compile graph-breaks on every nn.RNN/GRU/LSTM instance (unless torch._dynamo.config.allow_rnn),
    so a subclass could never compile with fullgraph=True. isinstance(m, torch.nn.RNNBase) holds, and
    isinstance(m, torch.nn.LSTM) does not.
    """

    # torch.nn.LSTM's own methods, so that backend "torch" runs exactly torch.nn.LSTM.forward on this module.
    get_expected_cell_size = torch.nn.LSTM.get_expected_cell_size
    check_forward_args = torch.nn.LSTM.check_forward_args
    permute_hidden = torch.nn.LSTM.permute_hidden
    _torch_forward = torch.nn.LSTM.forward

    def __init__(self, *args, backend: str = "auto", **kwargs):
        super().__init__("LSTM", *args, **kwargs)
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
        # The same checks, and messages, whichever backend runs: torch's own would index past T, truncate float
        # lengths or fail inside mkldnn on an hx of another dtype.
        self._check_input(input, hx)
        if lengths is not None:
            B, T = input.shape[:2] if self.batch_first else input.shape[1::-1]
            lengths = check_lengths(lengths, B, T)
        backend = resolve_lstm_backend(self.backend, input, self.hidden_size)
        if backend == "torch":
            output, (h_n, c_n) = self._forward_torch(input, hx, lengths)
        elif backend == "cuda":
            output, (h_n, c_n) = lstm_cuda_forward(self, input, hx, lengths)
        else:
            output, (h_n, c_n) = self._forward_kernels(input, hx, lengths, backend)
        if unbatched:
            output = output.squeeze(0 if self.batch_first else 1)
            h_n, c_n = h_n.squeeze(1), c_n.squeeze(1)
        return output, (h_n, c_n)

    def _check_input(self, input: torch.Tensor, hx) -> None:
        # torch.nn.LSTM's own checks, so errors read exactly as a torch user expects.
        self.check_input(input, None)
        batch = input.size(0 if self.batch_first else 1)
        if hx is not None:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError("hx must be a tuple (h_0, c_0)")
            D = 2 if self.bidirectional else 1
            expected = (self.num_layers * D, batch, self.hidden_size)
            for name, state in (("hx[0] (h_0)", hx[0]), ("hx[1] (c_0)", hx[1])):
                if not isinstance(state, torch.Tensor):
                    raise TypeError(f"{name} must be a torch.Tensor, got {type(state).__name__}")
                if tuple(state.shape) != expected:
                    raise RuntimeError(f"Expected {name} size {expected}, got {tuple(state.shape)}")
                if state.dtype != input.dtype and not torch.is_autocast_enabled(input.device.type):
                    raise TypeError(f"{name} has dtype {state.dtype} but input has {input.dtype}: they must match")

    def _forward_torch(self, input, hx, lengths):
        if lengths is None:
            return self._torch_forward(input, hx)
        total = input.size(1 if self.batch_first else 0)
        lengths = lengths.cpu()
        # pack_padded_sequence refuses empty sequences: those run one step, which is then undone (zero output,
        # the initial state), as the other backends define length 0.
        empty = lengths == 0
        packed = pack_padded_sequence(input, lengths.clamp(min=1), batch_first=self.batch_first, enforce_sorted=False)
        output, (h_n, c_n) = self._torch_forward(packed, hx)
        output, _ = pad_packed_sequence(output, batch_first=self.batch_first, total_length=total)
        if empty.any():
            empty = empty.to(output.device)
            output = torch.where(empty[:, None, None] if self.batch_first else empty[None, :, None], 0.0, output)
            h0, c0 = hx if hx is not None else (torch.zeros_like(h_n), torch.zeros_like(c_n))
            h_n = torch.where(empty[None, :, None], h0.to(h_n.dtype), h_n)
            c_n = torch.where(empty[None, :, None], c0.to(c_n.dtype), c_n)
        return output, (h_n, c_n)

    def _forward_kernels(self, input, hx, lengths, backend):
        return _lstm_functional(input, self._flat_weights, hx, num_layers=self.num_layers,
                                bidirectional=self.bidirectional, batch_first=self.batch_first, lengths=lengths,
                                dropout=self.dropout, training=self.training, backend=backend)


def convert_lstm(model: torch.nn.Module, backend: str = "auto") -> torch.nn.Module:
    """Replace every torch.nn.LSTM inside `model` (in place) by crnn_fast.nn.LSTM (and set the backend of the
    crnn_fast.nn.LSTMs already there).

    The replacement holds the very Parameter objects of the LSTM it replaces (so requires_grad, tensor hooks,
    tied weights and an optimizer built on the model carry over), its training mode and its module hooks; an
    LSTM shared by several parents stays one module. Every LSTM is checked before any is replaced: a model
    with an unsupported one (proj_size > 0) raises and is left as it was.
    Returns `model`. A model that is itself an nn.LSTM cannot be changed in place: its replacement is returned.
    """
    check_lstm_backend(backend)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(model, (torch.nn.LSTM, LSTM)):
        _check_convertible(model, "model")
        return _converted(model, backend)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.LSTM):
            _check_convertible(module, f"model.{name}")
    replacements: dict[int, LSTM] = {}
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, (torch.nn.LSTM, LSTM)):
                if id(child) not in replacements:
                    replacements[id(child)] = _converted(child, backend)
                setattr(parent, name, replacements[id(child)])
    return model


def _check_convertible(lstm: torch.nn.Module, where: str) -> None:
    if isinstance(lstm, torch.nn.LSTM) and lstm.proj_size:
        raise NotImplementedError(f"convert_lstm: {where} is an nn.LSTM with proj_size={lstm.proj_size}, which "
                                  "crnn_fast.nn.LSTM does not support; nothing was converted")


# Module hooks carried over as the same dicts, so that handles returned by register_*_hook keep working.
_HOOK_DICTS = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks",
               "_forward_pre_hooks_with_kwargs", "_backward_hooks", "_backward_pre_hooks", "_state_dict_hooks",
               "_state_dict_pre_hooks", "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks")


def _converted(lstm: torch.nn.LSTM, backend: str) -> LSTM:
    if isinstance(lstm, LSTM):
        lstm.backend = backend
        return lstm
    with torch.device("meta"):  # its own parameters are replaced by the old module's right away
        new = LSTM(lstm.input_size, lstm.hidden_size, num_layers=lstm.num_layers, bias=lstm.bias,
                   batch_first=lstm.batch_first, dropout=lstm.dropout, bidirectional=lstm.bidirectional,
                   backend=backend)
    for name in new._flat_weights_names:
        setattr(new, name, getattr(lstm, name))
    new._init_flat_weights()
    for hooks in _HOOK_DICTS:
        if hasattr(lstm, hooks):
            setattr(new, hooks, getattr(lstm, hooks))
    if getattr(lstm, "_is_full_backward_hook", None) is not None:
        new._is_full_backward_hook = lstm._is_full_backward_hook
    new.train(lstm.training)
    return new
