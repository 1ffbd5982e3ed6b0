"""Loads the compiled extension crnn_fast._C (if it was built), and chooses every op's backend: resolve() is the
one place that decides what backend="auto" means and the only reader of the GPU validation gate (GPU_VALIDATED)."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Sequence

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


class BackendUnavailableError(RuntimeError):
    """A backend named explicitly cannot run here because something is not installed or not built; the message
    says what to install or rebuild."""


def extension_missing(op: str) -> BackendUnavailableError | None:
    """None when crnn_fast._C loaded, else the error that says the compiled op `op` needs it and how to build it."""
    if HAS_EXTENSION:
        return None
    return BackendUnavailableError(f"crnn_fast.{op} needs the compiled extension crnn_fast._C, which failed to load "
                                   f"({EXTENSION_ERROR}); {BUILD_HINT}")


def require_extension(op: str) -> None:
    """Raise extension_missing(op)'s error when the extension did not load."""
    error = extension_missing(op)
    if error is not None:
        raise error


def kernel_missing(op: str, device_type: str) -> BackendUnavailableError | None:
    """None when crnn_fast._C has a `device_type` kernel of crnn_fast::<op>, else the error that says how to get one."""
    if has_kernel(op, device_type):
        return None
    return BackendUnavailableError(f"crnn_fast._C was built without {device_type.upper()} kernels; rebuild it with a "
                                   "CUDA build of torch and nvcc on PATH (CRNN_FAST_BUILD_CUDA=1)")


def has_kernel(op: str, device_type: str) -> bool:
    """Whether crnn_fast::<op> has a compiled kernel registered for `device_type` ("cpu" or "cuda")."""
    if not HAS_EXTENSION:
        return False
    key = {"cpu": "CPU", "cuda": "CUDA"}[device_type]
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"crnn_fast::{op}", key)


# The validation gate. Per op, its GPU implementations that have run and passed their `pytest -m cuda` tests on a
# GPU, in the order backend="auto" prefers them, e.g. {"ctc_greedy": ("cuda",), "lstm": ("triton", "cuda"),
# "resize_normalize_pad": ("triton",)}. "auto" never picks an implementation that is not listed (an unvalidated
# kernel must not become the default; it stays opt-in by name). Empty: no GPU has run this code's kernels yet.
GPU_VALIDATED: dict[str, tuple[str, ...]] = {}

Check = Callable[[str], "Exception | None"]


def resolve(op: str, backend: str, device: torch.device, *, backends: Sequence[str], check: Check,
            fallback: str | Callable[[], str]) -> str:
    """The implementation of `op` that runs for tensors on `device`, from the backend the caller asked for.

    backends: the names `op` accepts, "auto" among them (anything else is a ValueError naming them).
    check(name): None when implementation `name` can run this input, else the exception that says why not
        (BackendUnavailableError when something is not installed or built, ValueError for the input).
    "auto" on a CUDA device: the first of op's validated GPU implementations (GPU_VALIDATED) that `backends`
    holds and that can run the input; otherwise, and on every other device, `fallback` (a name, or a function
    returning one). A name is checked and returned, or its check's exception raised.
    """
    if backend not in backends:
        raise ValueError(f"backend must be one of {', '.join(map(repr, backends))}, got {backend!r}")
    if backend == "auto":
        if device.type == "cuda":
            for name in GPU_VALIDATED.get(op, ()):
                if name in backends and check(name) is None:
                    return name
        return fallback() if callable(fallback) else fallback
    error = check(backend)
    if error is not None:
        raise error
    return backend


DECODING_BACKENDS = ("auto", "cpu", "cuda", "ref")
_warned_reference: set[str] = set()


def resolve_decoding_backend(op: str, backend: str, device: torch.device) -> str:
    """The kernel of crnn_fast::<op> that runs for tensors on `device`: "cpu", "cuda" or "ref".

    "auto": the device's compiled kernel (for CUDA only once validated, see GPU_VALIDATED), else the CPU kernel
    (the caller copies CUDA tensors to the host), else the reference with a one-time warning. "cpu" runs the CPU
    kernel whatever the device (with a copy); "cuda" needs CUDA tensors. A missing kernel raises, saying how to
    build it."""

    def check(name: str) -> Exception | None:
        if name == "ref":
            return None
        if name == "cuda" and device.type != "cuda":
            return ValueError(f"backend='cuda' needs log_probs on a CUDA device, got {device}")
        return extension_missing(op) or kernel_missing(op, name)

    def fallback() -> str:
        if has_kernel(op, "cpu"):
            return "cpu"
        if op not in _warned_reference:
            warnings.warn(f"crnn_fast._C is not built, so crnn_fast.{op} runs the slow eager reference; {BUILD_HINT}",
                          RuntimeWarning, stacklevel=5)
            _warned_reference.add(op)
        return "ref"

    return resolve(op, backend, device, backends=DECODING_BACKENDS, check=check, fallback=fallback)
