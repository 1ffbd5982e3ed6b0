"""Loads the compiled extension crnn_fast._C, if it was built, and says clearly when it was not."""

from __future__ import annotations

import importlib

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
