"""Eager reference of the LSTM: multi-layer, bidirectional, variable lengths, in torch.nn.LSTM's layout.

Dimensions: B batch, T time steps, I input features, H hidden size, D directions (1 or 2), L layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .._checks import FLOAT_DTYPES, check_lengths, check_tensor


def lstm_ref(
    input: torch.Tensor,
    weights: Sequence[torch.Tensor],
    hx: tuple[torch.Tensor, torch.Tensor] | None = None,
    *,
    num_layers: int = 1,
    bidirectional: bool = False,
    batch_first: bool = False,
    lengths: torch.Tensor | None = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """LSTM forward with torch.nn.LSTM's semantics, one step at a time. Differentiable by autograd.

    input: (T, B, I), or (B, T, I) with batch_first.
    weights: torch.nn.LSTM's `_flat_weights` order: for each layer, for each direction,
        w_ih (4H, I_layer), w_hh (4H, H), and optionally b_ih (4H,), b_hh (4H,). Gates in order i, f, g, o.
    hx: optional (h_0, c_0), each (L*D, B, H).
    lengths: optional (B,) valid steps per sequence. As with a PackedSequence, steps t >= lengths[b] output
        zeros and leave the state unchanged, so the reverse direction starts at t = lengths[b] - 1 and
        h_n/c_n hold each sequence's state at its own last valid step.
    Computes in the input's dtype: upcast the arguments for a high-precision reference.
    Returns output (T, B, D*H) (or batch-first) and (h_n, c_n), each (L*D, B, H).
    """
    check_tensor(input, "input", dim=3, dtypes=FLOAT_DTYPES)
    x = input if batch_first else input.transpose(0, 1)  # (B, T, I)
    B, T, _ = x.shape
    D = 2 if bidirectional else 1
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    # Biases present iff the third tensor is a vector: (w_ih, w_hh, b_ih, b_hh) rather than (w_ih, w_hh, w_ih, ...).
    per_direction = 4 if len(weights) > 2 and weights[2].dim() == 1 else 2
    if per_direction * num_layers * D != len(weights):
        raise ValueError(f"weights must hold {per_direction} tensors per layer and direction "
                         f"({num_layers} layers x {D} directions), got {len(weights)}")
    H = weights[1].shape[1]
    for index, w in enumerate(weights):
        layer, kind = index // (per_direction * D), index % per_direction
        in_features = x.shape[-1] if layer == 0 else D * H
        expected = [(4 * H, in_features), (4 * H, H), (4 * H,), (4 * H,)][kind]
        if tuple(w.shape) != expected:
            raise ValueError(f"weights[{index}] must have shape {expected}, got {tuple(w.shape)}")
    if hx is None:
        zeros = x.new_zeros(num_layers * D, B, H)
        h0, c0 = zeros, zeros
    else:
        h0, c0 = hx
        for name, state in (("hx[0]", h0), ("hx[1]", c0)):
            check_tensor(state, name, dim=3)
            if tuple(state.shape) != (num_layers * D, B, H):
                raise ValueError(f"{name} must have shape {(num_layers * D, B, H)}, got {tuple(state.shape)}")
    lengths = check_lengths(lengths, B, T, device=x.device)
    valid = torch.arange(T, device=x.device)[None, :] < lengths[:, None]  # (B, T)

    layer_input = x
    h_n, c_n = [], []
    for layer in range(num_layers):
        direction_outputs = []
        for direction in range(D):
            index = layer * D + direction
            w_ih, w_hh, *biases = weights[index * per_direction : (index + 1) * per_direction]
            b_ih, b_hh = biases if biases else (None, None)
            # The input projection of every step is one GEMM; only h @ W_hh^T is sequential.
            x_proj = layer_input @ w_ih.T  # (B, T, 4H)
            if b_ih is not None:
                x_proj = x_proj + b_ih
            h, c = h0[index], c0[index]
            outputs: list[torch.Tensor] = [None] * T  # type: ignore[list-item]
            for t in range(T) if direction == 0 else range(T - 1, -1, -1):
                gates = x_proj[:, t] + h @ w_hh.T
                if b_hh is not None:
                    gates = gates + b_hh
                i, f, g, o = gates.chunk(4, dim=-1)
                c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h_new = torch.sigmoid(o) * torch.tanh(c_new)
                step_valid = valid[:, t, None]
                h = torch.where(step_valid, h_new, h)
                c = torch.where(step_valid, c_new, c)
                outputs[t] = torch.where(step_valid, h_new, torch.zeros_like(h_new))
            direction_outputs.append(torch.stack(outputs, dim=1))
            h_n.append(h)
            c_n.append(c)
        layer_input = torch.cat(direction_outputs, dim=-1)  # (B, T, D*H)
    output = layer_input if batch_first else layer_input.transpose(0, 1)
    return output, (torch.stack(h_n), torch.stack(c_n))
