"""Persistent CUDA LSTM recurrence: the python face of crnn_fast::lstm_recurrence (fake impl, wrappers, support).

Dimensions: B batch, T time steps, I input features, H hidden size, D directions (1 or 2), L layers.

The compiled op runs the sequential part of one layer -- h_{t-1} @ W_hh^T, the gates, the cell update -- for every
step and both directions in one kernel launch (csrc/cuda/lstm_recurrence_kernel.cu). The input projection of all
steps and directions is one GEMM before it (`x @ [W_ih_fwd; W_ih_rev]^T + b_ih + b_hh`). Inference only: there is
no backward, so the wrappers refuse inputs that would need one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .._checks import check_lengths, check_tensor
from .._ext import HAS_EXTENSION, has_kernel, require_extension

LSTM_CUDA_DTYPES = (torch.float16, torch.bfloat16)
LSTM_CUDA_MAX_HIDDEN = 256  # W_hh lives in registers: H/2 of them per thread
LSTM_CUDA_ALGOS = {"auto": 0, "cluster": 1, "cooperative": 2}  # cluster needs sm_90; cooperative runs on sm_80+


def _op_registered() -> bool:
    """Whether crnn_fast._C defines the lstm_recurrence schema (an extension built before it would not)."""
    return HAS_EXTENSION and hasattr(torch.ops.crnn_fast, "lstm_recurrence")


if _op_registered():

    @torch.library.register_fake("crnn_fast::lstm_recurrence")
    def _lstm_recurrence_fake(x_proj, w_hh, h0, c0, lengths=None, algo=0):
        torch._check(x_proj.dim() == 3 and w_hh.dim() == 3, lambda: "x_proj and w_hh must have 3 dimensions")
        B, T, _ = x_proj.shape
        D, _, H = w_hh.shape
        torch._check(x_proj.shape[2] == D * 4 * H, lambda: f"x_proj must have shape (B, T, {D * 4 * H})")
        return x_proj.new_empty((B, T, D * H)), x_proj.new_empty((D, B, H)), x_proj.new_empty((D, B, H))


def cuda_lstm_supported(input_dtype: torch.dtype, hidden_size: int, device) -> bool:
    """Whether the CUDA recurrence kernel can run an LSTM with this dtype and hidden size on `device`.

    True for float16/bfloat16, 1 <= hidden_size <= 256 (any value, not only multiples of 16), a CUDA device of
    compute capability 8.0+ (thread-block clusters on 9.0+, a cooperative launch before) and an extension built
    with CUDA kernels. Anything else (float32/float64, H > 256, CPU) is for another backend. The kernel is
    inference-only: a caller choosing it automatically must also check that no gradient is needed.
    """
    device = torch.device(device)
    if device.type != "cuda" or input_dtype not in LSTM_CUDA_DTYPES:
        return False
    if isinstance(hidden_size, bool) or not isinstance(hidden_size, int):
        return False
    if not 1 <= hidden_size <= LSTM_CUDA_MAX_HIDDEN:
        return False
    if not _op_registered() or not has_kernel("lstm_recurrence", "cuda") or not torch.cuda.is_available():
        return False
    return torch.cuda.get_device_capability(device)[0] >= 8


def _algo_code(algo: str) -> int:
    if algo not in LSTM_CUDA_ALGOS:
        raise ValueError(f"algo must be one of {', '.join(map(repr, LSTM_CUDA_ALGOS))}, got {algo!r}")
    return LSTM_CUDA_ALGOS[algo]


def _require_op() -> None:
    require_extension("lstm_recurrence")
    if not _op_registered() or not has_kernel("lstm_recurrence", "cuda"):
        raise RuntimeError("crnn_fast._C was built without the CUDA LSTM kernel; rebuild it with a CUDA build of "
                           "torch and nvcc on PATH (CRNN_FAST_BUILD_CUDA=1 pip install --no-build-isolation -e .)")


def _check_inference_only(tensors) -> None:
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        raise RuntimeError("the CUDA LSTM kernel is inference-only (no backward): run it under torch.no_grad() or "
                           "torch.inference_mode(), or use a backend with autograd ('triton', 'torch', 'ref')")


def lstm_layer_cuda(x_proj: torch.Tensor, w_hh: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor,
                    lengths: torch.Tensor | None = None, algo: str = "auto"
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The recurrence of one LSTM layer, all directions at once, on the GPU (inference).

    x_proj: (B, T, D*4H) float16/bfloat16 CUDA tensor: `x @ W_ih^T + b_ih + b_hh` of every step, direction d's
        gates (i, f, g, o) at [d*4H, (d+1)*4H); any strides for B and T.
    w_hh: (D, 4H, H), D = 1 or 2 (index 1 = the reverse direction), 1 <= H <= 256.
    h0, c0: (D, B, H) initial state.
    lengths: optional (B,) integers in [0, T]; rows output 0 and keep their state from t = lengths[b] on, and the
        reverse direction starts at lengths[b] - 1 (PackedSequence semantics). Better on the host: checked there
        without a synchronisation.
    algo: "auto" (clusters on sm_90+, else cooperative), "cluster" or "cooperative".
    Returns out (B, T, D*H), h_n (D, B, H), c_n (D, B, H), in x_proj's dtype.
    """
    code = _algo_code(algo)
    check_tensor(x_proj, "x_proj", dim=3, dtypes=LSTM_CUDA_DTYPES)
    check_tensor(w_hh, "w_hh", dim=3, dtypes=(x_proj.dtype,))
    D, four_h, H = w_hh.shape
    if D not in (1, 2) or four_h != 4 * H or not 1 <= H <= LSTM_CUDA_MAX_HIDDEN:
        raise ValueError(f"w_hh must have shape (D, 4H, H) with D in (1, 2) and 1 <= H <= {LSTM_CUDA_MAX_HIDDEN}, "
                         f"got {tuple(w_hh.shape)}")
    B, T, F = x_proj.shape
    if B == 0:
        raise ValueError("x_proj is an empty batch (B=0); pass at least one sequence")
    if F != D * 4 * H:
        raise ValueError(f"x_proj must have shape (B, T, D*4H) = ({B}, {T}, {D * 4 * H}), got {tuple(x_proj.shape)}")
    for name, state in (("h0", h0), ("c0", c0)):
        check_tensor(state, name, dim=3, dtypes=(x_proj.dtype,))
        if tuple(state.shape) != (D, B, H):
            raise ValueError(f"{name} must have shape (D, B, H) = {(D, B, H)}, got {tuple(state.shape)}")
    if lengths is not None:
        lengths = check_lengths(lengths, B, T)
    _check_inference_only((x_proj, w_hh, h0, c0))
    if x_proj.device.type != "cuda":
        raise ValueError(f"x_proj must be a CUDA tensor, got device {x_proj.device}")
    for name, t in (("w_hh", w_hh), ("h0", h0), ("c0", c0)):
        if t.device != x_proj.device:
            raise ValueError(f"{name} must be on {x_proj.device}, got {t.device}")
    _require_op()
    return torch.ops.crnn_fast.lstm_recurrence(x_proj, w_hh, h0, c0, lengths, code)


def lstm_recurrence_eager(x_proj: torch.Tensor, w_hh: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor,
                          lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """crnn_fast::lstm_recurrence in plain PyTorch, one step at a time, in the arguments' dtype and device.

    The executable statement of what the kernel computes (same arguments and results as `lstm_layer_cuda`);
    the tests use it as the op's reference and to test the multi-layer wrapper without a GPU.
    """
    B, T, _ = x_proj.shape
    D, _, H = w_hh.shape
    lengths = check_lengths(lengths, B, T, device=x_proj.device)
    valid = torch.arange(T, device=x_proj.device)[None, :] < lengths[:, None]  # (B, T)
    outputs, h_n, c_n = [], [], []
    for d in range(D):
        xp = x_proj[..., d * 4 * H : (d + 1) * 4 * H]
        h, c = h0[d], c0[d]
        out = x_proj.new_zeros(B, T, H)
        for t in range(T) if d == 0 else range(T - 1, -1, -1):
            i, f, g, o = (xp[:, t] + h @ w_hh[d].T).chunk(4, dim=-1)
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h_new = torch.sigmoid(o) * torch.tanh(c_new)
            step_valid = valid[:, t, None]
            h = torch.where(step_valid, h_new, h)
            c = torch.where(step_valid, c_new, c)
            out[:, t] = torch.where(step_valid, h_new, torch.zeros_like(h_new))
        outputs.append(out)
        h_n.append(h)
        c_n.append(c)
    return torch.cat(outputs, dim=-1), torch.stack(h_n), torch.stack(c_n)


def _layer_weights(weights: Sequence[torch.Tensor], layer: int, D: int, per_direction: int):
    """One layer's packed weights: W_ih of all directions (D*4H, I), b_ih + b_hh (D*4H,) or None, W_hh (D, 4H, H)."""
    chunk = weights[layer * D * per_direction : (layer + 1) * D * per_direction]
    w_ih = [chunk[d * per_direction] for d in range(D)]
    w_hh = torch.stack([chunk[d * per_direction + 1] for d in range(D)])
    bias = None
    if per_direction == 4:
        bias = torch.cat([chunk[d * 4 + 2] + chunk[d * 4 + 3] for d in range(D)])
    return (torch.cat(w_ih) if D > 1 else w_ih[0]), bias, w_hh


def _forward_layers(weights: Sequence[torch.Tensor], x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor,
                    lengths: torch.Tensor | None, *, num_layers: int, num_directions: int,
                    recurrence: Callable, dropout: float = 0.0, training: bool = False):
    """A multi-layer (bi)LSTM: per layer one input-projection GEMM for every step and direction, then `recurrence`.

    x: (B, T, I) batch-first; h0, c0: (L*D, B, H); weights in torch.nn.LSTM's `_flat_weights` order.
    Returns output (B, T, D*H), h_n, c_n (L*D, B, H).
    """
    D = num_directions
    per_direction = 4 if len(weights) > 2 and weights[2].dim() == 1 else 2  # biases present: lstm_ref's rule
    h_n, c_n = [], []
    for layer in range(num_layers):
        w_ih, bias, w_hh = _layer_weights(weights, layer, D, per_direction)
        if not x.is_contiguous() and x.transpose(0, 1).is_contiguous():
            # Time-major input: project in its own layout (no copy) and hand the kernel the (B, T, .) view.
            x_proj = torch.nn.functional.linear(x.transpose(0, 1), w_ih, bias).transpose(0, 1)
        else:
            x_proj = torch.nn.functional.linear(x, w_ih, bias)  # (B, T, D*4H)
        x, h, c = recurrence(x_proj, w_hh, h0[layer * D : (layer + 1) * D], c0[layer * D : (layer + 1) * D], lengths)
        if training and dropout and layer + 1 < num_layers:  # torch.nn.LSTM: dropout between layers, in training
            x = torch.nn.functional.dropout(x, dropout, training=True)
        h_n.append(h)
        c_n.append(c)
    return x, torch.cat(h_n), torch.cat(c_n)


def lstm_cuda_forward(module_or_weights, input: torch.Tensor, hx=None, lengths=None, *, num_layers: int | None = None,
                      bidirectional: bool | None = None, batch_first: bool | None = None, algo: str = "auto"):
    """A whole multi-layer (bidirectional) LSTM forward on the CUDA recurrence kernel, inference only.

    module_or_weights: a torch.nn.LSTM (or crnn_fast.nn.LSTM; its layers, directions, batch_first, dropout and
        training flag are used), or torch.nn.LSTM's `_flat_weights` list, then num_layers, bidirectional and
        batch_first are given here (defaults 1, False, False).
    input: (T, B, I), or (B, T, I) with batch_first; float16/bfloat16 on a CUDA device; weights likewise.
    hx: optional (h_0, c_0), each (L*D, B, H).
    lengths: optional (B,) valid steps per sequence (PackedSequence semantics: outputs past a sequence's length are
        zero, h_n/c_n are taken at its last valid step). On the host it costs no synchronisation.
    Returns output (T, B, D*H) (or batch-first, contiguous) and (h_n, c_n), each (L*D, B, H) -- nn.LSTM's contract.
    """
    if isinstance(module_or_weights, torch.nn.RNNBase) and module_or_weights.mode == "LSTM":
        module = module_or_weights
        if module.proj_size:
            raise NotImplementedError("the CUDA LSTM kernel does not support proj_size > 0")
        weights = list(module._flat_weights)
        num_layers, bidirectional, batch_first = module.num_layers, module.bidirectional, module.batch_first
        dropout, training = module.dropout, module.training
    else:
        is_weights = isinstance(module_or_weights, Sequence) and all(isinstance(w, torch.Tensor)
                                                                      for w in module_or_weights)
        if not is_weights:
            raise TypeError(f"module_or_weights must be a torch.nn.LSTM or a sequence of tensors (_flat_weights), "
                            f"got {type(module_or_weights).__name__}")
        weights = list(module_or_weights)
        num_layers = 1 if num_layers is None else num_layers
        bidirectional = bool(bidirectional)
        batch_first = bool(batch_first)
        dropout, training = 0.0, False
    code = _algo_code(algo)
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"num_layers must be an int >= 1, got {num_layers!r}")
    D = 2 if bidirectional else 1
    per_direction = 4 if len(weights) > 2 and weights[2].dim() == 1 else 2
    if len(weights) != per_direction * num_layers * D:
        raise ValueError(f"weights must hold {per_direction} tensors per layer and direction ({num_layers} layers x "
                         f"{D} directions), got {len(weights)}")

    check_tensor(input, "input", dim=3, dtypes=LSTM_CUDA_DTYPES)
    H = weights[1].shape[1]
    if not 1 <= H <= LSTM_CUDA_MAX_HIDDEN:
        raise ValueError(f"the CUDA LSTM kernel supports hidden sizes 1..{LSTM_CUDA_MAX_HIDDEN}, got H={H}")
    x = input if batch_first else input.transpose(0, 1)  # (B, T, I), a view
    B, T, I = x.shape
    if B == 0:
        raise ValueError("input is an empty batch (B=0); pass at least one sequence")
    for index, w in enumerate(weights):
        layer, kind = index // (per_direction * D), index % per_direction
        in_features = I if layer == 0 else D * H
        expected = [(4 * H, in_features), (4 * H, H), (4 * H,), (4 * H,)][kind]
        if tuple(w.shape) != expected:
            raise ValueError(f"weights[{index}] must have shape {expected}, got {tuple(w.shape)}")
        if w.dtype != input.dtype or w.device != input.device:
            raise TypeError(f"weights[{index}] must be {input.dtype} on {input.device} like the input, "
                            f"got {w.dtype} on {w.device}")
    if hx is None:
        h0 = c0 = x.new_zeros(num_layers * D, B, H)
    else:
        h0, c0 = hx
        for name, state in (("hx[0]", h0), ("hx[1]", c0)):
            check_tensor(state, name, dim=3, dtypes=(input.dtype,))
            if tuple(state.shape) != (num_layers * D, B, H) or state.device != input.device:
                raise ValueError(f"{name} must have shape {(num_layers * D, B, H)} on {input.device}, "
                                 f"got {tuple(state.shape)} on {state.device}")
    if lengths is not None:
        lengths = check_lengths(lengths, B, T)  # range-checked here, on its host copy when it is on the host
    _check_inference_only([input, *weights, h0, c0])
    if input.device.type != "cuda":
        raise ValueError(f"input must be a CUDA tensor for the CUDA LSTM kernel, got device {input.device}")
    _require_op()
    if lengths is not None and lengths.device.type == "cpu":
        lengths = lengths.pin_memory().to(input.device, non_blocking=True)  # once, for every layer

    def recurrence(x_proj, w_hh, layer_h0, layer_c0, layer_lengths):
        return torch.ops.crnn_fast.lstm_recurrence(x_proj, w_hh, layer_h0, layer_c0, layer_lengths, code)

    out, h_n, c_n = _forward_layers(weights, x, h0, c0, lengths, num_layers=num_layers, num_directions=D,
                                    recurrence=recurrence, dropout=dropout, training=training)
    if not batch_first:
        out = out.transpose(0, 1).contiguous()
    return out, (h_n, c_n)


__all__ = ["LSTM_CUDA_ALGOS", "LSTM_CUDA_DTYPES", "LSTM_CUDA_MAX_HIDDEN", "cuda_lstm_supported", "lstm_cuda_forward",
           "lstm_layer_cuda", "lstm_recurrence_eager"]
