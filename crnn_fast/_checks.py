"""Input checks shared by the public functions: each error names the argument and what was expected."""

from __future__ import annotations

import math
import numbers
import operator

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_tensor(x, name: str, *, dim: int | None = None, dtypes=None) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if dim is not None and x.dim() != dim:
        raise ValueError(f"{name} must have {dim} dimensions, got shape {tuple(x.shape)}")
    if dtypes is not None and x.dtype not in dtypes:
        allowed = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"{name} must have dtype {allowed}; got {str(x.dtype).replace('torch.', '')}")
    return x


def check_log_probs(log_probs, name: str = "log_probs") -> torch.Tensor:
    """log_probs: (B, T, C) floating, B > 0, C > 0, no NaN or +inf (-inf is probability zero and allowed)."""
    check_tensor(log_probs, name, dim=3, dtypes=FLOAT_DTYPES)
    B, _, C = log_probs.shape
    if B == 0:
        raise ValueError(f"{name} is an empty batch (B=0); pass at least one sequence")
    if C == 0:
        raise ValueError(f"{name} has no classes (C=0)")
    if torch.isnan(log_probs).any() or torch.isposinf(log_probs).any():
        raise ValueError(f"{name} must not contain NaN or +inf")
    return log_probs


# How the compiled decoders' row scans word bad values (csrc/cpu/ctc_*.cpp, csrc/cuda/ctc_*_cuda.cpp): their python
# faces re-raise these as the ValueError every other entry point raises.
NON_FINITE_MESSAGE = "log_probs must not contain NaN or +inf"
IMPOSSIBLE_FRAME_MESSAGE = "log_probs must give some class a non-zero probability at every frame"


def kernel_input_error(exc: RuntimeError) -> ValueError | None:
    """The ValueError for a compiled decoder's complaint about the values of log_probs, else None."""
    first = str(exc).splitlines()[0] if str(exc) else ""
    if first.startswith((NON_FINITE_MESSAGE, IMPOSSIBLE_FRAME_MESSAGE)):
        return ValueError(first)
    return None


def check_frames_possible(log_probs: torch.Tensor, lengths: torch.Tensor, name: str = "log_probs") -> None:
    """Every valid frame (t < lengths[b]) gives some class a non-zero probability: a frame that is -inf for every
    class is no distribution, and would make every text impossible (beam search) or an impossible path (greedy).

    log_probs: (B, T, C); lengths: (B,) int64 (any device). Raises ValueError naming the first such frame."""
    B, T, _ = log_probs.shape
    if T == 0 or log_probs.shape[2] == 0:
        return
    empty = log_probs.detach().amax(dim=-1) == float("-inf")  # (B, T)
    empty &= torch.arange(T, device=log_probs.device) < lengths.to(log_probs.device).unsqueeze(1)
    if bool(empty.any()):
        b, t = (int(v) for v in torch.nonzero(empty)[0])
        raise ValueError(f"{IMPOSSIBLE_FRAME_MESSAGE}: frame {t} of sequence {b} is -inf for every class")


def check_lengths(lengths, batch: int, max_len: int, name: str = "lengths",
                  device: torch.device | None = None) -> torch.Tensor:
    """lengths: (B,) integer with 0 <= lengths <= max_len; None means every sequence is max_len long.

    Returns an int64 tensor on `device` (default: where `lengths` is)."""
    if lengths is None:
        return torch.full((batch,), max_len, dtype=torch.int64, device=device)
    if not isinstance(lengths, torch.Tensor):
        try:
            lengths = torch.as_tensor(lengths)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"{name} must be a 1-D integer tensor or sequence, got {type(lengths).__name__}") from exc
    if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
        raise TypeError(f"{name} must be integers, got dtype {str(lengths.dtype).replace('torch.', '')}")
    if lengths.dim() != 1 or lengths.shape[0] != batch:
        raise ValueError(f"{name} must have shape ({batch},), got {tuple(lengths.shape)}")
    if batch and (int(lengths.min()) < 0 or int(lengths.max()) > max_len):
        raise ValueError(f"{name} must be in [0, {max_len}], got min {int(lengths.min())}, max {int(lengths.max())}")
    return lengths.to(dtype=torch.int64, device=device if device is not None else lengths.device)


def check_blank(blank, num_classes: int, name: str = "blank") -> int:
    if isinstance(blank, bool) or not isinstance(blank, int):
        raise TypeError(f"{name} must be an int, got {type(blank).__name__}")
    if not 0 <= blank < num_classes:
        raise ValueError(f"{name} must be in [0, {num_classes}), got {blank}")
    return blank


def is_positive_int(value) -> bool:
    """An int >= 1 (a bool is not an int here)."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def check_positive_int(value, name: str) -> int:
    if not is_positive_int(value):
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def resolve_device(device: str | torch.device | None) -> torch.device:
    """"auto"/None (CUDA if available, else the CPU), or a CPU / CUDA device; anything else is a ValueError."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a str or torch.device, got {type(device).__name__}")
    try:
        device = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {str(device)!r} (crnn_fast runs on "
                         "the CPU or a CUDA GPU)")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} was requested but CUDA is not available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(device)!r} does not exist: {torch.cuda.device_count()} CUDA device(s) here")
    return device


def as_token_seq(seq, name: str) -> tuple[int, ...]:
    """A sequence of token ids (list, tuple, 1-D integer tensor) as a tuple of Python ints."""
    if isinstance(seq, torch.Tensor):
        if seq.dim() != 1:
            raise ValueError(f"{name} must be 1-D, got shape {tuple(seq.shape)}")
        if seq.dtype.is_floating_point or seq.dtype.is_complex or seq.dtype == torch.bool:
            raise TypeError(f"{name} must hold integers, got dtype {str(seq.dtype).replace('torch.', '')}")
        return tuple(int(v) for v in seq.tolist())
    if isinstance(seq, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of int token ids, got {type(seq).__name__}")
    try:
        items = list(seq)
    except TypeError as exc:
        raise TypeError(f"{name} must be a sequence of int token ids, got {type(seq).__name__}") from exc
    for v in items:
        if not is_int(v):
            raise TypeError(f"{name} must hold int token ids, got {type(v).__name__}")
    return tuple(operator.index(v) for v in items)


def is_int(x) -> bool:
    if isinstance(x, bool):
        return False
    try:
        operator.index(x)
    except TypeError:
        return False
    return True


def check_int(x, name: str, *, low: int | None = None) -> int:
    """An int (a bool is not one here), at least `low` when given."""
    if not is_int(x):
        raise TypeError(f"{name} must be an int, got {type(x).__name__}")
    x = operator.index(x)
    if low is not None and x < low:
        raise ValueError(f"{name} must be >= {low}, got {x}")
    return x


def is_real(x) -> bool:
    """A real number: a Python or numpy real, or a one-element real tensor (not a bool)."""
    if isinstance(x, bool):
        return False
    if isinstance(x, torch.Tensor):
        return x.numel() == 1 and not x.dtype.is_complex
    return isinstance(x, numbers.Real)


def check_real(x, name: str, *, finite: bool = True) -> float:
    """A real number as a float: never NaN, and finite unless finite=False."""
    if not is_real(x):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}")
    x = float(x)
    if math.isnan(x) or (finite and math.isinf(x)):
        raise ValueError(f"{name} must be {'finite' if finite else 'a number (not NaN)'}, got {x}")
    return x
