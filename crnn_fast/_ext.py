"""Loads the compiled extension crnn_fast._C, if it was built, and says clearly when it was not."""

from __future__ import annotations

import importlib
import warnings

import torch

try:
    importlib.import_module("crnn_fast._C")  # registers the crnn_fast:: ops with the dispatcher
    EXTENSION_ERROR: str | None = None
except ImportError as exc:  # the package still imports: references and Triton kernels need no build
    EXTENSION_ERROR = f"{type(exc).__name__}: {exc}"

HAS_EXTENSION = EXTENSION_ERROR is None

BUILD_HINT = (
    "build it from a source checkout with `pip install --no-build-isolation -e .` "
    "(a C++ compiler is needed; nvcc and a CUDA build of torch add the CUDA kernels)"
)


def require_extension(op: str) -> None:
    """Raise a RuntimeError that says how to build the extension when the compiled op `op` is missing."""
    if not HAS_EXTENSION:
        raise RuntimeError(f"crnn_fast.{op} needs the compiled extension crnn_fast._C, which failed to load "
                           f"({EXTENSION_ERROR}); {BUILD_HINT}")


def has_kernel(op: str, device_type: str) -> bool:
    """Whether crnn_fast::<op> has a compiled kernel registered for `device_type` ("cpu" or "cuda")."""
    if not HAS_EXTENSION:
        return False
    key = {"cpu": "CPU", "cuda": "CUDA"}[device_type]
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"crnn_fast::{op}", key)


# CUDA kernels that have run and passed their `pytest -m cuda` tests on a GPU. backend="auto" uses a compiled CUDA
# kernel only when it is listed here (an unvalidated kernel must not become the default; it stays opt-in with
# backend="cuda"); otherwise auto decodes CUDA tensors with the CPU kernel after one copy to the host.
GPU_VALIDATED: frozenset[str] = frozenset()


def auto_kernel(op: str, device_type: str) -> bool:
    """Whether backend="auto" runs the compiled kernel of crnn_fast::<op> for tensors on `device_type`."""
    return has_kernel(op, device_type) and (device_type == "cpu" or op in GPU_VALIDATED)


DECODING_BACKENDS = ("auto", "cpu", "cuda", "ref")
_warned_reference: set[str] = set()


def resolve_decoding_backend(op: str, backend: str, device: torch.device) -> str:
    """The kernel of crnn_fast::<op> that runs for tensors on `device`: "cpu", "cuda" or "ref".

    "auto": the device's compiled kernel (for CUDA only once validated, see GPU_VALIDATED), else the CPU kernel
    (the caller copies CUDA tensors to the host), else the reference with a one-time warning. "cpu" runs the CPU
    kernel whatever the device (with a copy); "cuda" needs CUDA tensors. A missing kernel raises, saying how to
    build it."""
    if backend not in DECODING_BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, DECODING_BACKENDS))}, got {backend!r}")
    if backend == "ref":
        return backend
    if backend == "auto":
        if auto_kernel(op, device.type):
            return device.type
        if has_kernel(op, "cpu"):
            return "cpu"
        if op not in _warned_reference:
            warnings.warn(f"crnn_fast._C is not built, so crnn_fast.{op} runs the slow eager reference; {BUILD_HINT}",
                          RuntimeWarning, stacklevel=3)
            _warned_reference.add(op)
        return "ref"
    if backend == "cuda" and device.type != "cuda":
        raise ValueError(f"backend='cuda' needs log_probs on a CUDA device, got {device}")
    require_extension(op)
    if not has_kernel(op, backend):
        raise RuntimeError(f"crnn_fast._C was built without {backend.upper()} kernels; rebuild it with a CUDA build "
                           f"of torch and nvcc on PATH (CRNN_FAST_BUILD_CUDA=1)")
    return backend
