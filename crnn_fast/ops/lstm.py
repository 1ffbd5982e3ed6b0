"""The LSTM as ops: the Triton recurrence registered as torch.library ops (fake impls, autograd), the functional
multi-layer LSTM, and the backend table that crnn_fast.nn.LSTM shares.

Ops (namespace crnn_fast; the shapes are in crnn_fast/triton/lstm.py's glossary):
  lstm_triton_fwd(xproj, w_hh, bias?, h0, c0, lengths, batch_first, save) -> (out, h_n, c_n, gates, hs, cs)
  lstm_triton_bwd(dout?, dh_n?, dc_n?, w_hh, gates, cs, lengths, batch_first) -> (dgates, dh0, dc0)
lstm_triton_fwd is differentiable in xproj, w_hh, bias, h0 and c0 (register_autograd: the fused BPTT kernel,
then dW_hh and db as GEMMs over all steps); gates/hs/cs are what backward needs (empty unless save).

Dimensions: B batch, T time steps, I input features, H hidden size, D directions, L layers.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .._checks import FLOAT_DTYPES, check_lengths, check_tensor
from .._ext import BackendUnavailableError, resolve
from ..reference.lstm import lstm_ref

# ---------------------------------------------------------------------------------------------------------
# Backends
# ---------------------------------------------------------------------------------------------------------

# Where the recurrence runs (see resolve_lstm_backend).
LSTM_BACKENDS = {
    "auto": "on CUDA the first fused kernel validated on a GPU that can run the input (crnn_fast._ext.GPU_VALIDATED, "
            "none yet), else torch.nn.LSTM's implementation",
    "torch": "torch.nn.LSTM's own implementation (cuDNN on CUDA)",
    "triton": "fused Triton recurrence, forward and backward (crnn_fast/triton/lstm.py)",
    "cuda": "persistent CUDA C++ recurrence, inference only, float16/bfloat16, H <= 256 (csrc/cuda/lstm_recurrence*)",
    "ref": "eager reference, one step at a time (crnn_fast.reference.lstm_ref)",
}

# The Triton kernels are imported, and their ops registered, on first use (triton_lstm_module): importing
# triton and registering a triton_op pull in torch._inductor, about a second that `import crnn_fast` need not pay.
HAS_TRITON = importlib.util.find_spec("triton") is not None
TRITON_ERROR: str | None = None if HAS_TRITON else "ModuleNotFoundError: No module named 'triton'"
# Triton reads TRITON_INTERPRET when it compiles a kernel's decorator; the module's own flag is checked on load.
TRITON_INTERPRET = HAS_TRITON and os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")
_triton_lstm = None


def triton_lstm_module():
    """crnn_fast.triton.lstm with crnn_fast::lstm_triton_fwd / _bwd registered (on the first call), or None when
    triton cannot be imported (then HAS_TRITON is False and TRITON_ERROR says why)."""
    global _triton_lstm, HAS_TRITON, TRITON_ERROR, TRITON_INTERPRET
    if _triton_lstm is None and HAS_TRITON:
        try:
            from ..triton import lstm as module
        except ImportError as exc:  # triton is an optional dependency: `auto` then means torch
            HAS_TRITON, TRITON_ERROR, TRITON_INTERPRET = False, f"{type(exc).__name__}: {exc}", False
            return None
        _register_triton_ops(module)
        TRITON_INTERPRET = module.INTERPRET
        _triton_lstm = module
    return _triton_lstm if HAS_TRITON else None


FUNCTIONAL_BACKENDS = ("auto", "triton", "ref")  # what crnn_fast.ops.lstm.lstm runs


def check_lstm_backend(backend: str) -> str:
    if backend not in LSTM_BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, LSTM_BACKENDS))}, got {backend!r}")
    return backend


def _triton_unavailable(input: torch.Tensor, hidden_size: int) -> Exception | None:
    """None when the Triton kernels can run this input, else the error that says why not."""
    module = triton_lstm_module() if HAS_TRITON else None
    if module is None:
        return BackendUnavailableError(f"backend='triton' needs the triton package, which failed to import "
                                       f"({TRITON_ERROR}); install it with `pip install triton` (or `pip install "
                                       "crnn_fast[triton]`)")
    if not (input.is_cuda or (TRITON_INTERPRET and input.device.type == "cpu")):
        return ValueError(f"backend='triton' needs input on a CUDA device, got {input.device} (CPU tensors run "
                          "only in the Triton interpreter: set TRITON_INTERPRET=1 before importing crnn_fast)")
    if input.dtype not in FLOAT_DTYPES:
        return ValueError(f"backend='triton' needs a float input, got {input.dtype}")
    if hidden_size > module.max_hidden_size(input.dtype):
        return ValueError(f"backend='triton' supports hidden_size <= {module.max_hidden_size(input.dtype)} "
                          f"in {input.dtype}, got {hidden_size}: use backend='torch'")
    return None


def _lstm_check(input: torch.Tensor, hidden_size: int | None):
    """resolve()'s check of the LSTM implementations for this input (hidden_size None: no check)."""

    def check(name: str) -> Exception | None:
        if hidden_size is None or name in ("torch", "ref"):
            return None
        if name == "triton":
            return _triton_unavailable(input, hidden_size)
        from .lstm_cuda import cuda_lstm_supported

        if not torch.is_grad_enabled() and cuda_lstm_supported(input.dtype, hidden_size, input.device):
            return None
        return ValueError("backend='cuda' runs float16/bfloat16 inputs with hidden_size <= 256 and no gradient on a "
                          "CUDA device of compute capability 8.0+")

    return check


def resolve_lstm_backend(backend: str, input: torch.Tensor, hidden_size: int | None = None) -> str:
    """The concrete backend that `backend` means for this input (raises when it cannot run it)."""
    if backend == "cuda":  # checked where it runs (crnn_fast.ops.lstm_cuda), whose errors name the argument at fault
        return backend
    return resolve("lstm", backend, input.device, backends=tuple(LSTM_BACKENDS), check=_lstm_check(input, hidden_size),
                   fallback="torch")


# ---------------------------------------------------------------------------------------------------------
# Op registration: torch.library.triton_op (+ wrap_triton inside the launchers), fake impls, autograd
# ---------------------------------------------------------------------------------------------------------


def _setup_context(ctx, inputs, output):
    xproj, w_hh, bias, h0, c0, lengths, batch_first, save = inputs
    _, _, _, gates, hs, cs = output
    ctx.set_materialize_grads(False)  # unused outputs' gradients stay None instead of zero-filled (T, B, 4DH)
    ctx.mark_non_differentiable(gates, hs, cs)
    ctx.save_for_backward(w_hh, gates, hs, cs, lengths)
    ctx.batch_first, ctx.saved = batch_first, save
    ctx.bias_dtype = bias.dtype if bias is not None else None


def _backward(ctx, dout, dh_n, dc_n, *_saved_outputs):
    if not ctx.saved:
        raise RuntimeError("crnn_fast::lstm_triton_fwd was called with save=False, so it kept nothing for "
                           "backward; call it with save=True (crnn_fast.ops.lstm does so when grad is needed)")
    w_hh, gates, hs, cs, lengths = ctx.saved_tensors
    need_x, need_w, need_b, need_h0, need_c0 = ctx.needs_input_grad[:5]
    if dout is None and dh_n is None and dc_n is None:
        return (None,) * 8
    dgates, dh0, dc0 = torch.ops.crnn_fast.lstm_triton_bwd(dout, dh_n, dc_n, w_hh, gates, cs, lengths,
                                                           ctx.batch_first)
    dw_hh, dbias = _triton_lstm.lstm_recurrence_weight_grads(dgates, hs, w_hh.shape[0], ctx.batch_first, need_w,
                                                             need_b, ctx.bias_dtype)
    return (dgates if need_x else None, dw_hh, dbias, dh0 if need_h0 else None, dc0 if need_c0 else None,
            None, None, None)


def _register_triton_ops(module) -> None:
    if module.INTERPRET:
        # Under TRITON_INTERPRET=1, wrap_triton hands back the raw interpreted kernel, which cannot run on fake
        # tensors, so triton_op's traced fake impl fails: register opaque custom ops with explicit fakes. On
        # the GPU the ops are triton_ops, whose kernels torch.compile sees.
        fwd = torch.library.custom_op("crnn_fast::lstm_triton_fwd", module.lstm_recurrence_fwd, mutates_args=())
        fwd.register_fake(module.lstm_recurrence_fwd_fake)
        bwd = torch.library.custom_op("crnn_fast::lstm_triton_bwd", module.lstm_recurrence_bwd, mutates_args=())
        bwd.register_fake(module.lstm_recurrence_bwd_fake)
    else:
        torch.library.triton_op("crnn_fast::lstm_triton_fwd", module.lstm_recurrence_fwd, mutates_args=())
        torch.library.triton_op("crnn_fast::lstm_triton_bwd", module.lstm_recurrence_bwd, mutates_args=())
    torch.library.register_autograd("crnn_fast::lstm_triton_fwd", _backward, setup_context=_setup_context)
    torch.library.register_autograd("crnn_fast::lstm_triton_bwd", _no_double_backward)


def _no_double_backward(ctx, *grads):
    raise NotImplementedError("double backward through crnn_fast's Triton LSTM (crnn_fast::lstm_triton_bwd) is "
                              "not supported; use backend='ref' or 'torch' for higher-order gradients")


# ---------------------------------------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------------------------------------


def lstm_triton_layer(xproj: torch.Tensor, w_hh: torch.Tensor, bias: torch.Tensor | None, h0: torch.Tensor,
                      c0: torch.Tensor, lengths: torch.Tensor, batch_first: bool = False):
    """One layer's recurrence on the Triton kernels, differentiable. Shapes as crnn_fast::lstm_triton_fwd.

    Returns out (T, B, D*H) (or batch-first) and (h_n, c_n), each (D, B, H)."""
    if triton_lstm_module() is None:
        raise RuntimeError(f"lstm_triton_layer needs the triton package, which failed to import ({TRITON_ERROR})")
    save = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (xproj, w_hh, bias, h0, c0))
    out, h_n, c_n, _, _, _ = torch.ops.crnn_fast.lstm_triton_fwd(xproj, w_hh, bias, h0, c0, lengths, batch_first,
                                                                 save)
    return out, (h_n, c_n)


def _check_args(input, weights, hx, num_layers: int, D: int, batch_first: bool):
    """torch.nn.LSTM's argument contract, with errors that name the argument. Returns (has_biases, H)."""
    check_tensor(input, "input", dim=3, dtypes=FLOAT_DTYPES)
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    if not isinstance(weights, Sequence) or not weights or not all(isinstance(w, torch.Tensor) for w in weights):
        raise TypeError("weights must be a non-empty sequence of tensors in torch.nn.LSTM's _flat_weights order")
    per_direction = 4 if len(weights) > 2 and weights[2].dim() == 1 else 2
    if per_direction * num_layers * D != len(weights):
        raise ValueError(f"weights must hold {per_direction} tensors per layer and direction "
                         f"({num_layers} layers x {D} directions), got {len(weights)}")
    if weights[1].dim() != 2:
        raise ValueError(f"weights[1] (weight_hh_l0) must have 2 dimensions, got shape {tuple(weights[1].shape)}")
    H = weights[1].shape[1]
    for index, w in enumerate(weights):
        layer, kind = index // (per_direction * D), index % per_direction
        in_features = input.shape[-1] if layer == 0 else D * H
        expected = [(4 * H, in_features), (4 * H, H), (4 * H,), (4 * H,)][kind]
        if tuple(w.shape) != expected:
            what = "input.size(-1)" if layer == 0 and kind == 0 else "the layout"
            raise ValueError(f"weights[{index}] must have shape {expected} (from hidden size {H} and {what}), "
                             f"got {tuple(w.shape)}")
        if w.dtype != input.dtype:
            raise TypeError(f"weights[{index}] has dtype {w.dtype} but input has {input.dtype}: they must match")
        if w.device != input.device:
            raise ValueError(f"weights[{index}] is on {w.device} but input is on {input.device}")
    B = input.shape[0 if batch_first else 1]
    if hx is not None:
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError("hx must be a tuple (h_0, c_0)")
        for name, state in (("hx[0] (h_0)", hx[0]), ("hx[1] (c_0)", hx[1])):
            check_tensor(state, name, dim=3)
            if tuple(state.shape) != (num_layers * D, B, H):
                raise ValueError(f"{name} must have shape {(num_layers * D, B, H)}, got {tuple(state.shape)}")
            if state.dtype != input.dtype:
                raise TypeError(f"{name} has dtype {state.dtype} but input has {input.dtype}: they must match")
            if state.device != input.device:
                raise ValueError(f"{name} is on {state.device} but input is on {input.device}")
    return per_direction == 4, H


def lstm(input: torch.Tensor, weights: Sequence[torch.Tensor], hx=None, *, num_layers: int = 1,
         bidirectional: bool = False, batch_first: bool = False, lengths=None, dropout: float = 0.0,
         training: bool = False, backend: str = "auto"):
    """Multi-layer (bidirectional) LSTM with torch.nn.LSTM's semantics, on a chosen backend.

    input: (T, B, I), or (B, T, I) with batch_first; float16, bfloat16, float32 or float64.
    weights: torch.nn.LSTM's `_flat_weights` order (w_ih, w_hh[, b_ih, b_hh] per layer and direction).
    hx: optional (h_0, c_0), each (L*D, B, H), in input's dtype.
    lengths: optional (B,) valid steps per sequence, PackedSequence semantics (steps past a sequence's
        length output zeros and keep the state).
    dropout: dropout probability on the outputs of every layer but the last, applied when training.
    backend: "auto" (on CUDA a fused kernel once validated on a GPU, crnn_fast._ext.GPU_VALIDATED; else the
        reference), "triton" or "ref"; for torch.nn.LSTM's own implementation use crnn_fast.nn.LSTM(backend="torch").
    Under autocast the computation runs in the autocast dtype, as torch.nn.LSTM does.
    Returns output (T, B, D*H) (or batch-first) and (h_n, c_n), each (L*D, B, H).
    """
    if backend == "torch":
        raise ValueError("crnn_fast.ops.lstm runs backend 'auto', 'triton' or 'ref'; for torch.nn.LSTM's own "
                         "implementation use crnn_fast.nn.LSTM(backend='torch')")
    D = 2 if bidirectional else 1
    if isinstance(input, torch.Tensor) and torch.is_autocast_enabled(input.device.type):
        dtype = torch.get_autocast_dtype(input.device.type)
        with torch.autocast(input.device.type, enabled=False):
            input = input.to(dtype)
            weights = [w.to(dtype) for w in weights]
            hx = None if hx is None else tuple(s.to(dtype) for s in hx)
            return lstm(input, weights, hx, num_layers=num_layers, bidirectional=bidirectional,
                        batch_first=batch_first, lengths=lengths, dropout=dropout, training=training, backend=backend)
    has_biases, H = _check_args(input, weights, hx, num_layers, D, batch_first)
    x = input
    B, T = (x.shape[0], x.shape[1]) if batch_first else (x.shape[1], x.shape[0])
    if B == 0 or T == 0:
        raise ValueError(f"input must hold at least one sequence and one step, got shape {tuple(x.shape)}")
    lengths = check_lengths(lengths, B, T, device=x.device)
    backend = resolve("lstm", backend, x.device, backends=FUNCTIONAL_BACKENDS, check=_lstm_check(x, H), fallback="ref")
    p = dropout if training else 0.0
    per = 4 if has_biases else 2
    if backend == "ref" and not (p and num_layers > 1):
        return lstm_ref(x, weights, hx, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first,
                        lengths=lengths)
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    h_n, c_n = [], []
    for layer in range(num_layers):
        w = weights[layer * D * per : (layer + 1) * D * per]
        if hx is None:
            h0 = c0 = x.new_zeros(D, B, H)
        else:
            h0, c0 = hx[0][layer * D : (layer + 1) * D], hx[1][layer * D : (layer + 1) * D]
        if backend == "ref":
            x, (h, c) = lstm_ref(x, w, (h0, c0), num_layers=1, bidirectional=bidirectional, batch_first=batch_first,
                                 lengths=lengths)
        else:
            # Input projection of every step and both directions: one GEMM (its autograd gives dx, dW_ih).
            w_ih = torch.cat([w[d * per] for d in range(D)]) if D > 1 else w[0]
            xproj = F.linear(x, w_ih)
            w_hh = torch.stack([w[d * per + 1] for d in range(D)])
            bias = torch.stack([w[d * per + 2].to(acc) + w[d * per + 3].to(acc) for d in range(D)]) if has_biases \
                else None
            x, (h, c) = lstm_triton_layer(xproj, w_hh, bias, h0.contiguous(), c0.contiguous(), lengths, batch_first)
        if p and layer + 1 < num_layers:
            x = F.dropout(x, p, training=True)
        h_n.append(h)
        c_n.append(c)
    return x, (torch.cat(h_n), torch.cat(c_n))
